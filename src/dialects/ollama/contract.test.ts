/**
 * Contract tests for the client gotchas of CLIENT_CONFORMANCE.md §4, replayed the way each client parses
 * (Copilot's version gate and /api/show loop, Continue's `parameters` regex, Open WebUI's version parsing
 * and `:latest` lookup), plus NDJSON framing, error shapes and the absence of file paths.
 */
import assert from "node:assert/strict";
import { basename, dirname } from "node:path";
import { after, before, test } from "node:test";
import { type TestGateway, startGateway } from "../../test-support/gateway.js";
import { tinyModelPath } from "../../test-support/models.js";

let gw: TestGateway;
let modelPath: string;

before(async () => {
  modelPath = await tinyModelPath();
  gw = await startGateway({ models: { tiny: { model_path: modelPath, parameters: { ctx_size: 1024 } } } });
});
after(() => gw?.close());

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${gw.ollama}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });

const METRICS = ["total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"] as const;

/** Copilot's ollamaProvider: `version >= 0.6.4 || version === "0.0.0"`, compared part by part. */
function copilotAccepts(version: string): boolean {
  if (version === "0.0.0") return true;
  const [a = 0, b = 0, c = 0] = version.split(".").map((p) => Number.parseInt(p, 10));
  return a !== 0 || b > 6 || (b === 6 && c >= 4);
}

/** Open WebUI: tuple(map(int, re.sub(r"^v|-.*", "", v).split("."))); int() raises on anything not an integer. */
function openWebUiVersion(version: string): number[] {
  return version
    .replace(/^v|-.*/g, "")
    .split(".")
    .map((part) => {
      if (!/^\s*[+-]?\d+\s*$/.test(part)) throw new Error(`int() fails on ${JSON.stringify(part)}`);
      return Number.parseInt(part, 10);
    });
}

test("GET/HEAD / and HEAD of /api/version and /api/tags", async () => {
  const root = await fetch(`${gw.ollama}/`);
  assert.equal(root.status, 200);
  assert.equal(await root.text(), "Ollama is running");
  assert.match(root.headers.get("content-type") ?? "", /text\/plain/);
  for (const path of ["/", "/api/version", "/api/tags"]) assert.equal((await fetch(`${gw.ollama}${path}`, { method: "HEAD" })).status, 200, path);
});

test("Copilot: the version gate, then /api/show for every tag with {model: tags[i].model}", async () => {
  const { version } = (await (await fetch(`${gw.ollama}/api/version`)).json()) as { version: string };
  assert.ok(copilotAccepts(version), version);
  assert.deepEqual(openWebUiVersion(version).length, 3, "Open WebUI parses it");
  assert.match(version, /^\d+\.\d+\.\d+$/);

  const tags = (await (await fetch(`${gw.ollama}/api/tags`)).json()) as { models: Array<{ model: string; name: string }> };
  assert.ok(tags.models.length > 0);
  for (const tag of tags.models) {
    const res = await post("/api/show", { model: tag.model }, { "user-agent": "GitHubCopilotChat/0.31.0" });
    assert.equal(res.status, 200);
    const show = (await res.json()) as { capabilities: unknown; model_info: Record<string, unknown> };
    assert.ok(Array.isArray(show.capabilities), "Copilot calls capabilities.includes");
    assert.ok(show.capabilities.includes("completion"));
    const arch = show.model_info["general.architecture"];
    const context = show.model_info[`${String(arch)}.context_length`];
    assert.equal(typeof context, "number", "Copilot reads model_info[arch + '.context_length']");
    assert.equal(show.model_info["general.basename"], tag.model, "display name: the name Copilot asked for");
  }
});

test("Continue: /api/show with {name}; every parameters line matches its regex", async () => {
  const res = await post("/api/show", { name: "tiny" });
  assert.equal(res.status, 200);
  const show = (await res.json()) as Record<string, unknown>;
  for (const key of ["license", "modelfile", "parameters", "template", "details", "model_info", "capabilities", "modified_at"]) assert.ok(key in show, key);
  const parameters = String(show["parameters"]);
  assert.ok(parameters.length > 0);
  for (const line of parameters.split("\n")) {
    const match = /^(\S+)\s+((?:".*")|\S+)$/.exec(line);
    assert.ok(match, `Continue would crash on ${JSON.stringify(line)}`);
  }
  assert.equal(typeof show["template"], "string");
  const missing = await post("/api/show", { name: "nope" });
  assert.equal(missing.status, 404);
  assert.deepEqual(await missing.json(), { error: "model 'nope' not found" });
});

test("Open WebUI: tags have name and model with an explicit tag; ids without a colon resolve with :latest", async () => {
  const { models } = (await (await fetch(`${gw.ollama}/api/tags`)).json()) as { models: Array<Record<string, unknown>> };
  for (const model of models) {
    for (const key of ["name", "model", "modified_at", "size", "digest", "details"]) assert.ok(key in model, key);
    assert.match(String(model["model"]), /:[^/]+$/);
    assert.ok(!Number.isNaN(Date.parse(String(model["modified_at"]))));
    assert.match(String(model["modified_at"]), /[+-]\d\d:\d\d$|Z$/, "a time zone");
    const details = model["details"] as Record<string, unknown>;
    assert.ok(Array.isArray(details["families"]));
    for (const key of ["format", "family", "parameter_size", "quantization_level"]) assert.equal(typeof details[key], "string", key);
    assert.match(String(model["digest"]), /^[0-9a-f]{64}$/);
  }
  const id = "tiny";
  const lookup = id.includes(":") ? id : `${id}:latest`;
  assert.ok(models.some((m) => m["model"] === lookup));
  const chat = await post("/api/chat", { model: lookup, messages: [{ role: "user", content: "hi" }], stream: false, options: { num_predict: 2 } });
  assert.equal(chat.status, 200);
});

async function ndjson(res: Response): Promise<Array<Record<string, unknown>>> {
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/x-ndjson");
  const text = await res.text();
  assert.ok(text.endsWith("\n"), "every object ends with a newline");
  const lines = text.slice(0, -1).split("\n");
  return lines.map((line) => {
    assert.ok(!line.startsWith("data:"), "no SSE framing");
    const value = JSON.parse(line) as Record<string, unknown>;
    assert.equal(JSON.stringify(value), line, "one compact object per line");
    return value;
  });
}

function assertFinal(final: Record<string, unknown> | undefined): void {
  assert.equal(final?.["done"], true);
  assert.ok(["stop", "length"].includes(String(final?.["done_reason"])));
  for (const key of METRICS) assert.ok(Number.isInteger(final?.[key]), `${key} is an integer`);
  assert.match(String(final?.["created_at"]), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/);
}

test("NDJSON: streaming is the default; message.role on every chat chunk; final object has all six metrics", async () => {
  const chat = await ndjson(await post("/api/chat", { model: "tiny", messages: [{ role: "user", content: "Hello" }], options: { num_predict: 6 } }));
  assert.ok(chat.length >= 2);
  for (const chunk of chat) {
    assert.equal((chunk["message"] as { role?: string }).role, "assistant", "Continue reads message.role on every chunk");
    assert.equal(chunk["model"], "tiny");
  }
  assertFinal(chat.at(-1));
  assert.deepEqual(chat.at(-1)?.["message"], { role: "assistant", content: "" });
  assert.ok(chat.slice(0, -1).every((c) => c["done"] === false));

  const generate = await ndjson(await post("/api/generate", { model: "tiny", prompt: "Once", options: { num_predict: 6 } }));
  assertFinal(generate.at(-1));
  assert.ok(Array.isArray(generate.at(-1)?.["context"]), "the final generate chunk carries the context");
  assert.equal(generate.at(-1)?.["response"], "");

  const single = await post("/api/chat", { model: "tiny", messages: [{ role: "user", content: "Hello" }], stream: false, options: { num_predict: 3 } });
  assert.equal(single.headers.get("content-type"), "application/json; charset=utf-8");
  assertFinal((await single.json()) as Record<string, unknown>);
});

test("empty messages load the model: done_reason load, still a done:true line", async () => {
  const lines = await ndjson(await post("/api/chat", { model: "tiny", messages: [] }));
  assert.equal(lines.length, 1);
  assert.equal(lines[0]?.["done_reason"], "load");
  for (const key of METRICS) assert.ok(Number.isInteger(lines[0]?.[key]), key);
});

test("errors: Ollama's statuses and messages on /api, OpenAI's envelope on /v1", async () => {
  for (const [path, body] of [
    ["/api/chat", { model: "x", messages: [{ role: "user", content: "hi" }] }],
    ["/api/generate", { model: "x", prompt: "hi" }],
    ["/api/embed", { model: "x", input: "hi" }],
  ] as const) {
    const res = await post(path, body);
    assert.equal(res.status, 404, path);
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    assert.deepEqual(await res.json(), { error: 'model "x" not found, try pulling it first' });
  }
  const missing = await post("/api/chat", { messages: [] });
  assert.equal(missing.status, 400);
  assert.deepEqual(await missing.json(), { error: "model is required" });
  const bad = await post("/api/chat", "{not json");
  assert.equal(bad.status, 400);
  assert.equal(typeof ((await bad.json()) as { error: unknown }).error, "string");
  const badKeepAlive = await post("/api/chat", { model: "tiny", messages: [], keep_alive: "forever" });
  assert.equal(badKeepAlive.status, 400);
  const unknownRoute = await fetch(`${gw.ollama}/api/nope`);
  assert.equal(unknownRoute.status, 404);
  assert.equal(typeof ((await unknownRoute.json()) as { error: unknown }).error, "string");

  const v1 = await fetch(`${gw.ollama}/v1/chat/completions`, { method: "POST", headers: { authorization: "Bearer " }, body: JSON.stringify({ model: "x", messages: [{ role: "user", content: "hi" }] }) });
  assert.equal(v1.status, 404);
  const envelope = (await v1.json()) as { error: { code: string; type: string } };
  assert.equal(envelope.error.code, "model_not_found");
});

test("no file system path anywhere in /api/tags, /api/show or /api/ps", async () => {
  await post("/api/generate", { model: "tiny", prompt: "", stream: false });
  const bodies = [
    await (await fetch(`${gw.ollama}/api/tags`)).text(),
    await (await post("/api/show", { model: "tiny" })).text(),
    await (await post("/api/show", { model: "tiny", verbose: true })).text(),
    await (await fetch(`${gw.ollama}/api/ps`)).text(),
  ];
  for (const body of bodies) {
    assert.ok(!body.includes(dirname(modelPath)), "the model's folder");
    assert.ok(!body.includes(basename(modelPath)), "the model's file name");
    assert.ok(!body.includes(gw.home), "the gateway's home");
    assert.ok(!body.includes(".gguf"));
  }
});

test("a browser page on localhost may call /api/chat; the preflight names Ollama's headers", async () => {
  const preflight = await fetch(`${gw.ollama}/api/chat`, {
    method: "OPTIONS",
    headers: { origin: "http://localhost:8080", "access-control-request-method": "POST", "access-control-request-headers": "content-type" },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get("access-control-allow-origin"), "http://localhost:8080");
  assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /Authorization.*Content-Type.*x-stainless-timeout/);
  const res = await post("/api/chat", { model: "tiny", messages: [{ role: "user", content: "hi" }], options: { num_predict: 2 } }, { origin: "http://localhost:8080" });
  assert.equal(res.headers.get("access-control-allow-origin"), "http://localhost:8080", "on a streamed answer too");
  await res.text();
});
