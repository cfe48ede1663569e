import type { ModelEntry } from "../catalog/catalog.js";
import type { SpawnSpec } from "../runner/process.js";

export interface LaunchPlan {
  spawn: SpawnSpec;
  /** Path polled until it answers 200 (llama-server's `/health`). */
  healthPath: string;
  /** Parameters this backend does not understand: reported, never silently dropped. */
  ignoredParameters: string[];
}

/** How to start one kind of backend for a model. Pure: it builds a command line, it runs nothing. */
export interface Backend {
  readonly kind: string;
  plan(entry: ModelEntry, listen: { host: string; port: number }): LaunchPlan;
}
