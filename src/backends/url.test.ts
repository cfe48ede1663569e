/** A `url` backend: an upstream that already runs is health-checked and used, never spawned or killed. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { freePort } from "../runner/ports.js";
import { type TestGateway, startGateway } from "../test-support/gateway.js";

const FAKE = fileURLToPath(new URL("../test-support/fake-upstream.js", import.meta.url));
let upstream: ChildProcess;
let gw: TestGateway;

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await sleep(25);
  assert.ok(check(), what);
}

before(async () => {
  const port = await freePort();
  upstream = spawn(process.execPath, [FAKE, "--port", String(port)], { stdio: "ignore" });
  gw = await startGateway({
    models: {
      remote: { url: `http://127.0.0.1:${port}/`, preload: true, model_id: "their-name" },
      same: { url: `http://127.0.0.1:${port}/` },
    },
  });
});
after(async () => {
  await gw?.close();
  upstream?.kill("SIGKILL");
});

test("preloaded at start-up, served, stopped without touching the upstream process", async () => {
  await until(() => gw.app.lifecycle.status("remote").state === "ready", "preload made it ready without a request");
  const res = await fetch(`${gw.lmstudio}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model: "remote", messages: [{ role: "user", content: "hi" }] }),
  });
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { model: string }).model, "their-name", "the upstream gets model_id");
  assert.equal(gw.app.lifecycle.status("remote").pid, undefined, "nothing was spawned");

  gw.app.lifecycle.stop("remote");
  await until(() => gw.app.lifecycle.status("remote").state === "unloaded", "stopped");
  assert.equal(upstream.exitCode, null, "the upstream keeps running");
  assert.equal(upstream.signalCode, null);
  const again = await fetch(`${gw.ollama}/v1/completions`, { method: "POST", body: JSON.stringify({ model: "remote", prompt: "hi" }) });
  assert.equal(again.status, 200, "the next request reaches it again");
});

test("a body is forwarded byte for byte when the backend knows the model by the client's name; re-serialised when renamed", async () => {
  const embed = async (body: string) => {
    const res = await fetch(`${gw.lmstudio}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json" }, body });
    assert.equal(res.status, 200);
    return (await res.json()) as { x_body_sha256: string; model: string };
  };
  const sha = (text: string) => createHash("sha256").update(text).digest("hex");
  // Odd spacing, key order and an unknown field: what a client sent is what the backend gets.
  const sent = '{ "input" : ["hé", "b"],\n "model":"same", "x_extra": {"k": [1, 2.50]} }';
  assert.equal((await embed(sent)).x_body_sha256, sha(sent));
  // A renamed model (model_id) needs its name replaced: a fresh body.
  const renamed = await embed('{ "input": "x", "model": "remote", "x_extra": 1 }');
  assert.equal(renamed.model, "their-name");
  assert.notEqual(renamed.x_body_sha256, sha('{ "input": "x", "model": "remote", "x_extra": 1 }'));
});
