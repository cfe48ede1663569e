/**
 * End-to-end tests of the embedded runner: the real process (dist/embedded/main.js) on a real port with a
 * real (tiny, random-weight) GGUF model. The model's text is gibberish, so the tests check the protocol:
 * shapes, event order, counts, determinism and constraints that grammars guarantee whatever the weights.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { after, before, describe, test } from "node:test";
import { tinyModelPath } from "../test-support/models.js";

const MAIN = "dist/embedded/main.js";

interface Runner {
  child: ChildProcess;
  url: string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Every /health status seen while waiting for readiness. */
  healthStatuses: number[];
}

const children = new Set<ChildProcess>();

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  assert.ok(address !== null && typeof address === "object");
  server.close();
  await once(server, "close");
  return address.port;
}

async function startRunner(args: string[] = [], waitReady = true): Promise<Runner> {
  const port = await freePort();
  const model = await tinyModelPath();
  const child = spawn(process.execPath, [MAIN, "--model", model, "--port", String(port), "--alias", "tiny", "--threads", "1", ...args], {
    stdio: ["pipe", "ignore", "pipe"],
  });
  children.add(child);
  let log = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => (log += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  const runner: Runner = { child, url: `http://127.0.0.1:${port}`, stderr: () => log, exited, healthStatuses: [] };
  if (waitReady) await waitForHealth(runner);
  return runner;
}

async function waitForHealth(runner: Runner, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (runner.child.exitCode !== null) throw new Error(`runner exited early:\n${runner.stderr()}`);
    try {
      const res = await fetch(`${runner.url}/health`);
      runner.healthStatuses.push(res.status);
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`runner not healthy in time:\n${runner.stderr()}`);
}

function killAll(): void {
  for (const child of children) child.kill("SIGKILL");
}

async function post(runner: Runner, path: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(`${runner.url}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...init,
  });
}

async function postJson(runner: Runner, path: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await post(runner, path, body);
  return { status: res.status, json: await res.json() };
}

/** Reads a whole SSE response into its events; `[DONE]` stays a string. */
async function readEvents(res: Response): Promise<unknown[]> {
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  const text = await res.text();
  assert.ok(text.endsWith("\n\n"), "every event ends with a blank line");
  return text
    .split("\n\n")
    .filter((block) => block.length > 0)
    .map((block) => {
      assert.ok(block.startsWith("data: "), `unexpected SSE block ${JSON.stringify(block)}`);
      const data = block.slice("data: ".length);
      return data === "[DONE]" ? data : (JSON.parse(data) as unknown);
    });
}

const user = (content: string) => [{ role: "user", content }];

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string", enum: ["Paris", "Tokyo", "Lima"] }, unit: { enum: ["celsius", "fahrenheit"] } },
      required: ["city", "unit"],
    },
  },
};
const timeTool = {
  type: "function",
  function: { name: "get_time", parameters: { type: "object", properties: { zone: { enum: ["UTC", "CET"] } } } },
};

function assertTimings(timings: any): void {
  for (const key of ["prompt_n", "prompt_ms", "prompt_per_second", "predicted_n", "predicted_ms", "predicted_per_second"]) {
    assert.equal(typeof timings?.[key], "number", `timings.${key}`);
    assert.ok(timings[key] >= 0, `timings.${key} >= 0`);
  }
}

function assertWeatherArguments(args: string): void {
  const parsed = JSON.parse(args) as Record<string, unknown>;
  assert.ok(["Paris", "Tokyo", "Lima"].includes(parsed.city as string), `city in enum: ${args}`);
  assert.ok(["celsius", "fahrenheit"].includes(parsed.unit as string), `unit in enum: ${args}`);
}

after(killAll);

describe("embedded runner", { timeout: 120_000 }, () => {
  let runner: Runner;

  before(async () => {
    runner = await startRunner(["--parallel", "1"]);
  });
  after(() => runner?.child.kill("SIGKILL"));

  test("/health answers 503 Loading model until the model is ready, then 200", async () => {
    const last = runner.healthStatuses.at(-1);
    assert.equal(last, 200);
    for (const status of runner.healthStatuses.slice(0, -1)) assert.equal(status, 503);
    const res = await fetch(`${runner.url}/health`);
    assert.deepEqual(await res.json(), { status: "ok" });
  });

  test("GET /v1/models lists the alias", async () => {
    const res = await fetch(`${runner.url}/v1/models`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as any;
    assert.equal(body.object, "list");
    assert.equal(body.data.length, 1);
    assert.equal(body.data[0].id, "tiny");
    assert.equal(body.data[0].object, "model");
    assert.equal(body.data[0].owned_by, "llama-runner");
    assert.equal(typeof body.data[0].created, "number");
  });

  test("chat completion: shape, usage, timings and finish_reason length", async () => {
    const { status, json } = await postJson(runner, "/v1/chat/completions", {
      model: "client-model",
      messages: [{ role: "system", content: "Be brief." }, ...user("Hello")],
      max_tokens: 8,
      temperature: 0,
    });
    assert.equal(status, 200);
    assert.match(json.id, /^chatcmpl-/);
    assert.equal(json.object, "chat.completion");
    assert.equal(json.model, "client-model");
    assert.equal(typeof json.created, "number");
    assert.equal(typeof json.system_fingerprint, "string");
    assert.equal(json.choices.length, 1);
    const [choice] = json.choices;
    assert.equal(choice.index, 0);
    assert.equal(choice.message.role, "assistant");
    assert.equal(typeof choice.message.content, "string");
    assert.ok(choice.message.content.length > 0);
    assert.equal(choice.finish_reason, "length");
    assert.ok(json.usage.prompt_tokens > 5);
    assert.equal(json.usage.completion_tokens, 8);
    assert.equal(json.usage.total_tokens, json.usage.prompt_tokens + 8);
    assertTimings(json.timings);
    assert.equal(json.timings.prompt_n, json.usage.prompt_tokens);
    assert.equal(json.timings.predicted_n, 8);
  });

  test("chat stream: role chunk, content chunks, finish chunk, usage chunk, [DONE]", async () => {
    const request = { model: "m", messages: user("Tell me a story"), max_tokens: 12, temperature: 0 };
    const res = await post(runner, "/v1/chat/completions", { ...request, stream: true, stream_options: { include_usage: true } });
    const events = await readEvents(res);
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1) as any[];
    const [first] = chunks;
    const finish = chunks.at(-2);
    const usage = chunks.at(-1);
    const content = chunks.slice(1, -2);
    for (const chunk of chunks) {
      assert.equal(chunk.id, first.id);
      assert.equal(chunk.created, first.created);
      assert.equal(chunk.object, "chat.completion.chunk");
      assert.equal(chunk.model, "m");
    }
    assert.match(first.id, /^chatcmpl-/);
    assert.deepEqual(first.choices, [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]);
    assert.ok(content.length > 0);
    for (const chunk of content) {
      assert.equal(chunk.choices.length, 1);
      assert.deepEqual(Object.keys(chunk.choices[0].delta), ["content"]);
      assert.equal(chunk.choices[0].finish_reason, null);
    }
    assert.deepEqual(finish.choices, [{ index: 0, delta: {}, logprobs: null, finish_reason: "length" }]);
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.completion_tokens, 12);
    assert.equal(usage.usage.total_tokens, usage.usage.prompt_tokens + 12);
    assertTimings(usage.timings);

    // The streamed text is the same greedy text a non-streamed request gets.
    const streamed = content.map((chunk) => chunk.choices[0].delta.content).join("");
    const { json } = await postJson(runner, "/v1/chat/completions", request);
    assert.equal(streamed, json.choices[0].message.content);
  });

  test("chat stream without include_usage puts timings on the finish chunk", async () => {
    const res = await post(runner, "/v1/chat/completions", { model: "m", messages: user("Hi"), max_tokens: 3, stream: true });
    const events = await readEvents(res);
    assert.equal(events.at(-1), "[DONE]");
    const finish = events.at(-2) as any;
    assert.equal(finish.choices[0].finish_reason, "length");
    assert.equal(finish.usage, undefined);
    assertTimings(finish.timings);
  });

  test("temperature 0 is deterministic, and so is a fixed seed", async () => {
    const request = { model: "m", messages: user("Same question twice"), max_tokens: 24, temperature: 0 };
    const a = await postJson(runner, "/v1/chat/completions", request);
    const b = await postJson(runner, "/v1/chat/completions", request);
    assert.equal(a.json.choices[0].message.content, b.json.choices[0].message.content);
    const seeded = { ...request, temperature: 1, seed: 1234 };
    const c = await postJson(runner, "/v1/chat/completions", seeded);
    const d = await postJson(runner, "/v1/chat/completions", seeded);
    assert.equal(c.json.choices[0].message.content, d.json.choices[0].message.content);
  });

  test("a stop string ends the text before it, with finish_reason stop", async () => {
    const request = { model: "m", messages: user("Count"), max_tokens: 30, temperature: 0 };
    const full = (await postJson(runner, "/v1/chat/completions", request)).json.choices[0].message.content as string;
    // A stop string taken from the middle of the greedy output, cut where it first appears.
    const stop = full.slice(6, 9);
    const expected = full.slice(0, full.indexOf(stop));
    const { json } = await postJson(runner, "/v1/chat/completions", { ...request, stop: [stop] });
    assert.equal(json.choices[0].message.content, expected);
    assert.equal(json.choices[0].finish_reason, "stop");
  });

  test("response_format json_schema yields JSON that matches an enum schema", async () => {
    const schema = {
      type: "object",
      properties: { color: { type: "string", enum: ["red", "green", "blue"] }, size: { enum: [1, 2, 3] } },
      required: ["color", "size"],
      additionalProperties: false,
    };
    const { status, json } = await postJson(runner, "/v1/chat/completions", {
      model: "m",
      messages: user("Pick a color"),
      max_tokens: 200,
      temperature: 0,
      response_format: { type: "json_schema", json_schema: { name: "pick", strict: true, schema } },
    });
    assert.equal(status, 200);
    const parsed = JSON.parse(json.choices[0].message.content) as Record<string, unknown>;
    assert.ok(["red", "green", "blue"].includes(parsed.color as string));
    assert.ok([1, 2, 3].includes(parsed.size as number));
    assert.equal(json.choices[0].finish_reason, "stop");
  });

  test("json_schema with $defs, $ref, anyOf and arrays yields matching JSON", async () => {
    const schema = {
      type: "object",
      properties: {
        tags: { type: "array", items: { $ref: "#/$defs/Tag" }, minItems: 1, maxItems: 2 },
        note: { anyOf: [{ type: "null" }, { enum: ["yes", "no"] }] },
      },
      required: ["tags", "note"],
      $defs: { Tag: { type: "string", enum: ["a", "b"] } },
    };
    const { status, json } = await postJson(runner, "/v1/chat/completions", {
      model: "m",
      messages: user("Tag it"),
      max_tokens: 300,
      temperature: 0,
      response_format: { type: "json_schema", json_schema: { name: "tags", schema } },
    });
    assert.equal(status, 200, JSON.stringify(json));
    const parsed = JSON.parse(json.choices[0].message.content) as { tags: string[]; note: string | null };
    assert.ok(parsed.tags.length >= 1 && parsed.tags.length <= 2);
    for (const tag of parsed.tags) assert.ok(["a", "b"].includes(tag));
    assert.ok([null, "yes", "no"].includes(parsed.note));
  });

  test("an unsupported JSON schema is a 400", async () => {
    const { status, json } = await postJson(runner, "/v1/chat/completions", {
      model: "m",
      messages: user("x"),
      response_format: { type: "json_schema", json_schema: { name: "bad", schema: { type: "sound" } } },
    });
    assert.equal(status, 400);
    assert.equal(json.error.type, "invalid_request_error");
  });

  test("tool_choice required returns a tool call with JSON-string arguments", async () => {
    const { status, json } = await postJson(runner, "/v1/chat/completions", {
      model: "m",
      messages: user("What is the weather?"),
      tools: [weatherTool],
      tool_choice: "required",
      temperature: 0,
      max_tokens: 200,
    });
    assert.equal(status, 200);
    const [choice] = json.choices;
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.message.content, null);
    assert.equal(choice.message.tool_calls.length, 1);
    const [call] = choice.message.tool_calls;
    assert.match(call.id, /^call_/);
    assert.equal(call.type, "function");
    assert.equal(call.function.name, "get_weather");
    assert.equal(typeof call.function.arguments, "string");
    assertWeatherArguments(call.function.arguments);
  });

  test("tool_choice naming a function picks it among several tools; required picks one of them", async () => {
    const named = await postJson(runner, "/v1/chat/completions", {
      model: "m",
      messages: user("Time?"),
      tools: [weatherTool, timeTool],
      tool_choice: { type: "function", function: { name: "get_time" } },
      max_tokens: 200,
    });
    assert.equal(named.status, 200);
    const call = named.json.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, "get_time");
    assert.ok(["UTC", "CET"].includes((JSON.parse(call.function.arguments) as { zone: string }).zone));

    const any = await postJson(runner, "/v1/chat/completions", {
      model: "m",
      messages: user("Anything"),
      tools: [weatherTool, timeTool],
      tool_choice: "required",
      temperature: 0,
      max_tokens: 300,
    });
    assert.equal(any.status, 200);
    const anyCall = any.json.choices[0].message.tool_calls[0];
    assert.ok(["get_weather", "get_time"].includes(anyCall.function.name));
    JSON.parse(anyCall.function.arguments);
    assert.equal(any.json.choices[0].finish_reason, "tool_calls");
  });

  test("tool_choice required streams the call as OpenAI tool-call deltas", async () => {
    const res = await post(runner, "/v1/chat/completions", {
      model: "m",
      messages: user("What is the weather?"),
      tools: [weatherTool],
      tool_choice: "required",
      temperature: 0,
      max_tokens: 200,
      stream: true,
    });
    const events = await readEvents(res);
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1) as any[];
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    const toolDeltas = chunks.flatMap((chunk) => chunk.choices[0]?.delta.tool_calls ?? []);
    const [head, ...fragments] = toolDeltas;
    assert.equal(head.index, 0);
    assert.match(head.id, /^call_/);
    assert.equal(head.type, "function");
    assert.equal(head.function.name, "get_weather");
    assert.equal(head.function.arguments, "");
    for (const fragment of fragments) {
      assert.equal(fragment.index, 0);
      assert.equal(fragment.id, undefined);
      assert.equal(typeof fragment.function.arguments, "string");
    }
    assertWeatherArguments(fragments.map((f) => f.function.arguments).join(""));
    const finish = chunks.at(-1);
    assert.deepEqual(finish.choices[0].delta, {});
    assert.equal(finish.choices[0].finish_reason, "tool_calls");
  });

  test("history with assistant tool_calls and tool results is accepted", async () => {
    const { status, json } = await postJson(runner, "/v1/chat/completions", {
      model: "m",
      messages: [
        { role: "developer", content: "Use tools." },
        { role: "user", content: [{ type: "text", text: "Weather in" }, { type: "text", text: "Paris?" }] },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris","unit":"celsius"}' } }],
        },
        { role: "tool", tool_call_id: "call_1", content: '{"temperature":21}' },
      ],
      tools: [weatherTool],
      max_tokens: 5,
    });
    assert.equal(status, 200, JSON.stringify(json));
    assert.ok(["length", "stop", "tool_calls"].includes(json.choices[0].finish_reason));
  });

  test("completions: text_completion, default max_tokens 16, echo, several prompts, stream", async () => {
    const single = await postJson(runner, "/v1/completions", { model: "m", prompt: "Once upon a time", temperature: 0 });
    assert.equal(single.status, 200);
    assert.match(single.json.id, /^cmpl-/);
    assert.equal(single.json.object, "text_completion");
    assert.equal(single.json.choices[0].finish_reason, "length");
    assert.equal(single.json.usage.completion_tokens, 16);
    assertTimings(single.json.timings);

    const echoed = await postJson(runner, "/v1/completions", { model: "m", prompt: "Once upon a time", temperature: 0, echo: true });
    assert.equal(echoed.json.choices[0].text, `Once upon a time${single.json.choices[0].text}`);

    const several = await postJson(runner, "/v1/completions", { model: "m", prompt: ["One", "Two"], max_tokens: 4, temperature: 0 });
    assert.deepEqual(several.json.choices.map((c: any) => c.index), [0, 1]);
    assert.equal(several.json.usage.completion_tokens, 8);

    const tokens = await postJson(runner, "/tokenize", { content: "Once upon a time" });
    const byTokens = await postJson(runner, "/v1/completions", { model: "m", prompt: tokens.json.tokens, temperature: 0 });
    assert.equal(byTokens.json.choices[0].text, single.json.choices[0].text);

    const res = await post(runner, "/v1/completions", {
      model: "m",
      prompt: "Once upon a time",
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const events = await readEvents(res);
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1) as any[];
    const usage = chunks.at(-1);
    const finish = chunks.at(-2);
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.completion_tokens, 16);
    assert.equal(finish.choices[0].finish_reason, "length");
    const text = chunks.slice(0, -2).map((c) => c.choices[0].text).join("");
    assert.equal(text, single.json.choices[0].text);
    for (const chunk of chunks) assert.equal(chunk.object, "text_completion");
  });

  test("embeddings: float and base64 decode to the same normalised vectors", async () => {
    const input = ["hello world", "a different sentence"];
    const float = await postJson(runner, "/v1/embeddings", { model: "m", input });
    const base64 = await postJson(runner, "/v1/embeddings", { model: "m", input, encoding_format: "base64" });
    assert.equal(float.status, 200);
    assert.equal(base64.status, 200);
    assert.equal(float.json.object, "list");
    assert.equal(float.json.model, "m");
    assert.equal(float.json.data.length, 2);
    assert.ok(float.json.usage.prompt_tokens > 0);
    assert.equal(float.json.usage.total_tokens, float.json.usage.prompt_tokens);
    for (const [i, item] of float.json.data.entries()) {
      assert.equal(item.object, "embedding");
      assert.equal(item.index, i);
      const vector = item.embedding as number[];
      assert.ok(vector.length > 0);
      const norm = Math.sqrt(vector.reduce((s, x) => s + x * x, 0));
      assert.ok(Math.abs(norm - 1) < 1e-3, `normalised, got ${norm}`);
      const bytes = Buffer.from(base64.json.data[i].embedding as string, "base64");
      const decoded = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      assert.equal(decoded.length, vector.length);
      decoded.forEach((x, j) => assert.ok(Math.abs(x - vector[j]!) < 1e-6));
    }
    const tokenInput = await postJson(runner, "/v1/embeddings", { model: "m", input: [1, 300, 301] });
    assert.equal(tokenInput.status, 200);
  });

  test("tokenize and detokenize round-trip; add_special adds BOS", async () => {
    const plain = await postJson(runner, "/tokenize", { content: "hello world" });
    assert.equal(plain.status, 200);
    assert.ok(plain.json.tokens.length > 0);
    const special = await postJson(runner, "/tokenize", { content: "hello world", add_special: true });
    assert.equal(special.json.tokens.length, plain.json.tokens.length + 1);
    const back = await postJson(runner, "/detokenize", { tokens: plain.json.tokens });
    assert.equal(back.json.content.trim(), "hello world");
  });

  test("client errors are OpenAI 400s, unknown routes 404", async () => {
    const malformed = await post(runner, "/v1/chat/completions", '{"model":"m","messages":');
    assert.equal(malformed.status, 400);
    const malformedBody = (await malformed.json()) as any;
    assert.equal(malformedBody.error.type, "invalid_request_error");
    assert.equal(typeof malformedBody.error.message, "string");
    assert.ok("param" in malformedBody.error && "code" in malformedBody.error);

    const missing = await postJson(runner, "/v1/chat/completions", { model: "m" });
    assert.equal(missing.status, 400);
    assert.match(missing.json.error.message, /messages/);

    const badTokens = await postJson(runner, "/v1/completions", { model: "m", prompt: [1, 10_000_000] });
    assert.equal(badTokens.status, 400);

    const tooLong = await postJson(runner, "/v1/chat/completions", { model: "m", messages: user("hello world ".repeat(3000)) });
    assert.equal(tooLong.status, 400);
    assert.equal(tooLong.json.error.code, "context_length_exceeded");

    const unknown = await fetch(`${runner.url}/v1/nope`);
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as any).error.type, "not_found_error");
  });

  test("an aborted stream frees its sequence at once; queued requests are served in turn", async () => {
    // No max_tokens: this would run until the context is full, far longer than the checks below allow.
    const controller = new AbortController();
    const res = await post(runner, "/v1/chat/completions", { model: "m", messages: user("Go on forever"), stream: true }, { signal: controller.signal });
    const reader = res.body!.getReader();
    for (let i = 0; i < 3; i++) await reader.read();
    controller.abort();

    const started = performance.now();
    const next = await postJson(runner, "/v1/chat/completions", { model: "m", messages: user("Still there?"), max_tokens: 4 });
    assert.equal(next.status, 200);
    assert.ok(performance.now() - started < 1500, "the aborted generation did not hold the only sequence");

    // A request that gives up while it waits in the queue must not hold up the requests after it.
    const running = new AbortController();
    const first = await post(runner, "/v1/chat/completions", { model: "m", messages: user("Long"), stream: true }, { signal: running.signal });
    await first.body!.getReader().read();
    const queued = new AbortController();
    const waiting = post(runner, "/v1/chat/completions", { model: "m", messages: user("Also long") }, { signal: queued.signal }).catch(
      (error: unknown) => error,
    );
    await new Promise((r) => setTimeout(r, 50));
    queued.abort();
    assert.ok((await waiting) instanceof Error);
    running.abort();
    const afterQueue = performance.now();
    const third = await postJson(runner, "/v1/chat/completions", { model: "m", messages: user("Third"), max_tokens: 4 });
    assert.equal(third.status, 200);
    assert.ok(performance.now() - afterQueue < 1500, "the abandoned queued request did not run");

    // --parallel 1: the second request waits for the first and both complete.
    const both = await Promise.all([1, 2].map((i) => postJson(runner, "/v1/chat/completions", { model: "m", messages: user(`q${i}`), max_tokens: 16 })));
    for (const { status, json } of both) {
      assert.equal(status, 200);
      assert.equal(json.usage.completion_tokens, 16);
    }
    const health = await fetch(`${runner.url}/health`);
    assert.equal(health.status, 200);
  });
});

describe("embedded runner process lifecycle", { timeout: 60_000 }, () => {
  test("SIGTERM exits quickly with status 0", async () => {
    const runner = await startRunner();
    const started = performance.now();
    runner.child.kill("SIGTERM");
    const { code } = await runner.exited;
    assert.equal(code, 0);
    assert.ok(performance.now() - started < 3000, "exited within 3 s");
  });

  test("closing stdin (the parent's pipe) makes the runner exit", async () => {
    const runner = await startRunner();
    const started = performance.now();
    runner.child.stdin?.end();
    const { code } = await runner.exited;
    assert.equal(code, 0);
    assert.ok(performance.now() - started < 3000, "exited within 3 s");
    assert.match(runner.stderr(), /stdin closed/);
  });

  test("a model that cannot be loaded exits 1 with the reason on stderr", async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [MAIN, "--model", "/nonexistent/model.gguf", "--port", String(port)], {
      stdio: ["pipe", "ignore", "pipe"],
    });
    children.add(child);
    let log = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => (log += chunk));
    const [code] = (await once(child, "exit")) as [number | null];
    children.delete(child);
    assert.equal(code, 1);
    assert.match(log, /failed to load model/);
  });

  test("bad arguments exit 2 with usage", async () => {
    const child = spawn(process.execPath, [MAIN, "--port", "1"], { stdio: ["pipe", "ignore", "pipe"] });
    children.add(child);
    let log = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => (log += chunk));
    const [code] = (await once(child, "exit")) as [number | null];
    children.delete(child);
    assert.equal(code, 2);
    assert.match(log, /--model is required/);
  });
});
