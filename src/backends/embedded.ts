/** The zero-set-up backend: our own runner process on node-llama-cpp (src/embedded/main.ts). */
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import type { ModelEntry, ParameterValue } from "../catalog/catalog.js";
import { requirePath } from "./model-path.js";
import type { Backend, ProcessPlan } from "./types.js";

const RUNNER_ENTRY = fileURLToPath(new URL("../embedded/main.js", import.meta.url));

/** Parameter name in the config (llama-server spelling, as in the original config.json) → runner flag. */
const FLAGS: Record<string, string> = {
  threads: "--threads",
  ctx_size: "--ctx-size",
  parallel: "--parallel",
  batch_size: "--batch-size",
};

// GPU offload has no meaning for the CPU-only runner; accepting it keeps llama-server configs portable.
const ACCEPTED_WITHOUT_EFFECT = new Set(["gpu_layers", "n_gpu_layers", "ngl"]);

/** node-llama-cpp's own default collapses to ~1 token/s on small machines, so threads are always explicit. */
export const defaultThreads = (): number => Math.max(1, availableParallelism() - 1);

export const embeddedBackend: Backend = {
  kind: "embedded",
  plan(entry: ModelEntry, listen): ProcessPlan {
    const args = [RUNNER_ENTRY, "--model", requirePath(entry, "embedded"), "--host", listen.host, "--port", String(listen.port), "--alias", entry.upstreamModel];
    const ignored: string[] = [];
    const params: Record<string, ParameterValue> = { threads: defaultThreads(), ...entry.parameters };
    for (const [key, value] of Object.entries(params)) {
      const flag = FLAGS[key];
      if (flag && (typeof value === "number" || typeof value === "string")) args.push(flag, String(value));
      else if (!ACCEPTED_WITHOUT_EFFECT.has(key)) ignored.push(key);
    }
    return { kind: "process", spawn: { command: process.execPath, args }, watchesStdin: true, healthPath: entry.healthPath, ignoredParameters: ignored };
  },
};
