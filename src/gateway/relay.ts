/**
 * Byte-for-byte pass-through of an upstream response to the client: each chunk is written as it
 * arrives (streams are flushed per event), backpressure is respected, and the backend slot is
 * released whatever happens.
 */
import type { ServerResponse } from "node:http";
import { writeWithBackpressure } from "./backpressure.js";
import type { Exchange } from "./inference.js";

type UpstreamBody = Exchange["response"]["body"];

export interface RelayOptions {
  /** How this dialect reports an error once a stream has started (a status can no longer be sent). */
  streamError(message: string): string;
  /** How long a client may leave a full socket unread before the response is abandoned. */
  stallMs: number;
}

/**
 * Copies `body` to `res` chunk by chunk with 'data' events: `for await` over a stream costs an
 * iterator step, a promise and a microtask per chunk, which on a token stream is per token.
 * Resolves at the body's end or when the client is gone; rejects when the body fails.
 */
function pump(body: UpstreamBody, res: ServerResponse, stallMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const finish = (error?: Error) => {
      body.off("data", onData);
      body.off("end", onEnd);
      body.off("error", onError);
      res.off("close", onClose);
      if (error) reject(error);
      else resolve();
    };
    const onData = (chunk: Buffer) => {
      if (res.destroyed) return; // 'close' follows and ends the pump
      const full = writeWithBackpressure(res, chunk, stallMs);
      if (!full) return;
      body.pause();
      void full.then(() => {
        if (!res.destroyed) body.resume();
      });
    };
    const onEnd = () => finish();
    const onError = (error: Error) => finish(error);
    // The client went away: stop reading; the caller's catch sees a destroyed response.
    const onClose = () => {
      if (res.writableFinished) return;
      finish(new Error("the client closed the connection"));
    };
    body.on("data", onData);
    body.once("end", onEnd);
    body.once("error", onError);
    res.once("close", onClose);
  });
}

export async function relay(res: ServerResponse, exchange: Exchange, options: RelayOptions): Promise<void> {
  const { response } = exchange;
  const contentType = String(response.headers["content-type"] ?? "application/json");
  const streaming = contentType.includes("text/event-stream");
  const headers: Record<string, string> = { "content-type": contentType };
  if (streaming) {
    headers["cache-control"] = "no-cache";
    headers["x-accel-buffering"] = "no";
  } else if (response.headers["content-length"] !== undefined) {
    headers["content-length"] = String(response.headers["content-length"]);
  }
  try {
    res.writeHead(response.statusCode, headers);
    if (streaming) res.flushHeaders();
    await pump(response.body, res, options.stallMs);
    if (!res.destroyed) res.end();
  } catch (error) {
    if (res.destroyed || res.writableEnded) {
      response.body.destroy();
    } else if (streaming) {
      res.end(options.streamError(`The backend for '${exchange.entry.id}' failed mid-stream: ${(error as Error).message}`));
    } else {
      res.destroy(error as Error);
    }
  } finally {
    exchange.release();
  }
}
