/** OpenAI's error envelope; openai-node maps the status to its error classes and reads `code`. */
import { type ErrorCode, GatewayError } from "../../errors/index.js";
import type { OpenAIErrorBody } from "../../protocol/openai.js";

const TYPES: Record<ErrorCode, string> = {
  model_not_found: "invalid_request_error",
  model_not_loaded: "invalid_request_error",
  invalid_request: "invalid_request_error",
  invalid_api_key: "invalid_request_error",
  payload_too_large: "invalid_request_error",
  rate_limit_exceeded: "rate_limit_error",
  server_error: "server_error",
  upstream_error: "server_error",
  service_unavailable: "service_unavailable",
};

export function openAIError(error: GatewayError): OpenAIErrorBody {
  return { error: { message: error.message, type: TYPES[error.code], param: error.param, code: error.code } };
}

export const openAIStreamError = (message: string): string =>
  `data: ${JSON.stringify(openAIError(new GatewayError("upstream_error", message)))}\n\n`;
