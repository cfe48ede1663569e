/**
 * Which models must go so that `target` fits. Pure: called for every queued request, so it never
 * logs or mutates; the caller acts on the answer once.
 */
import type { Instance, SchedulerLimits } from "./types.js";

export type EvictionPlan =
  | { kind: "fits" }
  | { kind: "evict"; victims: Instance[] }
  | { kind: "wait" }
  | { kind: "never"; reason: string };

const fmt = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

export function evictionFor(target: { model: string; estimateBytes: number }, running: Instance[], limits: SchedulerLimits): EvictionPlan {
  const budget = limits.memoryBudgetBytes;
  if (budget !== null && target.estimateBytes > budget) {
    return { kind: "never", reason: `model '${target.model}' needs an estimated ${fmt(target.estimateBytes)}, more than the whole memory budget of ${fmt(budget)}` };
  }
  const used = running.reduce((sum, i) => sum + i.memoryBytes, 0);
  const fits = (count: number, bytes: number) =>
    count + 1 <= limits.maxLoaded && (budget === null || bytes + target.estimateBytes <= budget);
  if (fits(running.length, used)) return { kind: "fits" };

  // Pinned models stay; the rest can go, least recently used idle ones first, then busy ones (drained).
  const movable = running.filter((i) => !i.pinned);
  const pinned = running.filter((i) => i.pinned);
  const pinnedBytes = pinned.reduce((sum, i) => sum + i.memoryBytes, 0);
  if (!fits(pinned.length, pinnedBytes)) {
    return {
      kind: "never",
      reason: `model '${target.model}' (estimated ${fmt(target.estimateBytes)}) cannot fit beside the pinned models ${pinned.map((i) => `'${i.model}'`).join(", ")} within ${limits.maxLoaded} loaded model(s)${budget === null ? "" : ` and a memory budget of ${fmt(budget)}`}`,
    };
  }
  const order = [...movable].sort((a, b) => rank(a) - rank(b) || a.lastUsed - b.lastUsed);
  const victims: Instance[] = [];
  let count = running.length;
  let bytes = used;
  for (const instance of order) {
    if (fits(count, bytes)) break;
    victims.push(instance);
    count--;
    bytes -= instance.memoryBytes;
  }
  // Loading and stopping models free their room by themselves (or become evictable when ready).
  const actionable = victims.filter((i) => i.phase === "ready");
  return actionable.length > 0 ? { kind: "evict", victims: actionable } : { kind: "wait" };
}

/** Stopping ones are already leaving; idle ready ones go next; busy ones are drained; loading ones last. */
function rank(instance: Instance): number {
  if (instance.phase === "stopping") return 0;
  if (instance.phase === "ready") return instance.inFlight === 0 ? 1 : 2;
  return 3;
}
