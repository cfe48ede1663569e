/**
 * The results of one bench run, the issue's targets evaluated on them (ratios measured in the same
 * run), and the markdown that is printed, saved, and included in the README.
 */
import type { BackendsResult } from "./backends.js";
import type { ColdStartResult } from "./coldstart.js";
import type { Sizes } from "./context.js";
import type { MachineFacts } from "./env.js";
import type { MemoryResult } from "./memory.js";
import type { LoadRow, NonStreamResult } from "./nonstream.js";
import type { ProfileSummary } from "./profile.js";
import type { StreamingResult, StreamRow } from "./streaming.js";
import type { SwapResult } from "./swap.js";
import { fmt } from "./util.js";

export const SECTIONS = ["nonstream-fake", "nonstream-llama", "streaming", "coldstart", "swap", "memory", "backends"] as const;
export type SectionName = (typeof SECTIONS)[number];

export interface BenchResults {
  machine: MachineFacts;
  mode: "full" | "quick";
  sizes: Sizes;
  model: { path: string; options: Record<string, unknown> };
  notes: string[];
  errors: Partial<Record<SectionName, string>>;
  "nonstream-fake"?: NonStreamResult;
  "nonstream-llama"?: NonStreamResult;
  streaming?: StreamingResult;
  coldstart?: ColdStartResult;
  swap?: SwapResult;
  memory?: MemoryResult;
  backends?: BackendsResult;
  profiles?: ProfileSummary[];
  durationS?: number;
  targets?: TargetCheck[];
}

export interface TargetCheck {
  id: string;
  what: string;
  /** The measured figure, as shown. */
  value: string;
  target: string;
  /** true met, false missed, null not measured. */
  met: boolean | null;
  ratio: number;
}

const MB = 2 ** 20;

function row(rows: LoadRow[] | undefined, target: string, c: number): LoadRow | undefined {
  return rows?.find((r) => r.target === target && r.concurrency === c);
}

function streamRow(rows: StreamRow[] | undefined, target: string): StreamRow | undefined {
  return rows?.find((r) => r.target === target);
}

/** The issue's targets, each a ratio (or an amount) from this run. */
export function evaluateTargets(r: BenchResults): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const add = (id: string, what: string, ratio: number, target: string, ok: (v: number) => boolean, show: (v: number) => string = fmt.x) =>
    checks.push({ id, what, value: show(ratio), target, met: Number.isFinite(ratio) ? ok(ratio) : null, ratio });

  const llama = r["nonstream-llama"]?.rows;
  for (const c of [16, 64]) {
    add(`llama-rps-c${c}`, `llama-server: req/s at c=${c}, gateway ÷ nginx`, (row(llama, "gateway", c)?.rps ?? NaN) / (row(llama, "nginx", c)?.rps ?? NaN), "≥ 0.95×", (v) => v >= 0.95);
  }
  const paired = (res: NonStreamResult | undefined, target: string) => res?.paired?.find((p) => p.target === target)?.p50Ms ?? NaN;
  const llamaPaired = paired(r["nonstream-llama"], "gateway") - paired(r["nonstream-llama"], "direct");
  add(
    "llama-p50-c1",
    "llama-server: added p50 at c=1, gateway − direct (paired)",
    Number.isFinite(llamaPaired) ? llamaPaired : (row(llama, "gateway", 1)?.p50Ms ?? NaN) - (row(llama, "direct", 1)?.p50Ms ?? NaN),
    "≤ 0.3 ms",
    (v) => v <= 0.3,
    (v) => `${fmt.ms(v, 3)} ms`,
  );

  const fake = r["nonstream-fake"]?.rows;
  const fc = Math.max(...(r.sizes.concurrency ?? [64]));
  add(`fake-rps-c${fc}`, `fake upstream: req/s at c=${fc}, gateway ÷ nginx`, (row(fake, "gateway", fc)?.rps ?? NaN) / (row(fake, "nginx", fc)?.rps ?? NaN), "≥ 0.5×", (v) => v >= 0.5);
  add(`fake-cpu-c${fc}`, `fake upstream: CPU per request at c=${fc}, gateway ÷ nginx`, (row(fake, "gateway", fc)?.proxyCpuUs ?? NaN) / (row(fake, "nginx", fc)?.proxyCpuUs ?? NaN), "≤ 3×", (v) => v <= 3);
  add(`fake-p99-c${fc}`, `fake upstream: p99 at c=${fc}, gateway ÷ nginx`, (row(fake, "gateway", fc)?.p99Ms ?? NaN) / (row(fake, "nginx", fc)?.p99Ms ?? NaN), "≤ 1.7×", (v) => v <= 1.7);

  const s = r.streaming;
  const sg = streamRow(s?.rows, "gateway");
  const sn = streamRow(s?.rows, "nginx");
  const sd = streamRow(s?.rows, "direct");
  add("stream-chunks", `${s?.parallelStreams ?? 64} parallel ${s?.chunks ?? 1000}-chunk streams: chunks/s, gateway ÷ nginx`, (sg?.parallelChunksPerS ?? NaN) / (sn?.parallelChunksPerS ?? NaN), "≥ 0.95×", (v) => v >= 0.95);
  checks.push({
    id: "stream-errors",
    what: "streams through the gateway: errors and missing chunks",
    value: sg ? String(sg.parallelErrors + sg.pacedErrors + sg.missingChunks) : "–",
    target: "0",
    met: sg ? sg.parallelErrors + sg.pacedErrors + sg.missingChunks === 0 : null,
    ratio: sg ? sg.parallelErrors + sg.pacedErrors + sg.missingChunks : NaN,
  });
  add("stream-paced-cpu", `paced streams (a chunk every ${s?.pacedDelayMs ?? 50} ms): CPU per chunk, gateway ÷ nginx`, (sg?.pacedCpuUsPerChunk ?? NaN) / (sn?.pacedCpuUsPerChunk ?? NaN), "≤ 2×", (v) => v <= 2);
  add("stream-single", "one stream: time to last chunk, gateway ÷ direct", (sg?.singleTotalMs ?? NaN) / (sd?.singleTotalMs ?? NaN), "≤ 1.05×", (v) => v <= 1.05);

  add("cold-share", "cold start: the gateway's share of a load", r.coldstart?.gatewayShareMs ?? NaN, "≤ 100 ms", (v) => v <= 100, (v) => `${fmt.ms(v, 1)} ms`);

  const sw = r.swap;
  checks.push({
    id: "swap",
    what: "swap: loads vs runs of one model in the served order",
    value: sw ? `${sw.loads} loads / ${sw.servedSegments} runs` : "–",
    target: "loads ≤ runs",
    met: sw ? sw.loads <= sw.servedSegments && sw.errors === 0 : null,
    ratio: sw ? sw.loads / sw.servedSegments : NaN,
  });

  const m = r.memory;
  add("mem-idle", "gateway RSS, idle", (m?.idleBytes ?? NaN) / MB, "≤ 80 MB", (v) => v <= 80, (v) => `${fmt.ms(v, 1)} MB`);
  add("mem-streams", `gateway RSS, ${m?.streams ?? 200} streams open`, (m?.maxOpenBytes ?? NaN) / MB, "≤ 100 MB", (v) => v <= 100, (v) => `${fmt.ms(v, 1)} MB`);
  add("mem-growth", `RSS growth over ${m?.afterRoundBytes.length ?? 0} rounds of load (idle after round 1 → last)`, (m?.growthBytes ?? NaN) / MB, "≤ 2 MB (none beyond noise)", (v) => v <= 2, (v) => `${v >= 0 ? "+" : ""}${fmt.ms(v, 1)} MB`);
  return checks;
}

const mark = (met: boolean | null) => (met === null ? "n/a" : met ? "✅ met" : "❌ missed");

function loadTable(title: string, res: NonStreamResult | undefined): string[] {
  if (!res) return [];
  const lines = [
    `### ${title}`,
    "",
    "| c | path | req/s | ÷ nginx | p50 ms | p99 ms | p50 − direct | proxy CPU µs/req | ÷ nginx | upstream CPU µs/req | errors |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  const concurrencies = [...new Set(res.rows.map((r) => r.concurrency))];
  for (const c of concurrencies) {
    const nginx = row(res.rows, "nginx", c);
    const direct = row(res.rows, "direct", c);
    for (const r of res.rows.filter((x) => x.concurrency === c)) {
      lines.push(
        `| ${c} | ${r.target} | ${fmt.int(r.rps)} | ${fmt.x(r.rps / (nginx?.rps ?? NaN))} | ${fmt.ms(r.p50Ms, 3)} | ${fmt.ms(r.p99Ms, 3)} | ` +
          `${r.target === "direct" ? "" : `${fmt.ms(r.p50Ms - (direct?.p50Ms ?? NaN), 3)} ms`} | ${r.target === "direct" ? "" : fmt.int(r.proxyCpuUs)} | ` +
          `${r.target === "direct" || r.target === "nginx" ? "" : fmt.x(r.proxyCpuUs / (nginx?.proxyCpuUs ?? NaN))} | ${fmt.int(r.upstreamCpuUs)} | ${r.errors} |`,
      );
    }
  }
  if (res.paired?.length) {
    const direct = res.paired.find((p) => p.target === "direct");
    lines.push(
      "",
      `Paired at c=1 (requests to each path in turn, ${res.paired[0]?.samples ?? 0} each): ` +
        res.paired
          .map((p) => `${p.target} p50 ${fmt.ms(p.p50Ms, 3)} ms${p.target === "direct" ? "" : ` (+${fmt.ms(p.p50Ms - (direct?.p50Ms ?? NaN), 3)})`}${p.errors ? `, ${p.errors} errors` : ""}`)
          .join(" · "),
    );
  }
  if (res.rows.some((r) => r.generator === "node")) lines.push("", "Load generated by the Node stand-in (wrk missing).");
  return [...lines, ...res.notes.map((n) => `- ${n}`), ""];
}

export function renderMarkdown(r: BenchResults): { full: string; targets: string } {
  r.targets = evaluateTargets(r);
  const m = r.machine;
  const s = r.sizes;
  const head = [
    `## Benchmark results (${r.mode === "quick" ? "QUICK smoke run: sizes too small to mean anything" : "full run"})`,
    "",
    `${m.date.slice(0, 16).replace("T", " ")} UTC · ${m.cpuModel ?? "?"} × ${m.cpus} · ${(m.memoryBytes / 2 ** 30).toFixed(0)} GiB · ${m.kernel} · Node ${m.node} · ` +
      `${m.nginx ?? "no nginx"} · ${m.wrk?.split(" [")[0] ?? "no wrk"} · commit ${m.gitCommit ?? "?"}${m.gitDirty ? " (+ local changes)" : ""}  `,
    `${m.pinning}. Load average ${m.loadAverageAtStart.join(" / ")} at start, ${m.loadAverageAtEnd?.join(" / ") ?? "?"} at end` +
      `${(m.loadAverageAtStart[0] ?? 0) > 0.5 ? " — **the machine was shared while this ran: absolute numbers are noise, ratios from the same run are what count**" : ""}.  `,
    `Medians of ${s.reps}; wrk runs of ${s.durationS} s. Model for llama-server rows: ${String(r.model.options["name"])} (${JSON.stringify(r.model.options)}).` +
      `${r.durationS ? ` The run took ${Math.round(r.durationS)} s.` : ""}`,
    "",
  ];
  const targets = [
    "### Targets (ratios in this run)",
    "",
    "| target | measured | goal | |",
    "|---|---:|---:|---|",
    ...r.targets.map((t) => `| ${t.what} | ${t.value} | ${t.target} | ${mark(t.met)} |`),
    "",
  ];
  const body: string[] = [];
  body.push(...loadTable("1. Proxy overhead, non-streaming: fake upstream (300-byte answer)", r["nonstream-fake"]));
  body.push(...loadTable("1b. Proxy overhead, non-streaming: llama-server, tiny model, `max_tokens: 1`", r["nonstream-llama"]));
  const st = r.streaming;
  if (st) {
    const d = streamRow(st.rows, "direct");
    const n = streamRow(st.rows, "nginx");
    body.push(
      "### 2. Streaming relay",
      "",
      `One stream of ${st.chunks} chunks (a chunk per ms); ${st.parallelStreams} such streams at once; ${st.pacedStreams} paced streams of ${st.pacedChunks} chunks, one every ${st.pacedDelayMs} ms, on every path at once. ` +
        "Chunk delay = upstream write → client read, from a CLOCK_MONOTONIC stamp in each chunk; \"added\" is over direct.",
      "",
      "| path | 1 stream: to last chunk | ÷ direct | added delay p50 / p99 | parallel: chunks/s | ÷ nginx | added delay p50 / p99 | CPU µs/chunk | paced: CPU µs/chunk | ÷ nginx | errors / missing |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
      ...st.rows.map((x) => {
        const direct = x.target === "direct";
        return (
          `| ${x.target} | ${fmt.ms(x.singleTotalMs, 1)} ms | ${fmt.x(x.singleTotalMs / (d?.singleTotalMs ?? NaN))} | ` +
          `${direct ? `(${fmt.ms(x.singleLatP50Ms, 3)} / ${fmt.ms(x.singleLatP99Ms, 3)} ms)` : `${fmt.ms(x.singleLatP50Ms - (d?.singleLatP50Ms ?? NaN), 3)} / ${fmt.ms(x.singleLatP99Ms - (d?.singleLatP99Ms ?? NaN), 3)} ms`} | ` +
          `${fmt.int(x.parallelChunksPerS)} | ${fmt.x(x.parallelChunksPerS / (n?.parallelChunksPerS ?? NaN))} | ` +
          `${direct ? `(${fmt.ms(x.parallelLatP50Ms, 2)} / ${fmt.ms(x.parallelLatP99Ms, 2)} ms)` : `${fmt.ms(x.parallelLatP50Ms - (d?.parallelLatP50Ms ?? NaN), 2)} / ${fmt.ms(x.parallelLatP99Ms - (d?.parallelLatP99Ms ?? NaN), 2)} ms`} | ` +
          `${direct ? "" : fmt.ms(x.parallelCpuUsPerChunk, 1)} | ${direct ? "" : fmt.ms(x.pacedCpuUsPerChunk, 1)} | ${direct || x.target === "nginx" ? "" : fmt.x(x.pacedCpuUsPerChunk / (n?.pacedCpuUsPerChunk ?? NaN))} | ` +
          `${x.parallelErrors + x.pacedErrors} / ${x.missingChunks} |`
        );
      }),
      ...st.notes.map((note) => `- ${note}`),
      "",
    );
  }
  const c = r.coldstart;
  if (c) {
    body.push(
      "### 3. Cold start (llama-server, model unloaded)",
      "",
      "| backend alone: spawn → healthy | backend alone: spawn → first token | gateway: request → first token | gateway's share | gateway's own load_ms (50 ms health poll) |",
      "|---:|---:|---:|---:|---:|",
      `| ${fmt.ms(c.directHealthyMs, 1)} ms | ${fmt.ms(c.directFirstTokenMs, 1)} ms | ${fmt.ms(c.gatewayFirstTokenMs, 1)} ms | **${fmt.ms(c.gatewayShareMs, 1)} ms** | ${fmt.ms(c.gatewayLoadMs, 0)} ms |`,
      "",
    );
  }
  const w = r.swap;
  if (w) {
    body.push(
      "### 4. Swap (two llama-server models, one loaded at a time)",
      "",
      "| clients × requests | req/s | loads | runs in served order | runs in sent order (a swap per change) | lower bound | errors |",
      "|---|---:|---:|---:|---:|---:|---:|",
      `| ${w.clients} × ${w.requestsPerClient} (alternating A B A B) | ${fmt.ms(w.rps, 1)} | ${w.loads} | ${w.servedSegments} | ${w.sentSegments} | ${w.lowerBound} | ${w.errors} |`,
      "",
    );
  }
  const mem = r.memory;
  if (mem) {
    body.push(
      "### 5. Memory (RSS): the gateway, and the bare Node proxy under the same load",
      "",
      `| proxy | idle | ${mem.streams} streams open: peak per round | open: steady (median while all open) | idle after each round | growth |`,
      "|---|---:|---:|---:|---:|---:|",
      ...(
        [
          ["gateway", mem],
          ["bare-node", mem.bareNode],
        ] as const
      ).map(([name, run]) => `| ${name} | ${fmt.mb(run.idleBytes)} | ${run.openPeakBytes.map(fmt.mb).join(", ")} | ${run.openSteadyBytes.map(fmt.mb).join(", ")} | ${run.afterRoundBytes.map(fmt.mb).join(", ")} | ${fmt.mb(run.growthBytes)} |`),
      "",
    );
  }
  const b = r.backends;
  if (b) {
    const ls = b.rows.find((x) => x.backend === "llama-server");
    body.push(
      `### 6. Backends (same GGUF, ${b.threads} thread, same core, ${b.maxTokens} tokens, one request at a time)`,
      "",
      "| backend | spawn → healthy | first token | tokens/s (client) | ÷ llama-server | tokens/s (reported) | prompt tokens/s (reported) |",
      "|---|---:|---:|---:|---:|---:|---:|",
      ...b.rows.map(
        (x) =>
          `| ${x.backend} | ${fmt.int(x.loadMs)} ms | ${fmt.ms(x.firstTokenMs, 1)} ms | ${fmt.ms(x.tokensPerS, 1)} | ${fmt.x(x.tokensPerS / (ls?.tokensPerS ?? NaN))} | ${fmt.ms(x.reportedTokensPerS, 1)} | ${fmt.ms(x.reportedPromptTokensPerS, 1)} |`,
      ),
      "",
    );
  }
  const tail: string[] = [];
  const errs = Object.entries(r.errors);
  if (errs.length > 0) tail.push("### Failed sections", "", ...errs.map(([k, v]) => `- **${k}**: ${String(v).split("\n")[0]}`), "");
  if (r.notes.length > 0) tail.push("### Notes", "", ...r.notes.map((n) => `- ${n}`), "");
  if (r.profiles?.length) {
    tail.push("### Gateway CPU profiles (self time by package)", "");
    for (const p of r.profiles) tail.push(`- ${p.file} (${p.busyMs} ms busy): ${p.byPackage.slice(0, 8).map((x) => `${x.name} ${x.share}%`).join(", ")}`);
    tail.push("");
  }
  const targetsText = [...head, ...targets].join("\n");
  return { full: [...head, ...targets, ...body, ...tail].join("\n"), targets: targetsText };
}
