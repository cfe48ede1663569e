/**
 * Reads a backend's server-sent events (llama-server's OpenAI stream) as parsed JSON objects. Framing is
 * `eventsource-parser`'s (multi-line data, CRLF, comments, chunks split anywhere); this module adds the
 * OpenAI conventions on top: `data: [DONE]` ends the stream, and `data: {"error": ...}` (how llama-server
 * and our runner report a failure once a stream has started) becomes a thrown `GatewayError`.
 */
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { GatewayError } from "../errors/index.js";

export type SseJson = Record<string, unknown>;

export interface SseReadOptions {
  /** Largest single event, in characters; a backend that never ends an event is cut off here. */
  maxEventChars?: number;
}

const DEFAULT_MAX_EVENT_CHARS = 16 * 1024 * 1024;

/** The message of an OpenAI-style (`{error:{message}}`) or plain (`{error:"..."}`) error event. */
function errorMessage(error: unknown): string {
  if (typeof error === "string") return error;
  if (error !== null && typeof error === "object" && typeof (error as { message?: unknown }).message === "string") {
    return (error as { message: string }).message;
  }
  return JSON.stringify(error);
}

/**
 * Yields each `data:` event's JSON object until `[DONE]` or the end of the body. Throws a GatewayError
 * (`upstream_error`) for an error event, a payload that is not a JSON object, or an oversized event.
 */
export async function* readSse(body: AsyncIterable<Uint8Array | string>, options: SseReadOptions = {}): AsyncGenerator<SseJson, void, undefined> {
  const maxEventChars = options.maxEventChars ?? DEFAULT_MAX_EVENT_CHARS;
  const pending: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (event) => pending.push(event) });
  const decoder = new TextDecoder();
  let buffered = 0;

  for await (const chunk of body) {
    const text = typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
    buffered += text.length;
    parser.feed(text);
    if (pending.length === 0) {
      if (buffered > maxEventChars) throw new GatewayError("upstream_error", `The backend sent an event larger than ${maxEventChars} characters.`);
      continue;
    }
    buffered = 0;
    while (pending.length > 0) {
      const event = pending.shift() as EventSourceMessage;
      const parsed = parseEvent(event);
      if (parsed === "done") return;
      if (parsed !== undefined) yield parsed;
    }
  }
  // A stream that ends without the final blank line still delivers its last event (a cut-off one fails
  // to parse as JSON, which reports the broken stream rather than hiding it).
  parser.feed(`${decoder.decode()}\n\n`);
  for (const event of pending) {
    const parsed = parseEvent(event);
    if (parsed === "done") return;
    if (parsed !== undefined) yield parsed;
  }
}

function parseEvent(event: EventSourceMessage): SseJson | "done" | undefined {
  const data = event.data.trim();
  if (data === "") return undefined;
  if (data === "[DONE]") return "done";
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    throw new GatewayError("upstream_error", `The backend sent an event that is not JSON: ${data.slice(0, 200)}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new GatewayError("upstream_error", `The backend sent an event that is not a JSON object: ${data.slice(0, 200)}`);
  }
  const json = value as SseJson;
  if ("error" in json && json["error"] !== null && json["error"] !== undefined && !Array.isArray(json["choices"])) {
    throw new GatewayError("upstream_error", errorMessage(json["error"]));
  }
  return json;
}
