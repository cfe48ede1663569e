/**
 * Hands out the context's sequences one request at a time, first come first served. A sequence is the
 * unit of parallelism (`--parallel`), so a request beyond that waits here instead of failing.
 */
import type { LlamaContextSequence } from "node-llama-cpp";

export interface SequenceLease {
  readonly sequence: LlamaContextSequence;
  /** Gives the sequence back; safe to call more than once. */
  release(): void;
}

interface Waiter {
  grant(sequence: LlamaContextSequence): void;
  fail(error: Error): void;
}

export class SequencePool {
  private readonly idle: LlamaContextSequence[];
  private readonly waiters: Waiter[] = [];
  private closed = false;

  constructor(sequences: readonly LlamaContextSequence[]) {
    this.idle = [...sequences];
  }

  get idleCount(): number {
    return this.idle.length;
  }

  get waitingCount(): number {
    return this.waiters.length;
  }

  /**
   * Resolves with a sequence whose state is empty: every request starts from a clean KV cache so its output
   * cannot depend on what an earlier request left behind (llama.cpp's results vary with batch splits).
   */
  async acquire(signal: AbortSignal): Promise<SequenceLease> {
    const sequence = await this.take(signal);
    let released = false;
    const lease: SequenceLease = {
      sequence,
      release: () => {
        if (released) return;
        released = true;
        this.give(sequence);
      },
    };
    try {
      await sequence.clearHistory();
    } catch (error) {
      lease.release();
      throw error;
    }
    return lease;
  }

  /** Rejects every waiter; used on shutdown. */
  close(reason: Error): void {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) waiter.fail(reason);
  }

  private take(signal: AbortSignal): Promise<LlamaContextSequence> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.closed) return Promise.reject(new Error("the runner is shutting down"));
    const ready = this.idle.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(signal.reason);
      };
      const waiter: Waiter = {
        grant: (sequence) => {
          signal.removeEventListener("abort", onAbort);
          resolve(sequence);
        },
        fail: (error) => {
          signal.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  private give(sequence: LlamaContextSequence): void {
    const next = this.waiters.shift();
    if (next !== undefined) next.grant(sequence);
    else this.idle.push(sequence);
  }
}
