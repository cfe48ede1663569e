/** Pure pieces of the Ollama dialect: request translation, keep_alive, stream rendering, model facts. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ModelEntry } from "../../catalog/catalog.js";
import type { SpecialTokens } from "../../catalog/gguf/metadata.js";
import { configSchema, defaultConfig } from "../../config/schema.js";
import { GatewayError } from "../../errors/index.js";
import { parseGoDuration, parseKeepAlive } from "./keep-alive.js";
import { capabilities, fimFormat, parameterSize, parameters, rfc3339, template } from "./model-info.js";
import { tagged } from "./names.js";
import { argumentsObject, doneReason, metrics, pieces } from "./stream.js";
import { chatBody, generateBody, imagePart, responseFormat, samplingFromOptions, thinkFields, toOpenAIMessages } from "./translate.js";

const QWEN_FIM: SpecialTokens = { fimPrefix: "<|fim_prefix|>", fimSuffix: "<|fim_suffix|>", fimMiddle: "<|fim_middle|>" };

function entry(overrides: Partial<ModelEntry> = {}, flat: Record<string, string | number | boolean> = {}, chatTemplate?: string, specialTokens: SpecialTokens = {}): ModelEntry {
  return {
    id: "m",
    aliases: [],
    source: "config",
    path: "/models/secret/m.gguf",
    upstreamModel: "m",
    runtime: "embedded",
    autoStart: true,
    parameters: { ctx_size: 2048 },
    command: undefined,
    stopCommand: undefined,
    url: undefined,
    healthPath: "/health",
    ttlSeconds: undefined,
    pinned: false,
    preload: false,
    memoryBytes: undefined,
    queueAhead: undefined,
    created: 1_700_000_000,
    gguf: {
      architecture: "qwen2",
      name: "M",
      basename: undefined,
      contextLength: 32768,
      embeddingLength: 64,
      blockCount: 2,
      headCount: 4,
      headCountKv: 2,
      parameterCount: 7_615_616_512,
      quantization: "Q4_K_M",
      fileType: 15,
      sizeBytes: 1000,
      modifiedMs: 1_700_000_000_000,
      chatTemplate,
      isEmbedding: false,
      poolingType: undefined,
      license: undefined,
      vocabularySize: 1000,
      specialTokens: { bos: "<s>", ...specialTokens },
      flat: { "general.architecture": "qwen2", ...flat },
    },
    error: undefined,
    ...overrides,
  };
}

test("keep_alive: seconds, Go durations, 0 and negatives", () => {
  assert.equal(parseKeepAlive(undefined), undefined);
  assert.equal(parseKeepAlive(null), undefined);
  assert.equal(parseKeepAlive(1800), 1_800_000);
  assert.equal(parseKeepAlive(0), 0);
  assert.equal(parseKeepAlive("0"), 0);
  assert.equal(parseKeepAlive("5m"), 300_000);
  assert.equal(parseKeepAlive("1h30m"), 5_400_000);
  assert.equal(parseKeepAlive("1.5h"), 5_400_000);
  assert.equal(parseKeepAlive("300ms"), 300);
  assert.equal(parseKeepAlive("600"), 600_000);
  assert.equal(parseKeepAlive(-1), null);
  assert.equal(parseKeepAlive("-1"), null);
  assert.equal(parseKeepAlive("-1m"), null);
  assert.equal(parseGoDuration("2h45m10s"), 9_910_000);
  for (const bad of ["abc", "5 minutes", "1d", true, {}]) {
    assert.throws(() => parseKeepAlive(bad), (e: unknown) => e instanceof GatewayError && e.statusCode === 400);
  }
});

test("options map onto OpenAI sampling fields; num_predict -1 means no limit", () => {
  const options = { temperature: 0.2, top_p: 0.9, top_k: 20, min_p: 0.1, seed: 42, stop: ["</s>", "\n\n"], num_predict: 64, num_ctx: 8192, repeat_penalty: 1.1, presence_penalty: 0.5, frequency_penalty: 0.3, mirostat: 2 };
  assert.deepEqual(samplingFromOptions(options, "chat"), {
    temperature: 0.2,
    top_p: 0.9,
    top_k: 20,
    min_p: 0.1,
    seed: 42,
    stop: ["</s>", "\n\n"],
    max_tokens: 64,
    repeat_penalty: 1.1,
    presence_penalty: 0.5,
    frequency_penalty: 0.3,
  });
  assert.deepEqual(samplingFromOptions({ num_predict: -1 }, "chat"), {});
  assert.deepEqual(samplingFromOptions({}, "completions"), { max_tokens: -1 });
  assert.throws(() => samplingFromOptions({ temperature: "hot" }, "chat"), /options\.temperature/);
});

test("format, think and images", () => {
  assert.deepEqual(responseFormat("json"), { type: "json_object" });
  assert.equal(responseFormat(""), undefined);
  const schema = { type: "object", properties: { a: { type: "string" } } };
  assert.deepEqual(responseFormat(schema), { type: "json_schema", json_schema: { name: "format", schema } });
  assert.throws(() => responseFormat("yaml"), /format/);
  assert.deepEqual(thinkFields(true), { chat_template_kwargs: { enable_thinking: true } });
  assert.deepEqual(thinkFields(false), { chat_template_kwargs: { enable_thinking: false } });
  assert.deepEqual(thinkFields("high"), { chat_template_kwargs: { enable_thinking: true, reasoning_effort: "high" } });
  assert.deepEqual(thinkFields(undefined), {});
  assert.equal(imagePart("iVBORw0KGgoAAA").image_url.url, "data:image/png;base64,iVBORw0KGgoAAA");
  assert.equal(imagePart("/9j/4AAQ").image_url.url, "data:image/jpeg;base64,/9j/4AAQ");
  assert.equal(imagePart("data:image/gif;base64,R0lG").image_url.url, "data:image/gif;base64,R0lG");
});

test("messages: images become parts, tool call arguments become strings, results link to their calls", () => {
  const out = toOpenAIMessages([
    { role: "system", content: "be brief" },
    { role: "user", content: "what is this?", images: ["iVBORw0KGgo"] },
    { role: "assistant", content: "", tool_calls: [{ function: { name: "get_weather", arguments: { city: "Tokyo" } } }, { function: { name: "get_time", arguments: { tz: "JST" } } }] },
    { role: "tool", content: "12:00", tool_name: "get_time" },
    { role: "tool", content: "sunny" },
    { role: "assistant", content: "Sunny at noon.", thinking: "easy" },
  ]);
  assert.deepEqual(out[1], {
    role: "user",
    content: [
      { type: "text", text: "what is this?" },
      { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo" } },
    ],
  });
  const assistant = out[2] as { content: unknown; tool_calls: Array<{ id: string; type: string; function: { name: string; arguments: string } }> };
  assert.equal(assistant.content, null);
  assert.equal(assistant.tool_calls[0]?.type, "function");
  assert.equal(assistant.tool_calls[0]?.function.arguments, '{"city":"Tokyo"}');
  assert.equal(typeof assistant.tool_calls[0]?.id, "string");
  // The tool_name result answers get_time; the anonymous one the remaining call.
  assert.deepEqual(out[3], { role: "tool", content: "12:00", tool_call_id: assistant.tool_calls[1]?.id, name: "get_time" });
  assert.deepEqual(out[4], { role: "tool", content: "sunny", tool_call_id: assistant.tool_calls[0]?.id, name: "get_weather" });
  assert.deepEqual(out[5], { role: "assistant", content: "Sunny at noon.", reasoning_content: "easy" });
  assert.throws(() => toOpenAIMessages([{ role: "wizard", content: "x" }]), /unknown role/);
});

test("chat and generate bodies; generate picks chat, raw completion or FIM", () => {
  const m = entry();
  const chat = chatBody("m", { messages: [{ role: "user", content: "hi" }], tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }], options: { num_predict: 5 }, format: "json" });
  assert.equal(chat.model, "m");
  assert.equal(chat["stream"], true, "always streamed upstream");
  assert.deepEqual(chat["tools"], [{ type: "function", function: { name: "f", parameters: { type: "object" } } }]);
  assert.equal(chat["max_tokens"], 5);
  assert.deepEqual(chat["response_format"], { type: "json_object" });

  const templated = generateBody(m, { prompt: "hello", system: "sys", images: ["/9j/x"] }, "m");
  assert.equal(templated.endpoint, "chat");
  assert.equal((templated.body["messages"] as unknown[]).length, 2);

  const raw = generateBody(m, { prompt: "<|im_start|>hello", raw: true }, "m");
  assert.equal(raw.endpoint, "completions");
  assert.equal(raw.body["prompt"], "<|im_start|>hello");
  assert.equal(raw.body["max_tokens"], -1);
  assert.throws(() => generateBody(m, { prompt: "x", raw: true, system: "s" }, "m"), /raw mode does not support/);

  assert.throws(() => generateBody(m, { prompt: "def f(", suffix: "return 1" }, "m"), /"m" does not support insert/);
  const coder = entry({}, {}, undefined, QWEN_FIM);
  const fim = generateBody(coder, { prompt: "def f(", suffix: "return 1", options: { num_predict: 8 } }, "coder");
  assert.equal(fim.endpoint, "completions");
  assert.equal(fim.body["prompt"], "<|fim_prefix|>def f(<|fim_suffix|>return 1<|fim_middle|>");
  assert.equal(fim.body["max_tokens"], 8);
  // Any vocabulary's own FIM tokens, not a list of known families; CodeLlama's keep their spaces.
  const other = generateBody(entry({}, {}, undefined, { fimPrefix: "<A>", fimSuffix: "<B>", fimMiddle: "<C>" }), { prompt: "x", suffix: "y" }, "o");
  assert.equal(other.body["prompt"], "<A>x<B>y<C>");
  const codellama = generateBody(entry({}, {}, undefined, { fimPrefix: "<PRE>", fimSuffix: "<SUF>", fimMiddle: "<MID>" }), { prompt: "x", suffix: "y" }, "c");
  assert.equal(codellama.body["prompt"], "<PRE> x <SUF>y <MID>");
  const spelled = generateBody(entry({}, {}, undefined, { fimPrefix: "▁<PRE>", fimSuffix: "▁<SUF>", fimMiddle: "▁<MID>" }), { prompt: "x", suffix: "y" }, "c");
  assert.equal(spelled.body["prompt"], "▁<PRE> x▁<SUF>y▁<MID>");
  // Two of three tokens are not enough to build the prompt.
  assert.throws(() => generateBody(entry({}, {}, undefined, { fimPrefix: "<A>", fimSuffix: "<B>" }), { prompt: "x", suffix: "y" }, "p"), /does not support insert/);
});

test("model facts: parameter size, dates, capabilities, template, parameters lines", () => {
  assert.equal(parameterSize(7_615_616_512), "7.6B");
  assert.equal(parameterSize(8_030_261_248), "8.0B");
  assert.equal(parameterSize(494_032_768), "494.03M");
  assert.equal(parameterSize(7_000_000_000), "7B");
  assert.equal(parameterSize(133_000), "133K");
  const stamp = rfc3339(Date.UTC(2025, 4, 4, 17, 37, 44, 706));
  assert.match(stamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$/);
  assert.equal(Date.parse(stamp), Date.UTC(2025, 4, 4, 17, 37, 44, 706));

  assert.deepEqual(capabilities(entry()), ["completion"]);
  const toolsTemplate = "{% if tools %}{{ tools | tojson }}{% endif %}<think>";
  assert.deepEqual(capabilities(entry({}, {}, toolsTemplate)), ["completion", "tools", "thinking"]);
  assert.deepEqual(capabilities(entry({ parameters: { mmproj: "/x/proj.gguf" } })), ["completion", "vision"]);
  const embedding = entry();
  if (embedding.gguf) embedding.gguf.isEmbedding = true;
  assert.deepEqual(capabilities(embedding), ["embedding"]);
  const coder = entry({}, {}, "CHAT", QWEN_FIM);
  assert.ok(fimFormat(coder));
  assert.ok(capabilities(coder).includes("insert"));
  assert.match(template(coder), /\.Suffix/);
  assert.doesNotMatch(template(entry({}, {}, "CHAT")), /\.Suffix/);

  for (const line of parameters(entry()).split("\n")) assert.match(line, /^(\S+)\s+((?:".*")|\S+)$/);
  assert.equal(tagged("llama3"), "llama3:latest");
  assert.equal(tagged("llama3:8b"), "llama3:8b");
  assert.equal(tagged("host:5000/ns/model"), "host:5000/ns/model:latest");
});

test("stream rendering: tool-call deltas become one call with object arguments; metrics are integer ns", async () => {
  async function* events() {
    yield { choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] };
    yield { choices: [{ index: 0, delta: { content: "Hel" }, finish_reason: null }] };
    yield { choices: [{ index: 0, delta: { reasoning_content: "hmm" }, finish_reason: null }] };
    yield { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "get_weather", arguments: "" } }] }, finish_reason: null }] };
    yield { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }, finish_reason: null }] };
    yield { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '"Tokyo"}' } }] }, finish_reason: null }] };
    yield { choices: [{ index: 0, delta: {}, finish_reason: "tool_calls" }] };
    yield { choices: [], usage: { prompt_tokens: 9, completion_tokens: 12, total_tokens: 21 }, timings: { prompt_n: 9, prompt_ms: 1.5, prompt_per_second: 6000, predicted_n: 12, predicted_ms: 20.25, predicted_per_second: 592 } };
  }
  const out = [];
  const iterator = pieces(events());
  let step = await iterator.next();
  while (!step.done) {
    out.push(step.value);
    step = await iterator.next();
  }
  assert.deepEqual(out, [{ content: "Hel" }, { thinking: "hmm" }, { toolCalls: [{ id: "call_1", function: { index: 0, name: "get_weather", arguments: { city: "Tokyo" } } }] }]);
  const summary = step.value;
  assert.equal(doneReason(summary.finishReason), "stop");
  const m = metrics(summary, { started: 0, answered: 3.2, ended: 30 });
  assert.deepEqual(m, { total_duration: 30_000_000, load_duration: 3_200_000, prompt_eval_count: 9, prompt_eval_duration: 1_500_000, eval_count: 12, eval_duration: 20_250_000 });
  for (const value of Object.values(m)) assert.ok(Number.isInteger(value));
  assert.deepEqual(argumentsObject("not json"), {});
  assert.deepEqual(argumentsObject(""), {});
});

test("config: the ollama block defaults to version 0.12.6 and no extra origins; versions must be plain X.Y.Z", () => {
  assert.deepEqual(defaultConfig().ollama, { version: "0.12.6", origins: [] });
  assert.ok(configSchema.safeParse({ ollama: { version: "0.13.0", origins: ["https://x.example"] } }).success);
  for (const version of ["1.0.1e", "0.5.0+x", "v0.6.4", "0.6"]) assert.ok(!configSchema.safeParse({ ollama: { version } }).success, version);
});
