/**
 * The command line as a user runs it: a real `llama-runner serve` process, its children, signals.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { shebangNodeFlags } from "../bench/gateway.js";

const CLI = fileURLToPath(new URL("./main.js", import.meta.url));
let home: string;
const started: ChildProcess[] = [];

before(async () => {
  home = await mkdtemp(join(tmpdir(), "lr-cli-"));
});
after(async () => {
  for (const child of started) child.kill("SIGKILL");
  await rm(home, { recursive: true, force: true });
});

const env = (extra: Record<string, string> = {}) => ({ ...process.env, LLAMA_RUNNER_HOME: home, LLAMA_RUNNER_LOG_LEVEL: "info", ...extra });

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!alive(pid)) return true;
    await sleep(50);
  }
  return !alive(pid);
}

function childrenOf(pid: number): number[] {
  try {
    return execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" })
      .split("\n")
      .map((s) => Number(s.trim()))
      .filter((n) => n > 0);
  } catch {
    return [];
  }
}

/** Starts `serve` and waits for both listeners; returns their ports from the log lines. */
async function serve(configFile: string): Promise<{ child: ChildProcess; ports: Record<string, number> }> {
  const child = spawn(process.execPath, [CLI, "serve", "--config", configFile], { env: env(), stdio: ["ignore", "pipe", "pipe"] });
  started.push(child);
  const ports: Record<string, number> = {};
  let out = "";
  child.stdout?.setEncoding("utf8");
  child.stderr?.setEncoding("utf8").on("data", (d: string) => (out += d));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (d: string) => {
      out += d;
      for (const m of out.matchAll(/(lmstudio|ollama) listener on http:\/\/[\d.]+:(\d+)/g)) ports[m[1] as string] = Number(m[2]);
      if (ports["lmstudio"] && ports["ollama"]) resolve();
    });
    child.once("exit", (code) => reject(new Error(`serve exited with ${code}: ${out}`)));
  });
  return { child, ports };
}

test("--help works on every command", () => {
  const root = execFileSync(process.execPath, [CLI, "--help"], { encoding: "utf8" });
  assert.match(root, /serve/);
  assert.match(root, /LLAMA_RUNNER_HOME/);
  const sub = execFileSync(process.execPath, [CLI, "serve", "--help"], { encoding: "utf8" });
  assert.match(sub, /--config <path>/);
});

test("`llama-runner` (its #! line) and `npm start` run node with the same flags, and node takes them", async () => {
  const { readFile } = await import("node:fs/promises");
  const flags = shebangNodeFlags(await readFile(CLI, "utf8"));
  assert.ok(flags.length > 0);
  const pkg = JSON.parse(await readFile(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8")) as { scripts: { start: string } };
  const start = /node((?: --?\S+)*) dist\/cli\/main\.js serve/.exec(pkg.scripts.start);
  assert.ok(start, pkg.scripts.start);
  assert.deepEqual(start[1]!.split(" ").filter(Boolean), flags);
  const version = execFileSync(process.execPath, [...flags, CLI, "--version"], { encoding: "utf8" });
  assert.match(version, /\d+\.\d+\.\d+/);
  assert.throws(() => shebangNodeFlags("#!/bin/sh\n"), /not a node #! line/);
  assert.deepEqual(shebangNodeFlags("#!/usr/bin/env node\n"), []);
});

test("a bad config stops start-up with every bad key named and a non-zero exit", async () => {
  const file = join(home, "bad.json");
  await writeFile(file, JSON.stringify({ concurrentRunners: 0, proxies: { lmstudio: { port: "x" } } }));
  const child = spawn(process.execPath, [CLI, "serve"], { env: env({ LLAMA_RUNNER_CONFIG: file }), stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const [code] = await once(child, "exit");
  assert.notEqual(code, 0);
  assert.match(stderr, /concurrentRunners/);
  assert.match(stderr, /proxies\.lmstudio\.port/);
  assert.ok(stderr.includes(file));
});

test("first start serves the demo model; SIGTERM stops the backend and exits cleanly", async () => {
  const file = join(home, "demo.json");
  await writeFile(file, JSON.stringify({ models_dir: join(home, "empty"), proxies: { ollama: { port: 0 }, lmstudio: { port: 0 } } }));
  const { child, ports } = await serve(file);
  const models = (await (await fetch(`http://127.0.0.1:${ports["lmstudio"]}/v1/models`)).json()) as { data: Array<{ id: string }> };
  assert.deepEqual(models.data.map((m) => m.id), ["llama-runner-demo"]);
  const chat = await fetch(`http://127.0.0.1:${ports["ollama"]}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model: "llama-runner-demo", messages: [{ role: "user", content: "hi" }], max_tokens: 3 }),
  });
  assert.equal(chat.status, 200, await chat.clone().text());
  const backends = childrenOf(child.pid ?? 0);
  assert.equal(backends.length, 1, "one backend process for the model");
  child.kill("SIGTERM");
  const [code] = await once(child, "exit");
  assert.equal(code, 0);
  for (const pid of backends) assert.ok(await waitGone(pid, 5000), `backend ${pid} stopped with the gateway`);
});

test("a SIGKILLed gateway leaves no orphan: its backend exits on its own", async () => {
  const file = join(home, "kill.json");
  await writeFile(file, JSON.stringify({ models_dir: join(home, "empty"), proxies: { ollama: { port: 0 }, lmstudio: { port: 0 } } }));
  const { child, ports } = await serve(file);
  const chat = await fetch(`http://127.0.0.1:${ports["lmstudio"]}/v1/completions`, {
    method: "POST",
    body: JSON.stringify({ model: "llama-runner-demo", prompt: "hi", max_tokens: 2 }),
  });
  assert.equal(chat.status, 200, await chat.clone().text());
  const backends = childrenOf(child.pid ?? 0);
  assert.equal(backends.length, 1);
  child.kill("SIGKILL");
  await once(child, "exit");
  for (const pid of backends) assert.ok(await waitGone(pid, 5000), `backend ${pid} exited after its gateway died`);
});
