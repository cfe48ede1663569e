/**
 * The one internal request path every dialect uses: resolve the model, lease a ready backend,
 * forward the (already translated) OpenAI-shaped body. Dialects never touch processes.
 */
import type { Catalog, ModelEntry } from "../catalog/catalog.js";
import { GatewayError, invalidRequest, modelNotFound } from "../errors/index.js";
import type { Lease, Lifecycle } from "../lifecycle/lifecycle.js";
import type { UpstreamClient, UpstreamResponse } from "../upstream/client.js";

export type Endpoint = "chat" | "completions" | "embeddings";

const UPSTREAM_PATH: Record<Endpoint, string> = {
  chat: "/v1/chat/completions",
  completions: "/v1/completions",
  embeddings: "/v1/embeddings",
};

export interface Exchange {
  entry: ModelEntry;
  response: UpstreamResponse;
  /** Frees the backend slot; call once the client's response has ended, whatever happened. */
  release(): void;
}

export class InferenceService {
  constructor(
    private readonly catalog: Catalog,
    private readonly lifecycle: Lifecycle,
    private readonly upstream: UpstreamClient,
  ) {}

  resolve(name: string): ModelEntry {
    const entry = this.catalog.resolve(name);
    if (!entry) throw modelNotFound(name);
    return entry;
  }

  async send(
    endpoint: Endpoint,
    body: { model: string } & Record<string, unknown>,
    signal: AbortSignal,
    keepAliveMs?: number | null,
  ): Promise<Exchange> {
    const entry = this.resolve(body.model);
    if (entry.gguf?.isEmbedding && endpoint !== "embeddings") {
      throw invalidRequest(`Model '${entry.id}' is an embedding model; it serves /v1/embeddings only.`, "model");
    }
    const lease = await this.lifecycle.acquire(entry, { signal, keepAliveMs });
    return this.forward(lease, endpoint, { ...body, model: entry.upstreamModel }, signal);
  }

  private async forward(lease: Lease, endpoint: Endpoint, body: Record<string, unknown>, signal: AbortSignal): Promise<Exchange> {
    try {
      const response = await this.upstream.request({ baseUrl: lease.baseUrl, path: UPSTREAM_PATH[endpoint], body: JSON.stringify(body), signal });
      return { entry: lease.entry, response, release: lease.release };
    } catch (error) {
      lease.release();
      if (signal.aborted) throw error;
      throw new GatewayError("upstream_error", `The backend for '${lease.entry.id}' did not answer: ${(error as Error).message}`, { cause: error });
    }
  }
}
