/** `POST /v1/embeddings`. */
import { describeIssues, embeddingRequestSchema, type EmbeddingResponse } from "../../protocol/openai.js";
import { embed, embeddingInputs, toBase64 } from "../embeddings.js";
import { badRequest } from "../errors.js";
import { sendJson, type RouteHandler, type Routes } from "../http-server.js";
import type { RunnerState } from "../runner-state.js";

export function embeddingRoutes(state: RunnerState): Routes {
  const handler: RouteHandler = async ({ body, res, note }) => {
    const engine = state.ready();
    const parsed = embeddingRequestSchema.safeParse(body);
    if (!parsed.success) throw badRequest(describeIssues(parsed.error));
    const request = parsed.data;
    const { vectors, promptTokens } = await embed(engine, embeddingInputs(engine, request.input));
    const base64 = request.encoding_format === "base64";
    const response: EmbeddingResponse = {
      object: "list",
      data: vectors.map((vector, index) => ({ object: "embedding", index, embedding: base64 ? toBase64(vector) : vector })),
      model: request.model,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    };
    note(`inputs=${vectors.length} prompt=${promptTokens}`);
    sendJson(res, 200, response);
  };
  return { "POST /v1/embeddings": handler, "POST /embeddings": handler };
}
