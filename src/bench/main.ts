#!/usr/bin/env node
/**
 * `npm run bench`: the gateway against the physical limit (direct) and against nginx, in one run.
 *
 *   node dist/bench/main.js [--quick] [--only a,b] [--out DIR] [--profile] [--no-install] [--reps N] [--duration S]
 *
 * Sections: nonstream-fake, nonstream-llama, streaming, coldstart, swap, memory, backends.
 * Writes bench/results/<stamp>.json and .md, and bench/results/latest.md (full runs) for the README.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { BENCH_MODEL_OPTIONS, ensureTinyLlamaGguf } from "../catalog/demo/tiny-llama.js";
import { findLlamaServer } from "../runner/llama-server-binary.js";
import { backends } from "./backends.js";
import { coldStart } from "./coldstart.js";
import { type Ctx, FULL, QUICK, type Sizes } from "./context.js";
import { ensureTools, machineFacts, pickCores } from "./env.js";
import { memory } from "./memory.js";
import { nonStreaming } from "./nonstream.js";
import { summarizeProfiles } from "./profile.js";
import { type BenchResults, renderMarkdown, SECTIONS, type SectionName } from "./report.js";
import { streaming } from "./streaming.js";
import { stopAllChildren } from "./util.js";
import { swap } from "./swap.js";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    out: { type: "string" },
    profile: { type: "boolean", default: false },
    "no-install": { type: "boolean", default: false },
    without: { type: "string" },
    model: { type: "string" },
    reps: { type: "string" },
    duration: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  process.stdout.write(`usage: npm run bench -- [--quick] [--only ${SECTIONS.join(",")}] [--out DIR] [--profile] [--no-install] [--reps N] [--duration S]
  --quick       tiny sizes, one repetition (the smoke test's mode; well under a minute)
  --only        run only these sections
  --out DIR     results folder (default bench/results); latest.md is written only by full runs into the default folder
  --profile     run the gateway with --cpu-prof in the fake-upstream sections and summarise the profiles
  --no-install  never apt-get install wrk/nginx (missing tools then skip the rows that need them)
  --without wrk,nginx  behave as if these were not installed (to try the fallbacks)
  --model PATH  the GGUF for the llama-server and embedded rows (default: generated, BENCH_MODEL_OPTIONS)
`);
  process.exit(0);
}

const sizes: Sizes = { ...(values.quick ? QUICK : FULL) };
if (values.reps) sizes.reps = Math.max(1, Number(values.reps));
if (values.duration) sizes.durationS = Math.max(1, Number(values.duration));
const only = values.only ? (values.only.split(",").map((s) => s.trim()) as SectionName[]) : [...SECTIONS];
for (const name of only) {
  if (!SECTIONS.includes(name)) {
    process.stderr.write(`bench: unknown section '${name}' (expected: ${SECTIONS.join(", ")})\n`);
    process.exit(2);
  }
}
const defaultOut = resolve("bench", "results");
const outDir = resolve(values.out ?? defaultOut);
const started = Date.now();
const log = (message: string) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${message}\n`);

const cores = pickCores();
const tools = ensureTools({ install: !values["no-install"], without: values.without ? values.without.split(",") : [] });
for (const note of tools.notes) log(`NOTE: ${note}`);
if (!values.quick && (!tools.wrk || !tools.nginx)) {
  process.stderr.write(`bench: the full bench needs wrk and nginx; ${tools.notes.join(" ")}\n(--quick runs without them, skipping or substituting what is missing.)\n`);
  process.exit(1);
}
const llamaServer = await findLlamaServer();
if (!llamaServer) log("NOTE: llama-server is not built (npm run build:llama-server): its rows are skipped");
const dir = mkdtempSync(join(os.tmpdir(), "llama-runner-bench-"));
const stamp = new Date().toISOString().replace(/[:.]/g, "-").replace(/Z$/, "");
const profileDir = values.profile ? join(outDir, "profiles", stamp) : undefined;
if (profileDir) mkdirSync(profileDir, { recursive: true });
const modelOptions = values.quick ? { name: "bench-quick" } : { ...BENCH_MODEL_OPTIONS, name: "bench" };
const modelPath = values.model ? resolve(values.model) : await ensureTinyLlamaGguf(join(os.tmpdir(), "llama-runner-test-models"), modelOptions);

const ctx: Ctx = { sizes, cores, tools, dir, llamaServer, modelPath, profileDir, log, running: new Set() };
const results: BenchResults = {
  machine: machineFacts(cores, tools, llamaServer),
  mode: values.quick ? "quick" : "full",
  sizes,
  model: { path: modelPath, options: values.model ? { name: basename(modelPath) } : modelOptions },
  notes: [...tools.notes],
  errors: {},
};

let interrupted = false;
const cleanup = async () => {
  for (const thing of [...ctx.running]) await thing.stop().catch(() => {});
  // Anything started but not yet handed over to a section (a signal during its start-up) goes too.
  await stopAllChildren();
  rmSync(dir, { recursive: true, force: true });
};
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping everything the bench started`);
    void cleanup().then(() => process.exit(130));
  });
}

log(`bench ${results.mode}: ${cores.note}; load generator ${tools.wrk ? "wrk" : "node (wrk missing)"}; model ${modelPath}`);
const run = async <K extends SectionName>(name: K, fn: () => Promise<NonNullable<BenchResults[K]>>, needs?: string) => {
  if (!only.includes(name) || interrupted) return;
  if (needs) {
    results.notes.push(`${name}: skipped (${needs})`);
    log(`${name}: skipped (${needs})`);
    return;
  }
  log(`${name}…`);
  try {
    results[name] = await fn();
  } catch (error) {
    results.errors[name] = (error as Error).stack ?? String(error);
    log(`${name} FAILED: ${(error as Error).stack ?? String(error)}`);
  }
};

try {
  await run("nonstream-fake", () => nonStreaming(ctx, "fake"));
  await run("nonstream-llama", () => nonStreaming(ctx, "llama-server"), llamaServer ? undefined : "llama-server not built");
  await run("streaming", () => streaming(ctx));
  await run("coldstart", () => coldStart(ctx), llamaServer ? undefined : "llama-server not built");
  await run("swap", () => swap(ctx), llamaServer ? undefined : "llama-server not built");
  await run("memory", () => memory(ctx));
  await run("backends", () => backends(ctx), llamaServer ? undefined : "llama-server not built");
} finally {
  await cleanup();
}
if (profileDir) {
  results.profiles = await summarizeProfiles(profileDir);
  log(`profiles and their summaries: ${profileDir}`);
}
results.machine.loadAverageAtEnd = os.loadavg().map((v) => Math.round(v * 100) / 100);
results.durationS = Math.round((Date.now() - started) / 100) / 10;

const markdown = renderMarkdown(results);
mkdirSync(outDir, { recursive: true });
const base = join(outDir, `${stamp}${values.quick ? "-quick" : ""}`);
writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(`${base}.md`, markdown.full);
const partial = values.only !== undefined;
if (!values.quick && !partial && outDir === defaultOut) writeFileSync(join(outDir, "latest.md"), markdown.full);
process.stdout.write(`${markdown.full}\n`);
log(`results: ${base}.json, ${base}.md${!values.quick && !partial && outDir === defaultOut ? `, ${join(outDir, "latest.md")}` : ""}`);
process.exit(Object.keys(results.errors).length > 0 ? 1 : 0);
