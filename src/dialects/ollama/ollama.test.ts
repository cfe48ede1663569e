/**
 * Ollama's native API end to end: the official `ollama` client → the real gateway's Ollama listener → a
 * real embedded runner process on generated tiny GGUFs (one chat model, one embedding model).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Ollama } from "ollama";
import OpenAI from "openai";
import { type TestGateway, startGateway } from "../../test-support/gateway.js";
import { tinyModelPath } from "../../test-support/models.js";
import { CatalogEdits } from "../../catalog/edits.js";

let gw: TestGateway;
let ollama: Ollama;

before(async () => {
  const [chat, embed, coder] = await Promise.all([tinyModelPath(), tinyModelPath({ poolingType: 1 }), tinyModelPath({ fillInTheMiddle: true })]);
  gw = await startGateway({
    ttl: 300,
    concurrentRunners: 2,
    models: {
      tiny: { model_path: chat, aliases: ["tiny-alias"], parameters: { ctx_size: 1024 } },
      "tiny-embed": { model_path: embed, parameters: { ctx_size: 256 } },
      coder: { model_path: coder, parameters: { ctx_size: 512 } },
    },
  });
  ollama = new Ollama({ host: gw.ollama });
});
after(() => gw?.close());

const ask = { model: "tiny", messages: [{ role: "user", content: "Hello, who are you?" }], options: { num_predict: 12, temperature: 0 } };

async function waitFor(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test("version, list and show", async () => {
  const { version } = await ollama.version();
  assert.equal(version, "0.12.6");
  const { models } = await ollama.list();
  assert.deepEqual(models.map((m) => m.name).sort(), ["coder:latest", "tiny-embed:latest", "tiny:latest"]);
  const tiny = models.find((m) => m.model === "tiny:latest");
  assert.ok(tiny);
  assert.match(tiny.digest, /^[0-9a-f]{64}$/);
  assert.ok(tiny.size > 0);
  assert.equal(tiny.details.format, "gguf");
  assert.equal(tiny.details.family, "llama");
  assert.deepEqual(tiny.details.families, ["llama"]);
  assert.match(tiny.details.parameter_size, /^\d+(\.\d+)?[KMBT]$/);
  assert.equal(tiny.details.quantization_level, "F16");

  const show = await ollama.show({ model: "tiny" });
  assert.deepEqual(show.capabilities, ["completion"]);
  const info = show.model_info as unknown as Record<string, unknown>;
  assert.equal(info["general.architecture"], "llama");
  assert.equal(info["llama.context_length"], 1024, "the context the backend runs with");
  assert.match(show.parameters, /^num_ctx\s+1024$/);
  assert.match(show.template, /im_start/);
  assert.equal(show.details.family, "llama");
  assert.ok(!Number.isNaN(Date.parse(String(show.modified_at))));
  const embedShow = await ollama.show({ model: "tiny-embed:latest" });
  assert.deepEqual(embedShow.capabilities, ["embedding"]);
  await assert.rejects(ollama.show({ model: "nope" }), (e: { status_code?: number; error?: string }) => e.status_code === 404 && e.error === "model 'nope' not found");
});

test("chat, not streaming and streaming, assemble to the same text", async () => {
  const whole = await ollama.chat({ ...ask, stream: false });
  assert.equal(whole.model, "tiny");
  assert.equal(whole.message.role, "assistant");
  assert.ok(whole.message.content.length > 0);
  assert.equal(whole.done, true);
  assert.equal(whole.done_reason, "length");
  assert.equal(whole.eval_count, 12);
  assert.ok(whole.prompt_eval_count > 5);
  for (const key of ["total_duration", "load_duration", "prompt_eval_duration", "eval_duration"] as const) {
    assert.ok(Number.isInteger(whole[key]) && whole[key] >= 0, key);
  }
  assert.ok(whole.eval_duration > 0 && whole.total_duration >= whole.eval_duration);

  const stream = await ollama.chat({ ...ask, stream: true });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.length >= 3);
  assert.ok(chunks.every((c) => c.message.role === "assistant"));
  const last = chunks.at(-1);
  assert.equal(last?.done, true);
  assert.equal(last?.message.content, "");
  assert.equal(last?.eval_count, 12);
  assert.equal(chunks.map((c) => c.message.content).join(""), whole.message.content);
});

test("generate, not streaming and streaming, with system; raw mode", async () => {
  const request = { model: "tiny", prompt: "Once upon a time", system: "You tell stories.", options: { num_predict: 8, temperature: 0 } };
  const whole = await ollama.generate({ ...request, stream: false });
  assert.equal(whole.done, true);
  assert.equal(whole.done_reason, "length");
  assert.equal(whole.eval_count, 8);
  // The context is the templated prompt and the response, in the model's tokens.
  assert.ok(whole.context.length > whole.prompt_eval_count, `context (${whole.context.length} tokens) holds the prompt (${whole.prompt_eval_count}) and the response`);
  const stream = await ollama.generate({ ...request, stream: true });
  let text = "";
  let final;
  for await (const chunk of stream) {
    text += chunk.response;
    final = chunk;
  }
  assert.equal(text, whole.response);
  assert.equal(final?.done, true);
  assert.deepEqual(final?.context, whole.context, "the streamed final chunk carries the same context");

  // Sending the context back continues the conversation: the model sees it before the new turn.
  const next = { model: "tiny", prompt: "And then?", options: { num_predict: 4, temperature: 0 }, stream: false as const };
  const fresh = await ollama.generate(next);
  const continued = await ollama.generate({ ...next, context: whole.context });
  assert.ok(
    continued.prompt_eval_count >= fresh.prompt_eval_count + whole.context.length - 2,
    `the continued prompt (${continued.prompt_eval_count} tokens) is the context (${whole.context.length}) plus the new turn (${fresh.prompt_eval_count})`,
  );
  // The earlier turns stay token for token: no drift however long the conversation.
  assert.deepEqual(continued.context.slice(0, whole.context.length), whole.context);
  assert.ok(continued.context.length > whole.context.length);
  const foreign = await fetch(`${gw.ollama}/api/generate`, { method: "POST", body: JSON.stringify({ ...next, context: [1, 99_999_999] }) });
  assert.equal(foreign.status, 400);
  assert.match(((await foreign.json()) as { error: string }).error, /token id 99999999 is outside the model's vocabulary/);
  const raw = await ollama.generate({ model: "tiny", prompt: "<|im_start|>user\nhi<|im_end|>\n", raw: true, options: { num_predict: 4 } });
  assert.equal(raw.eval_count, 4);
  assert.equal(raw.context, undefined, "raw prompts get no context, as in Ollama");
});

test("fill in the middle: a model whose GGUF names FIM tokens can insert, with its own tokens", async () => {
  const shown = await ollama.show({ model: "coder" });
  assert.ok(shown.capabilities.includes("insert"));
  assert.ok(!(await ollama.show({ model: "tiny" })).capabilities.includes("insert"));
  const fim = await ollama.generate({ model: "coder", prompt: "def add(a, b):", suffix: "    return c", options: { num_predict: 6, temperature: 0 }, stream: false });
  assert.equal(fim.eval_count, 6);
  // The same prompt written out by hand: the FIM tokens were parsed as the model's special tokens, not as text.
  const byHand = "<fim_begin>def add(a, b):<fim_hole>    return c<fim_end>";
  const raw = await ollama.generate({ model: "coder", prompt: byHand, raw: true, options: { num_predict: 6, temperature: 0 }, stream: false });
  assert.equal(fim.prompt_eval_count, raw.prompt_eval_count);
  assert.equal(fim.response, raw.response);
  assert.ok(fim.prompt_eval_count < byHand.length / 2, `${fim.prompt_eval_count} tokens: special tokens, not spelled out`);
  await assert.rejects(ollama.generate({ model: "tiny", prompt: "x", suffix: "y" }), (e: { status_code?: number; error?: string }) => e.status_code === 400 && /does not support insert/.test(e.error ?? ""));
});

test("tools: a request with tools is accepted, and tool calls with object arguments round-trip in the history", async () => {
  const tools = [
    {
      type: "function",
      function: { name: "get_weather", description: "Weather for a city", parameters: { type: "object", properties: { city: { type: "string", enum: ["Tokyo", "Paris"] } }, required: ["city"] } },
    },
  ];
  const first = await ollama.chat({ ...ask, tools });
  assert.equal(first.done, true);

  // Random weights never call a tool by themselves: force one through the OpenAI API (string arguments)…
  const openai = new OpenAI({ baseURL: `${gw.ollama}/v1`, apiKey: "unused", maxRetries: 0 });
  const forced = await openai.chat.completions.create({
    model: "tiny",
    messages: [{ role: "user", content: "Weather in Tokyo?" }],
    tools: tools as OpenAI.ChatCompletionTool[],
    tool_choice: { type: "function", function: { name: "get_weather" } },
    max_tokens: 200,
  });
  const call = forced.choices[0]?.message.tool_calls?.[0];
  assert.ok(call && call.type === "function");
  assert.equal(typeof call.function.arguments, "string");
  const args = JSON.parse(call.function.arguments) as Record<string, unknown>;
  assert.ok(args["city"] === "Tokyo" || args["city"] === "Paris");

  // …and replay it to the Ollama API as Ollama clients keep it: an object.
  const next = await ollama.chat({
    ...ask,
    tools,
    messages: [
      { role: "user", content: "Weather in Tokyo?" },
      { role: "assistant", content: "", tool_calls: [{ function: { name: "get_weather", arguments: args } }] },
      { role: "tool", content: '{"temperature": 21}', tool_name: "get_weather" } as never,
    ],
  });
  assert.equal(next.done, true);
  assert.equal(next.message.role, "assistant");
});

test("embed (batch, L2-normalised, dimensions, truncate) and legacy embeddings", async () => {
  const res = await ollama.embed({ model: "tiny-embed", input: ["Hello world", "A second sentence"] });
  assert.equal(res.model, "tiny-embed");
  assert.equal(res.embeddings.length, 2);
  for (const vector of res.embeddings) {
    assert.equal(vector.length, 64);
    assert.ok(Math.abs(Math.hypot(...vector) - 1) < 1e-6);
  }
  assert.ok(res.prompt_eval_count > 0);
  const short = await ollama.embed({ model: "tiny-embed", input: "Hello world", dimensions: 16 });
  assert.equal(short.embeddings[0]?.length, 16);
  assert.ok(Math.abs(Math.hypot(...(short.embeddings[0] ?? [])) - 1) < 1e-6);

  const long = "the quick brown fox jumps over the lazy dog ".repeat(80);
  const truncated = await ollama.embed({ model: "tiny-embed", input: long });
  assert.equal(truncated.embeddings[0]?.length, 64, "an input longer than the context is truncated to fit");
  // Cut in tokens, as Ollama does: to the whole context (256 here) less the one token the runner must keep free.
  assert.equal(truncated.prompt_eval_count, 255);
  await assert.rejects(ollama.embed({ model: "tiny-embed", input: long, truncate: false }), (e: { status_code?: number }) => e.status_code === 400);

  const legacy = await ollama.embeddings({ model: "tiny-embed", prompt: "Hello world" });
  assert.equal(legacy.embedding.length, 64);
  assert.deepEqual((await ollama.embeddings({ model: "tiny-embed", prompt: "" })).embedding, []);
});

test("ps shows loaded models with the real TTL", async () => {
  await ollama.chat({ ...ask, stream: false });
  const { models } = await ollama.ps();
  const tiny = models.find((m) => m.model === "tiny:latest");
  assert.ok(tiny);
  assert.ok(tiny.size > 0);
  assert.equal(tiny.size_vram, 0, "CPU only");
  assert.equal((tiny as unknown as { context_length: number }).context_length, 1024);
  const expires = new Date(tiny.expires_at).getTime() - Date.now();
  assert.ok(expires > 290_000 && expires <= 300_500, `expires in ${expires} ms (ttl 300 s)`);
  assert.match(tiny.digest, /^[0-9a-f]{64}$/);
});

test("abort mid-stream stops generation and frees the backend", async () => {
  const stream = await ollama.chat({ ...ask, options: { num_predict: 900 }, stream: true });
  let seen = 0;
  await assert.rejects(
    (async () => {
      for await (const _chunk of stream) if (++seen === 3) ollama.abort();
    })(),
    (e: Error) => e.name === "AbortError",
  );
  assert.ok(seen < 100, `stopped soon after the abort (${seen} chunks)`);
  await waitFor(async () => gw.app.lifecycle.status("tiny").inFlight === 0, 5000);
  const next = await ollama.chat({ ...ask, stream: false });
  assert.equal(next.done_reason, "length");
});

test("keep_alive: empty messages load (done_reason load), keep_alive 0 unloads and ps shows it gone", async () => {
  const load = await ollama.chat({ model: "tiny", messages: [], keep_alive: "10m", stream: false });
  assert.equal(load.done_reason, "load");
  assert.equal(load.message.role, "assistant");
  assert.equal(gw.app.lifecycle.status("tiny").state, "ready");
  const ps = await ollama.ps();
  const expires = new Date(ps.models.find((m) => m.model === "tiny:latest")?.expires_at ?? 0).getTime() - Date.now();
  assert.ok(expires > 590_000 && expires <= 600_500, `keep_alive 10m sets the expiry (${expires} ms)`);

  const answered = await ollama.generate({ model: "tiny", prompt: "Hi", options: { num_predict: 3 }, keep_alive: 0 });
  assert.equal(answered.done, true);
  await waitFor(async () => !(await ollama.ps()).models.some((m) => m.model === "tiny:latest"));
  assert.notEqual(gw.app.lifecycle.status("tiny").state, "ready");

  const reload = await ollama.generate({ model: "tiny", prompt: "", keep_alive: -1 });
  assert.equal(reload.done_reason, "load");
  const forever = (await ollama.ps()).models.find((m) => m.model === "tiny:latest");
  assert.ok(new Date(forever?.expires_at ?? 0).getUTCFullYear() > 2200, "negative keep_alive keeps it loaded forever");

  // Open WebUI's unload: an empty prompt with keep_alive 0, not streaming.
  const unload = await ollama.generate({ model: "tiny", prompt: "", keep_alive: 0 });
  assert.equal(unload.done_reason, "unload");
  await waitFor(async () => !(await ollama.ps()).models.some((m) => m.model === "tiny:latest"));
});

test("pull, copy and delete work on the catalogue and never touch files", async () => {
  const pulled = await ollama.pull({ model: "tiny", stream: false });
  assert.equal(pulled.status, "success");
  const progress = await ollama.pull({ model: "tiny", stream: true });
  const statuses = [];
  for await (const p of progress) statuses.push(p.status);
  assert.equal(statuses.at(-1), "success");
  await assert.rejects(ollama.pull({ model: "llama3.2" }), (e: { status_code?: number; error?: string }) => e.status_code === 404 && /never downloads/.test(e.error ?? ""));

  await ollama.copy({ source: "tiny", destination: "my-copy" });
  assert.ok((await ollama.list()).models.some((m) => m.name === "my-copy:latest"));
  const viaCopy = await ollama.chat({ ...ask, model: "my-copy", stream: false });
  assert.equal(viaCopy.model, "my-copy");
  await assert.rejects(ollama.copy({ source: "nope", destination: "x" }), (e: { status_code?: number }) => e.status_code === 404);

  // A copy is a catalogue name: Copilot lists /api/tags, then chats through /v1 with the tagged name, on either port.
  for (const base of [gw.ollama, gw.lmstudio]) {
    const viaV1 = await fetch(`${base}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model: "my-copy:latest", messages: ask.messages, max_tokens: 2 }) });
    assert.equal(viaV1.status, 200, `${base}: ${await viaV1.clone().text()}`);
  }
  await ollama.copy({ source: "tiny", destination: "kept-copy" });

  await ollama.delete({ model: "my-copy" });
  assert.ok(!(await ollama.list()).models.some((m) => m.name === "my-copy:latest"));
  await ollama.delete({ model: "tiny-alias" });
  assert.ok(!(await ollama.list()).models.some((m) => m.name === "tiny:latest"), "deleting a model by an alias hides the model");
  await assert.rejects(ollama.chat({ ...ask, stream: false }), (e: { status_code?: number }) => e.status_code === 404);
  // Deleted for every dialect, and saved: a restart reads the same edits back.
  const v1Models = (await (await fetch(`${gw.lmstudio}/v1/models`)).json()) as { data: Array<{ id: string }> };
  assert.ok(!v1Models.data.some((m) => m.id === "tiny"), "a deleted model leaves /v1/models too");
  assert.equal((await fetch(`${gw.lmstudio}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ ...ask, stream: false }) })).status, 404);
  const saved = CatalogEdits.load(join(gw.home, "catalog-edits.json"));
  assert.equal(saved.problem, undefined);
  assert.ok(saved.edits.isRemoved("tiny"));
  assert.equal(saved.edits.copyOf("kept-copy:latest")?.id, "tiny");
  assert.equal(saved.edits.copyOf("my-copy"), undefined);
  assert.equal((await ollama.chat({ ...ask, model: "kept-copy", stream: false })).done, true, "a copy outlives its source");
  await assert.rejects(ollama.delete({ model: "tiny" }), (e: { status_code?: number; error?: string }) => e.status_code === 404 && e.error === "model 'tiny' not found");
  // The file is still there: pulling the name brings the entry back.
  await ollama.pull({ model: "tiny", stream: false });
  assert.ok((await ollama.list()).models.some((m) => m.name === "tiny:latest"));
  assert.equal((await ollama.chat({ ...ask, stream: false })).done, true);
  assert.ok(!CatalogEdits.load(join(gw.home, "catalog-edits.json")).edits.isRemoved("tiny"));
  await ollama.delete({ model: "kept-copy" });
});
