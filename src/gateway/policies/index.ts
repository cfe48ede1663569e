/**
 * The policies every request of a listener passes before any dialect sees it: API keys, requests per
 * minute, concurrent requests and open streams per client. Registered before the dialects, so every
 * route (present and future) is covered.
 */
import { channel } from "node:diagnostics_channel";
import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ListenerConfig } from "../../config/schema.js";
import { GatewayError } from "../../errors/index.js";
import { isLiveness, registerAuth } from "./auth.js";
import { type ClientCounters, registerClientLimits } from "./client-limits.js";

/** Published on every refusal for a limit, for metrics: `{ listener, limit, client }`. */
export const rateLimitChannel = channel("llama-runner:rate-limit");

export function isLoopback(ip: string): boolean {
  return ip.startsWith("127.") || ip === "::1" || ip.startsWith("::ffff:127.");
}

export interface PolicyOptions {
  listener: string;
  keys: readonly string[];
  limits: ListenerConfig["rate_limits"];
}

export function registerPolicies(app: FastifyInstance, { listener, keys, limits }: PolicyOptions): ClientCounters {
  const exempt = (request: FastifyRequest) =>
    request.method === "OPTIONS" || isLiveness(request) || (limits.exempt_loopback && isLoopback(request.ip));
  const rejected = (request: FastifyRequest, limit: string) => {
    if (rateLimitChannel.hasSubscribers) rateLimitChannel.publish({ listener, limit, client: request.ip });
  };

  registerAuth(app, keys);
  if (limits.requests_per_minute > 0) {
    void app.register(rateLimit, {
      global: true,
      hook: "onRequest",
      max: limits.requests_per_minute,
      timeWindow: 60_000,
      allowList: (request) => exempt(request),
      onExceeded: (request) => rejected(request, "requests_per_minute"),
      errorResponseBuilder: (_request, context) => {
        const seconds = Math.max(1, Math.ceil(context.ttl / 1000));
        return new GatewayError("rate_limit_exceeded", `Rate limit exceeded. Try again in ${seconds} seconds.`, { retryAfter: seconds });
      },
    });
  }
  return registerClientLimits(app, {
    concurrentRequests: limits.concurrent_requests,
    streamingConnections: limits.streaming_connections,
    exempt,
    onRejected: rejected,
  });
}
