/**
 * Memory a model will need once loaded, before it is measured: the weights (file size, mapped) plus
 * the KV cache from the GGUF dimensions × context × parallel slots, plus a fixed allowance for the
 * process and its compute buffers.
 */
import type { ModelEntry } from "../catalog/catalog.js";

const PROCESS_OVERHEAD_BYTES = 64 * 2 ** 20;
const F16_BYTES = 2;
/** The embedded runner's default context when none is configured. */
export const DEFAULT_CONTEXT = 4096;

export function contextSize(entry: ModelEntry): number {
  const configured = Number(entry.parameters["ctx_size"] ?? entry.parameters["c"]);
  if (Number.isFinite(configured) && configured > 0) return configured;
  return Math.min(entry.gguf?.contextLength ?? DEFAULT_CONTEXT, DEFAULT_CONTEXT);
}

export function parallelSlots(entry: ModelEntry): number {
  const configured = Number(entry.parameters["parallel"] ?? entry.parameters["np"]);
  return Number.isInteger(configured) && configured > 0 ? configured : 1;
}

/**
 * Requests the gateway lets one backend have at once: its slots plus `queue_ahead` more that wait in the
 * backend's own queue. A request that waits there starts the moment a slot frees, in the same step as the
 * others that do: with the gateway admitting only as many as the slots, each freed slot stayed empty for
 * a round trip through the gateway, llama-server batched fewer prompts and spent ~12% more CPU per request
 * (bench, llama-server with 4 slots at 16 and 64 clients: 0.76×/0.79× of nginx's requests/s with 4
 * admitted, 0.87×/0.90× with 8).
 */
export function admissionLimit(entry: ModelEntry): number {
  const slots = parallelSlots(entry);
  return slots + (entry.queueAhead ?? (entry.runtime === "command" ? 0 : slots));
}

export function estimateMemoryBytes(entry: ModelEntry): number {
  if (entry.memoryBytes !== undefined) return entry.memoryBytes;
  const gguf = entry.gguf;
  if (!gguf) return entry.runtime === "url" ? 0 : PROCESS_OVERHEAD_BYTES;
  const layers = gguf.blockCount ?? 0;
  const heads = gguf.headCount ?? 1;
  const kvHeads = gguf.headCountKv ?? heads;
  const headDim = (gguf.embeddingLength ?? 0) / Math.max(1, heads);
  const kvCache = 2 * layers * contextSize(entry) * parallelSlots(entry) * kvHeads * headDim * F16_BYTES;
  return Math.round(gguf.sizeBytes + kvCache + PROCESS_OVERHEAD_BYTES);
}
