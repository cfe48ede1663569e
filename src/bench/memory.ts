/**
 * Section 5, memory: RSS idle, with many streams open at once, and idle again after each of several
 * rounds of load (streams plus a burst of small requests), to catch growth. The gateway is measured,
 * then the bare Node proxy under the same load: the floor that Node's own HTTP server and client set.
 *
 * "Idle" is after `memorySettleMs` without requests: until the gateway's idle collection has run (30 s
 * after the last request by default), the RSS still holds the garbage of start-up or of the last
 * burst. Measured sooner, it is that transient, not what an idle process holds.
 */
import { chatBody, type Ctx, load, startBareProxy, startFake, startGatewayTarget, type Target } from "./context.js";
import { runStreams } from "./streams.js";
import { median, nowMs, rssBytes, sleep } from "./util.js";

export interface MemoryRun {
  /** RSS once settled after start-up (listening, nothing served yet). */
  idleBytes: number;
  /** Peak RSS per round while `streams` streams were open (their opening burst included). */
  openPeakBytes: number[];
  /** Median RSS per round over the first half of the time all streams were open: the streams' own cost, without the burst's transients. */
  openSteadyBytes: number[];
  /** RSS after each round, once settled again. */
  afterRoundBytes: number[];
  /** Max open-streams peak over the rounds. */
  maxOpenBytes: number;
  /** afterRound[last] − afterRound[0]. */
  growthBytes: number;
  streamErrors: number;
}

/** The gateway's figures at the top level (the targets), the bare proxy's beside them. */
export interface MemoryResult extends MemoryRun {
  streams: number;
  bareNode: MemoryRun;
}

export async function memory(ctx: Ctx): Promise<MemoryResult> {
  const upstream = await startFake(ctx);
  try {
    // A realistic catalogue: besides the upstream, a GGUF model (never loaded here) whose header is read at start-up.
    const gateway = await startGatewayTarget(ctx, upstream, { parallel: 1024, maxQueue: 1024, name: "memory", extraModels: { "local-gguf": { model_path: ctx.modelPath } } });
    const gatewayRun = await measured(ctx, gateway);
    const bareNode = await measured(ctx, await startBareProxy(ctx, upstream));
    return { streams: ctx.sizes.memoryStreams, ...gatewayRun, bareNode };
  } finally {
    await upstream.stop();
  }
}

/** The rounds against one proxy, which is stopped afterwards. */
async function measured(ctx: Ctx, target: Target): Promise<MemoryRun> {
  const { sizes } = ctx;
  const pid = target.rssPid!;
  try {
    const settled = async () => {
      await sleep(sizes.memorySettleMs);
      return median([rssBytes(pid), (await sleep(200), rssBytes(pid)), (await sleep(200), rssBytes(pid))]);
    };
    const idleBytes = await settled();
    ctx.log(`  memory ${target.name}: idle ${(idleBytes / 2 ** 20).toFixed(1)} MB`);
    const openPeakBytes: number[] = [];
    const openSteadyBytes: number[] = [];
    const afterRoundBytes: number[] = [];
    let streamErrors = 0;
    // Each stream lasts ~2 s (quick: ~0.5 s): a chunk every 50 ms.
    const tokens = sizes.quick ? 10 : 40;
    const streamMs = tokens * 50;
    const body = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Hello" }], stream: true, max_tokens: tokens, x_delay_ms: 50 });
    for (let round = 0; round < sizes.memoryRounds; round++) {
      let peak = 0;
      let openAt = NaN;
      const samples: { at: number; bytes: number }[] = [];
      const sampler = setInterval(() => {
        const bytes = rssBytes(pid);
        peak = Math.max(peak, bytes);
        samples.push({ at: nowMs(), bytes });
      }, 50);
      const r = await runStreams({
        url: `${target.url}/v1/chat/completions`,
        body,
        streams: sizes.memoryStreams,
        timeoutMs: 60_000,
        onAllOpen: () => {
          openAt = nowMs();
          peak = Math.max(peak, rssBytes(pid));
        },
      });
      clearInterval(sampler);
      streamErrors += r.errors;
      if (Number.isNaN(openAt)) ctx.log(`  memory ${target.name}: not all ${sizes.memoryStreams} streams were open at once (errors ${r.errors})`);
      await load(ctx, { url: `${target.url}/v1/chat/completions`, body: chatBody(), connections: 64, durationS: sizes.quick ? 1 : 2 });
      const after = await settled();
      const steady = samples.filter((x) => x.at >= openAt && x.at <= openAt + streamMs / 2).map((x) => x.bytes);
      openPeakBytes.push(peak);
      openSteadyBytes.push(steady.length > 0 ? median(steady) : NaN);
      afterRoundBytes.push(after);
      ctx.log(
        `  memory ${target.name} round ${round + 1}: ${sizes.memoryStreams} open streams peak ${(peak / 2 ** 20).toFixed(1)} MB, steady ${((openSteadyBytes.at(-1) ?? NaN) / 2 ** 20).toFixed(1)} MB, idle after ${(after / 2 ** 20).toFixed(1)} MB, errors ${r.errors}`,
      );
    }
    return {
      idleBytes,
      openPeakBytes,
      openSteadyBytes,
      afterRoundBytes,
      maxOpenBytes: Math.max(...openPeakBytes),
      growthBytes: (afterRoundBytes.at(-1) ?? NaN) - (afterRoundBytes[0] ?? NaN),
      streamErrors,
    };
  } finally {
    await target.stop();
  }
}
