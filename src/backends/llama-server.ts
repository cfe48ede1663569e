/**
 * A real llama.cpp `llama-server`, as configured in `llama-runtimes`. Parameters become flags the way
 * the original config.json meant them: `ctx_size: 4096` → `--ctx-size 4096`, `true` → a bare flag,
 * `false`/`null` → omitted.
 */
import type { ModelEntry, ParameterValue } from "../catalog/catalog.js";
import { requirePath } from "./model-path.js";
import type { Backend, ProcessPlan } from "./types.js";

// The gateway owns these: a user value would point the backend at the wrong model or port.
const RESERVED = new Set(["model", "m", "host", "port", "alias"]);

export function parametersToFlags(parameters: Record<string, ParameterValue>): { args: string[]; ignored: string[] } {
  const args: string[] = [];
  const ignored: string[] = [];
  for (const [key, value] of Object.entries(parameters)) {
    if (RESERVED.has(key)) {
      ignored.push(key);
      continue;
    }
    const flag = `--${key.replaceAll("_", "-")}`;
    if (value === true) args.push(flag);
    else if (value === false || value === null) continue;
    else args.push(flag, String(value));
  }
  return { args, ignored };
}

export function llamaServerBackend(binary: string, runtimeParameters: Record<string, ParameterValue>): Backend {
  return {
    kind: "llama-server",
    plan(entry: ModelEntry, listen): ProcessPlan {
      const { args, ignored } = parametersToFlags({ ...runtimeParameters, ...entry.parameters });
      return {
        kind: "process",
        watchesStdin: false,
        spawn: {
          command: binary,
          args: ["--model", requirePath(entry, "llama-server"), "--host", listen.host, "--port", String(listen.port), "--alias", entry.upstreamModel, ...args],
        },
        healthPath: entry.healthPath,
        ignoredParameters: ignored,
      };
    },
  };
}
