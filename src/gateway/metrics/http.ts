/**
 * Request metrics of one listener, from hooks registered before any route:
 *
 * - every response: count by listener, dialect, route pattern, method and status, and its duration, when
 *   the response closes (a client that went away before the end counts as 499, as nginx logs it);
 * - streamed generations (OpenAI / LM Studio with `stream: true`, Ollama's chat and generate unless
 *   `stream: false`): time to the first write that carries a generated token. The response's `write`
 *   is wrapped until that write and then restored, so the rest of the stream runs untouched.
 */
import type { ServerResponse } from "node:http";
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from "fastify";
import type { CounterSeries, HistogramSeries } from "./fast.js";
import type { GatewayMetrics } from "./metrics.js";

type Dialect = "openai" | "lmstudio" | "ollama" | "management" | "webhooks" | "websocket" | "gateway" | "none";

/** The dialect a route belongs to, from its pattern (undefined: no route matched). */
export function dialectOf(route: string | undefined): Dialect {
  if (route === undefined) return "none";
  if (route === "/metrics" || route.startsWith("/logs") || route === "/health") return "gateway";
  if (route.startsWith("/v1/webhooks")) return "webhooks";
  if (route === "/v1/ws") return "websocket";
  if (route.startsWith("/api/v0/")) return "lmstudio";
  if (route.startsWith("/api/") || route === "/") return "ollama";
  if (/^\/v1\/models\/:[^/]+\/(status|start|stop|info)$/.test(route) || route.startsWith("/v1/system/") || route.startsWith("/v1/server/")) {
    return "management";
  }
  if (route.startsWith("/v1/")) return "openai";
  return "none";
}

/** Routes that generate text, and whether a body asks for a stream there. */
const GENERATION_ROUTES: Record<string, (body: { stream?: unknown }) => boolean> = {
  "/v1/chat/completions": (body) => body.stream === true,
  "/v1/completions": (body) => body.stream === true,
  "/api/v0/chat/completions": (body) => body.stream === true,
  "/api/v0/completions": (body) => body.stream === true,
  "/api/chat": (body) => body.stream !== false,
  "/api/generate": (body) => body.stream !== false,
};

/** Keys whose non-empty string value is generated text, in OpenAI chunks and Ollama lines. */
const TOKEN_KEYS = ['"content":"', '"text":"', '"response":"', '"thinking":"', '"reasoning_content":"'].map((key) => Buffer.from(key));
const TOOL_CALLS = Buffer.from('"tool_calls":[{');
/** Writes inspected before giving up (a stream that never generates anything). */
const MAX_INSPECTED_WRITES = 64;

/** Whether a chunk written to the client carries a generated token (the role-only first chunk does not). */
export function carriesToken(chunk: unknown): boolean {
  const bytes = typeof chunk === "string" ? Buffer.from(chunk) : Buffer.isBuffer(chunk) ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : undefined;
  if (!bytes) return false;
  for (const key of TOKEN_KEYS) {
    let at: number = bytes.indexOf(key);
    while (at !== -1) {
      const next = at + key.length;
      if (next < bytes.length && bytes[next] !== 0x22) return true;
      at = bytes.indexOf(key, next);
    }
  }
  return bytes.includes(TOOL_CALLS);
}

export function registerRequestMetrics(app: FastifyInstance, listener: string, metrics: GatewayMetrics): void {
  interface RouteSeries {
    dialect: Dialect;
    route: string;
    duration: HistogramSeries;
    /** By `${method} ${status}`. */
    counts: Map<string, CounterSeries>;
  }
  const byRoute = new Map<string | undefined, RouteSeries>();
  const seriesOf = (pattern: string | undefined): RouteSeries => {
    let series = byRoute.get(pattern);
    if (!series) {
      const dialect = dialectOf(pattern);
      const route = pattern ?? "unmatched";
      series = { dialect, route, duration: metrics.httpDuration.labels({ listener, dialect, route }), counts: new Map() };
      byRoute.set(pattern, series);
    }
    return series;
  };

  const observe = (request: FastifyRequest, reply: FastifyReply) => {
    const res = reply.raw;
    const series = seriesOf(request.routeOptions.url);
    const status = res.writableFinished ? res.statusCode : 499;
    const key = `${request.method} ${status}`;
    let count = series.counts.get(key);
    if (!count) {
      count = metrics.httpRequests.labels({ listener, dialect: series.dialect, route: series.route, method: request.method, status: String(status) });
      series.counts.set(key, count);
    }
    count.inc();
    series.duration.observe(reply.elapsedTime / 1000);
  };

  app.addHook("onRequest", (request, reply, done) => {
    // A WebSocket's upgrade request lives as long as its socket: the WebSocket metrics count those.
    if (request.headers.upgrade === undefined) reply.raw.once("close", () => observe(request, reply));
    done();
  });

  app.addHook("onRoute", (route: RouteOptions) => {
    const streams = GENERATION_ROUTES[route.url];
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!streams || !methods.includes("POST")) return;
    const dialect = dialectOf(route.url);
    const timeToFirstToken = (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
      const body = request.body;
      if (body !== null && typeof body === "object" && streams(body as { stream?: unknown })) {
        watchFirstToken(reply.raw, () => metrics.timeToFirstToken.observe({ dialect, model: metrics.modelLabel((body as { model?: unknown }).model) }, reply.elapsedTime / 1000));
      }
      done();
    };
    const existing = route.preHandler === undefined ? [] : Array.isArray(route.preHandler) ? route.preHandler : [route.preHandler];
    route.preHandler = [...existing, timeToFirstToken] as RouteOptions["preHandler"];
  });
}

/** Calls `seen` once, at the first write that carries a token; then puts the original `write` back. */
function watchFirstToken(res: ServerResponse, seen: () => void): void {
  const original = res.write;
  let inspected = 0;
  res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
    const found = carriesToken(chunk);
    if (found || ++inspected >= MAX_INSPECTED_WRITES) {
      res.write = original;
      if (found) seen();
    }
    return (original as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as ServerResponse["write"];
  res.once("close", () => {
    res.write = original;
  });
}
