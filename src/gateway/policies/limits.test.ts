/**
 * Per-client limits with real client addresses (127.0.0.2, 127.0.0.3, ...): one client's flood does
 * not limit another, slots come back when streams end or break, and slow or silent clients are cut off.
 */
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { type TestGateway, startGateway } from "../../test-support/gateway.js";

const FAKE = fileURLToPath(new URL("../../test-support/fake-upstream.js", import.meta.url));
const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
const slow = (flags: string) => ({ command: `${quote(process.execPath)} ${quote(FAKE)} --port \${PORT} ${flags}` });

const gateways: TestGateway[] = [];
after(async () => {
  await Promise.all(gateways.map((g) => g.close()));
});

interface Answer {
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
  json(): Promise<unknown>;
  body: { cancel(): Promise<void> } | null;
}

/** A client on its own loopback address (node:http binds localAddress; fetch cannot). */
function client(address: string) {
  return (url: string, init: { method?: string; body?: string; signal?: AbortSignal } = {}): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = httpRequest(url, { method: init.method ?? "GET", localAddress: address, agent: false, ...(init.signal ? { signal: init.signal } : {}) }, (res) => {
        const chunks: Buffer[] = [];
        const done = new Promise<string>((ok) => {
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => ok(Buffer.concat(chunks).toString()));
          res.on("error", () => ok(Buffer.concat(chunks).toString()));
          res.on("close", () => ok(Buffer.concat(chunks).toString()));
        });
        resolve({
          status: res.statusCode ?? 0,
          headers: { get: (name) => (res.headers[name.toLowerCase()] as string | undefined) ?? null },
          text: () => done,
          json: async () => JSON.parse(await done) as unknown,
          body: { cancel: async () => void res.destroy() },
        });
      });
      req.on("error", reject);
      req.end(init.body);
    });
}

async function gateway(limits: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<TestGateway> {
  const rate_limits = { exempt_loopback: false, ...limits };
  const gw = await startGateway({
    proxies: { ollama: { rate_limits }, lmstudio: { rate_limits } },
    // Two slots, so two streams of one client run at once.
    models: { slow: { ...slow("--chunks 40 --chunk-delay-ms 100"), parameters: { parallel: 2 } } },
    ...extra,
  });
  gateways.push(gw);
  return gw;
}

const stream = (base: string, fetcher: ReturnType<typeof client>, signal?: AbortSignal) =>
  fetcher(`${base}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model: "slow", stream: true, messages: [{ role: "user", content: "hi" }] }),
    ...(signal ? { signal } : {}),
  });

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await sleep(50);
  }
  assert.fail(`never happened: ${what}`);
}

test("requests per minute: a flood from one address is refused with 429 and Retry-After; another address is not", async () => {
  const gw = await gateway({ requests_per_minute: 5 });
  const a = client("127.0.0.2");
  const b = client("127.0.0.3");
  for (let i = 0; i < 5; i++) assert.equal((await a(`${gw.lmstudio}/v1/models`)).status, 200);
  const refused = await a(`${gw.lmstudio}/v1/models`);
  assert.equal(refused.status, 429);
  assert.match(refused.headers.get("retry-after") ?? "", /^\d+$/);
  const body = (await refused.json()) as { error: { code: string; message: string; type: string } };
  assert.equal(body.error.code, "rate_limit_exceeded");
  assert.equal(body.error.type, "rate_limit_error");
  assert.match(body.error.message, /^Rate limit exceeded\. Try again in \d+ seconds\.$/);
  // Each listener counts on its own; the Ollama dialect answers in its own format.
  for (let i = 0; i < 5; i++) await (await a(`${gw.ollama}/api/tags`)).text();
  const ollama = await a(`${gw.ollama}/api/tags`);
  assert.equal(ollama.status, 429);
  assert.match(((await ollama.json()) as { error: string }).error, /^Rate limit exceeded/);
  assert.equal((await b(`${gw.lmstudio}/v1/models`)).status, 200, "another client is not limited");
  assert.equal((await a(`${gw.lmstudio}/health`)).status, 200, "liveness is never limited");
});

test("concurrent requests per client: the third is refused, others are not, and aborted streams give their slots back", async () => {
  const gw = await gateway({ concurrent_requests: 2, streaming_connections: 0 });
  const a = client("127.0.0.4");
  const b = client("127.0.0.5");
  const controllers = [new AbortController(), new AbortController()];
  const open = await Promise.all(controllers.map((c) => stream(gw.lmstudio, a, c.signal)));
  for (const res of open) assert.equal(res.status, 200);
  const third = await a(`${gw.lmstudio}/v1/models`);
  assert.equal(third.status, 429);
  assert.equal(((await third.json()) as { error: { code: string } }).error.code, "rate_limit_exceeded");
  assert.equal((await b(`${gw.lmstudio}/v1/models`)).status, 200);
  for (const c of controllers) c.abort();
  await eventually(async () => (await a(`${gw.lmstudio}/v1/models`)).status === 200, "slots freed after the aborted streams");
  await eventually(async () => gw.app.lifecycle.status("slow").inFlight === 0, "the backend slots released");
});

test("streaming connections per client, Ollama's default streaming included; a finished stream frees its slot", async () => {
  const gw = await gateway({ streaming_connections: 1 });
  const a = client("127.0.0.6");
  const first = new AbortController();
  assert.equal((await stream(gw.lmstudio, a, first.signal)).status, 200);
  assert.equal((await stream(gw.lmstudio, a)).status, 429, "a second stream from the same client");
  const ollama = await a(`${gw.ollama}/api/chat`, { method: "POST", body: JSON.stringify({ model: "slow", messages: [{ role: "user", content: "hi" }] }) });
  // Listeners count separately, so the Ollama port has room for this one.
  assert.equal(ollama.status, 200);
  const second = await a(`${gw.ollama}/api/generate`, { method: "POST", body: JSON.stringify({ model: "slow", prompt: "hi" }) });
  assert.equal(second.status, 429, "generate streams by default");
  assert.match(((await second.json()) as { error: string }).error, /^Rate limit exceeded/);
  const notStreaming = await a(`${gw.lmstudio}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model: "slow", messages: [{ role: "user", content: "hi" }] }),
  });
  assert.equal(notStreaming.status, 200, "a non-streaming request is not a stream");
  first.abort();
  await ollama.text();
  await eventually(async () => {
    const res = await stream(gw.lmstudio, a);
    await res.body?.cancel();
    return res.status === 200;
  }, "the stream slot freed");
});

test("body size: a JSON body over the limit is 413 in the dialect's format", async () => {
  const gw = await gateway({ json_body_mb: 0.001 });
  const big = JSON.stringify({ model: "slow", messages: [{ role: "user", content: "x".repeat(5000) }] });
  const anyone = client("127.0.0.7");
  const openai = await anyone(`${gw.lmstudio}/v1/chat/completions`, { method: "POST", body: big });
  assert.equal(openai.status, 413);
  assert.equal(((await openai.json()) as { error: { code: string } }).error.code, "payload_too_large");
  const ollama = await anyone(`${gw.ollama}/api/chat`, { method: "POST", body: big });
  assert.equal(ollama.status, 413);
  assert.equal(typeof ((await ollama.json()) as { error: unknown }).error, "string");
});

test("a client that trickles its headers is disconnected", async () => {
  const gw = await gateway({}, { timeouts: { headers_s: 1 } });
  const port = Number(new URL(gw.lmstudio).port);
  const socket = connect(port, "127.0.0.1");
  socket.write("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  let answer = "";
  socket.on("data", (d) => (answer += String(d)));
  const closed = await Promise.race([new Promise((r) => socket.once("close", () => r(true))), sleep(15_000, false)]);
  socket.destroy();
  assert.equal(closed, true, "the server closed the connection");
  assert.ok(answer === "" || answer.startsWith("HTTP/1.1 408"), answer);
});

test("a client that stops reading a stream is cut off and its backend slot released", async () => {
  const gw = await gateway({}, { timeouts: { write_stall_s: 1 }, models: { firehose: slow("--chunks 200000") } });
  const port = Number(new URL(gw.lmstudio).port);
  const socket = connect(port, "127.0.0.1");
  const body = JSON.stringify({ model: "firehose", stream: true, messages: [{ role: "user", content: "hi" }] });
  socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  socket.pause();
  await eventually(async () => gw.app.lifecycle.status("firehose").inFlight === 1, "the stream started");
  const closed = await Promise.race([new Promise((r) => socket.once("close", () => r(true))), sleep(20_000, false)]);
  // A paused socket only sees the close once it reads again.
  socket.resume();
  await eventually(async () => gw.app.lifecycle.status("firehose").inFlight === 0, "the backend slot released");
  socket.destroy();
  void closed;
});
