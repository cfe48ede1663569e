/**
 * Section 6, backends: generation speed of the embedded runner (node-llama-cpp) against the real
 * llama-server, each started directly on the same GGUF with the same thread count, pinned to the same
 * core, one request at a time.
 */
import { join } from "node:path";
import { type Ctx, llamaServerArgs } from "./context.js";
import { DIST } from "./gateway.js";
import { firstToken, type TokenTimings } from "./streams.js";
import { type Child, freePort, median, startChild, waitHttpOk } from "./util.js";

export interface BackendRow {
  backend: "llama-server" | "embedded";
  /** Spawn → /health 200, ms. */
  loadMs: number;
  /** Request → first token, ms. */
  firstTokenMs: number;
  /** Tokens after the first / time from first to last token (client side). */
  tokensPerS: number;
  tokens: number;
  /** The backend's own figures when it reports them (timings.predicted_per_second, prompt_per_second). */
  reportedTokensPerS: number;
  reportedPromptTokensPerS: number;
}

export interface BackendsResult {
  threads: number;
  maxTokens: number;
  rows: BackendRow[];
}

const PROMPT = "Write a long story about a test of the world, and the time that it will have been in the one that is there.";

async function measure(ctx: Ctx, backend: BackendRow["backend"]): Promise<BackendRow> {
  const port = await freePort();
  const t0 = Date.now();
  const child: Child =
    backend === "llama-server"
      ? startChild("llama-server", ctx.llamaServer!, llamaServerArgs(ctx.modelPath, port, 1), { cpus: ctx.cores.servers, scheduling: "batch" })
      : startChild(
          "embedded",
          process.execPath,
          [join(DIST, "embedded", "main.js"), "--model", ctx.modelPath, "--host", "127.0.0.1", "--port", String(port), "--alias", "bench", "--threads", "1", "--parallel", "1", "--ctx-size", "512"],
          { cpus: ctx.cores.servers, scheduling: "batch" },
        );
  ctx.running.add(child);
  try {
    await waitHttpOk(`http://127.0.0.1:${port}/health`, { child, timeoutMs: 120_000, intervalMs: 10 });
    const loadMs = Date.now() - t0;
    const body = JSON.stringify({
      model: "bench",
      messages: [{ role: "user", content: PROMPT }],
      max_tokens: ctx.sizes.backendTokens,
      temperature: 0,
      stream: true,
    });
    await firstToken(`http://127.0.0.1:${port}/v1/chat/completions`, body); // warm-up
    const reps: TokenTimings[] = [];
    for (let i = 0; i < ctx.sizes.reps; i++) reps.push(await firstToken(`http://127.0.0.1:${port}/v1/chat/completions`, body));
    const tps = (t: TokenTimings) => (t.tokens - 1) / ((t.lastTokenMs - t.firstTokenMs) / 1000);
    const reported = (t: TokenTimings, key: string) => Number(t.timings?.[key] ?? NaN);
    const row: BackendRow = {
      backend,
      loadMs,
      firstTokenMs: median(reps.map((t) => t.firstTokenMs)),
      tokensPerS: median(reps.map(tps)),
      tokens: median(reps.map((t) => t.tokens)),
      reportedTokensPerS: median(reps.map((t) => reported(t, "predicted_per_second"))),
      reportedPromptTokensPerS: median(reps.map((t) => reported(t, "prompt_per_second"))),
    };
    ctx.log(`  ${backend}: load ${loadMs} ms, first token ${row.firstTokenMs.toFixed(1)} ms, ${row.tokensPerS.toFixed(1)} tokens/s over ${row.tokens} tokens (reported ${row.reportedTokensPerS.toFixed(1)})`);
    return row;
  } finally {
    ctx.running.delete(child);
    await child.stop();
  }
}

export async function backends(ctx: Ctx): Promise<BackendsResult> {
  const rows = [await measure(ctx, "llama-server"), await measure(ctx, "embedded")];
  return { threads: 1, maxTokens: ctx.sizes.backendTokens, rows };
}
