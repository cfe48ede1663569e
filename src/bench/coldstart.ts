/**
 * Section 3, cold start: the first token of a request for an unloaded model through the gateway,
 * minus what the backend needs by itself (spawn → /health 200 → first token of the same request,
 * measured directly with fine polling). The difference is the gateway's own share of a load.
 */
import { type Ctx, llamaServerArgs } from "./context.js";
import { AUTH_HEADERS, startGateway } from "./gateway.js";
import { firstToken } from "./streams.js";
import { freePort, median, nowMs, sleep, startChild } from "./util.js";

export interface ColdStartResult {
  reps: { directHealthyMs: number; directFirstTokenMs: number; gatewayFirstTokenMs: number; gatewayLoadMs: number }[];
  /** Backend alone: spawn → healthy (polled every 2 ms). */
  directHealthyMs: number;
  /** Backend alone: spawn → first token (healthy + the first request). */
  directFirstTokenMs: number;
  /** Through the gateway: request → first token, model unloaded. */
  gatewayFirstTokenMs: number;
  /** The gateway's own "backend ready" load_ms (spawn → healthy as its 50 ms poll saw it). */
  gatewayLoadMs: number;
  /** Median over repetitions of (gateway first token − backend alone first token), each pair measured back to back. */
  gatewayShareMs: number;
}

const body = JSON.stringify({ model: "cold", messages: [{ role: "user", content: "Hello" }], max_tokens: 4, stream: true });

export async function coldStart(ctx: Ctx): Promise<ColdStartResult> {
  const llamaServer = ctx.llamaServer!;
  const reps: ColdStartResult["reps"] = [];
  const gateway = await startGateway({
    dir: ctx.dir,
    name: "coldstart",
    cpus: ctx.cores.servers,
    models: {
      cold: { model_path: ctx.modelPath, runtime: "llama-cpp", parameters: { threads: 1, threads_batch: 1, parallel: 4, ctx_size: 2048 } },
    },
    extra: { "llama-runtimes": { "llama-cpp": { runtime: llamaServer } } },
  });
  ctx.running.add(gateway);
  try {
    for (let rep = 0; rep < ctx.sizes.coldReps; rep++) {
      // The backend alone, polled far finer than the gateway's 50 ms.
      const port = await freePort();
      const t0 = nowMs();
      const child = startChild("llama-server", llamaServer, llamaServerArgs(ctx.modelPath, port, 4), { cpus: ctx.cores.servers, scheduling: "batch" });
      let healthyAt = NaN;
      for (;;) {
        if (child.exited) throw new Error(`llama-server exited while loading:\n${child.tail()}`);
        try {
          const res = await fetch(`http://127.0.0.1:${port}/health`);
          await res.body?.cancel();
          if (res.status === 200) {
            healthyAt = nowMs();
            break;
          }
        } catch {
          // not listening yet
        }
        if (nowMs() - t0 > 120_000) throw new Error("llama-server did not become healthy within 120 s");
        await sleep(2);
      }
      const direct = await firstToken(`http://127.0.0.1:${port}/v1/chat/completions`, body);
      const directFirstTokenMs = healthyAt - t0 + direct.firstTokenMs;
      await child.stop();

      // Through the gateway: make sure the model is unloaded, then time the first token.
      await fetch(`${gateway.url}/v1/models/cold/stop`, { method: "POST", headers: AUTH_HEADERS }).then((r) => r.body?.cancel());
      for (let i = 0; i < 500; i++) {
        const status = (await (await fetch(`${gateway.url}/v1/models/cold/status`, { headers: AUTH_HEADERS })).json()) as { status?: string };
        if (status.status === "unloaded") break;
        await sleep(20);
      }
      const linesBefore = gateway.logs().length;
      const via = await firstToken(`${gateway.url}/v1/chat/completions`, body);
      const ready = gateway
        .logs()
        .slice(linesBefore)
        .find((l) => l["msg"] === "backend ready");
      const gatewayLoadMs = Number(ready?.["load_ms"] ?? NaN);
      reps.push({ directHealthyMs: healthyAt - t0, directFirstTokenMs, gatewayFirstTokenMs: via.firstTokenMs, gatewayLoadMs });
      ctx.log(
        `  cold rep ${rep + 1}: direct healthy ${(healthyAt - t0).toFixed(1)} ms, first token ${directFirstTokenMs.toFixed(1)} ms; ` +
          `gateway first token ${via.firstTokenMs.toFixed(1)} ms (its load_ms ${gatewayLoadMs}) → share ${(via.firstTokenMs - directFirstTokenMs).toFixed(1)} ms`,
      );
    }
  } finally {
    ctx.running.delete(gateway);
    await gateway.stop();
  }
  const m = (pick: (r: ColdStartResult["reps"][number]) => number) => median(reps.map(pick));
  return {
    reps,
    directHealthyMs: m((r) => r.directHealthyMs),
    directFirstTokenMs: m((r) => r.directFirstTokenMs),
    gatewayFirstTokenMs: m((r) => r.gatewayFirstTokenMs),
    gatewayLoadMs: m((r) => r.gatewayLoadMs),
    gatewayShareMs: m((r) => r.gatewayFirstTokenMs - r.directFirstTokenMs),
  };
}
