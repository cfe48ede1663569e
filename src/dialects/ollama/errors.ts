/**
 * Ollama's error wire format, `{"error":"<string>"}` with Ollama's statuses and messages
 * (server/routes.go). The gateway's errors keep their codes; only the rendering is Ollama's.
 */
import { GatewayError } from "../../errors/index.js";

/** Chat, generate and embed on an unknown model (routes.go `handleScheduleError`). */
export const notFoundTryPulling = (name: string): GatewayError =>
  new GatewayError("model_not_found", `model ${JSON.stringify(name)} not found, try pulling it first`, { param: "model" });

/** Show and delete on an unknown model. */
export const notFoundQuoted = (name: string): GatewayError => new GatewayError("model_not_found", `model '${name}' not found`, { param: "model" });

export const missingModel = (): GatewayError => new GatewayError("invalid_request", "model is required", { param: "model" });

export function ollamaError(error: GatewayError): { error: string } {
  return { error: error.message };
}

/** The line that ends a stream that failed after its status was sent (docs/api/errors.mdx). */
export const ollamaStreamError = (message: string): string => `${JSON.stringify({ error: message })}\n`;
