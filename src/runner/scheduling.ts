/**
 * Backends under SCHED_BATCH (Linux): a model computing tokens is a throughput job, and under the
 * default policy every request the gateway writes to it wakes it into preempting the gateway, which
 * then finishes that request's work after the backend's time slice, with caches the model's weights
 * have evicted. SCHED_BATCH backends never preempt on wakeup; they keep their full share of the CPU.
 * util-linux's `chrt` sets it and execs the program, so the pid stays the program's own; without
 * chrt (macOS, Windows, minimal images) programs run under the default policy.
 */
import { execFileSync } from "node:child_process";
import type { SpawnSpec } from "./process.js";

export type Scheduling = "batch" | "normal";

let chrt: string | undefined | null = null;

function chrtPath(): string | undefined {
  if (chrt === null) {
    chrt =
      process.platform !== "linux"
        ? undefined
        : ["/usr/bin/chrt", "/bin/chrt"].find((path) => {
            try {
              execFileSync(path, ["--batch", "0", "true"], { stdio: "ignore" });
              return true;
            } catch {
              return false;
            }
          });
  }
  return chrt;
}

export function scheduled(spec: SpawnSpec, scheduling: Scheduling): SpawnSpec {
  const path = scheduling === "batch" ? chrtPath() : undefined;
  return path ? { ...spec, command: path, args: ["--batch", "0", spec.command, ...spec.args] } : spec;
}
