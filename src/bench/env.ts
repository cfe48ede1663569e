/**
 * The machine: which cores the servers and the load generator get, the external tools (wrk, nginx,
 * taskset) and installing the missing ones from Debian when we are root, and the facts recorded with
 * every result.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import os from "node:os";

export interface Cores {
  /** taskset CPU list for the servers under test (upstream, proxies, gateway). */
  servers: string | undefined;
  /** taskset CPU list for the load generator and the bench itself. */
  client: string | undefined;
  note: string;
}

function which(name: string): string | undefined {
  const r = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  const path = r.stdout.trim();
  return r.status === 0 && path ? path : undefined;
}

/** CPUs this process may run on, from `taskset -pc`. */
function allowedCpus(): number[] {
  try {
    const out = execFileSync("taskset", ["-pc", String(process.pid)], { encoding: "utf8" });
    const list = out.split(":").pop()?.trim() ?? "";
    const cpus: number[] = [];
    for (const part of list.split(",")) {
      const [a, b] = part.split("-").map(Number);
      if (a === undefined || !Number.isFinite(a)) continue;
      for (let c = a; c <= (b ?? a); c++) cpus.push(c);
    }
    return cpus;
  } catch {
    return [];
  }
}

/** Servers on the first allowed core, load generator on the second; pins this process (all threads) to the latter. */
export function pickCores(): Cores {
  if (!which("taskset")) return { servers: undefined, client: undefined, note: "taskset missing: nothing pinned (install util-linux)" };
  const cpus = allowedCpus();
  if (cpus.length < 2) return { servers: undefined, client: undefined, note: `only ${cpus.length} CPU allowed: nothing pinned` };
  const servers = String(cpus[0]);
  const client = String(cpus[1]);
  spawnSync("taskset", ["-a", "-p", "-c", client, String(process.pid)], { stdio: "ignore" });
  return { servers, client, note: `servers on CPU ${servers}, load generator and bench on CPU ${client}${cpus.length > 2 ? ` (${cpus.length} CPUs allowed, others unused)` : ""}` };
}

export interface Tools {
  wrk: string | undefined;
  nginx: string | undefined;
  notes: string[];
}

const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0;

/** Finds wrk and nginx; installs the missing ones with apt-get when allowed and root. */
export function ensureTools({ install, without = [] }: { install: boolean; without?: string[] }): Tools {
  const notes: string[] = [];
  if (without.length > 0) {
    notes.push(`pretending not to have: ${without.join(", ")} (--without)`);
    install = false;
  }
  const findNginx = () => (without.includes("nginx") ? undefined : (which("nginx") ?? (existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : undefined)));
  const findWrk = () => (without.includes("wrk") ? undefined : which("wrk"));
  let wrk = findWrk();
  let nginx = findNginx();
  const missing = [!wrk && "wrk", !nginx && "nginx-light"].filter((x): x is string => Boolean(x));
  if (missing.length > 0) {
    if (!install) {
      notes.push(`not installed: ${missing.join(", ")} (installing disabled with --no-install)`);
    } else if (!isRoot() || !which("apt-get")) {
      notes.push(
        `not installed: ${missing.join(", ")}. Install them (Debian/Ubuntu: sudo apt-get install -y wrk nginx-light) and run the bench again; ` +
          `it installs them itself only when run as root with apt-get.`,
      );
    } else {
      process.stderr.write(`bench: installing ${missing.join(", ")} with apt-get…\n`);
      const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
      let r = spawnSync("apt-get", ["install", "-y", "--no-install-recommends", ...missing], { stdio: ["ignore", "ignore", "pipe"], env, encoding: "utf8" });
      if (r.status !== 0) {
        spawnSync("apt-get", ["update"], { stdio: "ignore", env });
        r = spawnSync("apt-get", ["install", "-y", "--no-install-recommends", ...missing], { stdio: ["ignore", "ignore", "pipe"], env, encoding: "utf8" });
      }
      if (r.status !== 0) notes.push(`apt-get install ${missing.join(" ")} failed: ${r.stderr.trim().split("\n").slice(-2).join(" ")}`);
      wrk = findWrk();
      nginx = findNginx();
    }
  }
  return { wrk, nginx, notes };
}

function firstLine(cmd: string, args: string[]): string | undefined {
  try {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    return `${r.stdout}${r.stderr}`.trim().split("\n")[0];
  } catch {
    return undefined;
  }
}

export interface MachineFacts {
  date: string;
  host: string;
  cpuModel: string | undefined;
  cpus: number;
  memoryBytes: number;
  kernel: string;
  node: string;
  loadAverageAtStart: number[];
  loadAverageAtEnd?: number[];
  pinning: string;
  wrk: string | undefined;
  nginx: string | undefined;
  llamaServer: string | undefined;
  gitCommit: string | undefined;
  gitDirty: boolean | undefined;
}

export function machineFacts(cores: Cores, tools: Tools, llamaServer: string | undefined): MachineFacts {
  let gitCommit: string | undefined;
  let gitDirty: boolean | undefined;
  try {
    gitCommit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    gitDirty = execFileSync("git", ["status", "--porcelain"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim() !== "";
  } catch {
    // not a git checkout
  }
  let cpuModel: string | undefined;
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1];
  } catch {
    cpuModel = os.cpus()[0]?.model;
  }
  return {
    date: new Date().toISOString(),
    host: os.hostname(),
    cpuModel,
    // Not availableParallelism(): the bench has pinned itself to one CPU by now.
    cpus: os.cpus().length,
    memoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    loadAverageAtStart: os.loadavg().map((v) => Math.round(v * 100) / 100),
    pinning: cores.note,
    wrk: tools.wrk ? firstLine(tools.wrk, ["-v"]) : undefined,
    nginx: tools.nginx ? firstLine(tools.nginx, ["-v"]) : undefined,
    llamaServer,
    gitCommit,
    gitDirty,
  };
}
