/**
 * Gives the gateway's heap back once it has gone quiet.
 *
 * V8 collects its old generation when that fills up, not when the process goes idle, and its memory
 * reducer (which shrinks the heap after activity) is armed only by a full collection. Requests that
 * stream live long enough for their objects to be promoted, so after a burst of streams an idle
 * gateway kept that garbage, and the young generation V8 had grown for the burst: in the memory
 * bench the settled RSS went 128 → 183 MB over four rounds of 200 streams and a request burst, while a
 * memory-reducing collection after each round brought it back to 89–90 MB every time.
 *
 * So: when nothing has been in flight for `idleMs`, the event loop is all but idle at that check, and the
 * heap has grown by more than GROWTH_BYTES since the last collection, one memory-reducing collection runs (the
 * inspector's `HeapProfiler.collectGarbage`, which is V8's low-memory notification: public API, no
 * process flag). It runs once per busy spell, while no request is waiting on it.
 *
 * It has a price, paid by the next burst: a low-memory collection throws optimized code away, so V8
 * serves a saturating load slower until it has re-optimized (measured on the fake upstream at c=64: the
 * first 3 s at 8.3k instead of 12.5k requests/s, back to normal after ~15 s; ~250 functions optimized
 * again), and a plain full GC (`gc()`) avoids that but gives no memory back. So the default idle
 * time is long (30 s): a gap that rarely splits a heavy burst. For LLM traffic the price is ~20 µs of
 * gateway CPU per request for the seconds after such a gap.
 */
import type { Session } from "node:inspector";
import { performance, type EventLoopUtilization } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";
import type { Logger } from "pino";

/** Heap growth (committed bytes) that is worth a collection: a burst grows the young generation alone to 16–32 MB. */
export const GROWTH_BYTES = 16 * 2 ** 20;
/** Below this share of busy event-loop time in a check period, a collection that is due may run (the gateway's own timers use ~0.01 %). */
export const IDLE_UTILIZATION = 0.01;

export interface IdleCheck {
  /** Time since the previous check. */
  periodMs: number;
  /** Share of that time the event loop was busy. */
  utilization: number;
  /** A request is in flight or waiting. */
  busy: boolean;
  /** Committed heap now. */
  heapBytes: number;
}

export interface IdleHeapState {
  idleForMs: number;
  /** Committed heap right after the last collection (0 before the first). */
  baselineBytes: number;
}

/** The decision alone: how long the gateway has been idle, and whether to collect now. */
export function checkIdle(state: IdleHeapState, check: IdleCheck, idleMs: number): { idleForMs: number; collect: boolean } {
  // Idle time is time without requests. The event loop's load only gates the collection itself: V8's own
  // clean-up after a burst (over 1 % of a 2 s check) used to restart the count, and the collection then
  // missed whole 34 s pauses (one collection in four rounds of a memory probe; four in four since).
  const idleForMs = check.busy ? 0 : state.idleForMs + check.periodMs;
  return { idleForMs, collect: idleForMs >= idleMs && check.utilization < IDLE_UTILIZATION && check.heapBytes - state.baselineBytes > GROWTH_BYTES };
}

export interface IdleHeapOptions {
  /** Idle time before a collection; 0 switches collections off. */
  idleMs: number;
  /** Whether a request is in flight or waiting. */
  busy(): boolean;
  logger: Logger;
}

const MB = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

export class IdleHeapCollector {
  private state: IdleHeapState = { idleForMs: 0, baselineBytes: 0 };
  private readonly timer: NodeJS.Timeout | undefined;
  private lastCheck = performance.now();
  private lastLoop: EventLoopUtilization = performance.eventLoopUtilization();
  private collecting = false;
  private done = 0;

  constructor(private readonly options: IdleHeapOptions) {
    if (options.idleMs <= 0) return;
    // Checks a few times per idle window, so a collection comes at most a quarter window late.
    this.timer = setInterval(() => this.check(), Math.max(50, Math.min(2000, options.idleMs / 4)));
    this.timer.unref();
  }

  /** Collections run so far. */
  get collections(): number {
    return this.done;
  }

  close(): void {
    clearInterval(this.timer);
  }

  private check(): void {
    const now = performance.now();
    const loop = performance.eventLoopUtilization();
    const check: IdleCheck = {
      periodMs: now - this.lastCheck,
      utilization: performance.eventLoopUtilization(loop, this.lastLoop).utilization,
      busy: this.options.busy() || this.collecting,
      heapBytes: getHeapStatistics().total_heap_size,
    };
    this.lastCheck = now;
    this.lastLoop = loop;
    const { idleForMs, collect } = checkIdle(this.state, check, this.options.idleMs);
    this.state = { ...this.state, idleForMs };
    if (collect) void this.collect(check.heapBytes);
  }

  private async collect(before: number): Promise<void> {
    this.collecting = true;
    let session: Session;
    try {
      // Imported when first needed: in a Node built without the inspector, importing it throws.
      const { Session } = await import("node:inspector");
      session = new Session();
      session.connect();
    } catch (error) {
      this.options.logger.warn({ err: (error as Error).message }, "idle heap collection unavailable: the gateway keeps what V8 keeps");
      this.close();
      return;
    }
    const started = performance.now();
    session.post("HeapProfiler.collectGarbage", (error) => {
      const after = getHeapStatistics().total_heap_size;
      this.collecting = false;
      this.done++;
      this.state = { idleForMs: 0, baselineBytes: after };
      // Disconnecting inside the protocol callback leaves the session's handle keeping the process alive.
      setImmediate(() => session.disconnect());
      if (error) this.options.logger.warn({ err: error.message }, "idle heap collection failed");
      else this.options.logger.info(`idle: heap collected, ${MB(before)} → ${MB(after)} MB in ${(performance.now() - started).toFixed(0)} ms`);
    });
  }
}
