/**
 * What the gateway needs to know about a GGUF file, read from its header only, cached by path + size +
 * mtime. The header is parsed in a worker thread (summary.ts), started on demand and ended when idle:
 * its vocabulary arrays never enter the gateway's heap, only the summary crosses over.
 */
import { stat } from "node:fs/promises";
import { Worker } from "node:worker_threads";

export interface GgufSummary {
  architecture: string;
  name: string | undefined;
  basename: string | undefined;
  contextLength: number | undefined;
  embeddingLength: number | undefined;
  blockCount: number | undefined;
  headCount: number | undefined;
  headCountKv: number | undefined;
  parameterCount: number;
  /** e.g. "Q4_K_M", "F16". */
  quantization: string;
  fileType: number | undefined;
  sizeBytes: number;
  modifiedMs: number;
  chatTemplate: string | undefined;
  /** Architectures that only embed, or a model that declares a pooling type. */
  isEmbedding: boolean;
  poolingType: number | undefined;
  license: string | undefined;
  /** Tokens in the vocabulary (0 when the header has no token list). */
  vocabularySize: number;
  /** The text of the special tokens the gateway writes into prompts itself (BOS, fill-in-the-middle). */
  specialTokens: SpecialTokens;
  /** Flat `key: value` metadata without the tokenizer's big arrays (Ollama's `model_info`). */
  flat: Record<string, string | number | boolean>;
}

export interface SpecialTokens {
  bos?: string;
  /** The BOS token's id, when the tokenizer puts it in front of every prompt (`add_bos_token`). */
  prependedBosId?: number;
  fimPrefix?: string;
  fimSuffix?: string;
  fimMiddle?: string;
}

const cache = new Map<string, { key: string; summary: GgufSummary }>();

export async function readGgufSummary(path: string): Promise<GgufSummary> {
  const info = await stat(path);
  const key = `${info.size}:${info.mtimeMs}`;
  const hit = cache.get(path);
  if (hit && hit.key === key) return hit.summary;
  const summary = await reader.summarize(path, info.size, info.mtimeMs);
  cache.set(path, { key, summary });
  return summary;
}

/** How long the worker waits for another file before it ends (a catalogue is read in one burst). */
const IDLE_MS = 200;

type Reply = { id: number; summary: GgufSummary } | { id: number; error: { message: string; code?: string } };

class HeaderReader {
  private worker: Worker | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve(summary: GgufSummary): void; reject(error: Error): void }>();

  summarize(path: string, sizeBytes: number, modifiedMs: number): Promise<GgufSummary> {
    clearTimeout(this.idleTimer);
    const worker = this.worker ?? this.start();
    // Referenced while it owes answers; an idle worker must not keep a finished program (a CLI command, a test) alive.
    worker.ref();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, path, sizeBytes, modifiedMs });
    });
  }

  private start(): Worker {
    const worker = new Worker(new URL("./summary-worker.js", import.meta.url));
    worker.on("message", (reply: Reply) => {
      const waiter = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if ("summary" in reply) waiter?.resolve(reply.summary);
      else waiter?.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code }));
      if (this.pending.size === 0) {
        worker.unref();
        this.idleTimer = setTimeout(() => this.stop(), IDLE_MS).unref();
      }
    });
    // Only the current worker owes answers: one that was stopped when idle ends quietly.
    const failAll = (error: Error) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
    };
    worker.on("error", failAll);
    worker.on("exit", (code) => failAll(new Error(`the GGUF reader thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }

  private stop(): void {
    const worker = this.worker;
    this.worker = undefined;
    void worker?.terminate();
  }
}

const reader = new HeaderReader();

