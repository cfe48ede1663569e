/**
 * The Ollama routes against a scripted backend stream (Fastify inject, no processes): what random weights
 * never produce — tool calls, thinking, a failure halfway through a stream — rendered as Ollama clients
 * expect, with the backend slot released every time.
 */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import type { Catalog, ModelEntry } from "../../catalog/catalog.js";
import type { Exchange, InferenceService } from "../../gateway/inference.js";
import type { Lifecycle } from "../../lifecycle/lifecycle.js";
import { ollamaRoutes } from "./routes.js";

const entry = {
  id: "m",
  aliases: [],
  parameters: {},
  runtime: "embedded",
  created: 1_700_000_000,
  gguf: undefined,
  path: undefined,
} as unknown as ModelEntry;

const sse = (...events: unknown[]) => events.map((e) => (typeof e === "string" ? `data: ${e}\n\n` : `data: ${JSON.stringify(e)}\n\n`)).join("");

function app(script: string, sent: Array<Record<string, unknown>> = []): { app: FastifyInstance; released: () => number } {
  let released = 0;
  const inference = {
    // A backend like a remote OpenAI API: no llama-server token or template endpoints.
    async send(endpoint: string, body: Record<string, unknown>): Promise<Exchange> {
      const followUp = () => Promise.reject(new Error("no follow-up expected"));
      if (!["chat", "completions", "embeddings"].includes(endpoint)) {
        const response = { statusCode: 404, headers: {}, body: Readable.from(['{"error":"not found"}']) } as unknown as Exchange["response"];
        return { entry, response, release: () => {}, followUp };
      }
      sent.push(body);
      return {
        entry,
        response: { statusCode: 200, headers: { "content-type": "text/event-stream" }, body: Readable.from([script]) } as unknown as Exchange["response"],
        release: () => void released++,
        followUp,
      };
    },
  } as unknown as InferenceService;
  const catalog = { entries: [entry], listed: [entry], copies: () => [], resolve: (name: string) => (name === "m" || name === "m:latest" ? entry : undefined) } as unknown as Catalog;
  const lifecycle = { status: () => ({ state: "ready", inFlight: 0 }) } as unknown as Lifecycle;
  const server = Fastify();
  void server.register(ollamaRoutes, { catalog, lifecycle, inference, ollamaVersion: "0.12.6", stallMs: 60_000 });
  return { app: server, released: () => released };
}

const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({ choices: [{ index: 0, delta, finish_reason: finish }] });
const timings = { prompt_n: 4, prompt_ms: 2, prompt_per_second: 2000, predicted_n: 3, predicted_ms: 6, predicted_per_second: 500 };

const TOOL_STREAM = sse(
  chunk({ role: "assistant", content: null, tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "get_weather", arguments: "" } }] }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":"To' } }] }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: 'kyo"}' } }] }),
  { ...chunk({}, "tool_calls"), timings },
  "[DONE]",
);

test("a backend tool call reaches Ollama clients whole, with object arguments, streamed and not", async () => {
  const sent: Array<Record<string, unknown>> = [];
  const { app: server, released } = app(TOOL_STREAM, sent);
  const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }];
  const res = await server.inject({ method: "POST", url: "/api/chat", payload: { model: "m", messages: [{ role: "user", content: "Tokyo?" }], tools } });
  assert.equal(res.headers["content-type"], "application/x-ndjson");
  const lines = res.body.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines.length, 2);
  assert.deepEqual((lines[0]?.["message"] as Record<string, unknown>)["tool_calls"], [{ id: "call_1", function: { index: 0, name: "get_weather", arguments: { city: "Tokyo" } } }]);
  assert.equal(lines[1]?.["done"], true);
  assert.equal(lines[1]?.["done_reason"], "stop");
  assert.equal(lines[1]?.["eval_count"], 3);
  assert.equal(lines[1]?.["eval_duration"], 6_000_000);
  assert.deepEqual(sent[0]?.["tools"], tools, "tools are passed on");

  const whole = await server.inject({ method: "POST", url: "/api/chat", payload: { model: "m", messages: [{ role: "user", content: "Tokyo?" }], tools, stream: false } });
  const message = whole.json<{ message: { role: string; content: string; tool_calls: unknown[] } }>().message;
  assert.equal(message.role, "assistant");
  assert.equal(message.content, "");
  assert.deepEqual(message.tool_calls, [{ id: "call_1", function: { index: 0, name: "get_weather", arguments: { city: "Tokyo" } } }]);
  assert.equal(released(), 2);
  await server.close();
});

test("reasoning text comes back as thinking", async () => {
  const { app: server } = app(sse(chunk({ reasoning_content: "Let me think." }), chunk({ content: "42" }), { ...chunk({}, "stop"), timings }, "[DONE]"));
  const res = await server.inject({ method: "POST", url: "/api/generate", payload: { model: "m", prompt: "?", think: true, stream: false } });
  const body = res.json<Record<string, unknown>>();
  assert.equal(body["thinking"], "Let me think.");
  assert.equal(body["response"], "42");
  assert.equal(body["done_reason"], "stop");
  // This backend cannot tokenize: no context rather than a made-up one.
  assert.equal(body["context"], undefined);
  await server.close();
});

test("a failure after the stream started ends it with an error line; before, it keeps its status", async () => {
  const mid = app(sse(chunk({ content: "Hel" }), { error: { message: "backend exploded", type: "server_error" } }));
  const res = await mid.app.inject({ method: "POST", url: "/api/chat", payload: { model: "m", messages: [{ role: "user", content: "hi" }] } });
  assert.equal(res.statusCode, 200);
  const lines = res.body.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(lines.at(-1), { error: "backend exploded" });
  assert.equal(mid.released(), 1);
  await mid.app.close();

  const early = app(sse({ error: { message: "no slot" } }));
  const failed = await early.app.inject({ method: "POST", url: "/api/chat", payload: { model: "m", messages: [{ role: "user", content: "hi" }] } });
  assert.equal(failed.statusCode, 502);
  assert.deepEqual(failed.json(), { error: "no slot" });
  assert.equal(early.released(), 1);
  await early.app.close();
});

test("entries the API does not serve (speech-to-text models) are neither listed nor reachable", async () => {
  const whisper = { ...entry, id: "whisper-base" } as ModelEntry;
  const catalog = { entries: [entry, whisper], listed: [entry, whisper], copies: () => [], resolve: (name: string) => [entry, whisper].find((e) => e.id === name.replace(/:latest$/, "")) } as unknown as Catalog;
  const lifecycle = { status: () => ({ state: "ready", inFlight: 0 }) } as unknown as Lifecycle;
  const server = Fastify();
  void server.register(ollamaRoutes, { catalog, lifecycle, inference: {} as InferenceService, ollamaVersion: "0.12.6", stallMs: 60_000, served: (e) => e.id !== "whisper-base" });
  const tags = (await server.inject({ method: "GET", url: "/api/tags" })).json<{ models: Array<{ name: string }> }>();
  assert.deepEqual(tags.models.map((m) => m.name), ["m:latest"]);
  const ps = (await server.inject({ method: "GET", url: "/api/ps" })).json<{ models: Array<{ name: string }> }>();
  assert.deepEqual(ps.models.map((m) => m.name), ["m:latest"]);
  const chat = await server.inject({ method: "POST", url: "/api/chat", payload: { model: "whisper-base", messages: [{ role: "user", content: "hi" }] } });
  assert.equal(chat.statusCode, 404);
  assert.equal((await server.inject({ method: "POST", url: "/api/show", payload: { model: "whisper-base" } })).statusCode, 404);
  await server.close();
});
