/**
 * The OpenAI API end to end: the official `openai` client → the real gateway (both listeners) → a
 * real embedded runner process on a generated tiny GGUF.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { type TestGateway, startGateway } from "../../test-support/gateway.js";
import { tinyModelPath } from "../../test-support/models.js";

let gw: TestGateway;
let lm: OpenAI;
let ol: OpenAI;

before(async () => {
  const path = await tinyModelPath();
  gw = await startGateway({
    models: {
      tiny: { model_path: path, aliases: ["tiny-alias", "org/tiny"], parameters: { ctx_size: 1024 } },
    },
  });
  lm = new OpenAI({ baseURL: `${gw.lmstudio}/v1`, apiKey: "unused", maxRetries: 0 });
  ol = new OpenAI({ baseURL: `${gw.ollama}/v1`, apiKey: "ollama", maxRetries: 0 });
});
after(() => gw?.close());

const ask = { model: "tiny", messages: [{ role: "user" as const, content: "Hello, who are you?" }], max_tokens: 12, temperature: 0 };

test("list and retrieve models on both listeners", async () => {
  for (const client of [lm, ol]) {
    const page = await client.models.list();
    assert.deepEqual(page.data.map((m) => m.id), ["tiny"]);
    const model = page.data[0];
    assert.equal(model?.object, "model");
    assert.equal(model?.owned_by, "llama-runner");
    assert.ok((model?.created ?? 0) > 1_600_000_000);
    assert.equal((await client.models.retrieve("tiny")).id, "tiny");
  }
  // openai-node percent-encodes the slash: the id is decoded before lookup.
  assert.equal((await lm.models.retrieve("org/tiny")).id, "tiny");
  await assert.rejects(lm.models.retrieve("nope"), (e: InstanceType<typeof OpenAI.NotFoundError>) => e.status === 404 && e.code === "model_not_found");
});

test("chat, not streaming: shape, usage, finish_reason", async () => {
  const res = await lm.chat.completions.create(ask);
  assert.match(res.id, /cmpl/);
  assert.equal(res.object, "chat.completion");
  assert.equal(res.model, "tiny");
  const choice = res.choices[0];
  assert.equal(choice?.message.role, "assistant");
  assert.ok((choice?.message.content ?? "").length > 0);
  assert.equal(choice?.finish_reason, "length");
  assert.equal(res.usage?.completion_tokens, 12);
  assert.ok((res.usage?.prompt_tokens ?? 0) > 5);
  assert.equal(res.usage?.total_tokens, (res.usage?.prompt_tokens ?? 0) + 12);
});

test("temperature 0 is deterministic", async () => {
  const a = await lm.chat.completions.create(ask);
  const b = await ol.chat.completions.create(ask);
  assert.equal(a.choices[0]?.message.content, b.choices[0]?.message.content);
});

test("chat streaming: role first, content, finish, usage, [DONE]", async () => {
  const stream = await ol.chat.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.length >= 4);
  assert.equal(chunks[0]?.choices[0]?.delta.role, "assistant");
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1, "one id for the whole stream");
  const usage = chunks.at(-1);
  assert.deepEqual(usage?.choices, []);
  assert.equal(usage?.usage?.completion_tokens, 12);
  const finish = chunks.at(-2);
  assert.equal(finish?.choices[0]?.finish_reason, "length");
  assert.deepEqual(finish?.choices[0]?.delta, {});
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
  const whole = await lm.chat.completions.create(ask);
  assert.equal(text, whole.choices[0]?.message.content, "streamed text assembles to the non-streamed text");
});

test("chat.completions.stream() → finalChatCompletion()", async () => {
  const runner = lm.chat.completions.stream({ ...ask, model: "tiny-alias" });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0]?.message.role, "assistant");
  assert.equal(final.choices[0]?.finish_reason, "length");
  assert.ok((final.choices[0]?.message.content ?? "").length > 0);
});

test("legacy completions, streaming and not", async () => {
  const res = await lm.completions.create({ model: "tiny", prompt: "Once upon a time", max_tokens: 6, temperature: 0 });
  assert.equal(res.object, "text_completion");
  assert.equal(res.choices[0]?.finish_reason, "length");
  assert.equal(res.usage?.completion_tokens, 6);
  const stream = await ol.completions.create({ model: "tiny", prompt: "Once upon a time", max_tokens: 6, temperature: 0, stream: true });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
  assert.equal(text, res.choices[0]?.text);
});

test("embeddings: base64 (the SDK's default) and float decode to the same vectors", async () => {
  const input = ["Hello world", "A second sentence"];
  const viaBase64 = await lm.embeddings.create({ model: "tiny", input });
  const viaFloat = await ol.embeddings.create({ model: "tiny", input, encoding_format: "float" });
  assert.equal(viaBase64.data.length, 2);
  for (const i of [0, 1]) {
    const a = viaBase64.data[i]?.embedding ?? [];
    const b = viaFloat.data[i]?.embedding ?? [];
    assert.equal(a.length, 64);
    assert.equal(a.length, b.length);
    a.forEach((v, j) => assert.ok(Math.abs(v - (b[j] ?? NaN)) < 1e-6));
  }
  assert.ok(viaFloat.usage.prompt_tokens > 0);
  const raw = await fetch(`${gw.lmstudio}/v1/embeddings`, { method: "POST", body: JSON.stringify({ model: "tiny", input: "x", encoding_format: "hex" }) });
  assert.equal(raw.status, 400);
});

test("unknown model is 404 model_not_found on every endpoint", async () => {
  await assert.rejects(lm.chat.completions.create({ ...ask, model: "nope" }), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 404 && e.code === "model_not_found");
  await assert.rejects(ol.completions.create({ model: "nope", prompt: "x" }), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 404);
  await assert.rejects(lm.embeddings.create({ model: "nope", input: "x" }), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 404);
});

test("malformed bodies are 400 invalid_request in OpenAI's error format", async () => {
  const cases: Array<[string, string]> = [
    ["/v1/chat/completions", "{not json"],
    ["/v1/chat/completions", "[1,2]"],
    ["/v1/chat/completions", JSON.stringify({ model: "tiny" })],
    ["/v1/chat/completions", JSON.stringify({ model: "tiny", messages: "hi" })],
    ["/v1/chat/completions", JSON.stringify({ model: "tiny", messages: [{ role: "wizard", content: "x" }] })],
    ["/v1/chat/completions", JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "x" }], temperature: "hot" })],
    ["/v1/completions", JSON.stringify({ model: "tiny" })],
    ["/v1/embeddings", JSON.stringify({ model: 5, input: "x" })],
    ["/v1/embeddings", ""],
  ];
  for (const [path, body] of cases) {
    for (const base of [gw.lmstudio, gw.ollama]) {
      const res = await fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body });
      assert.equal(res.status, 400, `${path} ${body}`);
      assert.match(res.headers.get("content-type") ?? "", /application\/json/);
      const json = (await res.json()) as { error: { message: string; type: string; code: string } };
      assert.equal(json.error.type, "invalid_request_error");
      assert.equal(json.error.code, "invalid_request");
      assert.ok(json.error.message.length > 0);
    }
  }
});

test("aborting a stream mid-way leaves the runner healthy and the next request answered", async () => {
  const controller = new AbortController();
  const stream = await lm.chat.completions.create({ ...ask, max_tokens: 900, stream: true }, { signal: controller.signal });
  let seen = 0;
  try {
    for await (const _chunk of stream) if (++seen === 3) controller.abort();
  } catch (error) {
    assert.equal((error as Error).name, "APIUserAbortError");
  }
  assert.ok(seen < 100, `the stream stopped soon after the abort (${seen} chunks of ~900)`);
  assert.equal(gw.app.lifecycle.status("tiny").state, "ready");
  const next = await lm.chat.completions.create(ask);
  assert.equal(next.choices[0]?.finish_reason, "length");
  assert.equal(gw.app.lifecycle.status("tiny").inFlight, 0, "the aborted request's slot was released");
});

test("Copilot's request shape on the Ollama port: empty bearer token, streaming with usage", async () => {
  const res = await fetch(`${gw.ollama}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: "Bearer ", "content-type": "application/json" },
    body: JSON.stringify({ ...ask, stream: true, n: 1, top_p: 1, stream_options: { include_usage: true } }),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
  const events = (await res.text()).split("\n\n").filter(Boolean);
  assert.equal(events.at(-1), "data: [DONE]");
  assert.ok(events.every((e) => e.startsWith("data: ")));
});

test("health answers in the reference's shape on both listeners", async () => {
  for (const base of [gw.lmstudio, gw.ollama]) {
    const res = await fetch(`${base}/health`);
    const body = (await res.json()) as Record<string, unknown>;
    assert.equal(res.status, 200);
    assert.equal(body["status"], "healthy");
    assert.equal(typeof body["version"], "string");
    assert.equal(typeof body["uptime"], "number");
    assert.ok(!Number.isNaN(Date.parse(String(body["timestamp"]))));
  }
});
