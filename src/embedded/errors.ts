/**
 * Errors the runner answers with. The runner is a llama-server look-alike, so its errors use the OpenAI
 * envelope that llama-server and the gateway's OpenAI dialect both understand; the gateway's own error
 * catalogue (src/errors) stays on the gateway side of the process boundary.
 */
import type { OpenAIErrorBody } from "../protocol/openai.js";

export type ApiErrorType =
  | "invalid_request_error"
  | "not_found_error"
  | "unavailable_error"
  | "server_error";

export class ApiError extends Error {
  readonly status: number;
  readonly type: ApiErrorType;
  readonly param: string | null;
  /** OpenAI's machine-readable code (e.g. `context_length_exceeded`); null when there is none. */
  readonly code: string | null;

  constructor(
    status: number,
    type: ApiErrorType,
    message: string,
    options: { param?: string | null; code?: string | null; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.param = options.param ?? null;
    this.code = options.code ?? null;
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null): ApiError =>
  new ApiError(400, "invalid_request_error", message, { param, code });

export const contextLengthExceeded = (promptTokens: number, contextSize: number): ApiError =>
  new ApiError(
    400,
    "invalid_request_error",
    `the request exceeds the available context size: the prompt has ${promptTokens} tokens and the context holds ${contextSize}`,
    { code: "context_length_exceeded" },
  );

export const notFound = (message = "File Not Found"): ApiError => new ApiError(404, "not_found_error", message);

/** Anything that is not already an ApiError is our fault, not the client's. */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ApiError(500, "server_error", message, { cause: error });
}
