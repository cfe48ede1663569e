import type { ModelEntry } from "../catalog/catalog.js";
import type { Config } from "../config/schema.js";
import { GatewayError } from "../errors/index.js";
import { commandBackend, urlBackend } from "./command.js";
import { embeddedBackend } from "./embedded.js";
import { llamaServerBackend } from "./llama-server.js";
import type { Backend } from "./types.js";

export type { Backend, LaunchPlan, ProcessPlan, RemotePlan } from "./types.js";

/** Picks the backend for a model from its `runtime`: "embedded", "command", "url" or a key of `llama-runtimes`. */
export function backendFor(entry: ModelEntry, config: Config): Backend {
  if (entry.runtime === "embedded") return embeddedBackend;
  if (entry.runtime === "command") return commandBackend;
  if (entry.runtime === "url") return urlBackend;
  const runtime = config["llama-runtimes"][entry.runtime];
  if (!runtime) {
    throw new GatewayError(
      "server_error",
      `Model '${entry.id}' uses runtime '${entry.runtime}', which is not "embedded", "command", "url" or a key of llama-runtimes.`,
    );
  }
  return llamaServerBackend(runtime.runtime, runtime.parameters);
}
