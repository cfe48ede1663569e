/** Turns anything a handler throws into a GatewayError; dialects then render it in their own format. */
import { z } from "zod";
import { GatewayError } from "../errors/index.js";
import { describeIssues } from "../protocol/openai.js";

export function toGatewayError(error: unknown): GatewayError {
  if (error instanceof GatewayError) return error;
  if (error instanceof z.ZodError) return new GatewayError("invalid_request", describeIssues(error));
  const status = (error as { statusCode?: number }).statusCode;
  const message = (error as Error).message ?? String(error);
  if (status === 413) return new GatewayError("payload_too_large", `Request body is too large: ${message}`);
  if (status !== undefined && status >= 400 && status < 500) {
    // Fastify's body parser errors (malformed JSON, empty body, bad content type) land here.
    return new GatewayError("invalid_request", message.replace(/^Body is not valid JSON but content-type is set to 'application\/json'$/, "Request body is not valid JSON"));
  }
  return new GatewayError("server_error", "Internal server error", { cause: error });
}

export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  if (body === undefined || body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new GatewayError("invalid_request", "Request body must be a JSON object");
  }
  const result = schema.safeParse(body);
  if (!result.success) throw new GatewayError("invalid_request", describeIssues(result.error));
  return result.data;
}
