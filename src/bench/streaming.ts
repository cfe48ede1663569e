/**
 * Section 2, the streaming relay: 1,000-chunk SSE streams from the fake upstream (a chunk every
 * millisecond, each stamped with its send time) directly, through nginx, the bare Node proxy and the
 * gateway. One stream: time to last chunk and the delay added to each chunk. 64 streams at once:
 * chunks/s and errors. Paced streams (a chunk every 50 ms), through every path at once: the proxy's CPU per chunk.
 */
import { addProxyTargets, type Ctx, directTarget, startFake, type Target } from "./context.js";
import { runStreams } from "./streams.js";
import { cpuMs, cpuMsOf, median, percentile } from "./util.js";

export interface StreamRow {
  target: Target["name"];
  /** One stream: request → [DONE], ms. */
  singleTotalMs: number;
  /** One stream: per-chunk delivery latency p50 / p99, ms. */
  singleLatP50Ms: number;
  singleLatP99Ms: number;
  /** N parallel streams: content chunks per second, errors, per-chunk latency p50 / p99. */
  parallelChunksPerS: number;
  parallelErrors: number;
  /** Content chunks sent but never received, over all streams of the row. */
  missingChunks: number;
  parallelLatP50Ms: number;
  parallelLatP99Ms: number;
  /** The proxy's CPU per chunk (µs) with N parallel fast streams. */
  parallelCpuUsPerChunk: number;
  /** Paced streams (all paths at once): the proxy's CPU per chunk (µs), the upstream's over every path's chunks (the same on each row), errors. */
  pacedCpuUsPerChunk: number;
  pacedUpstreamCpuUsPerChunk: number;
  pacedErrors: number;
  pacedLatP50Ms: number;
  pacedLatP99Ms: number;
}

export interface StreamingResult {
  chunks: number;
  parallelStreams: number;
  pacedStreams: number;
  pacedChunks: number;
  pacedDelayMs: number;
  rows: StreamRow[];
  notes: string[];
}

const streamBody = (chunks: number, delayMs: number) =>
  JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Hello" }], stream: true, max_tokens: chunks, x_delay_ms: delayMs });

export async function streaming(ctx: Ctx): Promise<StreamingResult> {
  const { sizes } = ctx;
  const notes: string[] = [];
  const upstream = await startFake(ctx);
  const targets: Target[] = [directTarget(upstream)];
  try {
    await addProxyTargets(ctx, upstream, targets, { parallel: 1024, maxQueue: 1024, name: "streaming", profile: true }, notes);

    type Rep = Omit<StreamRow, "target">;
    const reps = new Map<string, Rep[]>();
    const fast = streamBody(sizes.streamChunks, 1);
    const paced = streamBody(sizes.pacedChunks, sizes.pacedDelayMs);
    // Warm-up.
    for (const t of targets) await runStreams({ url: `${t.url}/v1/chat/completions`, body: streamBody(sizes.quick ? 20 : 200, 0), streams: 8 });
    for (let rep = 0; rep < sizes.reps; rep++) {
      const fastRuns = new Map<string, Omit<Rep, "pacedCpuUsPerChunk" | "pacedUpstreamCpuUsPerChunk" | "pacedErrors" | "pacedLatP50Ms" | "pacedLatP99Ms">>();
      for (const t of targets) {
        const url = `${t.url}/v1/chat/completions`;
        // A single stream is short and noisy: the median of a few runs.
        const singles = [];
        for (let i = 0; i < sizes.singleStreamRuns; i++) singles.push(await runStreams({ url, body: fast, streams: 1 }));
        const one = singles.sort((a, b) => (a.totalMs[0] ?? Infinity) - (b.totalMs[0] ?? Infinity))[singles.length >> 1]!;
        const p0 = cpuMsOf(t.pids());
        const many = await runStreams({ url, body: fast, streams: sizes.parallelStreams, timeoutMs: 120_000 });
        const manyCpu = cpuMsOf(t.pids()) - p0;
        fastRuns.set(t.name, {
          singleTotalMs: one.totalMs[0] ?? NaN,
          singleLatP50Ms: percentile(one.latencyMs, 50),
          singleLatP99Ms: percentile(one.latencyMs, 99),
          parallelChunksPerS: many.chunksPerS,
          parallelErrors: many.errors + one.errors,
          missingChunks: sizes.parallelStreams * sizes.streamChunks - many.chunks + (sizes.streamChunks - one.chunks),
          parallelLatP50Ms: percentile(many.latencyMs, 50),
          parallelLatP99Ms: percentile(many.latencyMs, 99),
          parallelCpuUsPerChunk: t.name === "direct" ? NaN : (manyCpu * 1000) / Math.max(1, many.chunks),
        });
      }
      // Paced streams through every path at once: a light load (each proxy wakes for a chunk now and then),
      // whose CPU per chunk drifts with the host from one run to the next by up to 3x for the same proxy
      // (nginx 18-73 us in four full runs). Run side by side, every proxy sees the same host.
      const q0 = targets.map((t) => cpuMsOf(t.pids()));
      const u0 = cpuMs(upstream.pid);
      const slow = await Promise.all(targets.map((t) => runStreams({ url: `${t.url}/v1/chat/completions`, body: paced, streams: sizes.pacedStreams, timeoutMs: 120_000 })));
      const q1 = targets.map((t) => cpuMsOf(t.pids()));
      const pacedUpstreamCpuUsPerChunk = ((cpuMs(upstream.pid) - u0) * 1000) / Math.max(1, slow.reduce((n, r) => n + r.chunks, 0));
      targets.forEach((t, i) => {
        const fastRun = fastRuns.get(t.name)!;
        const run = slow[i]!;
        const r: Rep = {
          ...fastRun,
          missingChunks: fastRun.missingChunks + sizes.pacedStreams * sizes.pacedChunks - run.chunks,
          pacedCpuUsPerChunk: t.name === "direct" ? NaN : ((q1[i]! - q0[i]!) * 1000) / Math.max(1, run.chunks),
          pacedUpstreamCpuUsPerChunk,
          pacedErrors: run.errors,
          pacedLatP50Ms: percentile(run.latencyMs, 50),
          pacedLatP99Ms: percentile(run.latencyMs, 99),
        };
        reps.set(t.name, [...(reps.get(t.name) ?? []), r]);
        ctx.log(
          `  stream ${t.name.padEnd(9)} rep ${rep + 1}: 1 stream ${r.singleTotalMs.toFixed(0)} ms (chunk lat p50 ${r.singleLatP50Ms.toFixed(3)} p99 ${r.singleLatP99Ms.toFixed(3)} ms); ` +
            `${sizes.parallelStreams} streams ${Math.round(r.parallelChunksPerS)} chunks/s, errors ${r.parallelErrors}, cpu ${r.parallelCpuUsPerChunk.toFixed(1)} µs/chunk; ` +
            `paced (all paths at once) cpu ${r.pacedCpuUsPerChunk.toFixed(1)} µs/chunk errors ${run.errors}`,
        );
      });
    }
    const rows: StreamRow[] = targets.map((t) => {
      const list = reps.get(t.name) ?? [];
      const m = (pick: (r: Rep) => number) => median(list.map(pick));
      return {
        target: t.name,
        singleTotalMs: m((r) => r.singleTotalMs),
        singleLatP50Ms: m((r) => r.singleLatP50Ms),
        singleLatP99Ms: m((r) => r.singleLatP99Ms),
        parallelChunksPerS: m((r) => r.parallelChunksPerS),
        parallelErrors: list.reduce((s, r) => s + r.parallelErrors, 0),
        missingChunks: list.reduce((s, r) => s + r.missingChunks, 0),
        parallelLatP50Ms: m((r) => r.parallelLatP50Ms),
        parallelLatP99Ms: m((r) => r.parallelLatP99Ms),
        parallelCpuUsPerChunk: m((r) => r.parallelCpuUsPerChunk),
        pacedCpuUsPerChunk: m((r) => r.pacedCpuUsPerChunk),
        pacedUpstreamCpuUsPerChunk: m((r) => r.pacedUpstreamCpuUsPerChunk),
        pacedErrors: list.reduce((s, r) => s + r.pacedErrors, 0),
        pacedLatP50Ms: m((r) => r.pacedLatP50Ms),
        pacedLatP99Ms: m((r) => r.pacedLatP99Ms),
      };
    });
    return {
      chunks: sizes.streamChunks,
      parallelStreams: sizes.parallelStreams,
      pacedStreams: sizes.pacedStreams,
      pacedChunks: sizes.pacedChunks,
      pacedDelayMs: sizes.pacedDelayMs,
      rows,
      notes,
    };
  } finally {
    for (const t of targets) await t.stop();
    await upstream.stop();
  }
}
