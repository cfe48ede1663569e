/**
 * The project's own llama-server build (scripts/build-llama-server.mjs) against a tiny random-weight GGUF.
 * `npm test` runs the build script first, so a missing binary is a failure, not a skip.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { tinyModelPath } from "../test-support/models.js";
import { findLlamaServer, llamaRunnerCacheRoot, llamaServerCacheKey, llamaServerCachePath } from "./llama-server-binary.js";
import { freePort } from "./ports.js";
import { BackendProcess, describeExit } from "./process.js";

const BUILD_SCRIPT = fileURLToPath(new URL("../../scripts/build-llama-server.mjs", import.meta.url));
const MISSING = (path: string) =>
  `llama-server is not built (expected at ${path}). Run \`node scripts/build-llama-server.mjs\` ` +
  `(about 10 minutes on 2 cores, cached afterwards); \`npm test\` runs it before the tests.`;

function scriptPath(env: NodeJS.ProcessEnv): string {
  const r = spawnSync(process.execPath, [BUILD_SCRIPT, "--expected-path"], { env, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

test("the cache path follows LLAMA_RUNNER_CACHE, then an absolute XDG_CACHE_HOME, then ~/.cache", () => {
  assert.equal(llamaRunnerCacheRoot({ LLAMA_RUNNER_CACHE: "/x/cache", XDG_CACHE_HOME: "/y" }), "/x/cache");
  assert.equal(llamaRunnerCacheRoot({ LLAMA_RUNNER_CACHE: "~/c" }), join(homedir(), "c"));
  assert.equal(llamaRunnerCacheRoot({ XDG_CACHE_HOME: "/y" }), "/y/llama-runner");
  assert.equal(llamaRunnerCacheRoot({ XDG_CACHE_HOME: "relative" }), join(homedir(), ".cache", "llama-runner"));
  assert.equal(llamaRunnerCacheRoot({}), join(homedir(), ".cache", "llama-runner"));
  const key = llamaServerCacheKey();
  assert.match(key, /^nlc-\d+\.\d+\.\d+[^_]*_llama-[A-Za-z0-9._-]+_[a-z0-9]+-[a-z0-9]+$/);
  assert.equal(llamaServerCachePath({ XDG_CACHE_HOME: "/y" }), `/y/llama-runner/llama-server/${key}/llama-server`);
});

test("llamaServerCachePath() and the build script agree on where the binary lives", () => {
  const cases: NodeJS.ProcessEnv[] = [
    { ...process.env },
    { ...process.env, LLAMA_RUNNER_CACHE: join(tmpdir(), "lr-cache-a") },
    { ...process.env, LLAMA_RUNNER_CACHE: undefined, XDG_CACHE_HOME: join(tmpdir(), "xdg") },
    { ...process.env, LLAMA_RUNNER_CACHE: undefined, XDG_CACHE_HOME: "relative/ignored" },
  ];
  for (const env of cases) {
    for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
    assert.equal(llamaServerCachePath(env), scriptPath(env));
  }
});

test("findLlamaServer() is undefined when nothing is cached", async () => {
  assert.equal(await findLlamaServer({ ...process.env, LLAMA_RUNNER_CACHE: join(tmpdir(), `lr-empty-${process.pid}`) }), undefined);
});

test("the project's llama-server build is present and runs", async () => {
  const binary = await findLlamaServer();
  if (!binary) assert.fail(MISSING(llamaServerCachePath()));
  const r = spawnSync(binary, ["--version"], { encoding: "utf8", timeout: 15_000 });
  assert.equal(r.status, 0, r.stderr);
  // e.g. "version: 0.4.0-dev (build 1, commit 80fb11a)": the commit is the one the cache key names.
  const commit = /^version: .*commit ([0-9a-f]{7,})/m.exec(r.stdout + r.stderr)?.[1];
  assert.ok(commit, r.stdout + r.stderr);
  assert.ok(llamaServerCacheKey().includes(`-${commit}`), `${commit} not in ${llamaServerCacheKey()}`);
});

interface ChatCompletion {
  model: string;
  choices: { message: { role: string; content: string }; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  timings?: { predicted_n: number; predicted_per_second: number; prompt_per_second: number };
}

describe("llama-server (project build) serves the tiny model", () => {
  let server: BackendProcess | undefined;
  let base = "";
  const healthWhileLoading: string[] = [];

  before(async () => {
    const binary = await findLlamaServer();
    if (!binary) assert.fail(MISSING(llamaServerCachePath()));
    const model = await tinyModelPath({ poolingType: 1 });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    server = BackendProcess.spawn({
      command: binary,
      args: ["--model", model, "--host", "127.0.0.1", "--port", String(port), "--alias", "tiny", "--threads", "1", "--ctx-size", "512", "--embeddings"],
    });
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (server.hasExited) assert.fail(`llama-server ${describeExit(await server.exited)}:\n${server.logs.tail(40).join("\n")}`);
      if (Date.now() > deadline) assert.fail("llama-server did not become healthy within 60 s");
      try {
        const res = await fetch(`${base}/health`);
        const body = await res.text();
        if (res.status === 200) break;
        healthWhileLoading.push(`${res.status} ${body}`);
      } catch {
        // not listening yet
      }
      await sleep(20);
    }
  });

  after(async () => {
    await server?.stop(5_000);
  });

  test("/health answers 200 once loaded (503 while loading)", async (t) => {
    for (const seen of new Set(healthWhileLoading)) {
      assert.match(seen, /^503 /);
      t.diagnostic(`while loading: ${seen}`);
    }
    const res = await fetch(`${base}/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: "ok" });
  });

  test("non-streaming chat completion runs to max_tokens and reports timings", async (t) => {
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "Hello there" }], max_tokens: 8 }),
    });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    const body = JSON.parse(text) as ChatCompletion;
    assert.equal(body.usage.completion_tokens, 8);
    assert.ok(body.usage.prompt_tokens > 0);
    assert.equal(body.choices[0]?.finish_reason, "length");
    assert.equal(typeof body.choices[0]?.message.content, "string");
    assert.ok(body.timings, "timings present");
    assert.equal(body.timings.predicted_n, 8);
    assert.equal(body.model, "tiny");
    t.diagnostic(`decode ${body.timings.predicted_per_second.toFixed(0)} tok/s, prompt ${body.timings.prompt_per_second.toFixed(0)} tok/s`);
  });

  test("streaming chat completion sends SSE chunks and [DONE]", async () => {
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "tiny",
        messages: [{ role: "user", content: "Tell me a story" }],
        max_tokens: 8,
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const events = (await res.text())
      .split("\n")
      .filter((line) => line.startsWith("data: "))
      .map((line) => line.slice(6));
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { choices: { delta: { content?: string } }[]; usage?: { completion_tokens: number } });
    const content = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    assert.ok(content.length > 0);
    assert.equal(chunks.findLast((c) => c.usage)?.usage?.completion_tokens, 8);
  });

  // /v1/embeddings needs --embeddings (without it: 501 "This server does not support embeddings"); the
  // GGUF's llama.pooling_type=1 spares --pooling (pooling "none" answers 400). Chat keeps working with it.
  test("/v1/embeddings works with --embeddings and the GGUF's mean pooling", async () => {
    const res = await fetch(`${base}/v1/embeddings`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", input: ["hello world", "goodbye"] }),
    });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    const body = JSON.parse(text) as { data: { index: number; embedding: number[] }[]; usage: { prompt_tokens: number } };
    assert.equal(body.data.length, 2);
    for (const item of body.data) {
      assert.equal(item.embedding.length, 64);
      assert.ok(item.embedding.every(Number.isFinite));
    }
    assert.notDeepEqual(body.data[0]?.embedding, body.data[1]?.embedding);
  });

  test("/tokenize and /detokenize round-trip text", async () => {
    const post = async (path: string, payload: unknown) => {
      const res = await fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(payload) });
      const text = await res.text();
      assert.equal(res.status, 200, `${path}: ${text}`);
      return JSON.parse(text) as Record<string, unknown>;
    };
    const { tokens } = (await post("/tokenize", { content: "Hello world" })) as { tokens: number[] };
    assert.ok(Array.isArray(tokens) && tokens.length > 0 && tokens.every(Number.isInteger), JSON.stringify(tokens));
    const { content } = (await post("/detokenize", { tokens })) as { content: string };
    // SentencePiece: the text comes back with the leading "▁" space.
    assert.equal(content.trim(), "Hello world", `${JSON.stringify(tokens)} -> ${JSON.stringify(content)}`);
  });
});
