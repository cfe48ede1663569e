/** The OpenAI API (`/v1/...`), served on both listeners. Bodies are validated, then relayed as they are. */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Catalog, ModelEntry } from "../../catalog/catalog.js";
import { modelNotFound } from "../../errors/index.js";
import { abortOnClientClose } from "../../gateway/client-abort.js";
import { parseBody } from "../../gateway/errors.js";
import type { Endpoint, InferenceService } from "../../gateway/inference.js";
import type { Lifecycle } from "../../lifecycle/lifecycle.js";
import { chatCompletionRequestSchema, completionRequestSchema, embeddingRequestSchema } from "../../protocol/openai.js";
import { openAIStreamError } from "./errors.js";

export interface OpenAIRoutesOptions {
  catalog: Catalog;
  lifecycle: Lifecycle;
  inference: InferenceService;
  /** How long a client may leave a full socket unread (config `timeouts.write_stall_s`), in ms. */
  stallMs: number;
}

export function modelObject(entry: ModelEntry, lifecycle: Lifecycle) {
  return {
    id: entry.id,
    object: "model" as const,
    created: entry.created,
    owned_by: "llama-runner",
    status: lifecycle.status(entry.id).state,
  };
}

export async function openAIRoutes(app: FastifyInstance, { catalog, lifecycle, inference, stallMs }: OpenAIRoutesOptions): Promise<void> {
  app.get("/v1/models", async () => ({
    object: "list",
    data: catalog.listed.map((entry) => modelObject(entry, lifecycle)),
  }));

  app.get<{ Params: { id: string } }>("/v1/models/:id", async (request) => {
    const entry = catalog.resolve(request.params.id);
    if (!entry) throw modelNotFound(request.params.id);
    return modelObject(entry, lifecycle);
  });

  const forward = (endpoint: Endpoint, body: { model: string } & Record<string, unknown>, request: FastifyRequest, reply: FastifyReply) =>
    inference.relay(endpoint, body, abortOnClientClose(reply.raw), {
      res: reply.raw,
      onStart: () => reply.hijack(),
      streamError: openAIStreamError,
      stallMs,
      raw: request.rawJson,
    });

  app.post("/v1/chat/completions", (request, reply) => forward("chat", parseBody(chatCompletionRequestSchema, request.body), request, reply));
  app.post("/v1/completions", (request, reply) => forward("completions", parseBody(completionRequestSchema, request.body), request, reply));
  app.post("/v1/embeddings", (request, reply) => forward("embeddings", parseBody(embeddingRequestSchema, request.body), request, reply));
}
