import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { type TestGateway, startGateway } from "../test-support/gateway.js";

const FAKE = fileURLToPath(new URL("../test-support/fake-upstream.js", import.meta.url));
let gw: TestGateway;

before(async () => {
  gw = await startGateway({ models: { manual: { command: `'${process.execPath}' '${FAKE}' --port \${PORT}`, auto_start: false } } });
});
after(() => gw?.close());

const chat = (base: string, path = "/v1/chat/completions") =>
  fetch(`${base}${path}`, { method: "POST", body: JSON.stringify({ model: "manual", stream: false, messages: [{ role: "user", content: "hi" }] }) });

test("a model with auto_start false is refused with 400 model_not_loaded until it is started", async () => {
  const refused = await chat(gw.lmstudio);
  assert.equal(refused.status, 400);
  const body = (await refused.json()) as { error: { code: string; message: string } };
  assert.equal(body.error.code, "model_not_loaded");
  assert.match(body.error.message, /POST \/v1\/models\/manual\/start/);
  const ollama = await chat(gw.ollama, "/api/chat");
  assert.equal(ollama.status, 400);
  assert.equal(typeof ((await ollama.json()) as { error: unknown }).error, "string");
  assert.equal(gw.app.lifecycle.status("manual").state, "unloaded", "the refusal did not load it");

  assert.equal((await fetch(`${gw.lmstudio}/v1/models/manual/start`, { method: "POST" })).status, 200);
  for (let i = 0; i < 100 && gw.app.lifecycle.status("manual").state !== "ready"; i++) await sleep(50);
  assert.equal((await chat(gw.lmstudio)).status, 200);
});
