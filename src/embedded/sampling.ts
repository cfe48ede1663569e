/**
 * Maps OpenAI / llama-server sampling fields onto node-llama-cpp's generation options. Defaults are
 * llama-server's (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no repeat penalty), not
 * node-llama-cpp's (greedy, repeat penalty on), so a client sees the same behaviour from either backend.
 */
import { randomInt } from "node:crypto";
import type { LLamaContextualRepeatPenalty } from "node-llama-cpp";

export interface SamplingFields {
  temperature?: number | null | undefined;
  top_p?: number | null | undefined;
  top_k?: number | null | undefined;
  min_p?: number | null | undefined;
  seed?: number | null | undefined;
  presence_penalty?: number | null | undefined;
  frequency_penalty?: number | null | undefined;
  repeat_penalty?: number | null | undefined;
}

export interface Sampling {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  seed: number;
  repeatPenalty: false | LLamaContextualRepeatPenalty;
}

/** llama.cpp takes a 32-bit seed; clients send anything up to 2^53 and negative numbers. */
function toSeed(seed: number | null | undefined): number {
  if (seed === null || seed === undefined || seed === -1) return randomInt(0, 2 ** 32 - 1);
  return Number(BigInt.asUintN(32, BigInt(Math.trunc(seed))));
}

export function samplingFrom(fields: SamplingFields): Sampling {
  const penalty = fields.repeat_penalty ?? 1;
  const presencePenalty = fields.presence_penalty ?? 0;
  const frequencyPenalty = fields.frequency_penalty ?? 0;
  const penalize = penalty !== 1 || presencePenalty !== 0 || frequencyPenalty !== 0;
  return {
    temperature: fields.temperature ?? 0.8,
    topK: fields.top_k ?? 40,
    topP: fields.top_p ?? 0.95,
    minP: fields.min_p ?? 0.05,
    seed: toSeed(fields.seed),
    // llama-server looks back 64 tokens (repeat_last_n) for all three penalties.
    repeatPenalty: penalize ? { lastTokens: 64, penalty, presencePenalty, frequencyPenalty } : false,
  };
}

/** `stop` as OpenAI sends it: a string, a list, or nothing; empty strings would stop at once and are dropped. */
export function stopTriggers(stop: string | string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  return (Array.isArray(stop) ? stop : [stop]).filter((s) => s.length > 0);
}

/**
 * How many tokens to generate: the client's limit, never more than the context has room for after the
 * prompt. Absent or -1 means "until the context is full", as llama-server's n_predict -1.
 */
export function generationBudget(requested: number | null | undefined, promptTokens: number, contextSize: number): number {
  const room = contextSize - promptTokens;
  if (requested === null || requested === undefined || requested < 0) return room;
  return Math.min(requested, room);
}
