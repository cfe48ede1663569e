/**
 * LM Studio's REST API v0 (`/api/v0/*`, lmstudio-ai/docs `endpoints.mdx`) on the LM Studio listener: model
 * objects with type, state and context lengths, and OpenAI chat/completions/embeddings whose non-streamed
 * answers carry LM Studio's `stats` (seconds), `model_info` and `runtime`. Streams are the backend's
 * OpenAI stream relayed as it is. Errors keep the listener's OpenAI format.
 */
import type { FastifyInstance, FastifyReply } from "fastify";
import type { Catalog, ModelEntry } from "../../catalog/catalog.js";
import { modelNotFound } from "../../errors/index.js";
import { abortOnClientClose } from "../../gateway/client-abort.js";
import { parseBody } from "../../gateway/errors.js";
import type { Endpoint, InferenceService } from "../../gateway/inference.js";
import type { Lifecycle } from "../../lifecycle/lifecycle.js";
import { contextSize } from "../../lifecycle/memory.js";
import { chatCompletionRequestSchema, completionRequestSchema, embeddingRequestSchema, type Timings, type Usage } from "../../protocol/openai.js";
import { hasVision, templateHasTools } from "../ollama/model-info.js";
import { openAIStreamError } from "../openai/errors.js";

export interface LmStudioRoutesOptions {
  catalog: Catalog;
  lifecycle: Lifecycle;
  inference: InferenceService;
  /** The gateway's version, reported as the runtime's. */
  version: string;
  /** How long a client may leave a full socket unread (config `timeouts.write_stall_s`), in ms. */
  stallMs: number;
  /** Catalogue entries this API serves (default all): speech-to-text models are left out. */
  served?: (entry: ModelEntry) => boolean;
}

export type LmStudioType = "llm" | "vlm" | "embeddings";

export function modelType(entry: ModelEntry): LmStudioType {
  if (entry.gguf?.isEmbedding) return "embeddings";
  return hasVision(entry) ? "vlm" : "llm";
}

function publisher(entry: ModelEntry): string {
  const organization = entry.gguf?.flat["general.organization"];
  if (typeof organization === "string" && organization.length > 0) return organization;
  const slash = entry.id.indexOf("/");
  return slash > 0 ? entry.id.slice(0, slash) : "llama-runner";
}

/** One `/api/v0/models` object; `loaded_context_length` only while loaded, as LM Studio does. */
export function lmStudioModel(entry: ModelEntry, lifecycle: Lifecycle) {
  const loaded = lifecycle.status(entry.id).state === "ready";
  return {
    id: entry.id,
    object: "model" as const,
    type: modelType(entry),
    publisher: publisher(entry),
    arch: entry.gguf?.architecture ?? "unknown",
    compatibility_type: "gguf",
    quantization: entry.gguf?.quantization ?? "unknown",
    state: loaded ? ("loaded" as const) : ("not-loaded" as const),
    max_context_length: entry.gguf?.contextLength ?? contextSize(entry),
    ...(loaded ? { loaded_context_length: contextSize(entry) } : {}),
    capabilities: templateHasTools(entry) ? ["tool_use"] : [],
  };
}

/** LM Studio's stop reasons for OpenAI's finish reasons. */
export function stopReason(finishReason: unknown): string {
  switch (finishReason) {
    case "length":
      return "maxPredictedTokensReached";
    case "tool_calls":
      return "toolCalls";
    default:
      return "eosFound";
  }
}

const round = (value: number, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * `stats` in seconds, from the backend's `timings` (ms); a backend without them gets the time this gateway
 * measured for the whole answer.
 */
export function stats(timings: Timings | undefined, usage: Usage | undefined, finishReason: unknown, elapsedMs: number) {
  const generation = timings ? timings.predicted_ms / 1000 : elapsedMs / 1000;
  const predicted = timings?.predicted_n ?? usage?.completion_tokens ?? 0;
  return {
    tokens_per_second: round(timings?.predicted_per_second ?? (generation > 0 ? predicted / generation : 0)),
    time_to_first_token: round(timings ? timings.prompt_ms / 1000 : 0),
    generation_time: round(generation),
    stop_reason: stopReason(finishReason),
  };
}

/** `max_tokens: -1` is LM Studio's "no limit"; `ttl` (seconds) is the model's keep-alive for this request. */
function lmStudioFields(body: Record<string, unknown>, endpoint: Endpoint): { body: { model: string } & Record<string, unknown>; keepAliveMs: number | null | undefined } {
  const { ttl, draft_model: _draft, ...rest } = body;
  const out = { ...rest } as { model: string } & Record<string, unknown>;
  if (endpoint === "chat") {
    // Chat without a limit runs until the model stops or the context is full: the backends' default.
    if (out["max_tokens"] === -1) delete out["max_tokens"];
    if (out["max_completion_tokens"] === -1) delete out["max_completion_tokens"];
  }
  // The legacy completions endpoint would stop at 16 tokens without a limit; -1 is "none" to llama-server and our runner.
  let keepAliveMs: number | null | undefined;
  if (typeof ttl === "number" && Number.isFinite(ttl)) keepAliveMs = ttl < 0 ? null : Math.round(ttl * 1000);
  return { body: out, keepAliveMs };
}

export async function lmStudioRoutes(app: FastifyInstance, options: LmStudioRoutesOptions): Promise<void> {
  const { catalog, lifecycle, inference } = options;
  const served = options.served ?? (() => true);

  app.get("/api/v0/models", async () => ({ object: "list", data: catalog.listed.filter(served).map((entry) => lmStudioModel(entry, lifecycle)) }));

  // `*` so an id with a slash ("org/model") works raw or percent-encoded.
  app.get<{ Params: { "*": string } }>("/api/v0/models/*", async (request) => {
    const id = request.params["*"];
    const entry = catalog.resolve(id);
    if (!entry || !served(entry)) throw modelNotFound(id);
    return lmStudioModel(entry, lifecycle);
  });

  const runtime = (entry: ModelEntry) => ({
    name: entry.runtime === "embedded" ? "llama-runner-embedded" : entry.runtime,
    version: options.version,
    supported_formats: ["gguf"],
  });

  const forward = async (endpoint: Endpoint, validated: Record<string, unknown>, reply: FastifyReply) => {
    const started = performance.now();
    const { body, keepAliveMs } = lmStudioFields(validated, endpoint);
    const named = catalog.resolve(body.model);
    if (named && !served(named)) throw modelNotFound(body.model);
    const signal = abortOnClientClose(reply.raw);
    if (body["stream"] === true || endpoint === "embeddings") {
      await inference.relay(endpoint, body, signal, { res: reply.raw, onStart: () => reply.hijack(), streamError: openAIStreamError, stallMs: options.stallMs, keepAliveMs });
      return reply;
    }
    const exchange = await inference.send(endpoint, body, signal, keepAliveMs);
    if (exchange.response.statusCode >= 400) {
      // The backend's own error, as it sent it.
      try {
        const text = await exchange.response.body.text();
        return reply.code(exchange.response.statusCode).type(String(exchange.response.headers["content-type"] ?? "application/json")).send(text);
      } finally {
        exchange.release();
      }
    }
    let answer: Record<string, unknown>;
    try {
      answer = (await exchange.response.body.json()) as Record<string, unknown>;
    } finally {
      exchange.release();
    }
    const { entry } = exchange;
    const choice = (Array.isArray(answer["choices"]) ? answer["choices"][0] : undefined) as Record<string, unknown> | undefined;
    return {
      ...answer,
      model: entry.id,
      stats: stats(answer["timings"] as Timings | undefined, answer["usage"] as Usage | undefined, choice?.["finish_reason"], performance.now() - started),
      model_info: { arch: entry.gguf?.architecture ?? "unknown", quant: entry.gguf?.quantization ?? "unknown", format: "gguf", context_length: contextSize(entry) },
      runtime: runtime(entry),
    };
  };

  app.post("/api/v0/chat/completions", (request, reply) => forward("chat", parseBody(chatCompletionRequestSchema, request.body), reply));
  app.post("/api/v0/completions", (request, reply) => forward("completions", parseBody(completionRequestSchema, request.body), reply));
  app.post("/api/v0/embeddings", (request, reply) => forward("embeddings", parseBody(embeddingRequestSchema, request.body), reply));
}
