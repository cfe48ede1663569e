/**
 * Raw text completion (`/v1/completions`), independent of HTTP. Prompts are tokenized the way llama-server
 * does it (special tokens parsed, BOS added when the model wants one) so token counts agree across backends.
 */
import { LlamaCompletion, type LlamaContextSequence, type Token } from "node-llama-cpp";
import type { CompletionRequest, FinishReason, Timings, Usage } from "../protocol/openai.js";
import type { Engine } from "./engine.js";
import { badRequest, contextLengthExceeded } from "./errors.js";
import { generationBudget, samplingFrom, stopTriggers, type Sampling } from "./sampling.js";
import { GenerationClock, timings } from "./timings.js";
import { beginningToken, checkTokens } from "./tokens.js";

/** OpenAI's default for the legacy completions endpoint. */
export const DEFAULT_COMPLETION_TOKENS = 16;

export interface CompletionPrompt {
  /** The prompt without the BOS token: LlamaCompletion adds that itself. */
  tokens: Token[];
  /** What `echo` repeats back. */
  text: string;
  promptTokens: number;
  maxTokens: number;
}

export interface CompletionJob {
  prompts: CompletionPrompt[];
  stop: string[];
  sampling: Sampling;
  echo: boolean;
}

export interface CompletionResult {
  text: string;
  finishReason: FinishReason;
  usage: Usage;
  timings: Timings;
}

export function prepareCompletion(engine: Engine, request: CompletionRequest): CompletionJob {
  const { model } = engine;
  const bos = beginningToken(model);
  const raw = request.prompt;
  const inputs: Array<string | number[]> =
    typeof raw === "string" ? [raw] : raw.every((p) => typeof p === "number") ? [raw as number[]] : (raw as string[]);
  const prompts = inputs.map((input): CompletionPrompt => {
    let tokens: Token[];
    let text: string;
    if (typeof input === "string") {
      tokens = model.tokenize(input, true);
      text = input;
    } else {
      tokens = checkTokens(model, input, "prompt");
      if (bos !== null && tokens[0] === bos) tokens = tokens.slice(1);
      text = model.detokenize(tokens, true);
    }
    const promptTokens = tokens.length + (bos === null ? 0 : 1);
    if (promptTokens === 0) throw badRequest("the prompt is empty", "prompt");
    if (promptTokens >= engine.contextSize) throw contextLengthExceeded(promptTokens, engine.contextSize);
    const maxTokens = generationBudget(request.max_tokens ?? DEFAULT_COMPLETION_TOKENS, promptTokens, engine.contextSize);
    return { tokens, text, promptTokens, maxTokens };
  });
  return { prompts, stop: stopTriggers(request.stop), sampling: samplingFrom(request), echo: request.echo === true };
}

export async function runCompletion(
  prompt: CompletionPrompt,
  job: CompletionJob,
  sequence: LlamaContextSequence,
  onText: (text: string) => void,
  signal: AbortSignal,
): Promise<CompletionResult> {
  await sequence.clearHistory();
  const clock = new GenerationClock();
  const meterBefore = sequence.tokenMeter.getState();
  const finish = (text: string, finishReason: FinishReason): CompletionResult => {
    const completionTokens = sequence.tokenMeter.diff(meterBefore).usedOutputTokens;
    return {
      text,
      finishReason,
      usage: { prompt_tokens: prompt.promptTokens, completion_tokens: completionTokens, total_tokens: prompt.promptTokens + completionTokens },
      timings: clock.finish(prompt.promptTokens, completionTokens),
    };
  };
  if (prompt.maxTokens <= 0) return finish("", "length");
  const completion = new LlamaCompletion({ contextSequence: sequence });
  try {
    const response = await completion.generateCompletionWithMeta(prompt.tokens, {
      signal,
      stopOnAbortSignal: false,
      maxTokens: prompt.maxTokens,
      ...job.sampling,
      customStopTriggers: job.stop,
      // The prompt was checked to fit; never let the library silently cut its beginning off.
      disableContextShift: true,
      contextShiftSize: 0,
      onToken: clock.tokenArrived,
      onTextChunk: (text) => {
        if (text.length > 0) onText(text);
      },
    });
    return finish(response.response, response.metadata.stopReason === "maxTokens" ? "length" : "stop");
  } finally {
    completion.dispose({ disposeSequence: false });
  }
}

/** Several prompts in one request report one set of timings: the sums. */
export function sumTimings(all: readonly Timings[]): Timings {
  const promptN = all.reduce((n, t) => n + t.prompt_n, 0);
  const promptMs = all.reduce((n, t) => n + t.prompt_ms, 0);
  const predictedN = all.reduce((n, t) => n + t.predicted_n, 0);
  const predictedMs = all.reduce((n, t) => n + t.predicted_ms, 0);
  return timings(promptN, promptMs, predictedN, predictedMs);
}
