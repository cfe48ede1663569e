/**
 * Section 1, proxy overhead on non-streaming requests: a small chat request (`max_tokens: 1`) to an
 * upstream directly, through nginx, through a bare Node proxy and through the gateway, at several
 * concurrencies, with each proxy's CPU per request from /proc.
 */
import {
  addProxyTargets,
  chatBody,
  type Ctx,
  directTarget,
  load,
  startFake,
  startLlamaServer,
  type Target,
  type Upstream,
} from "./context.js";
import { AUTH_HEADERS } from "./gateway.js";
import type { LoadResult } from "./load.js";
import { pairedLatency, type PairedResult } from "./paired.js";
import { cpuMs, cpuMsOf, median } from "./util.js";

export interface LoadRow {
  upstream: string;
  target: Target["name"];
  concurrency: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** The proxy's own CPU per request (µs); NaN for direct. */
  proxyCpuUs: number;
  /** The upstream's CPU per request (µs). */
  upstreamCpuUs: number;
  errors: number;
  generator: LoadResult["generator"];
  reps: { rps: number; p50Ms: number; p99Ms: number; proxyCpuUs: number; upstreamCpuUs: number; errors: number }[];
}

export interface NonStreamResult {
  upstream: string;
  rows: LoadRow[];
  /** Concurrency 1, requests to the targets in turn: latency medians free of drift between runs. */
  paired: PairedResult[];
  notes: string[];
}

const WARM_UP_REQUESTS = 6000;
const WARM_UP_MAX_S = 40;

async function warmUp(ctx: Ctx, url: string, body: string): Promise<void> {
  const started = Date.now();
  for (let served = 0; served < WARM_UP_REQUESTS && Date.now() - started < WARM_UP_MAX_S * 1000; ) {
    served += (await load(ctx, { url, body, connections: 16, durationS: 2 })).requests;
  }
}

export async function measureLoad(ctx: Ctx, upstream: Upstream, targets: Target[], body: string, label: string): Promise<LoadRow[]> {
  const { sizes } = ctx;
  // Warm-up: JIT, connection pools, llama-server's prompt cache (a quick run has no time for it). V8 settles
  // after some thousands of requests, not seconds: 2 s on the fake, ~30 s at llama-server's ~200 req/s, where
  // a fixed 2 s left the first repetition's Node proxies at 1.3-2.2x the CPU per request of the later ones.
  if (!sizes.quick) for (const target of targets) await warmUp(ctx, `${target.url}/v1/chat/completions`, body);
  const reps = new Map<string, LoadRow["reps"]>();
  const generators = new Map<string, LoadResult["generator"]>();
  // Round-robin over targets inside each repetition, so drifting background load hits all of them alike.
  for (let rep = 0; rep < sizes.reps; rep++) {
    for (const c of sizes.concurrency) {
      for (const target of targets) {
        const p0 = cpuMsOf(target.pids());
        const u0 = cpuMs(upstream.pid);
        const r = await load(ctx, { url: `${target.url}/v1/chat/completions`, body, connections: c, durationS: sizes.durationS });
        const proxyCpuUs = target.name === "direct" ? NaN : ((cpuMsOf(target.pids()) - p0) * 1000) / Math.max(1, r.requests);
        const upstreamCpuUs = ((cpuMs(upstream.pid) - u0) * 1000) / Math.max(1, r.requests);
        const key = `${target.name}@${c}`;
        generators.set(key, r.generator);
        reps.set(key, [...(reps.get(key) ?? []), { rps: r.rps, p50Ms: r.p50Ms, p99Ms: r.p99Ms, proxyCpuUs, upstreamCpuUs, errors: r.errors }]);
        ctx.log(`  ${label} ${target.name.padEnd(9)} c=${String(c).padEnd(3)} rep ${rep + 1}: ${Math.round(r.rps)} req/s p50 ${r.p50Ms.toFixed(3)} ms p99 ${r.p99Ms.toFixed(3)} ms cpu ${Number.isFinite(proxyCpuUs) ? Math.round(proxyCpuUs) : "-"} µs/req${r.errors ? ` ERRORS ${r.errors}` : ""}`);
      }
    }
  }
  const rows: LoadRow[] = [];
  for (const c of sizes.concurrency) {
    for (const target of targets) {
      const list = reps.get(`${target.name}@${c}`) ?? [];
      rows.push({
        upstream: upstream.name,
        target: target.name,
        concurrency: c,
        rps: median(list.map((r) => r.rps)),
        p50Ms: median(list.map((r) => r.p50Ms)),
        p99Ms: median(list.map((r) => r.p99Ms)),
        proxyCpuUs: median(list.map((r) => r.proxyCpuUs)),
        upstreamCpuUs: median(list.map((r) => r.upstreamCpuUs)),
        errors: list.reduce((s, r) => s + r.errors, 0),
        generator: generators.get(`${target.name}@${c}`) ?? "wrk",
        reps: list,
      });
    }
  }
  return rows;
}

export async function nonStreaming(ctx: Ctx, kind: "fake" | "llama-server"): Promise<NonStreamResult> {
  const notes: string[] = [];
  const upstream = kind === "fake" ? await startFake(ctx) : await startLlamaServer(ctx);
  // The model is configured with the backend's slots (llama-server: --parallel 4), as for a llama-runtimes
  // model, and the default queue_ahead; the fake has no slots, so it is not limited.
  const parallel = kind === "fake" ? 256 : 4;
  const targets: Target[] = [directTarget(upstream)];
  try {
    await addProxyTargets(ctx, upstream, targets, { parallel, maxQueue: 1024, name: `nonstream-${kind}`, profile: kind === "fake" }, notes);
    const rows = await measureLoad(ctx, upstream, targets, chatBody(), kind);
    if (!ctx.tools.wrk) notes.push("wrk not available: the Node stand-in generated the load (its own CPU cost shows in the numbers)");
    const rounds = ctx.sizes.quick ? 50 : kind === "fake" ? 3000 : 500;
    const paired = await pairedLatency(targets, { body: chatBody(), rounds, headers: AUTH_HEADERS });
    ctx.log(`  ${kind} paired c=1 p50: ${paired.map((p) => `${p.target} ${p.p50Ms.toFixed(3)} ms`).join(", ")}`);
    return { upstream: kind, rows, paired, notes };
  } finally {
    for (const t of targets) await t.stop();
    await upstream.stop();
  }
}
