/**
 * Embedding vectors for `/v1/embeddings`. Vectors are L2-normalised, as llama-server returns them by
 * default, and base64 means the little-endian float32 bytes that openai-node decodes.
 */
import type { Token } from "node-llama-cpp";
import type { EmbeddingRequest } from "../protocol/openai.js";
import type { Engine } from "./engine.js";
import { badRequest, contextLengthExceeded } from "./errors.js";
import { checkTokens } from "./tokens.js";

export interface EmbeddingResult {
  vectors: number[][];
  promptTokens: number;
}

/** The four shapes OpenAI accepts, as one list of inputs. */
export function embeddingInputs(engine: Engine, input: EmbeddingRequest["input"]): Array<string | Token[]> {
  if (typeof input === "string") return [input];
  if (input.every((item) => typeof item === "string")) return input as string[];
  if (input.every((item) => typeof item === "number")) return [checkTokens(engine.model, input as number[], "input")];
  return (input as number[][]).map((tokens, i) => checkTokens(engine.model, tokens, `input.${i}`));
}

export function normalize(vector: readonly number[]): number[] {
  const norm = Math.sqrt(vector.reduce((sum, x) => sum + x * x, 0));
  return norm > 0 ? vector.map((x) => x / norm) : [...vector];
}

export function toBase64(vector: readonly number[]): string {
  const bytes = Buffer.alloc(vector.length * 4);
  vector.forEach((x, i) => bytes.writeFloatLE(x, i * 4));
  return bytes.toString("base64");
}

export async function embed(engine: Engine, inputs: Array<string | Token[]>): Promise<EmbeddingResult> {
  inputs.forEach((input, i) => {
    if (input.length === 0) throw badRequest(`input${inputs.length > 1 ? `.${i}` : ""} must not be empty`, "input");
  });
  const context = await engine.embeddingContext();
  // Measure every input first so an oversized one fails the request before any work is done.
  const lengths = inputs.map((input) => context.calculateInputLength(input));
  for (const length of lengths) {
    if (length >= engine.contextSize) throw contextLengthExceeded(length, engine.contextSize);
  }
  const vectors: number[][] = [];
  for (const input of inputs) vectors.push(normalize((await context.getEmbeddingFor(input)).vector));
  return { vectors, promptTokens: lengths.reduce((n, l) => n + l, 0) };
}
