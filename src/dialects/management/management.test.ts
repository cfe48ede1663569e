/** Model management and system endpoints against a real gateway and a real embedded runner. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { EventEnvelope } from "../../events/bus.js";
import { type TestGateway, startGateway } from "../../test-support/gateway.js";
import { tinyModelPath } from "../../test-support/models.js";

let gw: TestGateway;
const events: EventEnvelope[] = [];

before(async () => {
  gw = await startGateway({ models: { tiny: { model_path: await tinyModelPath(), aliases: ["t"], parameters: { ctx_size: 512 } } } });
  gw.app.bus.subscribe("*", (e) => events.push(e));
});
after(() => gw?.close());

const get = async (path: string, base = gw.lmstudio) => {
  const res = await fetch(`${base}${path}`);
  return { status: res.status, body: (await res.json()) as Record<string, any> };
};
const post = async (path: string, base = gw.lmstudio) => {
  const res = await fetch(`${base}${path}`, { method: "POST" });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
};

async function waitFor(predicate: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await predicate()) return;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}

test("status, start, info, stop: the whole cycle through the API", async () => {
  let status = await get("/v1/models/tiny/status");
  assert.equal(status.status, 200);
  assert.equal(status.body["status"], "unloaded");
  assert.equal(status.body["last_used"], null);

  const started = await post("/v1/models/t/start", gw.ollama);
  assert.equal(started.status, 200);
  assert.equal(started.body["success"], true);
  assert.equal(started.body["status"], "starting");
  await waitFor(async () => (await get("/v1/models/tiny/status")).body["status"] === "loaded", "the model to load");

  status = await get("/v1/models/tiny/status");
  assert.equal(typeof status.body["port"], "number");
  assert.ok(status.body["uptime"] >= 0);
  await waitFor(async () => (await get("/v1/models/tiny/status")).body["memory_usage"] > 1_000_000, "a measured RSS");
  assert.equal((await post("/v1/models/tiny/start")).body["status"], "loaded", "starting a loaded model is a no-op");

  const info = await get("/v1/models/tiny/info");
  assert.equal(info.body["id"], "tiny");
  assert.equal(info.body["format"], "GGUF");
  assert.equal(info.body["architecture"], "llama");
  assert.equal(info.body["context_length"], 2048);
  assert.ok(info.body["size"] > 0 && info.body["parameters"] > 0);
  assert.equal(info.body["loaded"], true);
  assert.equal(info.body["port"], status.body["port"]);

  const models = await get("/v1/models");
  assert.equal(models.body["data"][0].status, "ready");

  const stopped = await post("/v1/models/tiny/stop");
  assert.deepEqual(stopped.body, { success: true, status: "stopped" });
  await waitFor(async () => (await get("/v1/models/tiny/status")).body["status"] === "unloaded", "the model to unload");
  assert.equal((await get("/v1/models/tiny/info")).body["loaded"], false);

  const names = events.map((e) => e.event);
  assert.deepEqual(names, ["model.loading", "model.started", "model.stopped"]);
  assert.deepEqual(events[2]?.data, { model_id: "tiny", reason: "requested" });
  assert.ok(!Number.isNaN(Date.parse(events[0]?.timestamp ?? "")));
});

test("unknown models are 404 model_not_found on every management route", async () => {
  for (const [method, path] of [["GET", "status"], ["POST", "start"], ["POST", "stop"], ["GET", "info"]] as const) {
    const res = await fetch(`${gw.lmstudio}/v1/models/nope/${path}`, { method });
    assert.equal(res.status, 404, path);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "model_not_found");
  }
});

test("system status reports real figures and both listeners", async () => {
  const { body } = await get("/v1/system/status", gw.ollama);
  assert.equal(body["status"], "running");
  assert.equal(body["models"].total, 1);
  assert.equal(typeof body["models"].loaded, "number");
  assert.equal(body["proxies"].ollama.status, "running");
  assert.equal(body["proxies"].lmstudio.status, "running");
  assert.equal(body["proxies"].lmstudio.port, Number(new URL(gw.lmstudio).port));
  assert.ok(body["system"].cpu_usage >= 0 && body["system"].cpu_usage <= 100);
  assert.ok(body["system"].memory_usage > 0 && body["system"].available_memory > 0);
  assert.equal(body["system"].memory_usage + body["system"].available_memory, body["system"].total_memory);
});

test("server info", async () => {
  const { body } = await get("/v1/server/info");
  assert.equal(body["id"], "llama-runner");
  assert.match(body["version"], /^\d+\.\d+\.\d+$/);
  assert.ok(Array.isArray(body["features"]) && body["features"].includes("chat"));
  assert.equal(body["runtime_info"].node_version, process.versions.node);
});
