/**
 * One Fastify instance per listener (LM Studio's 1234, Ollama's 11434). Both mount the OpenAI
 * dialect; the Ollama listener adds Ollama's native API, the LM Studio listener LM Studio's REST v0.
 * Each dialect is an encapsulated plugin with its own routes; the CORS / Host policy covers both.
 */
import { createServer } from "node:http";
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
import { parseJsonBody } from "./json-body.js";
import { registerPolicies } from "./policies/index.js";
import type { InferenceService } from "./inference.js";
import type { EventBus } from "../events/bus.js";
import { logRoutes } from "./logs/routes.js";
import type { LogHub } from "./logs/hub.js";
import { registerRequestMetrics } from "./metrics/http.js";
import type { GatewayMetrics } from "./metrics/metrics.js";
import { metricsRoutes } from "./metrics/routes.js";
import { webhookRoutes } from "./webhooks/routes.js";
import type { WebhookService } from "./webhooks/service.js";
import { websocketRoutes } from "./websocket/routes.js";

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
  /** API keys from the config and LLAMA_RUNNER_API_KEYS; default: the config's. */
  apiKeys?: readonly string[];
  /** Webhooks, the WebSocket API, /metrics and /logs (src/gateway/{webhooks,websocket,metrics,logs}); mounted when present. */
  events?: { bus: EventBus; webhooks: WebhookService; metrics: GatewayMetrics; logs: LogHub };
}

const MiB = 2 ** 20;

export interface RouteEntry {
  method: string;
  url: string;
}

declare module "fastify" {
  interface FastifyInstance {
    routeTable: RouteEntry[];
  }
  interface FastifyRequest {
    /** The JSON body as received, for routes that forward it unchanged. */
    rawJson: string | undefined;
  }
}

export function buildListener(name: ListenerName, deps: GatewayDeps): FastifyInstance {
  const config = deps.config ?? defaultConfig();
  const { rate_limits: limits } = config.proxies[name];
  const app = Fastify({
    loggerInstance: deps.logger.child({ listener: name }) as FastifyBaseLogger,
    // Per-request log lines cost more than proxying a small request; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    // No pino child per request: creating one (bindings serialised to a string) showed in the allocation
    // profile of every proxied request; a request's own log lines are rare (errors) and name its URL.
    childLoggerFactory: (logger) => logger,
    bodyLimit: Math.round(limits.json_body_mb * MiB),
    forceCloseConnections: true,
    return503OnClosing: true,
    // Node checks these timeouts only every connectionsCheckingInterval (30 s by default), so the
    // interval follows the shortest of them: a client that trickles its headers (slowloris) or its
    // body cannot hold a connection open for long.
    serverFactory: (handler) =>
      createServer(
        {
          headersTimeout: config.timeouts.headers_s * 1000,
          requestTimeout: config.timeouts.request_s * 1000,
          connectionsCheckingInterval: Math.min(30_000, Math.max(250, (config.timeouts.headers_s * 1000) / 2)),
        },
        handler,
      ),
  });
  // The first onRequest hook, so requests refused by the policies below are counted too.
  if (deps.events) registerRequestMetrics(app, name, deps.events.metrics);
  app.decorateRequest("authenticated", false);
  app.decorateRequest("rawJson", undefined);
  // Every route this listener serves, as registered: the policy tests walk it, so a new route is covered.
  const routeTable: RouteEntry[] = [];
  app.decorate("routeTable", routeTable);
  app.addHook("onRoute", (route) => {
    for (const method of [route.method].flat()) routeTable.push({ method, url: route.url });
  });

  // curl -d sends form encoding, fetch() with a string sends text/plain and some clients send no
  // content type at all: treat any body as JSON, as Ollama and LM Studio do. Fastify's own JSON
  // parser is replaced too, so every body gets the same depth check and the same 400s.
  app.removeContentTypeParser(["text/plain", "application/json"]);
  app.addContentTypeParser("*", { parseAs: "string" }, (request, body, done) => {
    try {
      const text = String(body);
      const parsed = parseJsonBody(text);
      // Before done(): it may run the handler at once.
      request.rawJson = text;
      done(null, parsed);
    } catch (error) {
      done(error as GatewayError, undefined);
    }
  });
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

  registerPolicies(app, { listener: name, keys: deps.apiKeys ?? config.api_keys, limits });

  app.get("/health", async () => ({
    status: "healthy",
    timestamp: new Date().toISOString(),
    version: deps.version,
    uptime: Math.floor((Date.now() - deps.startedAt) / 1000),
  }));

  const stallMs = config.timeouts.write_stall_s * 1000;
  void app.register(openAIRoutes, { ...deps, stallMs });
  void app.register(managementRoutes, deps);
  if (deps.audio) void app.register(audioRoutes, { audio: deps.audio, uploadLimitBytes: Math.round(limits.file_upload_size_mb * 1_000_000) });
  // Whisper models share the catalogue but are not Ollama or LM Studio models.
  const speech = new Set(Object.keys(config.audio.models));
  const served = (entry: { id: string }) => !speech.has(entry.id);
  if (name === "ollama") {
    void app.register(ollamaRoutes, { ...deps, ollamaVersion: config.ollama.version, served, stallMs });
  } else {
    void app.register(lmStudioRoutes, { ...deps, served, stallMs });
  }
  if (deps.events) {
    const { bus, webhooks, metrics, logs } = deps.events;
    void app.register(webhookRoutes, { webhooks });
    void app.register(websocketRoutes, { listener: name, bus, inference: deps.inference, config: config.websocket, metrics, stallMs });
    void app.register(metricsRoutes, { metrics });
    void app.register(logRoutes, { logs, catalog: deps.catalog, capacity: config.logs.buffer_lines });
  }
  return app;
}
