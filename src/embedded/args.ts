/**
 * Command line of the embedded runner. The flag names are llama-server's, so the gateway's backend adapters
 * build the same argv for either backend.
 */
import { availableParallelism } from "node:os";
import { basename } from "node:path";
import { parseArgs } from "node:util";

export interface RunnerOptions {
  modelPath: string;
  host: string;
  port: number;
  alias: string;
  threads: number;
  /** Total context across all parallel sequences, as llama-server's `--ctx-size` (0 = the trained size); undefined = default. */
  ctxSize: number | undefined;
  parallel: number;
  batchSize: number | undefined;
}

export const usage = `usage: node dist/embedded/main.js --model PATH --port N [--host 127.0.0.1] [--alias NAME]
       [--threads T] [--ctx-size C] [--parallel P] [--batch-size B]`;

export class UsageError extends Error {}

function integer(name: string, raw: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} must be an integer between ${min} and ${max}, got '${raw}'`);
  }
  return value;
}

/** The thread count we fall back to: one core is left for Node's own event loop and libuv threads. */
export function defaultThreads(): number {
  return Math.max(1, availableParallelism() - 1);
}

export function parseRunnerArgs(argv: string[]): RunnerOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        model: { type: "string", short: "m" },
        port: { type: "string" },
        host: { type: "string" },
        alias: { type: "string", short: "a" },
        threads: { type: "string", short: "t" },
        "ctx-size": { type: "string", short: "c" },
        parallel: { type: "string" },
        "batch-size": { type: "string", short: "b" },
      },
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.model === undefined || values.model === "") throw new UsageError("--model is required");
  const port = integer("port", values.port, 0, 65535);
  if (port === undefined) throw new UsageError("--port is required");
  return {
    modelPath: values.model,
    host: values.host ?? "127.0.0.1",
    port,
    alias: values.alias ?? basename(values.model),
    threads: integer("threads", values.threads, 1, 1024) ?? defaultThreads(),
    ctxSize: integer("ctx-size", values["ctx-size"], 0),
    parallel: integer("parallel", values.parallel, 1, 256) ?? 1,
    batchSize: integer("batch-size", values["batch-size"], 1),
  };
}
