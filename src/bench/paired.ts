/**
 * Added latency at concurrency 1, measured paired: one request to each target in turn (direct, nginx,
 * gateway, …), over and over, from one keep-alive connection per target. Whatever drifts during the run
 * (llama-server's own speed, the neighbours' load) drifts for every target alike, so the difference of the
 * medians is the proxy's own, far below what separate 5-second runs can resolve.
 */
import { Agent, request as httpRequest } from "node:http";
import { nowMs, percentile } from "./util.js";

export interface PairedResult {
  target: string;
  p50Ms: number;
  p90Ms: number;
  samples: number;
  errors: number;
}

function once(agent: Agent, url: URL, body: Buffer, headers: Record<string, string>): Promise<{ ms: number; ok: boolean }> {
  return new Promise((resolve) => {
    const t0 = nowMs();
    const req = httpRequest(
      { agent, host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers: { ...headers, "content-type": "application/json", "content-length": body.length } },
      (res) => {
        res.on("data", () => {});
        res.on("end", () => resolve({ ms: nowMs() - t0, ok: res.statusCode === 200 }));
        res.on("error", () => resolve({ ms: NaN, ok: false }));
      },
    );
    req.on("error", () => resolve({ ms: NaN, ok: false }));
    req.end(body);
  });
}

export async function pairedLatency(
  targets: { name: string; url: string }[],
  { body, rounds, headers = {} }: { body: string; rounds: number; headers?: Record<string, string> },
): Promise<PairedResult[]> {
  const buf = Buffer.from(body);
  const agents = targets.map(() => new Agent({ keepAlive: true, maxSockets: 1 }));
  const urls = targets.map((t) => new URL(`${t.url}/v1/chat/completions`));
  const samples = targets.map(() => [] as number[]);
  const errors = targets.map(() => 0);
  for (let round = 0; round < rounds; round++) {
    // Rotate the order, so no target always follows the same one.
    for (let k = 0; k < targets.length; k++) {
      const i = (round + k) % targets.length;
      const r = await once(agents[i]!, urls[i]!, buf, headers);
      if (r.ok) samples[i]!.push(r.ms);
      else errors[i]!++;
    }
  }
  for (const agent of agents) agent.destroy();
  return targets.map((t, i) => ({
    target: t.name,
    p50Ms: percentile(samples[i]!, 50),
    p90Ms: percentile(samples[i]!, 90),
    samples: samples[i]!.length,
    errors: errors[i]!,
  }));
}
