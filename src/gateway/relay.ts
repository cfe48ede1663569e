/**
 * Byte-for-byte pass-through of an upstream response to the client: each chunk is written as it
 * arrives (streams are flushed per event), backpressure is respected, and the backend slot is
 * released whatever happens.
 */
import type { ServerResponse } from "node:http";
import { writeWithBackpressure } from "./backpressure.js";
import type { Exchange } from "./inference.js";

export interface RelayOptions {
  /** How this dialect reports an error once a stream has started (a status can no longer be sent). */
  streamError(message: string): string;
  /** How long a client may leave a full socket unread before the response is abandoned. */
  stallMs: number;
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
    for await (const chunk of response.body) {
      const full = writeWithBackpressure(res, chunk, options.stallMs);
      if (full) await full;
      if (res.destroyed) break;
    }
    res.end();
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
