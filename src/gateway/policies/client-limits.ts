/**
 * Per-client concurrency: requests in flight and streaming responses open, counted per client
 * address. A slot is taken when the request starts (or is found to stream) and given back when its
 * response closes, however it closes, so counters never leak.
 */
import type { FastifyRequest } from "fastify";
import { GatewayError } from "../../errors/index.js";

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
export const slotsExhausted = () => new GatewayError("rate_limit_exceeded", "Rate limit exceeded. Try again in 1 seconds.", { retryAfter: 1 });

/** Streams: OpenAI and LM Studio with `stream: true`; Ollama's chat and generate unless `stream: false`; WebSockets and log tails. */
export function isStreaming(request: FastifyRequest): boolean {
  if (request.headers.upgrade?.toLowerCase() === "websocket") return true;
  const body = request.body as { stream?: unknown } | undefined;
  if (body && typeof body === "object" && body.stream === true) return true;
  const path = request.url.split("?")[0] ?? "";
  if (path.endsWith("/logs/stream")) return true;
  return (path === "/api/chat" || path === "/api/generate") && (body === undefined || typeof body !== "object" || body.stream !== false);
}

/**
 * Takes one of the client's slots until the exchange ends (the response closes, or for a WebSocket the
 * socket does); false when the client holds all of them.
 */
export function takeSlot(counter: SlotCounter, client: string, request: FastifyRequest, res: { once(event: "close", fn: () => void): unknown }): boolean {
  if (!counter.tryTake(client)) return false;
  let done = false;
  const give = () => {
    if (done) return;
    done = true;
    counter.give(client);
  };
  res.once("close", give);
  if (request.headers.upgrade) request.raw.socket.once("close", give);
  return true;
}

export interface ClientCounters {
  requests: SlotCounter;
  streams: SlotCounter;
}
