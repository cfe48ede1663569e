/**
 * A backend that answers with an error status (a prompt longer than the context, a bad sampling value)
 * hands back an OpenAI error body; dialects that re-encode responses (Ollama here, and LM Studio, which imports this module) turn it
 * into a GatewayError so each renders it in its own format, with the backend's message.
 */
import { type ErrorCode, GatewayError } from "../../errors/index.js";
import type { Endpoint, Exchange, InferenceService } from "../../gateway/inference.js";
import type { Cancellation } from "../../lifecycle/cancellation.js";

export class UpstreamFailure extends GatewayError {
  constructor(
    code: ErrorCode,
    message: string,
    /** The backend's own code, e.g. `context_length_exceeded`. */
    readonly upstreamCode: string | null,
    readonly upstreamStatus: number,
  ) {
    super(code, message);
  }
}

function codeFor(status: number): ErrorCode {
  if (status === 413) return "payload_too_large";
  if (status === 429) return "rate_limit_exceeded";
  if (status === 503) return "service_unavailable";
  if (status >= 400 && status < 500) return "invalid_request";
  return "upstream_error";
}

/** Reads the error body of a failed exchange (and releases nothing: the caller does). */
export async function upstreamFailure(exchange: Exchange): Promise<UpstreamFailure> {
  const status = exchange.response.statusCode;
  let text = "";
  try {
    text = await exchange.response.body.text();
  } catch {
    // The body is gone; the status says enough.
  }
  let message = text.trim() || `The backend for '${exchange.entry.id}' answered ${status}.`;
  let upstreamCode: string | null = null;
  try {
    const parsed = JSON.parse(text) as { error?: unknown };
    const error = parsed.error;
    if (typeof error === "string") message = error;
    else if (error !== null && typeof error === "object") {
      const e = error as { message?: unknown; code?: unknown };
      if (typeof e.message === "string") message = e.message;
      if (typeof e.code === "string") upstreamCode = e.code;
    }
  } catch {
    // Not JSON: keep the text.
  }
  return new UpstreamFailure(codeFor(status), message, upstreamCode, status);
}

/** `inference.send`, with an error status from the backend thrown as an UpstreamFailure (slot released). */
export async function sendChecked(
  inference: InferenceService,
  endpoint: Endpoint,
  body: { model: string } & Record<string, unknown>,
  signal: Cancellation,
  keepAliveMs?: number | null,
): Promise<Exchange> {
  const exchange = await inference.send(endpoint, body, signal, keepAliveMs);
  if (exchange.response.statusCode < 400) return exchange;
  try {
    throw await upstreamFailure(exchange);
  } finally {
    exchange.release();
  }
}

/** A non-streamed JSON answer from the backend; releases the slot. */
export async function readJson<T>(exchange: Exchange): Promise<T> {
  try {
    return (await exchange.response.body.json()) as T;
  } catch (error) {
    throw new GatewayError("upstream_error", `The backend for '${exchange.entry.id}' sent an unreadable answer: ${(error as Error).message}`, { cause: error });
  } finally {
    exchange.release();
  }
}
