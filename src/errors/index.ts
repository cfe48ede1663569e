/**
 * One error base for the whole gateway. Callers match on `code`; only dialects turn an error into
 * wire format, so the same failure reads as OpenAI's `{error:{...}}` on /v1 and as Ollama's
 * `{error:"..."}` on /api.
 */
export const ErrorCodes = {
  model_not_found: 404,
  model_not_loaded: 400,
  invalid_request: 400,
  invalid_api_key: 401,
  payload_too_large: 413,
  rate_limit_exceeded: 429,
  server_error: 500,
  upstream_error: 502,
  service_unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export interface GatewayErrorOptions {
  cause?: unknown;
  /** The request field the error is about (OpenAI's `param`). */
  param?: string | null;
  /** Seconds a client should wait before retrying (sent as `Retry-After`). */
  retryAfter?: number;
}

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly param: string | null;
  readonly retryAfter: number | undefined;

  constructor(code: ErrorCode, message: string, options: GatewayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GatewayError";
    this.code = code;
    this.statusCode = ErrorCodes[code];
    this.param = options.param ?? null;
    this.retryAfter = options.retryAfter;
  }
}

export function isGatewayError(value: unknown): value is GatewayError {
  return value instanceof GatewayError;
}

export const modelNotFound = (id: string): GatewayError =>
  new GatewayError("model_not_found", `The model '${id}' was not found.`, { param: "model" });

export const invalidRequest = (message: string, param: string | null = null): GatewayError =>
  new GatewayError("invalid_request", message, { param });
