/**
 * Webhooks end to end: the real gateway, real model events (a fake llama-server backend), a real HTTP
 * receiver that checks signatures; restarts of the gateway on the same home folder.
 */
import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { after, afterEach, before, test } from "node:test";
import { fakeModel, json, newHome, Receiver, removeHome, type RunningGateway, startGateway, waitFor } from "../../events/testing.js";
import { WEBHOOK_DB_FILE } from "./service.js";
import { sign, verifySignature } from "./signature.js";

const FAST_RETRIES = { retry_initial_s: 0.05, retry_max_s: 0.2, timeout_s: 2 };
const config = (extra: Record<string, unknown> = {}) => ({ models: { fake: fakeModel("--chunks 2") }, webhooks: FAST_RETRIES, ...extra });

interface Registered {
  id: string;
  secret: string;
  url: string;
  events: string[];
}

let receiver: Receiver;
const homes: string[] = [];
const gateways: RunningGateway[] = [];

async function gateway(home?: string, extra: Record<string, unknown> = {}): Promise<RunningGateway> {
  const dir = home ?? (await newHome());
  if (!home) homes.push(dir);
  const gw = await startGateway(dir, config(extra));
  gateways.push(gw);
  return gw;
}

async function register(gw: RunningGateway, events: string[], url = receiver.url): Promise<Registered> {
  const { status, body } = await json<Registered>(`${gw.lmstudio}/v1/webhooks/register`, { body: { url, events } });
  assert.equal(status, 201, JSON.stringify(body));
  return body;
}

const payloadOf = (r: { body: Buffer }) => JSON.parse(r.body.toString("utf8")) as { event: string; timestamp: string; data: Record<string, unknown> };

before(async () => {
  receiver = await new Receiver().start();
});
afterEach(async () => {
  for (const gw of gateways.splice(0)) await gw.close();
  receiver.received.length = 0;
  receiver.respond = () => 200;
});
after(async () => {
  await receiver.close();
  for (const home of homes) await removeHome(home);
});

test("registration: validation in OpenAI's error format, list without secrets, delete, an owner-only database made by the first registration", async () => {
  const gw = await gateway();
  const bad: Array<[unknown, string]> = [
    [{ url: "ftp://example.com/hook", events: ["model.started"] }, "url"],
    [{ url: "file:///etc/passwd", events: ["model.started"] }, "url"],
    [{ url: "not a url", events: ["model.started"] }, "url"],
    [{ url: "http://user:pw@example.com/", events: ["model.started"] }, "url"],
    [{ events: ["model.started"] }, "url"],
    [{ url: "https://example.com/hook" }, "events"],
    [{ url: "https://example.com/hook", events: [] }, "events"],
    [{ url: "https://example.com/hook", events: ["model.exploded"] }, "events"],
    ["[1,2]", "body"],
    ["{not json", "body"],
  ];
  for (const [body, param] of bad) {
    const response = await json<{ error: { type: string; code: string; param: string | null; message: string } }>(`${gw.ollama}/v1/webhooks/register`, { body });
    assert.equal(response.status, 400, `${JSON.stringify(body)} → ${JSON.stringify(response.body)}`);
    assert.equal(response.body.error.type, "invalid_request_error");
    assert.equal(response.body.error.code, "invalid_request");
    if (param !== "body") assert.equal(response.body.error.param, param);
  }

  // Nothing registered yet (the refused registrations above included): no database file.
  await assert.rejects(stat(join(gw.home, WEBHOOK_DB_FILE)), { code: "ENOENT" });
  assert.deepEqual((await json<{ data: unknown[] }>(`${gw.lmstudio}/v1/webhooks`)).body.data, []);

  const wildcard = await register(gw, ["*"], "http://127.0.0.1:9/all");
  assert.deepEqual(wildcard.events, ["*"]);
  assert.equal((await json(`${gw.lmstudio}/v1/webhooks/${wildcard.id}`, { method: "DELETE" })).status, 200);

  const all = ["model.loading", "model.started", "model.stopped", "model.error", "transcription.completed"];
  const made = await register(gw, all, "https://example.com/hook?x=1");
  assert.match(made.id, /^wh_[0-9a-f]{24}$/);
  assert.match(made.secret, /^whsec_[0-9a-f]{64}$/);
  assert.deepEqual(made.events, all);

  // Either listener sees the same registrations; listings never show a secret.
  const list = await json<{ data: Array<Record<string, unknown>> }>(`${gw.ollama}/v1/webhooks`);
  assert.equal(list.status, 200);
  assert.deepEqual(
    list.body.data.map((w) => w["id"]),
    [made.id],
  );
  assert.equal(JSON.stringify(list.body).includes(made.secret), false);
  assert.equal(list.body.data[0]?.["url"], "https://example.com/hook?x=1");
  const one = await json(`${gw.lmstudio}/v1/webhooks/${made.id}`);
  assert.equal(one.status, 200);
  assert.equal(one.body["secret"], undefined);

  const mode = (await stat(join(gw.home, WEBHOOK_DB_FILE))).mode & 0o777;
  assert.equal(mode, 0o600, `database mode ${mode.toString(8)}`);

  assert.deepEqual((await json(`${gw.lmstudio}/v1/webhooks/${made.id}`, { method: "DELETE" })).body, { id: made.id, object: "webhook", deleted: true });
  const gone = await json<{ error: { code: string } }>(`${gw.lmstudio}/v1/webhooks/${made.id}`, { method: "DELETE" });
  assert.equal(gone.status, 404);
  assert.equal(gone.body.error.code, "webhook_not_found");
  assert.equal((await json(`${gw.lmstudio}/v1/webhooks/${made.id}/deliveries`)).status, 404);
  assert.deepEqual((await json<{ data: unknown[] }>(`${gw.lmstudio}/v1/webhooks`)).body.data, []);
});

test("model events arrive signed, in order, with the reference's payload; the delivery log shows them", async () => {
  const gw = await gateway();
  const hook = await register(gw, ["model.loading", "model.started", "model.stopped"]);
  const other = await register(gw, ["model.error"]);

  assert.equal((await json(`${gw.lmstudio}/v1/models/fake/start`, { method: "POST" })).status, 200);
  await waitFor(() => gw.app.lifecycle.status("fake").state === "ready", "the model to load");
  await json(`${gw.lmstudio}/v1/models/fake/stop`, { method: "POST" });
  await waitFor(() => receiver.received.length >= 3 && receiver.received, "three deliveries");

  const events = receiver.received.map(payloadOf);
  assert.deepEqual(
    events.map((e) => e.event),
    ["model.loading", "model.started", "model.stopped"],
  );
  for (const [i, request] of receiver.received.entries()) {
    const signature = request.headers["x-llamarunner-signature"] as string;
    assert.equal(signature, sign(hook.secret, request.body));
    assert.match(signature, /^sha256=[0-9a-f]{64}$/);
    assert.ok(verifySignature(hook.secret, request.body, signature));
    assert.equal(verifySignature(other.secret, request.body, signature), false);
    assert.equal(request.headers["content-type"], "application/json");
    assert.equal(request.headers["x-llamarunner-event"], events[i]?.event);
    assert.equal(request.headers["x-llamarunner-attempt"], "1");
    assert.equal(request.headers["x-llamarunner-webhook-id"], hook.id);
    assert.match(String(request.headers["user-agent"]), /^LlamaRunner-Webhook\//);
    assert.deepEqual(Object.keys(events[i] ?? {}), ["event", "timestamp", "data"]);
    assert.ok(!Number.isNaN(Date.parse(events[i]?.timestamp ?? "")));
    assert.equal(events[i]?.data["model_id"], "fake");
  }
  assert.equal(typeof events[1]?.data["port"], "number");
  assert.equal(events[2]?.data["reason"], "requested");

  const log = await json<{ data: Array<{ event: string; status: string; attempts: number; last_status_code: number; attempt_log: unknown[] }> }>(
    `${gw.ollama}/v1/webhooks/${hook.id}/deliveries`,
  );
  assert.equal(log.status, 200);
  assert.deepEqual(
    log.body.data.map((d) => [d.event, d.status, d.attempts, d.last_status_code, d.attempt_log.length]),
    [
      ["model.stopped", "delivered", 1, 200, 1],
      ["model.started", "delivered", 1, 200, 1],
      ["model.loading", "delivered", 1, 200, 1],
    ],
  );
  assert.deepEqual((await json<{ data: unknown[] }>(`${gw.ollama}/v1/webhooks/${other.id}/deliveries`)).body.data, []);
});

test("a receiver that answers 500 gets retries with backoff, and later events wait their turn", async () => {
  const gw = await gateway();
  const hook = await register(gw, ["transcription.completed"]);
  receiver.respond = (n) => (n < 2 ? 500 : 200);
  const completed = (n: number) => ({
    model_id: "whisper",
    task: "transcribe" as const,
    language: "en",
    duration_s: n,
    processing_ms: 1,
    decode_ms: 1,
    inference_ms: 1,
  });
  gw.app.bus.publish("transcription.completed", completed(1));
  gw.app.bus.publish("transcription.completed", completed(2));
  await waitFor(() => receiver.received.length >= 4, "4 requests");
  await new Promise((resolve) => setTimeout(resolve, 300));

  assert.deepEqual(
    receiver.received.map((r) => [payloadOf(r).data["duration_s"], r.headers["x-llamarunner-attempt"], r.status]),
    [
      [1, "1", 500],
      [1, "2", 500],
      [1, "3", 200],
      [2, "1", 200],
    ],
  );
  // One delivery id across the retries; every attempt signed.
  const ids = receiver.received.map((r) => r.headers["x-llamarunner-delivery"]);
  assert.equal(ids[0], ids[1]);
  assert.equal(ids[1], ids[2]);
  assert.notEqual(ids[2], ids[3]);
  for (const r of receiver.received) assert.ok(verifySignature(hook.secret, r.body, r.headers["x-llamarunner-signature"] as string));

  const log = await json<{ data: Array<{ status: string; attempts: number; attempt_log: Array<{ status_code: number; error: string | null }> }> }>(
    `${gw.lmstudio}/v1/webhooks/${hook.id}/deliveries?status=delivered`,
  );
  const first = log.body.data.at(-1);
  assert.equal(first?.attempts, 3);
  assert.deepEqual(
    first?.attempt_log.map((a) => a.status_code),
    [500, 500, 200],
  );
  assert.match(first?.attempt_log[0]?.error ?? "", /^HTTP 500/);
  assert.equal((await json(`${gw.lmstudio}/v1/webhooks/${hook.id}/deliveries?status=bogus`)).status, 400);
});

test("a delivery that keeps failing is marked failed after max_attempts", async () => {
  const gw = await gateway(undefined, { webhooks: { ...FAST_RETRIES, max_attempts: 3 } });
  const hook = await register(gw, ["model.error"]);
  receiver.respond = () => 503;
  gw.app.bus.publish("model.error", { model_id: "fake", error: "boom" });
  const log = await waitFor(async () => {
    const { body } = await json<{ data: Array<{ status: string; attempts: number; last_status_code: number }> }>(`${gw.lmstudio}/v1/webhooks/${hook.id}/deliveries`);
    return body.data[0]?.status === "failed" && body.data[0];
  }, "the delivery to fail");
  assert.equal(log.attempts, 3);
  assert.equal(log.last_status_code, 503);
  assert.equal(receiver.received.length, 3);
});

test("registrations survive a restart, and a delivery pending at shutdown arrives after it", async () => {
  const home = await newHome();
  homes.push(home);
  const first = await gateway(home);
  const hook = await register(first, ["model.started", "model.stopped"]);
  const unrelated = await register(first, ["transcription.completed"], "http://127.0.0.1:9/never");

  // The receiver is down (503) while the model loads, and the gateway stops with the delivery pending.
  receiver.respond = () => 503;
  await json(`${first.lmstudio}/v1/models/fake/start`, { method: "POST" });
  await waitFor(() => receiver.received.length >= 1, "a first, failed, attempt");
  await first.close();
  gateways.splice(gateways.indexOf(first), 1);
  const attemptsBefore = receiver.received.length;
  assert.ok(receiver.received.every((r) => r.status === 503));

  receiver.respond = () => 200;
  const second = await gateway(home);
  const list = await json<{ data: Array<{ id: string; url: string; events: string[] }> }>(`${second.lmstudio}/v1/webhooks`);
  assert.deepEqual(
    list.body.data.map((w) => w.id).sort(),
    [hook.id, unrelated.id].sort(),
  );
  assert.deepEqual(list.body.data.find((w) => w.id === hook.id)?.events, ["model.started", "model.stopped"]);

  // model.started (pending since before the restart), then model.stopped ("shutdown", queued while stopping).
  await waitFor(() => receiver.ofEvent("model.stopped").length >= 1, "the shutdown event after the restart");
  const delivered = receiver.received.slice(attemptsBefore).filter((r) => r.status === 200);
  assert.deepEqual(
    delivered.map((r) => payloadOf(r).event),
    ["model.started", "model.stopped"],
  );
  assert.equal(payloadOf(delivered[1] as Received).data["reason"], "shutdown");
  // Same delivery, same secret: the pending one kept its id and is signed with the secret from before.
  assert.equal(delivered[0]?.headers["x-llamarunner-delivery"], receiver.received[0]?.headers["x-llamarunner-delivery"]);
  for (const r of delivered) assert.ok(verifySignature(hook.secret, r.body, r.headers["x-llamarunner-signature"] as string));
  const log = await json<{ data: Array<{ event: string; status: string; attempts: number }> }>(`${second.lmstudio}/v1/webhooks/${hook.id}/deliveries`);
  const started = log.body.data.find((d) => d.event === "model.started");
  assert.equal(started?.status, "delivered");
  assert.equal(started?.attempts, attemptsBefore + 1);
});

type Received = { body: Buffer };
