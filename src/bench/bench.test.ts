/**
 * Smoke test of `npm run bench`: the quick mode runs every section at tiny size and produces a
 * well-formed table and JSON. No timing is asserted: on a shared machine a number proves nothing.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import type { BenchResults } from "./report.js";
import { guardedCommand } from "./util.js";

const MAIN = fileURLToPath(new URL("./main.js", import.meta.url));

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Guarded: if this test process dies (a runner's timeout), the bench and its servers go with it.
    const [command, argv] = guardedCommand(process.execPath, [MAIN, ...args]);
    const child = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The rows of the markdown table under `heading`, each split into its cells. */
function table(markdown: string, heading: string): string[][] {
  const lines = markdown.split("\n");
  const start = lines.findIndex((l) => l.startsWith(heading));
  assert.ok(start >= 0, `no "${heading}" in the output`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith("#")) break;
    if (line.startsWith("|")) rows.push(line.slice(1, -1).split("|").map((c) => c.trim()));
  }
  return rows;
}

test("npm run bench -- --quick runs every section and prints a well-formed table", { timeout: 240_000 }, async () => {
  const out = await mkdtemp(join(tmpdir(), "lr-bench-smoke-"));
  try {
    const { code, stdout, stderr } = await run(["--quick", "--no-install", "--out", out]);
    assert.equal(code, 0, `bench exited with ${code}:\n${stderr.slice(-4000)}`);

    const targets = table(stdout, "### Targets");
    assert.ok(targets.length >= 3, "the targets table has a header, a separator and rows");
    const [header, separator, ...rows] = targets;
    assert.deepEqual(header, ["target", "measured", "goal", ""]);
    assert.ok(separator!.every((c) => /^-+:?$|^:?-+:?$/.test(c)), `separator row: ${separator!.join("|")}`);
    assert.ok(rows.length >= 15, `one row per target, got ${rows.length}`);
    for (const row of rows) {
      assert.equal(row.length, 4, `four cells: ${row.join(" | ")}`);
      assert.match(row[3]!, /^(✅ met|❌ missed|n\/a)$/);
    }

    const files = await readdir(out);
    const json = files.find((f) => f.endsWith("-quick.json"));
    const md = files.find((f) => f.endsWith("-quick.md"));
    assert.ok(json && md, `results written: ${files.join(", ")}`);
    assert.ok(!files.includes("latest.md"), "a quick run never replaces the README's table");
    const results = JSON.parse(await readFile(join(out, json), "utf8")) as BenchResults;
    assert.equal(results.mode, "quick");
    assert.deepEqual(results.errors, {});
    assert.ok(results.machine.cpus >= 1 && results.machine.node.startsWith("v"));
    assert.equal(results.targets?.length, rows.length);
    for (const section of ["nonstream-fake", "streaming", "memory"] as const) assert.ok(results[section], `section ${section} ran`);
    assert.ok((results["nonstream-fake"]?.rows.length ?? 0) > 0);
    assert.equal(stdout, `${await readFile(join(out, md), "utf8")}\n`, "what is printed is what is saved");
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
