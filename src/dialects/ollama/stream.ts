/**
 * The backend's OpenAI stream (chat or completion chunks) → Ollama's pieces and final metrics, and the
 * NDJSON writer Ollama clients read: one compact JSON object and `\n` per line, each written (and so
 * flushed) as it is produced, with backpressure.
 */
import type { ServerResponse } from "node:http";
import { writeWithBackpressure } from "../../gateway/backpressure.js";
import type { Timings, Usage } from "../../protocol/openai.js";
import type { SseJson } from "../../upstream/sse-reader.js";

export interface OllamaToolCall {
  id: string;
  function: { index: number; name: string; arguments: Record<string, unknown> };
}

/** One step of output: text, thinking text, or complete tool calls (Ollama sends each call whole). */
export interface Piece {
  content?: string;
  thinking?: string;
  toolCalls?: OllamaToolCall[];
}

export interface StreamSummary {
  finishReason: string | null;
  timings: Timings | undefined;
  usage: Usage | undefined;
  /** performance.now() of the first piece; a fallback when the backend sends no timings. */
  firstPieceAt: number | undefined;
}

interface PartialCall {
  id: string;
  name: string;
  args: string;
}

/** Tool arguments as an object: Ollama's clients JSON-encode them themselves. */
export function argumentsObject(raw: string): Record<string, unknown> {
  if (raw.trim() === "") return {};
  try {
    const value: unknown = JSON.parse(raw);
    return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : { value };
  } catch {
    return {};
  }
}

const asString = (value: unknown): string | undefined => (typeof value === "string" && value.length > 0 ? value : undefined);

/** Reads OpenAI chunks and yields Ollama pieces; returns the finish reason, timings and usage. */
export async function* pieces(events: AsyncIterable<SseJson>): AsyncGenerator<Piece, StreamSummary, undefined> {
  const summary: StreamSummary = { finishReason: null, timings: undefined, usage: undefined, firstPieceAt: undefined };
  const calls = new Map<number, PartialCall>();
  const flushCalls = function* (): Generator<Piece> {
    if (calls.size === 0) return;
    const toolCalls = [...calls.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, call]) => ({ id: call.id, function: { index, name: call.name, arguments: argumentsObject(call.args) } }));
    calls.clear();
    yield { toolCalls };
  };
  for await (const event of events) {
    if (event["timings"] !== undefined) summary.timings = event["timings"] as Timings;
    if (event["usage"] !== undefined && event["usage"] !== null) summary.usage = event["usage"] as Usage;
    const choice = (Array.isArray(event["choices"]) ? event["choices"][0] : undefined) as Record<string, unknown> | undefined;
    if (!choice) continue;
    const delta = (choice["delta"] ?? {}) as Record<string, unknown>;
    const piece: Piece = {};
    const text = asString(delta["content"]) ?? asString(choice["text"]);
    if (text !== undefined) piece.content = text;
    const thinking = asString(delta["reasoning_content"]);
    if (thinking !== undefined) piece.thinking = thinking;
    for (const call of (Array.isArray(delta["tool_calls"]) ? delta["tool_calls"] : []) as Array<Record<string, unknown>>) {
      const index = typeof call["index"] === "number" ? call["index"] : calls.size;
      const fn = (call["function"] ?? {}) as Record<string, unknown>;
      const current = calls.get(index) ?? { id: asString(call["id"]) ?? `call_${index}`, name: "", args: "" };
      if (asString(call["id"])) current.id = call["id"] as string;
      if (asString(fn["name"])) current.name = fn["name"] as string;
      if (typeof fn["arguments"] === "string") current.args += fn["arguments"];
      calls.set(index, current);
    }
    if (piece.content !== undefined || piece.thinking !== undefined) {
      summary.firstPieceAt ??= performance.now();
      yield piece;
    }
    if (typeof choice["finish_reason"] === "string") {
      summary.finishReason = choice["finish_reason"];
      yield* flushCalls();
    }
  }
  yield* flushCalls();
  return summary;
}

/** Ollama's `done_reason`: tool calls and content filters end a turn like a stop does. */
export function doneReason(finishReason: string | null): string {
  return finishReason === "length" ? "length" : "stop";
}

export interface Metrics {
  total_duration: number;
  load_duration: number;
  prompt_eval_count: number;
  prompt_eval_duration: number;
  eval_count: number;
  eval_duration: number;
}

const ns = (ms: number): number => Math.max(0, Math.round(ms * 1e6));

/**
 * The six integer-nanosecond metrics. Counts and durations come from the backend's `timings`
 * (llama-server's, in ms); without them, from `usage` and the times this gateway saw pieces arrive.
 * `load_duration` is the wait until the backend answered (queueing and loading included).
 */
export function metrics(summary: StreamSummary, clock: { started: number; answered: number; ended: number }): Metrics {
  const { timings, usage } = summary;
  const first = summary.firstPieceAt ?? clock.ended;
  return {
    total_duration: ns(clock.ended - clock.started),
    load_duration: ns(clock.answered - clock.started),
    prompt_eval_count: Math.round(timings?.prompt_n ?? usage?.prompt_tokens ?? 0),
    prompt_eval_duration: ns(timings?.prompt_ms ?? first - clock.answered),
    eval_count: Math.round(timings?.predicted_n ?? usage?.completion_tokens ?? 0),
    eval_duration: ns(timings?.predicted_ms ?? clock.ended - first),
  };
}

/** Ollama's NDJSON stream on a raw response. */
export class NdjsonWriter {
  constructor(
    private readonly res: ServerResponse,
    private readonly stallMs: number,
  ) {
    res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-cache", "x-accel-buffering": "no" });
    res.flushHeaders();
  }

  get open(): boolean {
    return !this.res.destroyed && !this.res.writableEnded;
  }

  async write(value: unknown): Promise<void> {
    if (!this.open) return;
    await writeWithBackpressure(this.res, `${JSON.stringify(value)}\n`, this.stallMs);
  }

  end(line?: string): void {
    if (this.open) this.res.end(line);
  }
}
