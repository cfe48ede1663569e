/**
 * One Fastify instance per listener (LM Studio's 1234, Ollama's 11434). Both mount the OpenAI
 * dialect; the Ollama listener adds Ollama's native API, the LM Studio listener LM Studio's REST v0.
 * Each dialect is an encapsulated plugin with its own routes; the CORS / Host policy covers both.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Logger } from "pino";
import { audioRoutes } from "../audio/routes.js";
import type { AudioService } from "../audio/service.js";
import type { Catalog } from "../catalog/catalog.js";
import { type Config, defaultConfig, type ListenerName } from "../config/schema.js";
import { lmStudioRoutes } from "../dialects/lmstudio/routes.js";
import { ollamaRoutes } from "../dialects/ollama/routes.js";
import { openAIError } from "../dialects/openai/errors.js";
import { managementRoutes } from "../dialects/management/routes.js";
import { openAIRoutes } from "../dialects/openai/routes.js";
import { GatewayError } from "../errors/index.js";
import type { Lifecycle } from "../lifecycle/lifecycle.js";
import { registerNetworkPolicy } from "./cors.js";
import { toGatewayError } from "./errors.js";
import type { InferenceService } from "./inference.js";

export interface GatewayDeps {
  catalog: Catalog;
  lifecycle: Lifecycle;
  inference: InferenceService;
  logger: Logger;
  version: string;
  startedAt: number;
  proxies(): Record<string, { status: "running" | "stopped" | "disabled"; port: number }>;
  /** Speech to text (src/audio): /v1/audio/transcriptions and /v1/audio/translations are mounted when present. */
  audio?: AudioService;
  /** The loaded config (the Ollama/LM Studio settings, the global TTL); defaults when absent. */
  config?: Config;
}

const JSON_BODY_LIMIT = 16 * 1024 * 1024;

export function buildListener(name: ListenerName, deps: GatewayDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger.child({ listener: name }) as FastifyBaseLogger,
    // Per-request log lines cost more than proxying a small request; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: JSON_BODY_LIMIT,
    forceCloseConnections: true,
    return503OnClosing: true,
  });

  // curl -d sends form encoding, fetch() with a string sends text/plain and some clients send no
  // content type at all: treat any body as JSON, as Ollama and LM Studio do.
  app.removeContentTypeParser("text/plain");
  app.addContentTypeParser("*", { parseAs: "string" }, (_request, body, done) => {
    const text = String(body);
    if (text.trim() === "") return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new GatewayError("invalid_request", "Request body is not valid JSON"), undefined);
    }
  });

  const config = deps.config ?? defaultConfig();
  // Before any route: Fastify gives a route the hooks that exist when its plugin loads.
  registerNetworkPolicy(app, {
    origins: config.ollama.origins,
    forbidden: (message, request) =>
      name === "ollama" && !request.url.startsWith("/v1/")
        ? { error: message }
        : { error: { message, type: "invalid_request_error", param: null, code: "forbidden" } },
  });

  app.setErrorHandler((thrown, request, reply) => {
    if (reply.raw.destroyed || reply.sent) return;
    const error = toGatewayError(thrown);
    if (error.statusCode >= 500) request.log.error({ err: thrown, url: request.url }, error.message);
    if (error.retryAfter !== undefined) void reply.header("retry-after", String(error.retryAfter));
    void reply.code(error.statusCode).send(openAIError(error));
  });

  app.setNotFoundHandler((request, reply) => {
    const error = new GatewayError("invalid_request", `Unknown route: ${request.method} ${request.url.split("?")[0]}`);
    void reply.code(404).send({ error: { ...openAIError(error).error, code: "not_found" } });
  });

  app.get("/health", async () => ({
    status: "healthy",
    timestamp: new Date().toISOString(),
    version: deps.version,
    uptime: Math.floor((Date.now() - deps.startedAt) / 1000),
  }));

  void app.register(openAIRoutes, deps);
  void app.register(managementRoutes, deps);
  if (deps.audio) void app.register(audioRoutes, { audio: deps.audio });
  // Whisper models share the catalogue but are not Ollama or LM Studio models.
  const speech = new Set(Object.keys(config.audio.models));
  const served = (entry: { id: string }) => !speech.has(entry.id);
  if (name === "ollama") {
    void app.register(ollamaRoutes, { ...deps, ollamaVersion: config.ollama.version, served });
  } else {
    void app.register(lmStudioRoutes, { ...deps, served });
  }
  return app;
}
