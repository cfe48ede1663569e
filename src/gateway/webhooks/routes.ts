/**
 * The webhook API, on both listeners, in OpenAI's error format:
 *
 *   POST   /v1/webhooks/register        {url, events, description?} → 201, the webhook with its signing `secret`
 *   GET    /v1/webhooks                 every webhook (without secrets) and its pending deliveries
 *   GET    /v1/webhooks/{id}            one webhook
 *   DELETE /v1/webhooks/{id}            removes it with its queue and delivery log
 *   GET    /v1/webhooks/{id}/deliveries the delivery log, newest first (?limit=50, ?status=pending|delivered|failed)
 */
import type { FastifyInstance, FastifyReply } from "fastify";
import { GatewayError } from "../../errors/index.js";
import type { RegisterInput, WebhookService } from "./service.js";
import { SIGNATURE_HEADER } from "./signature.js";
import type { DeliveryStatus } from "./store.js";

const STATUSES = new Set<DeliveryStatus>(["pending", "delivered", "failed"]);
const MAX_LIMIT = 1000;

function notFound(reply: FastifyReply, id: string): FastifyReply {
  return reply.code(404).send({
    error: { message: `No webhook with id '${id}'.`, type: "invalid_request_error", param: "id", code: "webhook_not_found" },
  });
}

export async function webhookRoutes(app: FastifyInstance, { webhooks }: { webhooks: WebhookService }): Promise<void> {
  app.post("/v1/webhooks/register", async (request, reply) => {
    const body = request.body;
    if (body === undefined || body === null || typeof body !== "object" || Array.isArray(body)) {
      throw new GatewayError("invalid_request", "Request body must be a JSON object: {\"url\": \"https://...\", \"events\": [...]}");
    }
    const webhook = webhooks.register(body as RegisterInput);
    return reply.code(201).send({
      ...webhook,
      signature: { header: SIGNATURE_HEADER, algorithm: "hmac-sha256", format: "sha256=<hex of HMAC-SHA256(secret, raw body)>" },
    });
  });

  app.get("/v1/webhooks", async () => ({ object: "list", data: webhooks.list() }));

  app.get<{ Params: { id: string } }>("/v1/webhooks/:id", async (request, reply) => {
    const webhook = webhooks.get(request.params.id);
    return webhook ?? notFound(reply, request.params.id);
  });

  app.delete<{ Params: { id: string } }>("/v1/webhooks/:id", async (request, reply) => {
    if (!webhooks.delete(request.params.id)) return notFound(reply, request.params.id);
    return { id: request.params.id, object: "webhook", deleted: true };
  });

  app.get<{ Params: { id: string }; Querystring: { limit?: string; status?: string } }>("/v1/webhooks/:id/deliveries", async (request, reply) => {
    const { id } = request.params;
    if (!webhooks.get(id)) return notFound(reply, id);
    const { limit: rawLimit, status } = request.query;
    const limit = rawLimit === undefined || rawLimit === "" ? 50 : Number(rawLimit);
    if (!Number.isInteger(limit) || limit < 1) throw new GatewayError("invalid_request", "limit must be a positive integer", { param: "limit" });
    if (status !== undefined && status !== "" && !STATUSES.has(status as DeliveryStatus)) {
      throw new GatewayError("invalid_request", `status must be one of ${[...STATUSES].join(", ")}`, { param: "status" });
    }
    const data = webhooks.deliveries(id, Math.min(limit, MAX_LIMIT), status ? (status as DeliveryStatus) : undefined);
    return { object: "list", webhook_id: id, data };
  });
}
