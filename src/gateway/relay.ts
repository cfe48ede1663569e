/**
 * Byte-for-byte pass-through of a backend's response to the client: undici hands each chunk straight to
 * the client's socket (no stream in between, so a token costs one write), backpressure pauses the
 * backend's socket, and the response ends however it ends without leaking the backend request.
 */
import type { ServerResponse } from "node:http";
import type { Dispatcher } from "undici";
import { writeWithBackpressure } from "./backpressure.js";

export interface RelayOptions {
  /** The client's response; nothing is written to it before the backend's status is known. */
  res: ServerResponse;
  /** Called once, just before the first byte goes to the client (Fastify: `reply.hijack()`). */
  onStart(): void;
  /** How this dialect reports an error once a stream has started (a status can no longer be sent). */
  streamError(message: string): string;
  /** How long a client may leave a full socket unread before the response is abandoned. */
  stallMs: number;
}

const CONTENT_TYPE = "content-type";
const CONTENT_LENGTH = "content-length";

/** The response headers the client gets: the type, and the length of a JSON answer. */
function clientHeaders(raw: Buffer[]): { headers: Record<string, string>; streaming: boolean } {
  let contentType = "application/json";
  let contentLength: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as Buffer;
    // Lengths first: most headers are neither, and comparing lengths costs no string.
    if (name.length === CONTENT_TYPE.length && name.toString("latin1").toLowerCase() === CONTENT_TYPE) contentType = (raw[i + 1] as Buffer).toString("latin1");
    else if (name.length === CONTENT_LENGTH.length && name.toString("latin1").toLowerCase() === CONTENT_LENGTH) contentLength = (raw[i + 1] as Buffer).toString("latin1");
  }
  const streaming = contentType.includes("text/event-stream");
  const headers: Record<string, string> = { "content-type": contentType };
  if (streaming) {
    headers["cache-control"] = "no-cache";
    headers["x-accel-buffering"] = "no";
  } else if (contentLength !== undefined) {
    headers["content-length"] = contentLength;
  }
  return { headers, streaming };
}

/**
 * One response's relay, as undici's handler. undici 7's core drives handlers through these
 * (deprecated-typed) callbacks; a handler of its newer controller API would be wrapped once more and get
 * its headers parsed into an object first.
 */
class ResponseRelay implements Dispatcher.DispatchHandler {
  private abortUpstream: ((error?: Error) => void) | undefined;
  private resumeUpstream: (() => void) | undefined;
  private started = false;
  private streaming = false;
  private clientGone = false;
  private settled = false;

  constructor(
    private readonly options: RelayOptions,
    private readonly describe: string,
    private readonly resolve: () => void,
    private readonly reject: (error: Error) => void,
  ) {
    // A client that left while its request waited for a backend has already closed: the backend request
    // is aborted as soon as it starts.
    if (options.res.destroyed) this.clientGone = true;
    else options.res.once("close", this.onClientClose);
  }

  onConnect(abort: (error?: Error) => void): void {
    this.abortUpstream = abort;
    if (this.clientGone) abort(new Error("the client closed the connection"));
  }

  onHeaders(statusCode: number, raw: Buffer[], resume: () => void): boolean {
    // 1xx: informational, the real status follows.
    if (statusCode < 200) return true;
    this.resumeUpstream = resume;
    const { res } = this.options;
    const { headers, streaming } = clientHeaders(raw);
    this.streaming = streaming;
    this.started = true;
    this.options.onStart();
    res.writeHead(statusCode, headers);
    if (streaming) res.flushHeaders();
    return true;
  }

  onData(chunk: Buffer): boolean {
    const { res } = this.options;
    // The client is gone: its 'close' aborts the backend request.
    if (res.destroyed) return true;
    // A full socket pauses the backend's; a client that stays unread past stallMs is cut off there.
    const full = writeWithBackpressure(res, chunk, this.options.stallMs);
    if (!full) return true;
    void full.then(() => {
      if (!res.destroyed && !this.settled) this.resumeUpstream?.();
    });
    return false;
  }

  onComplete(): void {
    const { res } = this.options;
    if (!res.destroyed) res.end();
    this.settle();
  }

  onError(error: Error): void {
    const { res } = this.options;
    if (!this.started) return this.settle(error);
    if (!res.destroyed && !res.writableEnded) {
      if (this.streaming) res.end(this.options.streamError(`The backend for '${this.describe}' failed mid-stream: ${error.message}`));
      else res.destroy(error);
    }
    this.settle();
  }

  private readonly onClientClose = () => {
    if (this.options.res.writableFinished) return;
    this.clientGone = true;
    this.abortUpstream?.(new Error("the client closed the connection"));
  };

  private settle(error?: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.options.res.off("close", this.onClientClose);
    if (error) this.reject(error);
    else this.resolve();
  }
}

/**
 * Relays the response of the request that `dispatch` sends. Resolves when the client's response has
 * ended, whatever happened once it started; rejects with the backend's error when nothing was written
 * yet, so the caller can still answer with a status (or retry).
 */
export function relayResponse(dispatch: (handler: Dispatcher.DispatchHandler) => void, describe: string, options: RelayOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    dispatch(new ResponseRelay(options, describe, resolve, reject));
  });
}
