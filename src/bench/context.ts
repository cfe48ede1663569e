/**
 * What every bench section gets: the sizes of this run (full or quick), the cores, the tools, a scratch
 * folder, and starters for the servers under test (upstreams and the proxies in front of them).
 */
import { join } from "node:path";
import { defaultConfig } from "../config/schema.js";
import type { Cores, Tools } from "./env.js";
import { AUTH_HEADERS, DIST, startGateway, type RunningGateway } from "./gateway.js";
import { runNodeLoad, runWrk, type LoadResult, type LoadSpec } from "./load.js";
import { startNginx, type RunningProxy } from "./nginx.js";
import { type Child, freePort, startChild, waitHttpOk } from "./util.js";

export interface Sizes {
  quick: boolean;
  reps: number;
  /** Seconds per wrk run. */
  durationS: number;
  concurrency: number[];
  streamChunks: number;
  /** Single-stream runs per repetition (their median is the repetition's figure). */
  singleStreamRuns: number;
  parallelStreams: number;
  pacedStreams: number;
  pacedChunks: number;
  pacedDelayMs: number;
  coldReps: number;
  swapClients: number;
  swapRequestsPerClient: number;
  memoryStreams: number;
  memoryRounds: number;
  /**
   * How long a proxy is left without requests before its RSS counts as idle: the garbage of start-up
   * or of a burst is given back only by the gateway's idle collection (or, for the bare proxy, by
   * V8's memory reducer, when a full GC has armed it, ~8 s after the last activity).
   */
  memorySettleMs: number;
  backendTokens: number;
}

export const FULL: Sizes = {
  quick: false,
  reps: 3,
  durationS: 5,
  concurrency: [1, 16, 64],
  streamChunks: 1000,
  singleStreamRuns: 3,
  parallelStreams: 64,
  pacedStreams: 64,
  pacedChunks: 200,
  pacedDelayMs: 50,
  // A backend's start time varies by tens of ms from one start to the next: more pairs than medians of 3.
  coldReps: 7,
  swapClients: 8,
  swapRequestsPerClient: 8,
  memoryStreams: 200,
  memoryRounds: 4,
  // The gateway's idle collection runs at a check (every 2 s) once heap.idle_collect_s have passed without
  // requests, and a check that finds the event loop busy puts it off to the next: in the gateway's log it came
  // 28-34 s after the last request, so settling 34 s sometimes measured the round before its collection.
  memorySettleMs: defaultConfig().heap.idle_collect_s * 1000 + 8_000,
  backendTokens: 128,
};

export const QUICK: Sizes = {
  quick: true,
  reps: 1,
  durationS: 1,
  concurrency: [1, 16],
  streamChunks: 100,
  singleStreamRuns: 1,
  parallelStreams: 8,
  pacedStreams: 8,
  pacedChunks: 10,
  pacedDelayMs: 20,
  coldReps: 1,
  swapClients: 2,
  swapRequestsPerClient: 3,
  memoryStreams: 20,
  memoryRounds: 2,
  memorySettleMs: 500,
  backendTokens: 8,
};

export interface Ctx {
  sizes: Sizes;
  cores: Cores;
  tools: Tools;
  /** Scratch folder for configs, logs and gateway homes (removed at the end). */
  dir: string;
  llamaServer: string | undefined;
  /** GGUF used for llama-server / embedded runs. */
  modelPath: string;
  /** Where profiles go when --profile is on; undefined = no profiling. */
  profileDir: string | undefined;
  log(message: string): void;
  /** Servers and clients started and not yet stopped, so a failure still cleans up. */
  running: Set<{ stop(): Promise<void> }>;
}

export interface Upstream {
  name: string;
  url: string;
  pid: number;
  child: Child;
  stop(): Promise<void>;
}

function track<T extends { stop(): Promise<void> }>(ctx: Ctx, thing: T): T {
  ctx.running.add(thing);
  const stop = thing.stop.bind(thing);
  thing.stop = async () => {
    ctx.running.delete(thing);
    await stop();
  };
  return thing;
}

export async function startFake(ctx: Ctx): Promise<Upstream> {
  const port = await freePort();
  const child = startChild("fake-upstream", process.execPath, [join(DIST, "bench", "fake-upstream.js"), "--port", String(port), "--body-bytes", "300"], { cpus: ctx.cores.servers });
  const url = `http://127.0.0.1:${port}`;
  await waitHttpOk(`${url}/health`, { child });
  return track(ctx, { name: "fake", url, pid: child.pid, child, stop: () => child.stop() });
}

/** The real llama-server on the bench model, one thread (it has one core), four slots. */
export function llamaServerArgs(modelPath: string, port: number, parallel = 4): string[] {
  return ["--model", modelPath, "--host", "127.0.0.1", "--port", String(port), "--threads", "1", "--threads-batch", "1", "--parallel", String(parallel), "--ctx-size", String(512 * parallel), "--alias", "bench"];
}

export async function startLlamaServer(ctx: Ctx, parallel = 4): Promise<Upstream> {
  if (!ctx.llamaServer) throw new Error("llama-server is not built (npm run build:llama-server)");
  const port = await freePort();
  const child = startChild("llama-server", ctx.llamaServer, llamaServerArgs(ctx.modelPath, port, parallel), { cpus: ctx.cores.servers, scheduling: "batch" });
  const url = `http://127.0.0.1:${port}`;
  await waitHttpOk(`${url}/health`, { child, timeoutMs: 120_000 });
  return track(ctx, { name: "llama-server", url, pid: child.pid, child, stop: () => child.stop() });
}

/** A proxy row: direct (no proxy), nginx, the bare Node proxy, the gateway. */
export interface Target {
  name: "direct" | "nginx" | "bare-node" | "gateway";
  url: string;
  /** Processes whose CPU is this proxy's own (empty for direct). */
  pids(): number[];
  rssPid: number | undefined;
  stop(): Promise<void>;
}

export async function startBareProxy(ctx: Ctx, upstream: Upstream): Promise<Target> {
  const port = await freePort();
  const child = startChild("bare-proxy", process.execPath, [join(DIST, "bench", "bare-proxy.js"), "--port", String(port), "--upstream", upstream.url], { cpus: ctx.cores.servers });
  await child.waitForLine(/listening/, 15_000);
  return track<Target>(ctx, { name: "bare-node", url: `http://127.0.0.1:${port}`, pids: () => [child.pid], rssPid: child.pid, stop: () => child.stop() });
}

export async function startNginxTarget(ctx: Ctx, upstream: Upstream): Promise<Target | undefined> {
  if (!ctx.tools.nginx) return undefined;
  const proxy: RunningProxy = await startNginx({ binary: ctx.tools.nginx, dir: ctx.dir, upstreamPort: Number(new URL(upstream.url).port), cpus: ctx.cores.servers });
  return track<Target>(ctx, { name: "nginx", url: proxy.url, pids: proxy.pids, rssPid: proxy.mainPid, stop: proxy.stop });
}

export interface GatewayTarget extends Target {
  gateway: RunningGateway;
}

/**
 * The gateway with `upstream` as a `url` model: validation, routing, the scheduler's slot limit and
 * queue all on, as a user runs it. `parallel` is the backend's slot count; the gateway admits that many
 * plus its default `queue_ahead` (as many again).
 */
export async function startGatewayTarget(
  ctx: Ctx,
  upstream: Upstream,
  { parallel, maxQueue, name, profile, extraModels = {} }: { parallel: number; maxQueue: number; name: string; profile?: boolean; extraModels?: Record<string, unknown> },
): Promise<GatewayTarget> {
  const nodeFlags = profile && ctx.profileDir ? ["--cpu-prof", "--cpu-prof-dir", ctx.profileDir, "--cpu-prof-name", `gateway-${name}-${Date.now()}.cpuprofile`] : [];
  const gateway = await startGateway({
    dir: ctx.dir,
    name,
    cpus: ctx.cores.servers,
    models: { bench: { url: upstream.url, parameters: { parallel } }, ...extraModels },
    extra: { max_queue: maxQueue },
    nodeFlags,
  });
  return track<GatewayTarget>(ctx, { name: "gateway", url: gateway.url, pids: gateway.pids, rssPid: gateway.mainPid, gateway, stop: gateway.stop });
}

export function directTarget(upstream: Upstream): Target {
  return { name: "direct", url: upstream.url, pids: () => [], rssPid: undefined, stop: async () => {} };
}

/** One closed-loop load run with wrk (or the Node stand-in); every request carries the bench's API key. */
export function load(ctx: Ctx, input: LoadSpec): Promise<LoadResult> {
  const spec = { ...input, headers: { ...AUTH_HEADERS, ...input.headers } };
  return ctx.tools.wrk ? runWrk(ctx.tools.wrk, spec, { dir: ctx.dir, cpus: ctx.cores.client }) : runNodeLoad(spec);
}

export const chatBody = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Hello" }], max_tokens: 1, ...extra });

/**
 * The proxies every relay section compares, added to `targets` as each starts (so the caller's
 * `finally` stops whatever did start): nginx when available, the bare Node proxy, the gateway.
 */
export async function addProxyTargets(
  ctx: Ctx,
  upstream: Upstream,
  targets: Target[],
  gateway: Parameters<typeof startGatewayTarget>[2],
  notes: string[],
): Promise<void> {
  const nginx = await startNginxTarget(ctx, upstream);
  if (nginx) targets.push(nginx);
  else notes.push("nginx not available: no nginx rows");
  targets.push(await startBareProxy(ctx, upstream));
  targets.push(await startGatewayTarget(ctx, upstream, gateway));
}
