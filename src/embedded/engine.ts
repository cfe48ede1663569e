/**
 * Owns everything node-llama-cpp: the binding, the model, the generation context and its sequences, and the
 * lazily created embedding context. Routes receive an Engine and never load or dispose anything themselves.
 */
import {
  getLlama,
  getModuleVersion,
  LlamaLogLevel,
  resolveChatWrapper,
  type ChatWrapper,
  type Llama,
  type LlamaContext,
  type LlamaEmbeddingContext,
  type LlamaModel,
} from "node-llama-cpp";
import type { RunnerOptions } from "./args.js";
import { log } from "./log.js";
import { SequencePool } from "./sequence-pool.js";

/** Without --ctx-size each sequence gets the trained context, capped so a 128K model does not reserve 128K of KV cache on a CPU. */
export const DEFAULT_SEQUENCE_CONTEXT = 4096;

export interface Engine {
  readonly llama: Llama;
  readonly model: LlamaModel;
  readonly context: LlamaContext;
  readonly chatWrapper: ChatWrapper;
  readonly pool: SequencePool;
  /** Tokens one sequence (one request) can hold: prompt plus generated text. */
  readonly contextSize: number;
  readonly threads: number;
  /** `system_fingerprint`: the inference library and version, as llama-server reports its build. */
  readonly fingerprint: string;
  /** The embedding context, created on first use: most models never serve embeddings. */
  embeddingContext(): Promise<LlamaEmbeddingContext>;
  dispose(): Promise<void>;
}

/** Only problems reach stderr: the gateway keeps a small ring buffer of it. */
function worthLogging(level: LlamaLogLevel): boolean {
  return level === LlamaLogLevel.error || level === LlamaLogLevel.fatal || level === LlamaLogLevel.warn;
}

export async function loadEngine(options: RunnerOptions): Promise<Engine> {
  const started = performance.now();
  // Never download or compile: a missing prebuilt binary must fail fast with a reason instead of a 10-minute build.
  const llama = await getLlama({
    gpu: false,
    build: "never",
    skipDownload: true,
    progressLogs: false,
    maxThreads: options.threads,
    logLevel: LlamaLogLevel.warn,
    logger: (level, message) => {
      if (worthLogging(level)) log(`llama.cpp ${level}: ${message.trimEnd()}`);
    },
  });
  const model = await llama.loadModel({ modelPath: options.modelPath, gpuLayers: 0 });
  try {
    const trained = model.trainContextSize;
    // llama-server semantics: --ctx-size is the total, shared evenly by the --parallel sequences.
    const perSequence =
      options.ctxSize === undefined
        ? Math.min(trained, DEFAULT_SEQUENCE_CONTEXT)
        : Math.floor((options.ctxSize === 0 ? trained : options.ctxSize) / options.parallel);
    if (perSequence < 16) {
      throw new Error(`--ctx-size ${options.ctxSize} leaves only ${perSequence} tokens per sequence with --parallel ${options.parallel}`);
    }
    const context = await model.createContext({
      sequences: options.parallel,
      contextSize: perSequence,
      ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
      // The library default picks a thread count that thrashes small machines; always say how many.
      threads: options.threads,
    });
    const sequences = Array.from({ length: options.parallel }, () => context.getSequence());
    const chatWrapper = resolveChatWrapper(model);
    let embedding: Promise<LlamaEmbeddingContext> | undefined;
    log(
      `loaded ${options.modelPath} in ${Math.round(performance.now() - started)} ms: ` +
        `${model.typeDescription}, trained ctx ${trained}, ctx ${context.contextSize} x ${options.parallel} sequences, ` +
        `batch ${context.batchSize}, threads ${options.threads}, chat template ${chatWrapper.wrapperName}`,
    );
    return {
      llama,
      model,
      context,
      chatWrapper,
      pool: new SequencePool(sequences),
      contextSize: context.contextSize,
      threads: options.threads,
      fingerprint: `node-llama-cpp-${await getModuleVersion()}`,
      embeddingContext() {
        embedding ??= model
          .createEmbeddingContext({ contextSize: context.contextSize, threads: options.threads })
          .catch((error: unknown) => {
            embedding = undefined;
            throw error;
          });
        return embedding;
      },
      async dispose() {
        if (embedding !== undefined) await (await embedding.catch(() => undefined))?.dispose();
        await context.dispose();
        await model.dispose();
        await llama.dispose();
      },
    };
  } catch (error) {
    await model.dispose().catch(() => undefined);
    throw error;
  }
}
