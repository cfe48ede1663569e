/**
 * LM Studio's REST v0 on the LM Studio listener, checked field by field against the reference JSON of
 * lmstudio-ai/docs `endpoints.mdx` (CLIENT_CONFORMANCE.md §2), with a real gateway and embedded runner.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type TestGateway, startGateway } from "../../test-support/gateway.js";
import { tinyModelPath } from "../../test-support/models.js";

let gw: TestGateway;

before(async () => {
  const [chat, embed] = await Promise.all([tinyModelPath(), tinyModelPath({ poolingType: 1 })]);
  gw = await startGateway({
    concurrentRunners: 2,
    models: {
      tiny: { model_path: chat, parameters: { ctx_size: 1024 } },
      "org/tiny-embed": { model_path: embed, parameters: { ctx_size: 256 } },
    },
  });
});
after(() => gw?.close());

/** The reference objects; values are examples, keys and types are the contract. */
const REFERENCE_MODEL = {
  id: "meta-llama-3.1-8b-instruct",
  object: "model",
  type: "llm",
  publisher: "lmstudio-community",
  arch: "llama",
  compatibility_type: "gguf",
  quantization: "Q4_K_M",
  state: "loaded",
  max_context_length: 131072,
  loaded_context_length: 4096,
  capabilities: ["tool_use"],
};
const REFERENCE_STATS = { tokens_per_second: 51.437, time_to_first_token: 0.111, generation_time: 0.954, stop_reason: "eosFound" };
const REFERENCE_MODEL_INFO = { arch: "granite", quant: "Q4_K_M", format: "gguf", context_length: 4096 };
const REFERENCE_RUNTIME = { name: "llama.cpp-mac-arm64-apple-metal-advsimd", version: "1.3.0", supported_formats: ["gguf"] };

function sameShape(actual: Record<string, unknown>, reference: Record<string, unknown>, skip: string[] = []): void {
  const expected = Object.keys(reference).filter((k) => !skip.includes(k));
  assert.deepEqual(Object.keys(actual).sort(), expected.sort());
  for (const key of expected) {
    const want = reference[key];
    const got = actual[key];
    if (Array.isArray(want)) {
      assert.ok(Array.isArray(got), key);
      for (const item of got as unknown[]) assert.equal(typeof item, typeof want[0], key);
    } else {
      assert.equal(typeof got, typeof want, key);
    }
  }
}

const get = async (path: string) => {
  const res = await fetch(`${gw.lmstudio}${path}`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};
const post = async (path: string, body: unknown) => {
  const res = await fetch(`${gw.lmstudio}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

test("/api/v0/models: the reference object for every model; not-loaded ones have no loaded_context_length", async () => {
  const { status, body } = await get("/api/v0/models");
  assert.equal(status, 200);
  assert.equal(body["object"], "list");
  const data = body["data"] as Array<Record<string, unknown>>;
  assert.deepEqual(data.map((m) => m["id"]), ["tiny", "org/tiny-embed"]);
  for (const model of data) {
    sameShape(model, REFERENCE_MODEL, ["loaded_context_length"]);
    assert.equal(model["state"], "not-loaded");
    assert.equal(model["compatibility_type"], "gguf");
    assert.equal(model["arch"], "llama");
    assert.equal(model["quantization"], "F16");
    assert.equal(model["max_context_length"], 2048, "the trained context");
  }
  assert.equal(data[0]?.["type"], "llm");
  assert.equal(data[1]?.["type"], "embeddings", "so clients do not offer it for chat");
  assert.equal(data[1]?.["publisher"], "org");
  assert.deepEqual(data[0]?.["capabilities"], [], "the tiny ChatML template has no tools");
});

test("/api/v0/models/{id}: one object, loaded_context_length once loaded; ids with a slash; 404", async () => {
  await post("/api/v0/chat/completions", { model: "tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
  const { status, body } = await get("/api/v0/models/tiny");
  assert.equal(status, 200);
  sameShape(body, REFERENCE_MODEL);
  assert.equal(body["state"], "loaded");
  assert.equal(body["loaded_context_length"], 1024);
  assert.equal((await get("/api/v0/models/org/tiny-embed")).body["id"], "org/tiny-embed");
  assert.equal((await get("/api/v0/models/org%2Ftiny-embed")).body["id"], "org/tiny-embed");
  const missing = await get("/api/v0/models/nope");
  assert.equal(missing.status, 404);
  assert.equal((missing.body["error"] as { code: string }).code, "model_not_found");
});

test("chat completions: an OpenAI chat.completion plus stats (seconds), model_info and runtime", async () => {
  const { status, body } = await post("/api/v0/chat/completions", { model: "tiny", messages: [{ role: "user", content: "Hello" }], max_tokens: 8, temperature: 0 });
  assert.equal(status, 200);
  assert.equal(body["object"], "chat.completion");
  assert.equal(body["model"], "tiny");
  const choice = (body["choices"] as Array<Record<string, unknown>>)[0];
  assert.equal(choice?.["finish_reason"], "length");
  const stats = body["stats"] as Record<string, unknown>;
  sameShape(stats, REFERENCE_STATS);
  assert.equal(stats["stop_reason"], "maxPredictedTokensReached");
  assert.ok((stats["tokens_per_second"] as number) > 0);
  assert.ok((stats["generation_time"] as number) < 60, "seconds, not milliseconds");
  sameShape(body["model_info"] as Record<string, unknown>, REFERENCE_MODEL_INFO);
  assert.deepEqual(body["model_info"], { arch: "llama", quant: "F16", format: "gguf", context_length: 1024 });
  sameShape(body["runtime"] as Record<string, unknown>, REFERENCE_RUNTIME);
  assert.deepEqual((body["runtime"] as Record<string, unknown>)["supported_formats"], ["gguf"]);
});

test("max_tokens -1 means no limit; completions report maxPredictedTokensReached", async () => {
  const unlimited = await post("/api/v0/chat/completions", { model: "tiny", messages: [{ role: "user", content: "Hello" }], max_tokens: -1 });
  assert.equal(unlimited.status, 200);
  const usage = unlimited.body["usage"] as { completion_tokens: number };
  assert.ok(usage.completion_tokens > 100, `generated until the context was full (${usage.completion_tokens} tokens)`);

  const completion = await post("/api/v0/completions", { model: "tiny", prompt: "Once upon a time", max_tokens: 5 });
  assert.equal(completion.status, 200);
  assert.equal(completion.body["object"], "text_completion");
  sameShape(completion.body["stats"] as Record<string, unknown>, REFERENCE_STATS);
  assert.equal((completion.body["stats"] as Record<string, unknown>)["stop_reason"], "maxPredictedTokensReached");
  sameShape(completion.body["model_info"] as Record<string, unknown>, REFERENCE_MODEL_INFO);
  sameShape(completion.body["runtime"] as Record<string, unknown>, REFERENCE_RUNTIME);
  const noLimit = await post("/api/v0/completions", { model: "tiny", prompt: "Once upon a time", max_tokens: -1 });
  assert.ok((noLimit.body["usage"] as { completion_tokens: number }).completion_tokens > 100);
});

test("streaming: OpenAI chunks ending with [DONE]", async () => {
  const res = await fetch(`${gw.lmstudio}/api/v0/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "Hello" }], max_tokens: 5, stream: true }),
  });
  assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
  const events = (await res.text()).split("\n\n").filter(Boolean);
  assert.equal(events.at(-1), "data: [DONE]");
  const first = JSON.parse(events[0]?.slice(6) ?? "{}") as { object: string; choices: Array<{ delta: { role?: string } }> };
  assert.equal(first.object, "chat.completion.chunk");
  assert.equal(first.choices[0]?.delta.role, "assistant");
});

test("embeddings: an OpenAI list from an embeddings-type model", async () => {
  const { status, body } = await post("/api/v0/embeddings", { model: "org/tiny-embed", input: ["Hello", "World"], encoding_format: "float" });
  assert.equal(status, 200);
  assert.equal(body["object"], "list");
  const data = body["data"] as Array<{ embedding: number[]; index: number }>;
  assert.equal(data.length, 2);
  assert.equal(data[1]?.index, 1);
  assert.equal(data[0]?.embedding.length, 64);
  assert.equal(body["model"], "org/tiny-embed");
});

test("ttl (seconds) is honoured as the model's keep-alive", async () => {
  const { status } = await post("/api/v0/chat/completions", { model: "tiny", messages: [{ role: "user", content: "Hello" }], max_tokens: 2, ttl: 1 });
  assert.equal(status, 200);
  const deadline = Date.now() + 10_000;
  while ((await get("/api/v0/models/tiny")).body["state"] === "loaded") {
    assert.ok(Date.now() < deadline, "unloaded after its 1 s ttl");
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.equal((await get("/api/v0/models/tiny")).body["loaded_context_length"], undefined);
});

test("bad bodies are 400 in OpenAI's envelope; unknown model 404", async () => {
  const bad = await post("/api/v0/chat/completions", { model: "tiny", messages: "hi" });
  assert.equal(bad.status, 400);
  assert.equal((bad.body["error"] as { type: string }).type, "invalid_request_error");
  const missing = await post("/api/v0/chat/completions", { model: "nope", messages: [{ role: "user", content: "hi" }] });
  assert.equal(missing.status, 404);
  // LM Studio's routes live on its own listener only.
  assert.equal((await fetch(`${gw.ollama}/api/v0/models`)).status, 404);
  assert.equal((await fetch(`${gw.lmstudio}/api/tags`)).status, 404);
});
