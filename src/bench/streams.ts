/**
 * The streaming load generator: N parallel SSE streams, each chunk's delivery latency taken from the
 * fake upstream's send stamp (`"x_t"`, CLOCK_MONOTONIC ns, the same clock here), so the delay a proxy
 * adds to every chunk is measured directly, not guessed from gaps.
 */
import { Agent, request as httpRequest } from "node:http";
import { AUTH_HEADERS } from "./gateway.js";
import { nowMs } from "./util.js";

export interface StreamsResult {
  streams: number;
  /** Streams that got a 200 and reached `data: [DONE]`. */
  completed: number;
  errors: number;
  /** Content chunks (events carrying a send stamp) received over all streams. */
  chunks: number;
  /** From the first request to the end of the last stream. */
  wallMs: number;
  chunksPerS: number;
  /** Per stream: request sent → `[DONE]` received. */
  totalMs: number[];
  /** Per stream: request sent → first byte of the first content event. */
  firstChunkMs: number[];
  /** Delivery latency of every content chunk, ms (sampled to at most `maxSamples`). */
  latencyMs: Float64Array;
}

export interface StreamsSpec {
  url: string;
  body: string;
  streams: number;
  /** Called once every stream has received its first content chunk. */
  onAllOpen?: () => void | Promise<void>;
  timeoutMs?: number;
  maxSamples?: number;
}

const STAMP = /"x_t":(\d+)/;
const FIRST_TOKEN = /"content":"[^"]/;

/** Runs `streams` SSE requests at once and collects per-chunk latencies. */
export async function runStreams(spec: StreamsSpec): Promise<StreamsResult> {
  const url = new URL(spec.url);
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
  const body = Buffer.from(spec.body);
  const maxSamples = spec.maxSamples ?? 200_000;
  const latency = new Float64Array(maxSamples);
  let samples = 0;
  let seen = 0;
  let chunks = 0;
  let errors = 0;
  let completed = 0;
  let open = 0;
  const totalMs: number[] = [];
  const firstChunkMs: number[] = [];
  const started = nowMs();
  let allOpenFired = false;
  const allOpen: Promise<void>[] = [];

  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = nowMs();
      let first = true;
      let finished = false;
      const fail = () => {
        if (finished) return;
        finished = true;
        errors++;
        resolve();
      };
      const req = httpRequest(
        { agent, host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers: { ...AUTH_HEADERS, "content-type": "application/json", "content-length": body.length } },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            res.on("end", fail);
            return;
          }
          res.setEncoding("latin1");
          let pending = "";
          let done = false;
          res.on("data", (data: string) => {
            const now = process.hrtime.bigint();
            pending += data;
            let end: number;
            while ((end = pending.indexOf("\n\n")) !== -1) {
              const event = pending.slice(0, end);
              pending = pending.slice(end + 2);
              if (event === "data: [DONE]") {
                done = true;
                continue;
              }
              const stamp = STAMP.exec(event);
              if (stamp) {
                chunks++;
                const ms = Number(now - BigInt(stamp[1]!)) / 1e6;
                // Reservoir sampling keeps memory bounded on long runs.
                if (samples < maxSamples) latency[samples++] = ms;
                else {
                  const j = Math.floor(Math.random() * (seen + 1));
                  if (j < maxSamples) latency[j] = ms;
                }
                seen++;
              }
              if (first && (stamp || FIRST_TOKEN.test(event))) {
                first = false;
                firstChunkMs.push(nowMs() - t0);
                if (++open === spec.streams && !allOpenFired && spec.onAllOpen) {
                  allOpenFired = true;
                  allOpen.push(Promise.resolve(spec.onAllOpen()));
                }
              }
            }
          });
          res.on("end", () => {
            if (finished) return;
            finished = true;
            if (done) {
              completed++;
              totalMs.push(nowMs() - t0);
            } else errors++;
            resolve();
          });
          res.on("error", fail);
          res.on("aborted", fail);
        },
      );
      req.on("error", fail);
      if (spec.timeoutMs) req.setTimeout(spec.timeoutMs, () => req.destroy(new Error("timeout")));
      req.end(body);
    });

  await Promise.all(Array.from({ length: spec.streams }, one));
  const wallMs = nowMs() - started;
  await Promise.all(allOpen);
  agent.destroy();
  return {
    streams: spec.streams,
    completed,
    errors,
    chunks,
    wallMs,
    chunksPerS: chunks / (wallMs / 1000),
    totalMs,
    firstChunkMs,
    latencyMs: latency.subarray(0, samples),
  };
}

export interface TokenTimings {
  /** Request sent → first event with non-empty content, ms. */
  firstTokenMs: number;
  /** Request sent → last event with non-empty content, ms. */
  lastTokenMs: number;
  /** Events with non-empty content. */
  tokens: number;
  /** The backend's own `timings` object from its last chunk, when it sends one (llama-server does). */
  timings: Record<string, unknown> | undefined;
}

/** One streaming request, read event by event: when the first and last tokens arrived. */
export async function firstToken(url: string, body: string): Promise<TokenTimings> {
  const t0 = nowMs();
  const res = await fetch(url, { method: "POST", headers: { ...AUTH_HEADERS, "content-type": "application/json" }, body });
  if (res.status !== 200 || !res.body) throw new Error(`${url} answered ${res.status}: ${await res.text()}`);
  const decoder = new TextDecoder();
  let pending = "";
  let first = NaN;
  let last = NaN;
  let tokens = 0;
  let timings: Record<string, unknown> | undefined;
  for await (const part of res.body) {
    const now = nowMs();
    pending += decoder.decode(part as Uint8Array, { stream: true });
    let end: number;
    while ((end = pending.indexOf("\n\n")) !== -1) {
      const event = pending.slice(0, end);
      pending = pending.slice(end + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      if (FIRST_TOKEN.test(event)) {
        if (Number.isNaN(first)) first = now - t0;
        last = now - t0;
        tokens++;
      }
      if (event.includes('"timings"')) {
        try {
          timings = (JSON.parse(event.slice(6)) as { timings?: Record<string, unknown> }).timings;
        } catch {
          // not JSON after all
        }
      }
    }
  }
  return { firstTokenMs: first, lastTokenMs: last, tokens, timings };
}
