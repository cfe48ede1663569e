/** `/health` and `/v1/models`: what the gateway polls to learn the runner is up and what it serves. */
import { sendJson, type Routes } from "../http-server.js";
import type { RunnerState } from "../runner-state.js";

export function metaRoutes(state: RunnerState): Routes {
  const health = ({ res }: { res: Parameters<typeof sendJson>[0] }): void => {
    if (state.engine === undefined) {
      // llama-server's exact loading answer; the gateway's readiness probe matches on the status code.
      sendJson(res, 503, { error: { code: 503, message: "Loading model", type: "unavailable_error" } });
    } else {
      sendJson(res, 200, { status: "ok" });
    }
  };
  const models = ({ res }: { res: Parameters<typeof sendJson>[0] }): void => {
    const engine = state.ready();
    sendJson(res, 200, {
      object: "list",
      data: [
        {
          id: state.alias,
          object: "model",
          created: state.created,
          owned_by: "llama-runner",
          // llama-server's extra block; clients ignore it, the gateway can read the real context from it.
          meta: {
            n_ctx: engine.contextSize,
            n_ctx_train: engine.model.trainContextSize,
            n_embd: engine.model.embeddingVectorSize,
            size: engine.model.size,
          },
        },
      ],
    });
  };
  return {
    "GET /health": health,
    "GET /v1/health": health,
    "GET /v1/models": models,
    "GET /models": models,
  };
}
