/**
 * llama-server's `timings`, measured around one generation: the prompt phase runs until the first token
 * comes out (it includes that token's sampling, as in llama-server), the predicted phase from there to the end.
 */
import type { Timings } from "../protocol/openai.js";

export class GenerationClock {
  private readonly started = performance.now();
  private firstToken: number | undefined;

  /** Call on every generated token; only the first one matters. */
  readonly tokenArrived = (): void => {
    this.firstToken ??= performance.now();
  };

  finish(promptTokens: number, predictedTokens: number): Timings {
    const ended = performance.now();
    const first = this.firstToken ?? ended;
    return timings(promptTokens, first - this.started, predictedTokens, ended - first);
  }
}

export function timings(promptN: number, promptMs: number, predictedN: number, predictedMs: number): Timings {
  return {
    prompt_n: promptN,
    prompt_ms: round(promptMs),
    prompt_per_second: promptMs > 0 ? round((promptN * 1000) / promptMs) : 0,
    predicted_n: predictedN,
    predicted_ms: round(predictedMs),
    predicted_per_second: predictedMs > 0 ? round((predictedN * 1000) / predictedMs) : 0,
  };
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
