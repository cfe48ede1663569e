/**
 * The one internal request path every dialect uses: resolve the model, lease a ready backend,
 * forward the (already translated) OpenAI-shaped body. Dialects never touch processes.
 */
import type { Catalog, ModelEntry } from "../catalog/catalog.js";
import { GatewayError, invalidRequest, modelNotFound } from "../errors/index.js";
import type { Lease, Lifecycle } from "../lifecycle/lifecycle.js";
import type { UpstreamClient, UpstreamRequest, UpstreamResponse } from "../upstream/client.js";
import { type RelayOptions, relayResponse } from "./relay.js";
import type { Cancellation } from "../lifecycle/cancellation.js";

/**
 * The OpenAI endpoints, and llama-server's own tokenizer and template endpoints (which the embedded runner
 * serves too), for dialects that work with tokens, such as Ollama's generate `context`.
 */
export type Endpoint = "chat" | "completions" | "embeddings" | "tokenize" | "apply-template";

const UPSTREAM_PATH: Record<Endpoint, string> = {
  chat: "/v1/chat/completions",
  completions: "/v1/completions",
  embeddings: "/v1/embeddings",
  tokenize: "/tokenize",
  "apply-template": "/apply-template",
};

const GENERATING = new Set<Endpoint>(["chat", "completions", "apply-template"]);

export interface Exchange {
  entry: ModelEntry;
  response: UpstreamResponse;
  /** Frees the backend slot; call once the client's response has ended, whatever happened. */
  release(): void;
  /**
   * Another request to the same backend instance under this exchange's slot, before it is released:
   * asking for a second slot of the model while holding one could wait for ever on a one-slot model.
   */
  followUp(endpoint: Endpoint, body: Record<string, unknown>, signal: Cancellation): Promise<UpstreamResponse>;
}

export class InferenceService {
  constructor(
    private readonly catalog: Catalog,
    private readonly lifecycle: Lifecycle,
    private readonly upstream: UpstreamClient,
    /** Speech-to-text models: they share the catalogue but serve only /v1/audio. */
    private readonly speechModels: ReadonlySet<string> = new Set(),
  ) {}

  resolve(name: string): ModelEntry {
    const entry = this.catalog.resolve(name);
    if (!entry) throw modelNotFound(name);
    return entry;
  }

  /** Sends the request and hands back the backend's response as a stream, for dialects that read or translate it. */
  async send(
    endpoint: Endpoint,
    body: { model: string } & Record<string, unknown>,
    signal: Cancellation,
    keepAliveMs?: number | null,
  ): Promise<Exchange> {
    const { entry, payload } = this.prepare(endpoint, body);
    return this.withLease(entry, signal, keepAliveMs, (lease) => this.forward(lease, endpoint, payload, signal));
  }

  /**
   * Sends the request and relays the backend's response to the client as it is. Resolves once the client's
   * response has ended; rejects (nothing written yet) when no backend answered.
   */
  async relay(
    endpoint: Endpoint,
    body: { model: string } & Record<string, unknown>,
    signal: Cancellation,
    options: RelayOptions & {
      keepAliveMs?: number | null;
      /** The body exactly as the client sent it, when `body` is that body unchanged. */
      raw?: string | undefined;
    },
  ): Promise<void> {
    const { entry, payload } = this.prepare(endpoint, body, options.raw);
    await this.withLease(entry, signal, options.keepAliveMs, async (lease) => {
      try {
        await relayResponse((handler) => this.upstream.dispatch(this.target(lease, endpoint, payload), handler), entry.id, options);
      } finally {
        lease.release();
      }
    });
  }

  /** The entry and the body for its backend; refuses requests the model cannot serve, before any load. */
  private prepare(endpoint: Endpoint, body: { model: string } & Record<string, unknown>, raw?: string): { entry: ModelEntry; payload: string } {
    const entry = this.resolve(body.model);
    if (this.speechModels.has(entry.id)) {
      // Refused before a load: a chat request must not start (or evict a chat model for) a whisper runner.
      throw invalidRequest(`Model '${entry.id}' is a speech-to-text model; use /v1/audio/transcriptions or /v1/audio/translations.`, "model");
    }
    if (entry.gguf?.isEmbedding && GENERATING.has(endpoint)) {
      throw invalidRequest(`Model '${entry.id}' is an embedding model; it serves /v1/embeddings only.`, "model");
    }
    if (!entry.autoStart && this.lifecycle.status(entry.id).state !== "ready") {
      throw new GatewayError("model_not_loaded", `Model '${entry.id}' is not loaded and does not load on demand; start it with POST /v1/models/${encodeURIComponent(entry.id)}/start.`, { param: "model" });
    }
    // When the backend knows the model by the name the client used, the client's own bytes go as they
    // are: re-serialising a long prompt costs more than everything else the gateway does with it.
    const payload = raw !== undefined && body.model === entry.upstreamModel ? raw : JSON.stringify({ ...body, model: entry.upstreamModel });
    return { entry, payload };
  }

  /**
   * Runs `use` with a lease on a ready backend. A backend that died a moment ago, before the gateway saw
   * its exit, refused the connection: nothing was generated yet, so `use` runs once more with the fresh
   * instance that replaces it.
   */
  private async withLease<T>(entry: ModelEntry, signal: Cancellation, keepAliveMs: number | null | undefined, use: (lease: Lease) => Promise<T>): Promise<T> {
    const lease = await this.lifecycle.acquire(entry, { signal, keepAliveMs });
    try {
      return await use(lease);
    } catch (error) {
      if (signal.aborted || !isConnectionFailure(error) || !(await settlesWithin(lease.gone, RETRY_WINDOW_MS))) throw wrap(error, entry);
      return use(await this.lifecycle.acquire(entry, { signal, keepAliveMs })).catch((e: unknown) => {
        throw wrap(e, entry);
      });
    }
  }

  private target({ baseUrl, entry }: Lease, endpoint: Endpoint, body: string): UpstreamRequest {
    return { baseUrl, path: UPSTREAM_PATH[endpoint], body, account: endpoint === "chat" || endpoint === "completions" ? { model: entry.id, endpoint } : undefined };
  }

  private async forward(lease: Lease, endpoint: Endpoint, payload: string, signal: Cancellation): Promise<Exchange> {
    try {
      const response = await this.upstream.request(this.target(lease, endpoint, payload), signal);
      const { entry, baseUrl } = lease;
      return {
        entry,
        response,
        release: lease.release,
        followUp: (next, body, nextSignal) =>
          this.upstream.request({ baseUrl, path: UPSTREAM_PATH[next], body: JSON.stringify({ ...body, model: entry.upstreamModel }) }, nextSignal),
      };
    } catch (error) {
      lease.release();
      throw error;
    }
  }
}

const RETRY_WINDOW_MS = 500;
const CONNECTION_FAILURES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "UND_ERR_SOCKET", "UND_ERR_CLOSED"]);

function isConnectionFailure(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return code !== undefined && CONNECTION_FAILURES.has(code);
}

function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    promise.then(
      () => (clearTimeout(timer), resolve(true)),
      () => (clearTimeout(timer), resolve(true)),
    );
  });
}

function wrap(error: unknown, entry: ModelEntry): unknown {
  if (error instanceof GatewayError || (error as Error).name === "AbortError") return error;
  return new GatewayError("upstream_error", `The backend for '${entry.id}' did not answer: ${(error as Error).message}`, { cause: error });
}

