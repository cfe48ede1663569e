/**
 * The WebSocket API end to end with the `ws` client: streamed chat on both listeners, event
 * subscriptions, garbage that leaves the connection open, a closed socket freeing its backend slot,
 * refusals by the listener's policies; and backpressure, with a scripted socket and backend stream.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { connect } from "node:net";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { EventBus } from "../../events/bus.js";
import { fakeModel, json, newHome, removeHome, type RunningGateway, startGateway, waitFor } from "../../events/testing.js";
import type { InferenceService } from "../inference.js";
import { Connection } from "./connection.js";

type Message = Record<string, unknown> & { type: string };

/** A client that queues what it receives, so a test can await the next message of a kind. */
class Client {
  readonly ws: WebSocket;
  readonly messages: Message[] = [];
  private cursor = 0;
  closed: { code: number; reason: string } | undefined;

  constructor(url: string, headers: Record<string, string> = {}) {
    this.ws = new WebSocket(url, { headers });
    this.ws.on("message", (data) => this.messages.push(JSON.parse(String(data)) as Message));
    this.ws.on("close", (code, reason) => (this.closed = { code, reason: String(reason) }));
  }

  open(): Promise<this> {
    return new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve(this));
      this.ws.once("error", reject);
    });
  }

  send(message: unknown): void {
    this.ws.send(typeof message === "string" ? message : JSON.stringify(message));
  }

  /** The next message (after those already taken) that matches. */
  async next(match: (m: Message) => boolean = () => true, what = "a message"): Promise<Message> {
    return waitFor(() => {
      for (let i = this.cursor; i < this.messages.length; i++) {
        const message = this.messages[i] as Message;
        if (match(message)) {
          this.cursor = i + 1;
          return message;
        }
      }
      return undefined;
    }, what);
  }

  /** Every message up to and including the first that matches `last`. */
  async until(last: (m: Message) => boolean, what: string): Promise<Message[]> {
    const start = this.cursor;
    await this.next(last, what);
    return this.messages.slice(start, this.cursor);
  }
}

let home: string;
let gw: RunningGateway;
const wsUrl = (base: string) => `${base.replace(/^http/, "ws")}/v1/ws`;

before(async () => {
  home = await newHome();
  gw = await startGateway(home, {
    models: {
      fake: fakeModel("--chunks 5 --chunk-delay-ms 5"),
      slow: fakeModel("--chunks 400 --chunk-delay-ms 25"),
    },
    concurrentRunners: 2,
  });
});
after(async () => {
  await gw?.close();
  await removeHome(home);
});

test("chat_message streams chat_chunk messages, then chat_done with usage, on both listeners", async () => {
  for (const base of [gw.lmstudio, gw.ollama]) {
    const client = await new Client(wsUrl(base)).open();
    client.send({ type: "chat_message", model: "fake", message: "Hello!" });
    const stream = await client.until((m) => m.type === "chat_done", "chat_done");
    const chunks = stream.filter((m) => m.type === "chat_chunk");
    assert.deepEqual(
      chunks.map((c) => c["content"]).join(""),
      "tok1 tok2 tok3 tok4 tok5 ",
    );
    assert.ok(chunks.every((c) => c["id"] === "chat_1" && c["model"] === "fake"));
    assert.equal(chunks.at(-1)?.["finish_reason"], "stop");
    const done = stream.at(-1) as Message;
    assert.deepEqual(done["usage"], { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 });
    assert.equal(done["finish_reason"], "stop");

    // `messages` and `options` (OpenAI parameters), with the client's own id echoed back.
    client.send({
      type: "chat_message",
      id: 42,
      model: "fake",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi" },
      ],
      options: { temperature: 0.2, max_tokens: 16 },
    });
    const second = await client.until((m) => m.type === "chat_done", "second chat_done");
    assert.ok(second.every((m) => m["id"] === 42));
    client.ws.close();
  }
});

test("subscribe pushes model events as they happen; unsubscribe stops them", async () => {
  const client = await new Client(wsUrl(gw.ollama)).open();
  client.send({ type: "subscribe", events: ["model.loading", "model.started", "model.stopped"] });
  assert.deepEqual((await client.next((m) => m.type === "subscribed"))["events"], ["model.loading", "model.started", "model.stopped"]);

  await json(`${gw.lmstudio}/v1/models/fake/stop`, { method: "POST" });
  await waitFor(() => gw.app.lifecycle.status("fake").state === "unloaded", "fake to unload");
  const afterStop = client.messages.length;
  await json(`${gw.lmstudio}/v1/models/fake/start`, { method: "POST" });
  const loading = await client.next((m) => m.type === "event" && m["event"] === "model.loading", "model.loading");
  const started = await client.next((m) => m.type === "event" && m["event"] === "model.started", "model.started");
  assert.ok(client.messages.indexOf(loading) >= afterStop);
  assert.deepEqual((loading["data"] as Record<string, unknown>)["model_id"], "fake");
  assert.equal(typeof (started["data"] as Record<string, unknown>)["port"], "number");
  assert.ok(!Number.isNaN(Date.parse(String(started["timestamp"]))));

  client.send({ type: "unsubscribe" });
  assert.deepEqual((await client.next((m) => m.type === "unsubscribed"))["events"], []);
  const count = client.messages.length;
  await json(`${gw.lmstudio}/v1/models/fake/stop`, { method: "POST" });
  await waitFor(() => gw.app.lifecycle.status("fake").state === "unloaded", "fake to unload");
  await sleep(100);
  assert.equal(client.messages.length, count, "no events after unsubscribe");

  client.send({ type: "subscribe", events: ["*"] });
  await client.next((m) => m.type === "subscribed");
  gw.app.bus.publish("model.error", { model_id: "fake", error: "test" });
  assert.equal((await client.next((m) => m.type === "event"))["event"], "model.error");
  client.ws.close();
});

test("garbage gets {type:'error'} and the connection stays open", async () => {
  const client = await new Client(wsUrl(gw.lmstudio)).open();
  const garbage: Array<[unknown, string]> = [
    ["this is not json", "invalid_request"],
    ["[1,2,3]", "invalid_request"],
    ["null", "invalid_request"],
    [{ hello: "world" }, "invalid_request"],
    [{ type: "launch_missiles" }, "invalid_request"],
    [{ type: "chat_message", message: "no model" }, "invalid_request"],
    [{ type: "chat_message", model: "fake" }, "invalid_request"],
    [{ type: "chat_message", model: "fake", message: "x", options: "fast" }, "invalid_request"],
    [{ type: "chat_message", model: "fake", message: "x", options: { temperature: "hot" } }, "invalid_request"],
    [{ type: "chat_message", model: "no-such-model", message: "x" }, "model_not_found"],
    [{ type: "subscribe", events: ["model.exploded"] }, "invalid_request"],
    [{ type: "subscribe" }, "invalid_request"],
    [{ type: "cancel", id: "nothing" }, "invalid_request"],
  ];
  for (const [message, code] of garbage) {
    client.send(message);
    const error = await client.next((m) => m.type === "error", `an error for ${JSON.stringify(message)}`);
    assert.equal(error["code"], code, `${JSON.stringify(message)} → ${JSON.stringify(error)}`);
    assert.equal(typeof error["message"], "string");
  }
  client.ws.send(Buffer.from([0xde, 0xad, 0xbe, 0xef]), { binary: true });
  assert.match(String((await client.next((m) => m.type === "error"))["message"]), /Binary/);
  assert.equal(client.ws.readyState, WebSocket.OPEN);

  // Application-level and protocol-level keep-alive.
  client.send({ type: "ping", id: "p1" });
  assert.deepEqual(await client.next((m) => m.type === "pong"), { type: "pong", id: "p1" });
  const pong = new Promise((resolve) => client.ws.once("pong", resolve));
  client.ws.ping();
  await pong;

  // Still fully usable.
  client.send({ type: "chat_message", model: "fake", message: "still there?" });
  await client.next((m) => m.type === "chat_done", "chat_done after the garbage");
  assert.equal(client.closed, undefined);
  client.ws.close();
});

test("closing the socket mid-chat aborts it and frees the backend slot; cancel stops one chat", async () => {
  const client = await new Client(wsUrl(gw.ollama)).open();
  client.send({ type: "chat_message", id: "long", model: "slow", message: "tell me everything" });
  await client.next((m) => m.type === "chat_chunk", "a first chunk");
  assert.equal(gw.app.lifecycle.status("slow").inFlight, 1);
  client.send({ type: "cancel", id: "long" });
  const cancelled = await client.next((m) => m.type === "error", "the cancellation");
  assert.equal(cancelled["code"], "cancelled");
  assert.equal(cancelled["id"], "long");
  await waitFor(() => gw.app.lifecycle.status("slow").inFlight === 0, "the slot to be released after cancel", 3000);

  client.send({ type: "chat_message", id: "long2", model: "slow", message: "again" });
  await client.next((m) => m.type === "chat_chunk" && m["id"] === "long2", "a chunk of the second chat");
  assert.equal(gw.app.lifecycle.status("slow").inFlight, 1);
  client.ws.terminate();
  await waitFor(() => gw.app.lifecycle.status("slow").inFlight === 0, "the slot to be released after the socket closed", 3000);
  const status = await json<{ in_flight: number }>(`${gw.lmstudio}/v1/models/slow/status`);
  assert.equal(status.body.in_flight, 0);
});

test("a refused upgrade completes the handshake, sends {type:'error'} and closes", async () => {
  const keyedHome = await newHome();
  const keyed = await startGateway(keyedHome, { models: { fake: fakeModel() }, api_keys: ["sk-test-0123456789"] });
  try {
    const refused = new Client(wsUrl(keyed.lmstudio));
    await refused.open();
    const error = await refused.next((m) => m.type === "error", "the refusal");
    assert.equal(error["code"], "invalid_api_key");
    assert.equal(error["status"], 401);
    await waitFor(() => refused.closed, "the close");
    assert.equal(refused.closed?.code, 1008);

    const allowed = await new Client(wsUrl(keyed.ollama), { authorization: "Bearer sk-test-0123456789" }).open();
    allowed.send({ type: "ping" });
    assert.equal((await allowed.next())["type"], "pong");
    allowed.ws.close();

    // Upgrades elsewhere are served as the plain requests they also are.
    const elsewhere = new WebSocket(`${keyed.lmstudio.replace(/^http/, "ws")}/v1/models`, { headers: { authorization: "Bearer sk-test-0123456789" } });
    const status = await new Promise<number>((resolve, reject) => {
      elsewhere.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      elsewhere.once("open", () => reject(new Error("upgraded on a plain route")));
      elsewhere.once("error", reject);
    });
    assert.equal(status, 200);

    // A plain GET of the WebSocket route says what it is.
    const plain = await json<{ error: { code: string } }>(`${keyed.lmstudio}/v1/ws`, { headers: { authorization: "Bearer sk-test-0123456789" } });
    assert.equal(plain.status, 426);
    assert.equal(plain.body.error.code, "upgrade_required");
  } finally {
    await keyed.close();
    await removeHome(keyedHome);
  }
});

test("other upgrade requests (h2c) are served as plain HTTP: body, pipelining and keep-alive intact", async () => {
  const port = Number(new URL(gw.lmstudio).port);
  const body = JSON.stringify({ model: "fake", messages: [{ role: "user", content: "hi" }] });
  const upgrade = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => {
      // The body arrives in two parts, the second after the upgrade was seen; then a pipelined request.
      socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n${upgrade}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
      setTimeout(() => socket.write(`${body.slice(10)}GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`), 50);
    });
    let text = "";
    socket.on("data", (d) => (text += String(d)));
    socket.on("close", () => resolve(text));
    socket.on("error", reject);
  });
  const statuses = answer.match(/HTTP\/1\.1 \d+/g);
  assert.deepEqual(statuses, ["HTTP/1.1 200", "HTTP/1.1 200"], answer);
  assert.match(answer, /"object":"chat.completion"/);
  assert.match(answer, /"status":"healthy"/);
});

// ---- backpressure, with a scripted socket and backend stream ----------------------------------------

class ScriptedSocket extends EventEmitter {
  readyState = 1;
  bufferedAmount = 0;
  readonly sent: string[] = [];
  readonly waiting: Array<() => void> = [];
  send(data: string, callback?: () => void): void {
    this.sent.push(data);
    this.bufferedAmount += data.length;
    if (callback) this.waiting.push(callback);
  }
  terminated = false;
  ping(): void {}
  terminate(): void {
    this.terminated = true;
    this.readyState = 3;
    this.emit("close", 1006, Buffer.alloc(0));
  }
  /** The client read everything: the queue drains and pending callbacks fire. */
  flush(): void {
    this.bufferedAmount = 0;
    for (const callback of this.waiting.splice(0)) callback();
  }
}

test("backpressure: a chat stops reading its backend while the socket's queue is over the high-water mark", async () => {
  let pulled = 0;
  const total = 500;
  async function* sse() {
    for (let i = 1; i <= total; i++) {
      pulled++;
      yield `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: `t${i} ` }, finish_reason: null }] })}\n\n`;
    }
    yield "data: [DONE]\n\n";
  }
  let released = 0;
  const body = Readable.from(sse(), { objectMode: false, highWaterMark: 1 });
  const inference = {
    send: async () => ({
      entry: { id: "scripted" },
      response: { statusCode: 200, headers: { "content-type": "text/event-stream" }, body },
      release: () => released++,
    }),
  } as unknown as InferenceService;
  const socket = new ScriptedSocket();
  const config = { ping_interval_s: 60, max_message_bytes: 1 << 20, max_concurrent_chats: 2, high_water_bytes: 4096 };
  new Connection(socket as unknown as WebSocket, { bus: new EventBus(), inference, config, log: { warn: () => {} } });

  socket.emit("message", Buffer.from(JSON.stringify({ type: "chat_message", model: "scripted", message: "go" })), false);
  await waitFor(() => socket.waiting.length > 0, "the chat to wait for the socket");
  await sleep(100);
  const chunksSent = socket.sent.length;
  const pulledWhileBlocked = pulled;
  // Stuck: nothing more is sent or read from the backend while the client does not read.
  assert.ok(socket.bufferedAmount > config.high_water_bytes);
  assert.ok(pulledWhileBlocked < total / 2, `read ${pulledWhileBlocked} of ${total} backend chunks while blocked`);
  await sleep(100);
  assert.equal(socket.sent.length, chunksSent);
  assert.equal(pulled, pulledWhileBlocked);

  // The client reads: the chat goes on, and blocks again at the next high-water mark, until done.
  while (!socket.sent.some((m) => m.includes('"chat_done"'))) {
    socket.flush();
    await sleep(5);
  }
  assert.equal(pulled, total);
  assert.equal(socket.sent.filter((m) => m.includes('"chat_chunk"')).length, total);
  assert.equal(released, 1);

  // Subscribed events are dropped, not queued without bound, while the client is far behind.
  const bus = new EventBus();
  const lagging = new ScriptedSocket();
  new Connection(lagging as unknown as WebSocket, { bus, inference, config, log: { warn: () => {} } });
  lagging.emit("message", Buffer.from(JSON.stringify({ type: "subscribe", events: ["*"] })), false);
  lagging.bufferedAmount = 10 * config.high_water_bytes;
  for (let i = 0; i < 5; i++) bus.publish("model.error", { model_id: "m", error: String(i) });
  assert.equal(lagging.sent.filter((m) => m.includes('"event"')).length, 0);
  lagging.flush();
  bus.publish("model.error", { model_id: "m", error: "after" });
  assert.deepEqual(JSON.parse(lagging.sent.at(-2) ?? "{}"), { type: "events_dropped", count: 5 });
  assert.equal((JSON.parse(lagging.sent.at(-1) ?? "{}") as { data: { error: string } }).data.error, "after");
});

test("a client that stops reading for write_stall_s is disconnected, and its chat's slot freed", async () => {
  async function* endless() {
    for (let i = 1; ; i++) yield `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: `t${i} ` }, finish_reason: null }] })}\n\n`;
  }
  let released = 0;
  const inference = {
    send: async () => ({
      entry: { id: "scripted" },
      response: { statusCode: 200, headers: { "content-type": "text/event-stream" }, body: Readable.from(endless(), { objectMode: false, highWaterMark: 1 }) },
      release: () => released++,
    }),
  } as unknown as InferenceService;
  const socket = new ScriptedSocket();
  const config = { ping_interval_s: 60, max_message_bytes: 1 << 20, max_concurrent_chats: 2, high_water_bytes: 2048 };
  new Connection(socket as unknown as WebSocket, { bus: new EventBus(), inference, config, log: { warn: () => {} }, stallMs: 150 });
  socket.emit("message", Buffer.from(JSON.stringify({ type: "chat_message", model: "scripted", message: "go" })), false);
  await waitFor(() => socket.terminated, "the stalled client to be disconnected", 3000);
  await waitFor(() => released === 1, "the backend slot to be released", 3000);
});
