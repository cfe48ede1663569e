/**
 * The policies every request of a listener passes before any dialect sees it: API keys, requests per
 * minute, concurrent requests and open streams per client. Registered before the dialects, so every
 * route (present and future) is covered; the checks that need no body run in one hook, since each
 * Fastify hook costs a step of its hook runner on every request.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ListenerConfig } from "../../config/schema.js";
import { publishRateLimitRejection } from "../../events/channels.js";
import { GatewayError } from "../../errors/index.js";
import { isLoopback } from "../cors.js";
import { apiKeyCheck, isLiveness } from "./auth.js";
import { type ClientCounters, isStreaming, SlotCounter, slotsExhausted, takeSlot } from "./client-limits.js";
import { RequestWindow } from "./request-window.js";

declare module "fastify" {
  interface FastifyRequest {
    /** True when the request carried a valid API key (only possible when keys are configured). */
    authenticated: boolean;
  }
}

export interface PolicyOptions {
  listener: string;
  keys: readonly string[];
  limits: ListenerConfig["rate_limits"];
}

export function registerPolicies(app: FastifyInstance, { listener, keys, limits }: PolicyOptions): ClientCounters {
  const authenticate = apiKeyCheck(keys);
  const perMinute = limits.requests_per_minute > 0 ? new RequestWindow(limits.requests_per_minute) : undefined;
  const requests = new SlotCounter(limits.concurrent_requests);
  const streams = new SlotCounter(limits.streaming_connections);
  const rejected = (client: string, limit: string) => publishRateLimitRejection({ listener, limit, client });
  // Preflights and liveness probes pass every policy.
  const open = (request: FastifyRequest) => request.method === "OPTIONS" || isLiveness(request.method, request.url);
  const unlimited = (client: string) => limits.exempt_loopback && isLoopback(client);

  // Callback-style: an async hook costs a promise and a microtask hop on every request.
  app.addHook("onRequest", (request, reply, done) => {
    if (open(request)) return done();
    if (authenticate) {
      const refused = authenticate(request.headers);
      if (refused) return done(refused);
      request.authenticated = true;
    }
    // Fastify works the address out on every read of request.ip.
    const client = request.ip;
    if (unlimited(client)) return done();
    if (perMinute) {
      const wait = perMinute.take(client);
      if (wait > 0) {
        rejected(client, "requests_per_minute");
        return done(new GatewayError("rate_limit_exceeded", `Rate limit exceeded. Try again in ${wait} seconds.`, { retryAfter: wait }));
      }
    }
    if (requests.limit > 0 && !takeSlot(requests, client, request, reply.raw)) {
      rejected(client, "concurrent_requests");
      return done(slotsExhausted());
    }
    done();
  });

  if (streams.limit > 0) {
    // After the body is parsed: whether a request streams is in its body.
    app.addHook("preHandler", (request, reply, done) => {
      if (!isStreaming(request) || open(request)) return done();
      const client = request.ip;
      if (unlimited(client)) return done();
      if (takeSlot(streams, client, request, reply.raw)) return done();
      rejected(client, "streaming_connections");
      done(slotsExhausted());
    });
  }
  return { requests, streams };
}
