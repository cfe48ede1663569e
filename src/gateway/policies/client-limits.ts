/**
 * Per-client concurrency: requests in flight and streaming responses open, counted per client
 * address. A slot is taken when the request starts (or is found to stream) and given back when its
 * response closes, however it closes, so counters never leak.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { GatewayError } from "../../errors/index.js";

export interface ClientLimitOptions {
  concurrentRequests: number;
  streamingConnections: number;
  exempt(request: FastifyRequest): boolean;
  onRejected?(request: FastifyRequest, limit: string): void;
}

export class SlotCounter {
  private readonly counts = new Map<string, number>();

  constructor(readonly limit: number) {}

  tryTake(client: string): boolean {
    const count = this.counts.get(client) ?? 0;
    if (count >= this.limit) return false;
    this.counts.set(client, count + 1);
    return true;
  }

  give(client: string): void {
    const count = (this.counts.get(client) ?? 1) - 1;
    if (count <= 0) this.counts.delete(client);
    else this.counts.set(client, count);
  }

  held(client: string): number {
    return this.counts.get(client) ?? 0;
  }
}

// The reference's exact message; a slot frees as soon as one of the client's own requests ends.
const limited = () => new GatewayError("rate_limit_exceeded", "Rate limit exceeded. Try again in 1 seconds.", { retryAfter: 1 });

/** Streams: OpenAI and LM Studio with `stream: true`; Ollama's chat and generate unless `stream: false`; WebSockets and log tails. */
export function isStreaming(request: FastifyRequest): boolean {
  if (request.headers.upgrade?.toLowerCase() === "websocket") return true;
  const body = request.body as { stream?: unknown } | undefined;
  if (body && typeof body === "object" && body.stream === true) return true;
  const path = request.url.split("?")[0] ?? "";
  if (path.endsWith("/logs/stream")) return true;
  return (path === "/api/chat" || path === "/api/generate") && (body === undefined || typeof body !== "object" || body.stream !== false);
}

/** Gives the slot back when the exchange ends: the response closes, or for a WebSocket the socket does. */
function onEnd(request: FastifyRequest, release: () => void, raw: { once(event: "close", fn: () => void): unknown }): void {
  let done = false;
  const once = () => {
    if (done) return;
    done = true;
    release();
  };
  raw.once("close", once);
  if (request.headers.upgrade) request.raw.socket.once("close", once);
}

export function registerClientLimits(app: FastifyInstance, options: ClientLimitOptions): ClientCounters {
  const requests = new SlotCounter(options.concurrentRequests);
  const streams = new SlotCounter(options.streamingConnections);
  /** Takes one of the client's slots until its response ends, or refuses the request for `limit`. */
  const take = (counter: SlotCounter, limit: string, request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void) => {
    // Fastify works the address out on every read of request.ip.
    const client = request.ip;
    if (!counter.tryTake(client)) {
      options.onRejected?.(request, limit);
      return done(limited());
    }
    onEnd(request, () => counter.give(client), reply.raw);
    done();
  };
  if (options.concurrentRequests > 0) {
    app.addHook("onRequest", (request, reply, done) => (options.exempt(request) ? done() : take(requests, "concurrent_requests", request, reply, done)));
  }
  if (options.streamingConnections > 0) {
    // After the body is parsed: whether a request streams is in its body.
    app.addHook("preHandler", (request, reply, done) =>
      !isStreaming(request) || options.exempt(request) ? done() : take(streams, "streaming_connections", request, reply, done),
    );
  }
  return { requests, streams };
}

export interface ClientCounters {
  requests: SlotCounter;
  streams: SlotCounter;
}
