import { setTimeout as sleep } from "node:timers/promises";

export interface HealthWaitOptions {
  url: string;
  timeoutMs: number;
  /** Resolves when the process exits: waiting stops at once instead of running into the timeout. */
  exited: Promise<unknown>;
  intervalMs?: number;
}

export type HealthResult = { ok: true } | { ok: false; reason: "timeout" | "exited" };

/** Polls a health URL until it answers 200; readiness never comes from parsing logs. */
export async function waitHealthy({ url, timeoutMs, exited, intervalMs = 50 }: HealthWaitOptions): Promise<HealthResult> {
  const deadline = Date.now() + timeoutMs;
  let gone = false;
  void exited.then(() => (gone = true));
  while (Date.now() < deadline) {
    if (gone) return { ok: false, reason: "exited" };
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(intervalMs * 20, 1000)) });
      await res.body?.cancel();
      if (res.status === 200) return { ok: true };
    } catch {
      // Not listening yet.
    }
    await sleep(intervalMs);
  }
  return { ok: false, reason: gone ? "exited" : "timeout" };
}
