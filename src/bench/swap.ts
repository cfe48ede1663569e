/**
 * Section 4, swapping: two llama-server models, at most one loaded, clients alternating A B A B. The
 * gateway should collate: serve every waiting request of the loaded model before swapping, so it loads
 * no more often than the model changes in the order the requests were served.
 */
import type { Ctx } from "./context.js";
import { AUTH_HEADERS, startGateway } from "./gateway.js";
import { nowMs } from "./util.js";

export interface SwapResult {
  clients: number;
  requestsPerClient: number;
  requests: number;
  errors: number;
  wallMs: number;
  rps: number;
  /** Backend starts the gateway performed ("starting backend" log lines). */
  loads: number;
  /** Runs of one model in the order requests completed (each needs one load). */
  servedSegments: number;
  /** Runs of one model in the order requests were sent: what a swap per model change would cost. */
  sentSegments: number;
  /** No schedule can do with fewer: a client's consecutive requests name different models. */
  lowerBound: number;
}

const runs = (models: string[]) => models.reduce((n, m, i) => n + (i === 0 || models[i - 1] !== m ? 1 : 0), 0);

export async function swap(ctx: Ctx): Promise<SwapResult> {
  const { swapClients: clients, swapRequestsPerClient: perClient } = ctx.sizes;
  const parameters = { threads: 1, threads_batch: 1, parallel: 4, ctx_size: 2048 };
  const gateway = await startGateway({
    dir: ctx.dir,
    name: "swap",
    cpus: ctx.cores.servers,
    models: {
      "model-a": { model_path: ctx.modelPath, runtime: "llama-cpp", parameters },
      "model-b": { model_path: ctx.modelPath, runtime: "llama-cpp", parameters },
    },
    extra: { "llama-runtimes": { "llama-cpp": { runtime: ctx.llamaServer! } }, concurrentRunners: 1, max_queue: 1024 },
  });
  ctx.running.add(gateway);
  let loads = 0;
  gateway.child.onLine((line) => {
    if (line.includes('"msg":"starting backend"')) loads++;
  });
  const sent: { model: string; at: number }[] = [];
  const served: { model: string; at: number }[] = [];
  let errors = 0;
  const t0 = nowMs();
  try {
    await Promise.all(
      Array.from({ length: clients }, async (_, client) => {
        for (let i = 0; i < perClient; i++) {
          const model = (client + i) % 2 === 0 ? "model-a" : "model-b";
          sent.push({ model, at: nowMs() });
          const res = await fetch(`${gateway.url}/v1/chat/completions`, {
            method: "POST",
            headers: { ...AUTH_HEADERS, "content-type": "application/json" },
            body: JSON.stringify({ model, messages: [{ role: "user", content: "Hello" }], max_tokens: 1 }),
          });
          await res.arrayBuffer();
          if (res.status !== 200) errors++;
          else served.push({ model, at: nowMs() });
        }
      }),
    );
  } finally {
    ctx.running.delete(gateway);
    await gateway.stop();
  }
  const wallMs = nowMs() - t0;
  const result: SwapResult = {
    clients,
    requestsPerClient: perClient,
    requests: clients * perClient,
    errors,
    wallMs,
    rps: (clients * perClient) / (wallMs / 1000),
    loads,
    servedSegments: runs(served.sort((a, b) => a.at - b.at).map((r) => r.model)),
    sentSegments: runs(sent.sort((a, b) => a.at - b.at).map((r) => r.model)),
    lowerBound: perClient,
  };
  ctx.log(
    `  swap: ${result.requests} requests in ${wallMs.toFixed(0)} ms (${result.rps.toFixed(1)} req/s), ${loads} loads; ` +
      `served in ${result.servedSegments} runs, sent in ${result.sentSegments}; lower bound ${result.lowerBound}; errors ${errors}`,
  );
  return result;
}
