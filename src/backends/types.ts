import type { ModelEntry } from "../catalog/catalog.js";
import type { SpawnSpec } from "../runner/process.js";

/** A backend the gateway starts as a child process on a port it chose. */
export interface ProcessPlan {
  kind: "process";
  spawn: SpawnSpec;
  /** Run to stop it before falling back to signals (a `command` backend's stop_command). */
  stop?: SpawnSpec;
  /** Whether the program itself exits when its stdin closes; otherwise a watchdog does it for it. */
  watchesStdin: boolean;
  /** Path polled until it answers 200 (llama-server's `/health`). */
  healthPath: string;
  /** Parameters this backend does not understand: reported, never silently dropped. */
  ignoredParameters: string[];
}

/** An upstream that already runs somewhere: only health-checked, never spawned or stopped. */
export interface RemotePlan {
  kind: "remote";
  baseUrl: string;
  healthPath: string;
}

export type LaunchPlan = ProcessPlan | RemotePlan;

/** How to start one kind of backend for a model. Pure: it builds a command line, it runs nothing. */
export interface Backend {
  readonly kind: string;
  plan(entry: ModelEntry, listen: { host: string; port: number }): LaunchPlan;
}
