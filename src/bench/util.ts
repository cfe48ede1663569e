/**
 * Small helpers shared by the bench: statistics, /proc readings, pinned child processes, waiting for
 * ports. Of the product it imports only how backends are spawned (so the bench's llama-server runs as the
 * gateway runs it); the gateway itself is measured from the outside.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { type Scheduling, scheduled } from "../runner/scheduling.js";

export { sleep };

export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (finite.length === 0) return NaN;
  const mid = finite.length >> 1;
  return finite.length % 2 === 1 ? finite[mid]! : (finite[mid - 1]! + finite[mid]!) / 2;
}

/** Nearest-rank percentile of an unsorted sample (p in 0..100). */
export function percentile(values: ArrayLike<number>, p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values as ArrayLike<number>).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

let clockTicks: number | undefined;
/** Kernel clock ticks per second (USER_HZ), the unit of utime and stime in /proc/PID/stat. */
export function clkTck(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime of one process (all its threads), in milliseconds; NaN when it is gone. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of stat (1-based) are utime and stime; `fields` starts at field 3.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clkTck();
  } catch {
    return NaN;
  }
}

/** Sum of cpuMs over several processes (nginx master + worker). */
export const cpuMsOf = (pids: readonly number[]): number => pids.reduce((sum, pid) => sum + cpuMs(pid), 0);

/** Resident set size in bytes from /proc/PID/status (VmRSS); NaN when it is gone. */
export function rssBytes(pid: number): number {
  try {
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb === undefined ? NaN : Number(kb) * 1024;
  } catch {
    return NaN;
  }
}

/** Direct children of a process, from /proc/PID/task/*\/children. */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Polls `url` until it answers 200 (or `deadlineMs` passes, or `child` exits). */
export async function waitHttpOk(url: string, { timeoutMs = 60_000, intervalMs = 20, child }: { timeoutMs?: number; intervalMs?: number; child?: Child } = {}): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child?.exited) throw new Error(`${child.name} exited before ${url} answered: ${child.tail()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      if (res.status === 200) return;
    } catch {
      // not up yet
    }
    await sleep(intervalMs);
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms${child ? `: ${child.tail()}` : ""}`);
}

/** Every child the bench started and that has not exited yet, so an interrupted run can stop them all. */
export const liveChildren = new Set<Child>();

/** Stops every child still running (SIGTERM, then SIGKILL after the grace period). */
export async function stopAllChildren(graceMs = 3000): Promise<void> {
  await Promise.all([...liveChildren].map((child) => child.stop(graceMs).catch(() => {})));
}

/** A child process the bench started: its output kept (last lines), stoppable by its own pid only. */
export class Child {
  exited = false;
  exitCode: number | null = null;
  readonly lines: string[] = [];
  private readonly listeners: ((line: string) => void)[] = [];
  readonly done: Promise<void>;

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    let partial = "";
    const onData = (data: string) => {
      const parts = (partial + data).split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) {
        this.lines.push(line);
        if (this.lines.length > 400) this.lines.splice(0, this.lines.length - 400);
        for (const listener of this.listeners) listener(line);
      }
    };
    proc.stdout?.setEncoding("utf8").on("data", onData);
    proc.stderr?.setEncoding("utf8").on("data", onData);
    proc.stdin?.on("error", () => {});
    liveChildren.add(this);
    this.done = new Promise((resolve) => {
      proc.once("exit", (code) => {
        this.exited = true;
        this.exitCode = code;
        liveChildren.delete(this);
        resolve();
      });
      proc.once("error", (error) => {
        this.lines.push(`spawn error: ${error.message}`);
        this.exited = true;
        liveChildren.delete(this);
        resolve();
      });
    });
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  tail(n = 15): string {
    return this.lines.slice(-n).join("\n");
  }

  onLine(listener: (line: string) => void): void {
    this.listeners.push(listener);
  }

  /** Resolves with the first line (already seen or future) that matches. */
  waitForLine(pattern: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      for (const line of this.lines) {
        const m = pattern.exec(line);
        if (m) return resolve(m);
      }
      const timer = setTimeout(() => reject(new Error(`${this.name}: no line matching ${pattern} within ${timeoutMs} ms:\n${this.tail()}`)), timeoutMs);
      void this.done.then(() => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (code ${this.exitCode}) before printing ${pattern}:\n${this.tail()}`));
      });
      this.onLine((line) => {
        const m = pattern.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m);
        }
      });
    });
  }

  /** SIGTERM, then SIGKILL after `graceMs`; always by this child's own pid. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.exited) return;
    this.proc.kill("SIGTERM");
    const killed = await Promise.race([this.done.then(() => true), sleep(graceMs).then(() => false)]);
    if (!killed && !this.exited) {
      this.proc.kill("SIGKILL");
      await this.done;
    }
  }
}

export interface SpawnOptions {
  /** CPU list for taskset (e.g. "0"); undefined = not pinned. */
  cpus?: string | undefined;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** `batch`: as the gateway runs the backends it spawns (runner/scheduling.ts). Default: normal. */
  scheduling?: Scheduling;
}

let setpriv: string | undefined | null = null;
/** util-linux's setpriv, when present: it sets a parent-death signal and execs the program. */
function setprivPath(): string | undefined {
  if (setpriv === null) {
    setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((path) => {
      try {
        execFileSync(path, ["--pdeathsig", "SIGTERM", "--", "true"], { stdio: "ignore" });
        return true;
      } catch {
        return false;
      }
    });
  }
  return setpriv;
}

/** `command args` run so that it gets SIGTERM when its parent (this process) dies, where setpriv exists. */
export function guardedCommand(command: string, args: string[]): [string, string[]] {
  const guard = setprivPath();
  return guard ? [guard, ["--pdeathsig", "SIGTERM", "--", command, ...args]] : [command, args];
}

/**
 * Spawns `command` pinned with taskset. taskset and setpriv exec in turn, so the pid is the program's
 * own; setpriv gives it a parent-death signal, so nothing outlives a bench that is killed outright
 * (a test runner's timeout, SIGKILL) — a SIGTERM then stops each server, which stops its own children.
 */
export function startChild(name: string, command: string, args: string[], { cpus, env, cwd, scheduling = "normal" }: SpawnOptions = {}): Child {
  const program = scheduled({ command, args }, scheduling);
  const guarded = guardedCommand(program.command, program.args);
  const [cmd, argv] = cpus === undefined ? guarded : ["taskset", ["-c", cpus, ...guarded.flat()]];
  const proc = spawn(cmd, argv, { env: env ?? process.env, cwd, stdio: ["pipe", "pipe", "pipe"] });
  return new Child(name, proc);
}

export const fmt = {
  ms: (v: number, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : "–"),
  x: (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : "–"),
  int: (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "–"),
  mb: (bytes: number) => (Number.isFinite(bytes) ? `${(bytes / 2 ** 20).toFixed(1)} MB` : "–"),
  us: (v: number) => (Number.isFinite(v) ? `${Math.round(v)} µs` : "–"),
};
