import type { ModelEntry } from "../catalog/catalog.js";
import { GatewayError } from "../errors/index.js";

export function requirePath(entry: ModelEntry, backend: string): string {
  if (entry.path === undefined) throw new GatewayError("server_error", `Model '${entry.id}' has no model_path, which the ${backend} backend needs.`);
  return entry.path;
}
