import assert from "node:assert/strict";
import { test } from "node:test";
import { redactPaths } from "./redact.js";

test("absolute paths lose their folders; URLs, ratios and plain words stay", () => {
  assert.equal(redactPaths("llama_model_load: loading model from '/home/alice/models/secret/qwen.gguf'"), "llama_model_load: loading model from '…/qwen.gguf'");
  assert.equal(redactPaths("error: /opt/llama/bin/llama-server: not found"), "error: …/llama-server: not found");
  assert.equal(redactPaths("see http://127.0.0.1:8080/v1/models and 3/4 done"), "see http://127.0.0.1:8080/v1/models and 3/4 done");
  assert.equal(redactPaths("a /tmp/x/ dir"), "a …/ dir");
  assert.equal(redactPaths("no paths here"), "no paths here");
});
