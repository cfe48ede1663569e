/**
 * Reads the gateway's V8 CPU profiles (`node --cpu-prof`) and writes, next to each, a summary of where
 * the time went (self time by function and by package) and folded stacks for a flame graph
 * (flamegraph.pl, speedscope, or open the .cpuprofile itself in Chrome DevTools / speedscope).
 *
 *   node dist/bench/profile.js FILE.cpuprofile...   summarise profiles made by hand
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { pathToFileURL } from "node:url";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  busyMs: number;
  topFunctions: { name: string; selfMs: number; share: number }[];
  byPackage: { name: string; selfMs: number; share: number }[];
  /** Time with the function anywhere on the stack (callees included). */
  topInclusive: { name: string; selfMs: number; share: number }[];
}

function packageOf(url: string, name: string): string {
  if (!url) return name.startsWith("(") ? name : "(native)";
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith("node:")) return url.replace(/^node:internal\//, "node:").replace(/\/.*$/, "");
  const dist = /\/dist\/(.+)$/.exec(url);
  if (dist) return `llama-runner ${dist[1]!.split("/").slice(0, -1).join("/") || dist[1]}`;
  return url;
}

function shortUrl(url: string): string {
  const nm = /node_modules\/(.+)$/.exec(url);
  if (nm) return nm[1]!;
  const dist = /\/dist\/(.+)$/.exec(url);
  if (dist) return dist[1]!;
  return url.replace(/^node:internal\//, "node:");
}

export function summarizeProfile(file: string): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time before sample i; charge each sample the delta that follows it.
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    const dt = profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  const fn = new Map<string, number>();
  const pkg = new Map<string, number>();
  const folded = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    const { functionName, url, lineNumber } = node.callFrame;
    total += us;
    if (functionName === "(idle)") {
      idle += us;
      continue;
    }
    const key = `${functionName || "(anonymous)"}${url ? ` ${shortUrl(url)}:${lineNumber + 1}` : ""}`;
    fn.set(key, (fn.get(key) ?? 0) + us);
    const p = packageOf(url, functionName);
    pkg.set(p, (pkg.get(p) ?? 0) + us);
    const stack: string[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      if (f.functionName === "(root)") break;
      stack.push(`${f.functionName || "(anonymous)"}${f.url ? ` ${shortUrl(f.url)}:${f.lineNumber + 1}` : ""}`.replace(/;/g, ","));
    }
    for (const frame of new Set(stack)) inclusive.set(frame, (inclusive.get(frame) ?? 0) + us);
    const line = stack.reverse().join(";");
    folded.set(line, (folded.get(line) ?? 0) + us);
  }
  writeFileSync(
    file.replace(/\.cpuprofile$/, ".folded"),
    [...folded].map(([stack, us]) => `${stack} ${Math.round(us)}`).join("\n") + "\n",
  );
  const busy = total - idle;
  const top = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, selfMs: Math.round(us / 100) / 10, share: Math.round((us / Math.max(1, busy)) * 1000) / 10 }));
  const summary: ProfileSummary = {
    file: basename(file),
    totalMs: Math.round(total / 1000),
    busyMs: Math.round(busy / 1000),
    topFunctions: top(fn, 30),
    byPackage: top(pkg, 15),
    topInclusive: top(inclusive, 40),
  };
  const md = [
    `# ${summary.file}`,
    "",
    `Sampled ${summary.totalMs} ms, busy (not idle) ${summary.busyMs} ms. Shares are of busy time.`,
    "",
    "| package | self ms | share |",
    "|---|---:|---:|",
    ...summary.byPackage.map((r) => `| ${r.name} | ${r.selfMs} | ${r.share}% |`),
    "",
    "| function | self ms | share |",
    "|---|---:|---:|",
    ...summary.topFunctions.map((r) => `| \`${r.name}\` | ${r.selfMs} | ${r.share}% |`),
    "",
    "| function (inclusive: callees counted) | total ms | share |",
    "|---|---:|---:|",
    ...summary.topInclusive.map((r) => `| \`${r.name}\` | ${r.selfMs} | ${r.share}% |`),
    "",
  ].join("\n");
  writeFileSync(file.replace(/\.cpuprofile$/, ".summary.md"), md);
  return summary;
}

export async function summarizeProfiles(dir: string): Promise<ProfileSummary[]> {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .sort()
    .map((f) => summarizeProfile(join(dir, f)));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  for (const file of process.argv.slice(2)) {
    const s = summarizeProfile(file);
    process.stdout.write(readFileSync(file.replace(/\.cpuprofile$/, ".summary.md"), "utf8"));
    process.stdout.write(`(folded stacks: ${file.replace(/\.cpuprofile$/, ".folded")}; ${s.busyMs} ms busy)\n\n`);
  }
}
