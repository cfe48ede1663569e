/**
 * The one HTTP client to all backends: a shared undici Agent keeps a keep-alive pool per backend
 * origin, so no request pays for a new connection and backpressure flows end to end.
 */
import { Agent, type Dispatcher } from "undici";
import type { Cancellation } from "../lifecycle/cancellation.js";

export interface UpstreamRequest {
  baseUrl: string;
  path: string;
  method?: "GET" | "POST";
  body?: string;
  signal?: Cancellation;
}

export type UpstreamResponse = Dispatcher.ResponseData;

export class UpstreamClient {
  private readonly agent = new Agent({
    keepAliveTimeout: 30_000,
    connections: 256,
    // Generation can be slow before its first byte (a long prompt on a CPU); the gateway's own
    // abort handling, not a timer, ends requests that the client gave up on.
    headersTimeout: 0,
    bodyTimeout: 0,
  });

  /** Parsed base URLs: a handful of backends, parsed once each instead of once per request. */
  private readonly bases = new Map<string, { origin: string; prefix: string }>();

  request({ baseUrl, path, method = "POST", body, signal }: UpstreamRequest): Promise<UpstreamResponse> {
    // A remote upstream may live under a path prefix (https://host/prefix); undici wants origin and path apart.
    let base = this.bases.get(baseUrl);
    if (!base) {
      const url = new URL(baseUrl);
      base = { origin: url.origin, prefix: url.pathname.replace(/\/+$/, "") };
      if (this.bases.size > 1024) this.bases.clear();
      this.bases.set(baseUrl, base);
    }
    return this.agent.request({
      origin: base.origin,
      path: `${base.prefix}${path}`,
      method,
      body,
      signal,
      headers: body === undefined ? {} : { "content-type": "application/json" },
    });
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}
