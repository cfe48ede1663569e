/**
 * Closed-loop HTTP load: `c` connections, each sending the next POST as soon as the previous answer
 * is complete. wrk (C, one thread, a few µs per request) is the generator; when it is missing (a
 * smoke run on a machine without it) a small Node generator stands in, marked as such in the results.
 */
import { writeFileSync } from "node:fs";
import { request as httpRequest, Agent } from "node:http";
import { join } from "node:path";
import { Child, nowMs, percentile, startChild } from "./util.js";

export interface LoadResult {
  requests: number;
  durationS: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Non-2xx answers, connect/read/write errors and timeouts. */
  errors: number;
  generator: "wrk" | "node";
}

export interface LoadSpec {
  url: string;
  body: string;
  /** Extra request headers (the bench's API key). */
  headers?: Record<string, string>;
  connections: number;
  durationS: number;
}

const luaString = (s: string) => `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;

function luaScript(body: string, headers: Record<string, string>): string {
  return `-- written by the LlamaRunner bench (src/bench/load.ts)
wrk.method = "POST"
wrk.body = ${luaString(body)}
wrk.headers["Content-Type"] = "application/json"
${Object.entries(headers)
  .map(([k, v]) => `wrk.headers[${luaString(k)}] = ${luaString(v)}`)
  .join("\n")}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%.1f,"p99_us":%.1f,"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
`;
}

export async function runWrk(wrk: string, spec: LoadSpec, { dir, cpus }: { dir: string; cpus: string | undefined }): Promise<LoadResult> {
  const script = join(dir, "post.lua");
  writeFileSync(script, luaScript(spec.body, spec.headers ?? {}));
  const path = new URL(spec.url);
  const child: Child = startChild(
    "wrk",
    wrk,
    ["-t1", `-c${spec.connections}`, `-d${Math.max(1, Math.round(spec.durationS))}s`, "--timeout", "10s", "-s", script, `${path.origin}${path.pathname}`],
    { cpus },
  );
  await child.done;
  const line = child.lines.find((l) => l.startsWith("BENCHJSON "));
  if (child.exitCode !== 0 || !line) throw new Error(`wrk failed (exit ${child.exitCode}):\n${child.tail()}`);
  const r = JSON.parse(line.slice("BENCHJSON ".length)) as { requests: number; duration_us: number; p50_us: number; p99_us: number; errors: number };
  const durationS = r.duration_us / 1e6;
  return { requests: r.requests, durationS, rps: r.requests / durationS, p50Ms: r.p50_us / 1000, p99Ms: r.p99_us / 1000, errors: r.errors, generator: "wrk" };
}

/** The stand-in generator: same closed loop, in this (pinned) process. */
export async function runNodeLoad(spec: LoadSpec): Promise<LoadResult> {
  const url = new URL(spec.url);
  const agent = new Agent({ keepAlive: true, maxSockets: spec.connections });
  const body = Buffer.from(spec.body);
  const latencies: number[] = [];
  let errors = 0;
  const started = nowMs();
  const until = started + spec.durationS * 1000;
  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = nowMs();
      const req = httpRequest(
        { agent, host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers: { ...spec.headers, "content-type": "application/json", "content-length": body.length } },
        (res) => {
          res.on("data", () => {});
          res.on("end", () => {
            if (res.statusCode !== 200) errors++;
            latencies.push(nowMs() - t0);
            resolve();
          });
          res.on("error", () => (errors++, resolve()));
        },
      );
      req.on("error", () => (errors++, resolve()));
      req.end(body);
    });
  await Promise.all(
    Array.from({ length: spec.connections }, async () => {
      while (nowMs() < until) await one();
    }),
  );
  const durationS = (nowMs() - started) / 1000;
  agent.destroy();
  return {
    requests: latencies.length,
    durationS,
    rps: latencies.length / durationS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    errors,
    generator: "node",
  };
}
