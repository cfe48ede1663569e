import assert from "node:assert/strict";
import { test } from "node:test";
import type { ModelEntry } from "../catalog/catalog.js";
import { llamaServerBackend, parametersToFlags } from "./llama-server.js";

test("parameters become llama-server flags: values, bare true, omitted false/null", () => {
  const { args, ignored } = parametersToFlags({ ctx_size: 4096, flash_attn: true, mlock: false, rope_scaling: null, chat_template: "chatml", port: 1 });
  assert.deepEqual(args, ["--ctx-size", "4096", "--flash-attn", "--chat-template", "chatml"]);
  assert.deepEqual(ignored, ["port"]);
});

test("the gateway owns model, host, port and alias; model parameters override the runtime's", () => {
  const backend = llamaServerBackend("/opt/llama-server", { ctx_size: 2048, threads: 2 });
  const entry = { path: "/models/a.gguf", upstreamModel: "a", parameters: { ctx_size: 8192 }, healthPath: "/health" } as unknown as ModelEntry;
  const plan = backend.plan(entry, { host: "127.0.0.1", port: 5555 });
  assert.ok(plan.kind === "process");
  assert.equal(plan.spawn.command, "/opt/llama-server");
  assert.deepEqual(plan.spawn.args, ["--model", "/models/a.gguf", "--host", "127.0.0.1", "--port", "5555", "--alias", "a", "--ctx-size", "8192", "--threads", "2"]);
  assert.equal(plan.healthPath, "/health");
});
