/**
 * Token accounting without touching the request path: undici publishes every request it makes on
 * `node:diagnostics_channel` (`undici:request:*`). Generation requests to a backend (known by its origin)
 * are followed to their end; the tail of the body carries the backend's `usage` or `timings`
 * (llama-server and our runner always send timings), from which tokens are counted. For backends that
 * report neither, content events of a stream are counted as they pass.
 *
 * The relay stays a byte-for-byte pass-through: per chunk this costs a WeakMap lookup and a short scan.
 */
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import type { Catalog } from "../../catalog/catalog.js";
import type { EventBus } from "../../events/bus.js";
import type { Lifecycle } from "../../lifecycle/lifecycle.js";

interface UndiciRequest {
  origin?: unknown;
  path?: unknown;
  method?: unknown;
}

interface Tracked {
  model: string;
  endpoint: "chat" | "completions";
  /** Counts this response by the backend's status. */
  count(status: number | "error"): void;
  /** Known at the first chunk of the body: an SSE stream, not a JSON document. */
  streaming: boolean;
  status: number;
  /** The last chunks of the body (references, not copies): the usage or timings are in the last event. */
  tail: Buffer[];
  contentEvents: number;
}

export interface UpstreamTrackerOptions {
  bus: EventBus;
  catalog: Catalog;
  lifecycle: Lifecycle;
  /** How to count a model's responses on an endpoint, by status: asked once per model and endpoint. */
  responseCounter(model: string, endpoint: string): (status: number | "error") => void;
  onTokens(model: string, completion: number, prompt: number): void;
}

const TAIL_CHUNKS = 3;
const TAIL_BYTES = 16 * 1024;
const REFRESH_MS = 1000;
const CONTENT = Buffer.from('"content":"');
const TEXT = Buffer.from('"text":"');
const QUOTE = 0x22;

function endpointOf(path: string): Tracked["endpoint"] | undefined {
  const bare = path.split("?")[0] ?? "";
  if (bare.endsWith("/v1/chat/completions")) return "chat";
  if (bare.endsWith("/v1/completions")) return "completions";
  return undefined;
}

/** Occurrences of `"content":"X` / `"text":"X` with X not a closing quote: streamed pieces that carry text. */
function countContent(chunk: Buffer): number {
  let n = 0;
  for (const needle of [CONTENT, TEXT]) {
    let at = chunk.indexOf(needle);
    while (at !== -1) {
      const next = at + needle.length;
      if (next < chunk.length && chunk[next] !== QUOTE) n++;
      at = chunk.indexOf(needle, next);
    }
  }
  return n;
}

/** The value of the last `"key": <digits>` in `text`; a scan, since building a RegExp per call costs more than the rest of the accounting. */
function lastNumber(text: string, key: string): number | undefined {
  const needle = `"${key}":`;
  for (let at = text.lastIndexOf(needle); at !== -1; at = at > 0 ? text.lastIndexOf(needle, at - 1) : -1) {
    let start = at + needle.length;
    while (text.charCodeAt(start) === 0x20) start++;
    let end = start;
    while (end < text.length && text.charCodeAt(end) >= 0x30 && text.charCodeAt(end) <= 0x39) end++;
    if (end > start) return Number(text.slice(start, end));
  }
  return undefined;
}

export class UpstreamTracker {
  private readonly tracked = new WeakMap<object, Tracked>();
  private readonly origins = new Map<string, string>();
  private readonly counters = new Map<string, Record<Tracked["endpoint"], Tracked["count"]>>();
  private refreshedAt = 0;
  private readonly unsubscribeBus: () => void;

  private readonly onCreate = (message: unknown) => {
    const request = (message as { request: UndiciRequest }).request;
    if (request.method !== "POST" || typeof request.path !== "string" || typeof request.origin !== "string") return;
    const endpoint = endpointOf(request.path);
    if (!endpoint) return;
    const model = this.modelFor(request.origin);
    if (model === undefined) return;
    let counters = this.counters.get(model);
    if (!counters) {
      counters = { chat: this.options.responseCounter(model, "chat"), completions: this.options.responseCounter(model, "completions") };
      this.counters.set(model, counters);
    }
    this.tracked.set(request, { model, endpoint, count: counters[endpoint], streaming: false, status: 0, tail: [], contentEvents: 0 });
  };

  private readonly onHeaders = (message: unknown) => {
    const { request, response } = message as { request: object; response: { statusCode: number } };
    const track = this.tracked.get(request);
    if (!track) return;
    track.status = response.statusCode;
    track.count(response.statusCode);
  };

  private readonly onChunk = (message: unknown) => {
    const { request, chunk } = message as { request: object; chunk: Buffer };
    const track = this.tracked.get(request);
    if (!track || track.status >= 400) return;
    if (track.tail.length === 0 && track.contentEvents === 0) track.streaming = startsLikeSse(chunk);
    if (track.streaming) track.contentEvents += countContent(chunk);
    track.tail.push(chunk);
    if (track.tail.length > TAIL_CHUNKS) track.tail.shift();
  };

  private readonly onComplete = (message: unknown) => {
    const { request } = message as { request: object };
    const track = this.tracked.get(request);
    if (!track) return;
    this.tracked.delete(request);
    if (track.status >= 400 || track.status === 0) return;
    const tail = tailText(track.tail);
    const completion = lastNumber(tail, "completion_tokens") ?? lastNumber(tail, "predicted_n") ?? (track.streaming ? track.contentEvents : 0);
    const prompt = lastNumber(tail, "prompt_tokens") ?? lastNumber(tail, "prompt_n") ?? 0;
    this.options.onTokens(track.model, completion, prompt);
  };

  private readonly onError = (message: unknown) => {
    const { request } = message as { request: object };
    const track = this.tracked.get(request);
    if (!track) return;
    this.tracked.delete(request);
    // A stream cut short (the client went away, the backend died) still generated what it sent.
    if (track.status > 0 && track.status < 400) {
      const tail = tailText(track.tail);
      const completion = lastNumber(tail, "completion_tokens") ?? lastNumber(tail, "predicted_n") ?? (track.streaming ? track.contentEvents : 0);
      this.options.onTokens(track.model, completion, 0);
    } else if (track.status === 0) {
      track.count("error");
    }
  };

  constructor(private readonly options: UpstreamTrackerOptions) {
    subscribe("undici:request:create", this.onCreate);
    subscribe("undici:request:headers", this.onHeaders);
    subscribe("undici:request:bodyChunkReceived", this.onChunk);
    subscribe("undici:request:trailers", this.onComplete);
    subscribe("undici:request:error", this.onError);
    // A freshly loaded backend is known before the first request reaches it.
    this.unsubscribeBus = options.bus.subscribe("model.started", ({ data }) => {
      if (data.port > 0) this.origins.set(`http://127.0.0.1:${data.port}`, data.model_id);
    });
  }

  close(): void {
    unsubscribe("undici:request:create", this.onCreate);
    unsubscribe("undici:request:headers", this.onHeaders);
    unsubscribe("undici:request:bodyChunkReceived", this.onChunk);
    unsubscribe("undici:request:trailers", this.onComplete);
    unsubscribe("undici:request:error", this.onError);
    this.unsubscribeBus();
  }

  /** Which model's backend listens at `origin` (undefined: not one of ours, e.g. a webhook receiver). */
  private modelFor(origin: string): string | undefined {
    const known = this.origins.get(origin);
    if (known !== undefined || Date.now() - this.refreshedAt < REFRESH_MS) return known;
    this.refreshedAt = Date.now();
    this.origins.clear();
    for (const entry of this.options.catalog.entries) {
      if (entry.url) {
        try {
          this.origins.set(new URL(entry.url).origin, entry.id);
        } catch {
          // Validated by the config schema; nothing to map otherwise.
        }
      }
      const port = this.options.lifecycle.status(entry.id).port;
      if (port !== undefined) {
        this.origins.set(`http://127.0.0.1:${port}`, entry.id);
        this.origins.set(`http://localhost:${port}`, entry.id);
      }
    }
    return this.origins.get(origin);
  }
}

function tailText(chunks: Buffer[]): string {
  const joined = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
  return joined.subarray(Math.max(0, joined.length - TAIL_BYTES)).toString("utf8");
}

/** A JSON answer starts with `{` (after any whitespace); an SSE stream with `data:`, `event:` or a `:` comment. */
function startsLikeSse(chunk: Buffer): boolean {
  for (const byte of chunk) {
    if (byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09) continue;
    return byte !== 0x7b && byte !== 0x5b;
  }
  return false;
}
