/**
 * Token accounting on the request path itself: every generation request to a backend goes through one
 * handler wrapper that sees the backend's status and body as undici delivers them. The tail of the body
 * carries the backend's `usage` or `timings` (llama-server and our runner always send timings), from
 * which tokens are counted; for backends that report neither, content events of a stream are counted as
 * they pass.
 *
 * A wrapper, not undici's diagnostics channels: subscribing to those makes undici publish five messages
 * for every request it sends (webhooks included), which cost more than the accounting itself.
 */
import type { Dispatcher } from "undici";

/** Who is counted: the catalogue id and the OpenAI endpoint of a generation request. */
export interface Accounted {
  model: string;
  endpoint: "chat" | "completions";
}

/** What the accounting reports (the metrics implement it). */
export interface UpstreamObserver {
  /** How to count a model's responses on an endpoint, by status: asked once per model and endpoint. */
  responseCounter(model: string, endpoint: Accounted["endpoint"]): (status: number | "error") => void;
  onTokens(model: string, completion: number, prompt: number): void;
}

const TAIL_CHUNKS = 3;
const TAIL_BYTES = 16 * 1024;
const CONTENT = Buffer.from('"content":"');
const TEXT = Buffer.from('"text":"');
const QUOTE = 0x22;

/**
 * Occurrences of `needle` followed by something other than a closing quote: streamed pieces that carry
 * text. One needle per endpoint (chat deltas carry `"content":"`, completions `"text":"`), so a chunk is
 * scanned once.
 */
function countContent(chunk: Buffer, needle: Buffer): number {
  let n = 0;
  let at = chunk.indexOf(needle);
  while (at !== -1) {
    const next = at + needle.length;
    if (next < chunk.length && chunk[next] !== QUOTE) n++;
    at = chunk.indexOf(needle, next);
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

/**
 * Counts one response while passing every callback on to the handler that consumes it. undici 7's core
 * still drives handlers through these (deprecated-typed) callbacks, and its own request() handler uses
 * them; a handler of the newer controller API gets wrapped once more and its headers parsed into an object.
 */
class AccountingHandler implements Dispatcher.DispatchHandler {
  private status = 0;
  /** Known at the first chunk of the body: an SSE stream, not a JSON document. */
  private streaming = false;
  /** The last chunks of the body (references, not copies): the usage or timings are in the last event. */
  private readonly tail: Buffer[] = [];
  private contentEvents = 0;

  constructor(
    private readonly inner: Dispatcher.DispatchHandler,
    private readonly model: string,
    private readonly count: (status: number | "error") => void,
    private readonly observer: UpstreamObserver,
    private readonly contentNeedle: Buffer,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    this.inner.onConnect?.(abort);
  }

  onHeaders(statusCode: number, headers: Buffer[], resume: () => void, statusText: string): boolean {
    this.status = statusCode;
    this.count(statusCode);
    return this.inner.onHeaders?.(statusCode, headers, resume, statusText) ?? true;
  }

  onData(chunk: Buffer): boolean {
    if (this.status < 400) {
      if (this.tail.length === 0 && this.contentEvents === 0) this.streaming = startsLikeSse(chunk);
      if (this.streaming) this.contentEvents += countContent(chunk, this.contentNeedle);
      this.tail.push(chunk);
      if (this.tail.length > TAIL_CHUNKS) this.tail.shift();
    }
    return this.inner.onData?.(chunk) ?? true;
  }

  onComplete(trailers: string[] | null): void {
    if (this.status > 0 && this.status < 400) this.report(true);
    this.inner.onComplete?.(trailers);
  }

  onError(error: Error): void {
    // A stream cut short (the client went away, the backend died) still generated what it sent.
    if (this.status > 0 && this.status < 400) this.report(false);
    else if (this.status === 0) this.count("error");
    this.inner.onError?.(error);
  }

  private report(complete: boolean): void {
    const tail = tailText(this.tail);
    const completion = lastNumber(tail, "completion_tokens") ?? lastNumber(tail, "predicted_n") ?? (this.streaming ? this.contentEvents : 0);
    const prompt = complete ? (lastNumber(tail, "prompt_tokens") ?? lastNumber(tail, "prompt_n") ?? 0) : 0;
    this.observer.onTokens(this.model, completion, prompt);
  }
}

/** Wraps the handlers of accounted requests; the counters are found once per model and endpoint. */
export class UpstreamAccounting {
  private readonly counters = new Map<string, Record<Accounted["endpoint"], (status: number | "error") => void>>();

  constructor(private readonly observer: UpstreamObserver) {}

  wrap(handler: Dispatcher.DispatchHandler, { model, endpoint }: Accounted): Dispatcher.DispatchHandler {
    let counters = this.counters.get(model);
    if (!counters) {
      counters = { chat: this.observer.responseCounter(model, "chat"), completions: this.observer.responseCounter(model, "completions") };
      this.counters.set(model, counters);
    }
    return new AccountingHandler(handler, model, counters[endpoint], this.observer, endpoint === "chat" ? CONTENT : TEXT);
  }
}
