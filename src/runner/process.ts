/**
 * One backend process: spawned in its own process group so a stop reaches everything it started,
 * its output kept in a ring buffer, its exit observed. The only importer of node:child_process.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { LogRing } from "./log-ring.js";

export interface SpawnSpec {
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * For programs that ignore their stdin (llama-server, arbitrary commands): a shell runs the program
 * and watches the gateway's pipe in its place. EOF on that pipe means the gateway is gone, even by
 * SIGKILL, and the program is terminated, then killed, so it never outlives the gateway.
 */
const WATCHDOG = [
  // Background jobs of a non-interactive shell read /dev/null unless told otherwise: keep the pipe on fd 3.
  "exec 3<&0",
  // The watcher: on EOF, TERM the program, then KILL it if it is still there after 5 s (checking, so
  // a pid reused by another process is not hit once the program is gone).
  '( cat <&3 >/dev/null; kill -TERM $$ 2>/dev/null || exit; for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.5; kill -0 $$ 2>/dev/null || exit; done; kill -KILL $$ ) >/dev/null 2>&1 &',
  // exec: the spawned pid, the process group leader and ${PID} are the program itself, not a shell.
  'exec "$@" </dev/null 3<&-',
].join("\n");

export function withWatchdog(spec: SpawnSpec): SpawnSpec {
  return { ...spec, command: "/bin/sh", args: ["-c", WATCHDOG, "llama-runner-watchdog", spec.command, ...spec.args] };
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class BackendProcess {
  readonly logs = new LogRing();
  readonly exited: Promise<ExitInfo>;
  private exitInfo: ExitInfo | undefined;

  private constructor(private readonly child: ChildProcess) {
    child.stdout?.setEncoding("utf8").on("data", (d: string) => this.logs.push(d));
    child.stderr?.setEncoding("utf8").on("data", (d: string) => this.logs.push(d));
    // A write to a dead child's stdin must not crash the gateway.
    child.stdin?.on("error", () => {});
    this.exited = new Promise((resolve) => {
      const done = (info: ExitInfo) => {
        if (this.exitInfo) return;
        this.logs.flush();
        this.exitInfo = info;
        resolve(info);
      };
      child.once("exit", (code, signal) => {
        // Whatever the leader left behind in its group (a watchdog, a grandchild) goes with it.
        this.signalGroup("SIGKILL");
        done({ code, signal });
      });
      child.once("error", (error) => {
        this.logs.push(`failed to start: ${error.message}\n`);
        done({ code: null, signal: null });
      });
    });
  }

  /**
   * stdin stays an open pipe: backends that watch it (the embedded runner) exit by themselves when
   * the gateway dies, even by SIGKILL, so no orphan is left behind.
   */
  static spawn(spec: SpawnSpec): BackendProcess {
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env ?? process.env,
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
    });
    return new BackendProcess(child);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get hasExited(): boolean {
    return this.exitInfo !== undefined;
  }

  /** SIGTERM to the whole group, SIGKILL after the grace period. Resolves once the process is gone. */
  async stop(graceMs: number): Promise<ExitInfo> {
    if (this.exitInfo) return this.exitInfo;
    this.signalGroup("SIGTERM");
    const timer = setTimeout(() => this.signalGroup("SIGKILL"), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
      // Grandchildren that ignored SIGTERM must not outlive their leader.
      this.signalGroup("SIGKILL");
    }
  }

  private signalGroup(signal: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // The group is already gone.
    }
  }
}

export function describeExit(info: ExitInfo): string {
  return info.signal ? `was killed by ${info.signal}` : `exited with code ${info.code}`;
}
