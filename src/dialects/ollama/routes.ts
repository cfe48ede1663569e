/**
 * Ollama's native API on the Ollama listener: `/` and `/api/*`, in Ollama's wire format (NDJSON streams,
 * `{"error":"..."}` errors with Ollama's statuses). A thin translator: requests become OpenAI bodies sent
 * through the gateway's one request path; the backend's stream becomes Ollama's chunks and metrics.
 * `/api/*` is its own encapsulated plugin, so its error and not-found handlers do not touch `/v1/*`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Catalog, ModelEntry } from "../../catalog/catalog.js";
import { GatewayError } from "../../errors/index.js";
import { abortOnClientClose } from "../../gateway/client-abort.js";
import { toGatewayError } from "../../gateway/errors.js";
import type { Endpoint, Exchange, InferenceService } from "../../gateway/inference.js";
import type { Lifecycle } from "../../lifecycle/lifecycle.js";
import { contextSize, estimateMemoryBytes } from "../../lifecycle/memory.js";
import type { EmbeddingResponse } from "../../protocol/openai.js";
import { readSse } from "../../upstream/sse-reader.js";
import { notFoundQuoted, notFoundTryPulling, ollamaError, ollamaStreamError } from "./errors.js";
import { parseKeepAlive } from "./keep-alive.js";
import { capabilities, details, digest, FOREVER_MS, modelfile, modelInfo, modifiedMs, parameters, rfc3339, sizeBytes, template } from "./model-info.js";
import { OllamaNames, tagged } from "./names.js";
import {
  chatRequestSchema,
  copyRequestSchema,
  embeddingsRequestSchema,
  embedRequestSchema,
  generateRequestSchema,
  modelName,
  modelRequestSchema,
  parseOllama,
  showRequestSchema,
} from "./schemas.js";
import { type Metrics, metrics, NdjsonWriter, type Piece, pieces, type StreamSummary, doneReason } from "./stream.js";
import { contextTokens, continuedPrompt, templatedPrompt, truncatedInputs } from "./tokens.js";
import { chatBody, continuation, generateBody } from "./translate.js";
import { readJson, sendChecked, UpstreamFailure } from "./upstream.js";
import type { Cancellation } from "../../lifecycle/cancellation.js";

export interface OllamaRoutesOptions {
  catalog: Catalog;
  lifecycle: Lifecycle;
  inference: InferenceService;
  /** What `/api/version` reports (config `ollama.version`). */
  ollamaVersion: string;
  /** How long a client may leave a full socket unread (config `timeouts.write_stall_s`), in ms. */
  stallMs: number;
  /** Catalogue entries this API serves (default all): speech-to-text models are left out. */
  served?: (entry: ModelEntry) => boolean;
}

interface ApiOptions extends OllamaRoutesOptions {
  names: OllamaNames;
}

export async function ollamaRoutes(app: FastifyInstance, options: OllamaRoutesOptions): Promise<void> {
  // Fastify answers HEAD for every GET route (the Go client's Heartbeat sends HEAD /).
  app.get("/", async (_request, reply) => reply.type("text/plain; charset=utf-8").send("Ollama is running"));
  await app.register(apiRoutes, { ...options, names: new OllamaNames(options.catalog, options.served), prefix: "/api" });
}

const JSON_TYPE = "application/json; charset=utf-8";

interface Aggregate {
  content: string;
  thinking: string;
  toolCalls: NonNullable<Piece["toolCalls"]>;
}

/** How one endpoint renders its chunks (`message` for chat, `response` for generate). */
interface Renderer {
  piece(piece: Piece): Record<string, unknown>;
  /** The final object; `streamed` when the pieces went out already (their text is not repeated). */
  done(aggregate: Aggregate, reason: string, measured: Metrics, streamed: boolean): Record<string, unknown> | Promise<Record<string, unknown>>;
}

async function apiRoutes(api: FastifyInstance, options: ApiOptions): Promise<void> {
  const { lifecycle, inference, names } = options;

  api.setErrorHandler((thrown, request, reply) => {
    if (reply.raw.destroyed || reply.sent) return;
    const error = toGatewayError(thrown);
    if (error.statusCode >= 500) request.log.error({ err: thrown, url: request.url }, error.message);
    if (error.retryAfter !== undefined) void reply.header("retry-after", String(error.retryAfter));
    void reply.code(error.statusCode).type(JSON_TYPE).send(ollamaError(error));
  });

  api.setNotFoundHandler((request, reply) => {
    void reply
      .code(404)
      .type(JSON_TYPE)
      .send({ error: `404 page not found: ${request.method} ${request.url.split("?")[0]}` });
  });

  const find = (name: string): ModelEntry => {
    const entry = names.resolve(name);
    if (!entry) throw notFoundTryPulling(name);
    return entry;
  };

  /** The backend's stream → Ollama's NDJSON lines (streaming) or one final object; releases the slot. */
  const answer = async (
    reply: FastifyReply,
    exchange: Exchange,
    stream: boolean,
    clock: { started: number; answered: number },
    render: Renderer,
  ): Promise<unknown> => {
    const events = pieces(readSse(exchange.response.body));
    const aggregate: Aggregate = { content: "", thinking: "", toolCalls: [] };
    const collect = (piece: Piece) => {
      aggregate.content += piece.content ?? "";
      aggregate.thinking += piece.thinking ?? "";
      aggregate.toolCalls.push(...(piece.toolCalls ?? []));
    };
    const finish = (summary: StreamSummary) =>
      render.done(aggregate, doneReason(summary.finishReason), metrics(summary, { ...clock, ended: performance.now() }), stream);
    try {
      if (!stream) {
        for (let step = await events.next(); ; step = await events.next()) {
          if (step.done) return await finish(step.value);
          collect(step.value);
        }
      }
      // An error before the first piece still gets its own status, as Ollama's streamResponse does.
      const first = await events.next();
      reply.hijack();
      const out = new NdjsonWriter(reply.raw, options.stallMs);
      try {
        for (let step = first; out.open; step = await events.next()) {
          if (step.done) {
            await out.write(await finish(step.value));
            break;
          }
          collect(step.value);
          await out.write(render.piece(step.value));
        }
        out.end();
      } catch (error) {
        out.end(ollamaStreamError(toGatewayError(error).message));
      }
      return reply;
    } finally {
      // A client that went away leaves the body unread: closing it stops generation upstream.
      exchange.response.body.destroy();
      exchange.release();
    }
  };

  /** Empty messages / prompt: load the model (done_reason "load"), or unload it with keep_alive 0. */
  const loadOrUnload = async (reply: FastifyReply, entry: ModelEntry, name: string, keepAliveMs: number | null | undefined, stream: boolean, shape: Record<string, unknown>) => {
    const started = performance.now();
    let reason: "load" | "unload";
    if (keepAliveMs === 0) {
      lifecycle.stop(entry.id);
      reason = "unload";
    } else {
      await lifecycle.start(entry, keepAliveMs);
      reason = "load";
    }
    const waited = Math.round((performance.now() - started) * 1e6);
    const body = {
      model: name,
      created_at: new Date().toISOString(),
      ...shape,
      done: true,
      done_reason: reason,
      total_duration: waited,
      load_duration: reason === "load" ? waited : 0,
      prompt_eval_count: 0,
      prompt_eval_duration: 0,
      eval_count: 0,
      eval_duration: 0,
    };
    if (!stream) return body;
    reply.hijack();
    const out = new NdjsonWriter(reply.raw, options.stallMs);
    await out.write(body);
    out.end();
    return reply;
  };

  const open = async (endpoint: Endpoint, body: { model: string } & Record<string, unknown>, reply: FastifyReply, keepAliveMs: number | null | undefined) => {
    const started = performance.now();
    const exchange = await sendChecked(inference, endpoint, body, abortOnClientClose(reply.raw), keepAliveMs);
    return { exchange, clock: { started, answered: performance.now() } };
  };

  api.get("/version", async () => ({ version: options.ollamaVersion }));

  api.get("/tags", async () => ({
    models: names
      .list()
      .sort((a, b) => modifiedMs(b.entry) - modifiedMs(a.entry))
      .map(({ name, entry }) => ({
        name,
        model: name,
        modified_at: rfc3339(modifiedMs(entry)),
        size: sizeBytes(entry),
        digest: digest(entry),
        details: details(entry),
      })),
  }));

  api.post("/show", async (request) => {
    const body = parseOllama(showRequestSchema, request.body);
    const name = modelName(body);
    const entry = names.resolve(name);
    if (!entry) throw notFoundQuoted(name);
    // Copilot shows general.basename as the model's name: like Ollama, give it the name it asked for.
    const copilot = String(request.headers["user-agent"] ?? "").startsWith("GitHubCopilotChat/");
    return {
      license: entry.gguf?.license ?? "",
      modelfile: modelfile(tagged(name), entry),
      parameters: parameters(entry),
      template: template(entry),
      details: details(entry),
      model_info: modelInfo(entry, copilot ? name : undefined),
      capabilities: capabilities(entry),
      modified_at: rfc3339(modifiedMs(entry)),
    };
  });

  api.get("/ps", async () => {
    const now = Date.now();
    const models = options.catalog.listed.flatMap((entry) => {
      if (options.served && !options.served(entry)) return [];
      const status = lifecycle.status(entry.id);
      if (status.state !== "ready") return [];
      // Idle with a TTL: the lifecycle's real expiry. Busy: the TTL in force restarts when it is done. Otherwise never.
      const ttlMs = status.ttlMs;
      const expires = status.expiresAt ?? (status.inFlight > 0 && ttlMs && !entry.pinned ? now + ttlMs : now + FOREVER_MS);
      const name = tagged(entry.id);
      const size = status.memoryBytes ?? estimateMemoryBytes(entry);
      return [{ name, model: name, size, digest: digest(entry), details: details(entry), expires_at: rfc3339(expires), expires, size_vram: 0, context_length: contextSize(entry) }];
    });
    models.sort((a, b) => b.expires - a.expires);
    return { models: models.map(({ expires: _expires, ...model }) => model) };
  });

  api.post("/chat", async (request, reply) => {
    const body = parseOllama(chatRequestSchema, request.body);
    const name = modelName(body);
    const entry = find(name);
    const keepAliveMs = parseKeepAlive(body.keep_alive);
    const stream = body.stream !== false;
    const assistant = (extra: Record<string, unknown> = {}) => ({ role: "assistant", content: "", ...extra });
    if (!body.messages || body.messages.length === 0) return loadOrUnload(reply, entry, name, keepAliveMs, stream, { message: assistant() });
    const { exchange, clock } = await open("chat", chatBody(name, body), reply, keepAliveMs);
    const head = () => ({ model: name, created_at: new Date().toISOString() });
    return answer(reply, exchange, stream, clock, {
      piece: (piece) => ({
        ...head(),
        message: assistant({
          content: piece.content ?? "",
          ...(piece.thinking ? { thinking: piece.thinking } : {}),
          ...(piece.toolCalls ? { tool_calls: piece.toolCalls } : {}),
        }),
        done: false,
      }),
      done: (aggregate, reason, measured, streamed) => ({
        ...head(),
        message: assistant(
          !streamed
            ? {
                content: aggregate.content,
                ...(aggregate.thinking ? { thinking: aggregate.thinking } : {}),
                ...(aggregate.toolCalls.length > 0 ? { tool_calls: aggregate.toolCalls } : {}),
              }
            : {},
        ),
        done: true,
        done_reason: reason,
        ...measured,
      }),
    });
  });

  api.post("/generate", async (request, reply) => {
    const started = performance.now();
    const body = parseOllama(generateRequestSchema, request.body);
    const name = modelName(body);
    const entry = find(name);
    const keepAliveMs = parseKeepAlive(body.keep_alive);
    const stream = body.stream !== false;
    if (!body.prompt) return loadOrUnload(reply, entry, name, keepAliveMs, stream, { response: "" });
    const signal = abortOnClientClose(reply.raw);
    let plan = generateBody(entry, body, name);
    // What the returned context is made of: the context continued, then this prompt and the response as
    // text. Raw prompts get none, as in Ollama.
    let seen = body.raw === true ? undefined : { prefix: [] as number[], text: plan.body["prompt"] as string | undefined };
    if (plan.turn) {
      const context = body.context ?? [];
      if (context.length > 0 && (body.images?.length ?? 0) > 0) throw new GatewayError("invalid_request", "images cannot be combined with context here; send the conversation as messages to /api/chat");
      // keep_alive 0 unloads after the generation, not after these first calls.
      const holdMs = keepAliveMs === 0 ? undefined : keepAliveMs;
      const turn = await templatedPrompt(inference, entry, name, plan.turn, signal, holdMs);
      if (context.length > 0) {
        if (turn === undefined) throw new GatewayError("invalid_request", `context is not supported for '${entry.id}': its backend cannot apply the chat template; send the conversation as messages to /api/chat`, { param: "context" });
        plan = continuation(name, body, await continuedPrompt(inference, entry, name, context, turn, signal, holdMs));
      }
      seen = { prefix: context, text: turn };
    }
    const exchange = await sendChecked(inference, plan.endpoint, plan.body, signal, keepAliveMs);
    const clock = { started, answered: performance.now() };
    const head = () => ({ model: name, created_at: new Date().toISOString() });
    return answer(reply, exchange, stream, clock, {
      piece: (piece) => ({ ...head(), response: piece.content ?? "", ...(piece.thinking ? { thinking: piece.thinking } : {}), done: false }),
      done: async (aggregate, reason, measured, streamed) => ({
        ...head(),
        response: streamed ? "" : aggregate.content,
        ...(!streamed && aggregate.thinking ? { thinking: aggregate.thinking } : {}),
        done: true,
        done_reason: reason,
        ...(seen?.text === undefined ? {} : { context: await contextTokens(exchange, seen.prefix, seen.text + aggregate.content, signal) }),
        ...measured,
      }),
    });
  });

  /** Embeds `inputs` (one backend call), cutting over-long inputs to fit when `truncate` allows. */
  const embedAll = async (entry: ModelEntry, name: string, inputs: string[], truncate: boolean, keepAliveMs: number | null | undefined, signal: Cancellation) => {
    const once = async (input: string[] | number[][]) => {
      const exchange = await sendChecked(inference, "embeddings", { model: name, input, encoding_format: "float" }, signal, keepAliveMs);
      const response = await readJson<EmbeddingResponse>(exchange);
      return { vectors: response.data.map((d) => d.embedding as number[]), tokens: response.usage?.prompt_tokens ?? 0 };
    };
    // Our runner's "context_length_exceeded"; llama-server's "input is too large to process" (its batch).
    const tooLong = (error: unknown) =>
      error instanceof UpstreamFailure && (error.upstreamCode === "context_length_exceeded" || /context|too large/i.test(error.message));
    try {
      return await once(inputs);
    } catch (error) {
      if (!truncate || !tooLong(error)) throw error;
    }
    // As Ollama: cut to the context, in the model's own tokens. The backend may hold fewer than the
    // context (llama-server's batch for embeddings): its error names how many, and the cut follows.
    let limit = contextSize(entry) - 1;
    const tokenized = await truncatedInputs(inference, entry, name, inputs, limit, signal, keepAliveMs);
    for (let attempt = 0; ; attempt++) {
      try {
        return await once(tokenized.map((tokens) => tokens.slice(0, limit)));
      } catch (error) {
        if (!tooLong(error) || attempt >= 4 || limit <= 1) throw error;
        const message = (error as Error).message;
        const held = /context holds (\d+)/.exec(message)?.[1] ?? /batch size: (\d+)/.exec(message)?.[1];
        limit = held === undefined ? Math.floor(limit / 2) : Math.min(limit - 1, Number(held) - 1);
      }
    }
  };

  /** Loads the model when it is not ready yet, so `load_duration` is the real load wait. */
  const ensureLoaded = async (entry: ModelEntry, keepAliveMs: number | null | undefined): Promise<number> => {
    if (lifecycle.status(entry.id).state === "ready") return 0;
    const started = performance.now();
    await lifecycle.start(entry, keepAliveMs === 0 ? undefined : keepAliveMs);
    return performance.now() - started;
  };

  const l2 = (vector: number[]): number[] => {
    const norm = Math.sqrt(vector.reduce((sum, x) => sum + x * x, 0));
    return norm > 0 ? vector.map((x) => x / norm) : vector;
  };

  api.post("/embed", async (request, reply) => {
    const started = performance.now();
    const body = parseOllama(embedRequestSchema, request.body);
    const name = modelName(body);
    const entry = find(name);
    const keepAliveMs = parseKeepAlive(body.keep_alive);
    const inputs = typeof body.input === "string" ? (body.input === "" ? [] : [body.input]) : (body.input ?? []);
    const loadMs = await ensureLoaded(entry, keepAliveMs);
    let embeddings: number[][] = [];
    let tokens = 0;
    if (inputs.length > 0) {
      // keep_alive 0 applies once every part of this request is done, not after its first backend call.
      const result = await embedAll(entry, name, inputs, body.truncate !== false, keepAliveMs === 0 ? undefined : keepAliveMs, abortOnClientClose(reply.raw));
      tokens = result.tokens;
      const dimensions = body.dimensions ?? undefined;
      embeddings = result.vectors.map((v) => {
        const unit = l2(v);
        return dimensions !== undefined && dimensions < unit.length ? l2(unit.slice(0, dimensions)) : unit;
      });
    }
    if (keepAliveMs === 0) lifecycle.stop(entry.id);
    return {
      model: name,
      embeddings,
      total_duration: Math.round((performance.now() - started) * 1e6),
      load_duration: Math.round(loadMs * 1e6),
      prompt_eval_count: tokens,
    };
  });

  api.post("/embeddings", async (request, reply) => {
    const body = parseOllama(embeddingsRequestSchema, request.body);
    const name = modelName(body);
    const entry = find(name);
    const keepAliveMs = parseKeepAlive(body.keep_alive);
    if (!body.prompt) {
      await ensureLoaded(entry, keepAliveMs);
      if (keepAliveMs === 0) lifecycle.stop(entry.id);
      return { embedding: [] };
    }
    const exchange = await sendChecked(inference, "embeddings", { model: name, input: [body.prompt], encoding_format: "float" }, abortOnClientClose(reply.raw), keepAliveMs);
    const response = await readJson<EmbeddingResponse>(exchange);
    return { embedding: (response.data[0]?.embedding as number[] | undefined) ?? [] };
  });

  api.post("/pull", async (request, reply) => {
    const body = parseOllama(modelRequestSchema, request.body);
    const name = modelName(body);
    const entry = names.restore(name);
    if (!entry) {
      throw new GatewayError(
        "model_not_found",
        `pull model manifest: file does not exist: ${JSON.stringify(name)} is not in this server's catalogue, and llama-runner never downloads models (put the GGUF file in models_dir or add it to config.json)`,
        { param: "model" },
      );
    }
    if (body.stream === false) return { status: "success" };
    const hex = digest(entry);
    const size = sizeBytes(entry);
    reply.hijack();
    const out = new NdjsonWriter(reply.raw, options.stallMs);
    for (const line of [
      { status: "pulling manifest" },
      { status: `pulling ${hex.slice(0, 12)}`, digest: `sha256:${hex}`, total: size, completed: size },
      { status: "verifying sha256 digest" },
      { status: "writing manifest" },
      { status: "success" },
    ]) {
      await out.write(line);
    }
    out.end();
    return reply;
  });

  api.post("/copy", async (request, reply) => {
    const body = parseOllama(copyRequestSchema, request.body);
    if (body.source.trim() === "") throw new GatewayError("invalid_request", `source ${JSON.stringify(body.source)} is invalid`);
    if (body.destination.trim() === "") throw new GatewayError("invalid_request", `destination ${JSON.stringify(body.destination)} is invalid`);
    if (!names.copy(body.source, body.destination)) throw new GatewayError("model_not_found", `model ${JSON.stringify(body.source)} not found`);
    return reply.code(200).send();
  });

  api.delete("/delete", async (request, reply) => {
    const body = parseOllama(modelRequestSchema, request.body);
    const name = modelName(body);
    const { found, hiddenEntry } = names.remove(name);
    if (!found) throw notFoundQuoted(name);
    // The entry leaves the listing; the file stays. A loaded backend for it is no longer wanted.
    if (hiddenEntry && lifecycle.status(hiddenEntry.id).state === "ready") lifecycle.stop(hiddenEntry.id);
    return reply.code(200).send();
  });

  const unsupported = (what: string) => async (_request: FastifyRequest) => {
    throw new GatewayError("invalid_request", `${what} is not supported: llama-runner serves the GGUF files in its catalogue (models_dir and config.json) and never uploads or builds models`);
  };
  api.post("/push", unsupported("push"));
  api.post("/create", unsupported("create"));
}
