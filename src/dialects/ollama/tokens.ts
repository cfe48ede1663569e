/**
 * What the Ollama dialect does in tokens, with the backend's own tokenizer: generate's `context`, and
 * cutting an over-long embedding input to the context.
 *
 * `/api/generate`'s `context` is Ollama's token-level memory of a generate conversation. A response's
 * context is the tokens the model saw (the prompt with the chat template applied) followed by the
 * response's; a request that sends one back continues from it.
 *
 * The context a client sends back goes to the model as those very tokens, followed by the new turn's:
 * turning it back into text and tokenizing again would not give the same tokens (SentencePiece adds a
 * space after each special token on every round trip), and the conversation would drift turn by turn.
 *
 * The backend's own template and tokenizer do the work, through llama-server's `/apply-template` and
 * `/tokenize` (the embedded runner serves both). A backend without them, such as a remote
 * OpenAI-compatible API, returns no context and refuses a request that sends one.
 *
 * `/api/embed` with `truncate` (the default) cuts an input that does not fit to the context in tokens, as
 * Ollama does, and sends the cut tokens as they are.
 */
import type { ModelEntry } from "../../catalog/catalog.js";
import { invalidRequest } from "../../errors/index.js";
import type { Exchange, InferenceService } from "../../gateway/inference.js";
import { readJson, sendChecked, UpstreamFailure } from "./upstream.js";
import type { Cancellation } from "../../lifecycle/cancellation.js";

/** Statuses that mean "this backend has no such endpoint" rather than "this request is wrong". */
const missingEndpoint = (error: unknown): boolean => error instanceof UpstreamFailure && [404, 405, 501].includes(error.upstreamStatus);

const unsupported = (entry: ModelEntry, param: "context" | "input") =>
  invalidRequest(
    param === "context"
      ? `context is not supported for '${entry.id}': its backend has no tokenizer endpoint; send the conversation as messages to /api/chat`
      : `the input is longer than the context of '${entry.id}', and its backend has no tokenizer endpoint to cut it; shorten it`,
    param,
  );

/** The chat prompt for `turn` as text, or undefined when the backend cannot render templates. */
export async function templatedPrompt(
  inference: InferenceService,
  entry: ModelEntry,
  name: string,
  turn: { messages: Array<Record<string, unknown>> } & Record<string, unknown>,
  signal: Cancellation,
  keepAliveMs: number | null | undefined,
): Promise<string | undefined> {
  try {
    const exchange = await sendChecked(inference, "apply-template", { ...turn, model: name }, signal, keepAliveMs);
    const answer = await readJson<{ prompt?: unknown }>(exchange);
    if (typeof answer.prompt !== "string") return undefined;
    // A completion adds BOS itself: one written by the template would be doubled.
    const bos = entry.gguf?.specialTokens.bos;
    return bos && answer.prompt.startsWith(bos) ? answer.prompt.slice(bos.length) : answer.prompt;
  } catch (error) {
    if (missingEndpoint(error)) return undefined;
    throw error;
  }
}

/**
 * The prompt, as tokens, that continues `context` with `turn` (already templated): BOS where the model
 * wants one, the context verbatim, then the turn.
 */
export async function continuedPrompt(
  inference: InferenceService,
  entry: ModelEntry,
  name: string,
  context: readonly number[],
  turn: string,
  signal: Cancellation,
  keepAliveMs: number | null | undefined,
): Promise<number[]> {
  const size = entry.gguf?.vocabularySize ?? 0;
  const outside = context.find((id) => size > 0 && id >= size);
  if (outside !== undefined) throw invalidRequest(`context: token id ${outside} is outside the model's vocabulary (0..${size - 1}); was it made by another model?`, "context");
  const tokens = await backendTokens(inference, entry, name, turn, signal, keepAliveMs, "context");
  return [...bosFor(entry, context), ...context, ...tokens];
}

/** The BOS token to put in front of `tokens`, when the model wants one and they lack it. */
const bosFor = (entry: ModelEntry, tokens: readonly number[]): number[] => {
  const bos = entry.gguf?.specialTokens.prependedBosId;
  return bos !== undefined && tokens[0] !== bos ? [bos] : [];
};

/** `text` in the model's tokens, without special tokens added; a backend without a tokenizer is a 400 about `param`. */
async function backendTokens(
  inference: InferenceService,
  entry: ModelEntry,
  name: string,
  text: string,
  signal: Cancellation,
  keepAliveMs: number | null | undefined,
  param: "context" | "input",
): Promise<number[]> {
  try {
    const exchange = await sendChecked(inference, "tokenize", { model: name, content: text }, signal, keepAliveMs);
    return tokenList(await readJson<{ tokens?: unknown }>(exchange));
  } catch (error) {
    throw missingEndpoint(error) ? unsupported(entry, param) : error;
  }
}

/** Inputs cut to at most `limit` tokens each, BOS included where the model wants one. */
export async function truncatedInputs(
  inference: InferenceService,
  entry: ModelEntry,
  name: string,
  inputs: readonly string[],
  limit: number,
  signal: Cancellation,
  keepAliveMs: number | null | undefined,
): Promise<number[][]> {
  const out: number[][] = [];
  for (const input of inputs) {
    const tokens = await backendTokens(inference, entry, name, input, signal, keepAliveMs, "input");
    const head = bosFor(entry, tokens);
    out.push([...head, ...tokens.slice(0, Math.max(1, limit - head.length))]);
  }
  return out;
}

/** The context to return: `prefix` (the context that was continued, if any), then `text` tokenized on the backend that just answered. */
export async function contextTokens(exchange: Exchange, prefix: readonly number[], text: string, signal: Cancellation): Promise<number[]> {
  const response = await exchange.followUp("tokenize", { content: text }, signal);
  if (response.statusCode >= 400) {
    await response.body.dump();
    return [];
  }
  return [...prefix, ...tokenList((await response.body.json()) as { tokens?: unknown })];
}

const tokenList = (answer: { tokens?: unknown }): number[] => (Array.isArray(answer.tokens) ? answer.tokens.filter((t): t is number => typeof t === "number") : []);
