/** `GET /metrics`: Prometheus text exposition format 0.0.4, on both listeners. */
import type { FastifyInstance } from "fastify";
import type { GatewayMetrics } from "./metrics.js";

export async function metricsRoutes(app: FastifyInstance, { metrics }: { metrics: GatewayMetrics }): Promise<void> {
  app.get("/metrics", async (_request, reply) => {
    const text = await metrics.render();
    return reply.header("cache-control", "no-store").type(metrics.contentType()).send(text);
  });
}
