/**
 * One `/v1/ws` connection: JSON text messages in both directions.
 *
 * Client → server                                             Server → client
 *   {type:"chat_message", id?, model, message|messages, options?}  {type:"chat_chunk", id, model, content, delta, finish_reason}…
 *                                                                 then {type:"chat_done", id, model, finish_reason, usage}
 *   {type:"cancel", id}                                            (the chat ends with {type:"error", id, code:"cancelled"})
 *   {type:"subscribe", events:[...]} / {type:"unsubscribe", events?} {type:"subscribed"|"unsubscribed", events}
 *                                                                 then {type:"event", event, timestamp, data} per bus event
 *   {type:"ping"}                                                  {type:"pong"}
 *   anything else                                                  {type:"error", code, message, id?}: the socket stays open
 *
 * Backpressure: a chat writes a chunk only while the socket's queue is under `high_water_bytes`; past it, it
 * waits for the queue to flush before reading the backend's stream further (so the backend is throttled by
 * TCP, nothing is buffered without bound). Event pushes to a client that stays too far behind are dropped
 * and counted ({type:"events_dropped", count} once it catches up). A socket that closes aborts its chats,
 * which frees their backend slots at once.
 */
import type { WebSocket } from "ws";
import type { Config } from "../../config/schema.js";
import { sendChecked } from "../../dialects/ollama/upstream.js";
import { ALL_EVENTS, type EventBus, type EventEnvelope, EVENT_NAMES, isEventName } from "../../events/bus.js";
import { GatewayError } from "../../errors/index.js";
import { chatCompletionRequestSchema } from "../../protocol/openai.js";
import { readSse, type SseJson } from "../../upstream/sse-reader.js";
import { parseBody, toGatewayError } from "../errors.js";
import type { Exchange, InferenceService } from "../inference.js";
import type { GatewayMetrics } from "../metrics/metrics.js";

const OPEN = 1;
/** Event pushes queued beyond this many times the high-water mark are dropped. */
const EVENT_BACKLOG_FACTOR = 4;
const DEFAULT_STALL_MS = 120_000;
const MESSAGE_TYPES = ["chat_message", "cancel", "subscribe", "unsubscribe", "ping"];

export interface ConnectionDeps {
  bus: EventBus;
  inference: InferenceService;
  config: Config["websocket"];
  metrics?: GatewayMetrics;
  log: { warn(obj: object, msg: string): void };
  /** A client that reads nothing for this long while a chat waits for it is disconnected (its chats end). */
  stallMs?: number;
}

type Outgoing = Record<string, unknown> & { type: string };

class ChatCancelled extends Error {}

export class Connection {
  private readonly chats = new Map<string, AbortController>();
  private readonly subscriptions = new Set<string>();
  private unsubscribeBus: (() => void) | undefined;
  private nextChat = 1;
  private droppedEvents = 0;
  private alive = true;
  private readonly pinger: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly deps: ConnectionDeps,
  ) {
    ws.on("message", (data, isBinary) => this.onMessage(data as Buffer | ArrayBuffer | Buffer[], isBinary));
    ws.on("pong", () => {
      this.alive = true;
    });
    ws.once("close", () => this.onClose());
    this.pinger = setInterval(() => {
      // No pong since the last ping: the peer is gone without a close (a dead network path).
      if (!this.alive) {
        ws.terminate();
        return;
      }
      this.alive = false;
      ws.ping();
    }, deps.config.ping_interval_s * 1000);
    this.pinger.unref();
  }

  private onClose(): void {
    this.closed = true;
    clearInterval(this.pinger);
    this.unsubscribeBus?.();
    for (const controller of this.chats.values()) controller.abort(new ChatCancelled("the WebSocket closed"));
  }

  private send(message: Outgoing): void {
    if (this.ws.readyState === OPEN) this.ws.send(JSON.stringify(message));
  }

  private error(code: string, message: string, extra: Record<string, unknown> = {}): void {
    this.send({ type: "error", code, message, ...extra });
  }

  /** Sends, and when the socket's queue is past the high-water mark waits until this message is flushed. */
  private async sendWithBackpressure(message: Outgoing, signal: AbortSignal): Promise<void> {
    if (this.ws.readyState !== OPEN) throw new ChatCancelled("the WebSocket closed");
    const data = JSON.stringify(message);
    if (this.ws.bufferedAmount + data.length <= this.deps.config.high_water_bytes) {
      this.ws.send(data);
      return;
    }
    await new Promise<void>((resolve) => {
      const stall = setTimeout(() => {
        this.deps.log.warn({ stall_ms: this.deps.stallMs }, "WebSocket client stopped reading: disconnecting it");
        this.ws.terminate();
      }, this.deps.stallMs ?? DEFAULT_STALL_MS);
      const done = () => {
        clearTimeout(stall);
        signal.removeEventListener("abort", done);
        resolve();
      };
      signal.addEventListener("abort", done, { once: true });
      this.ws.send(data, done);
    });
  }

  private onMessage(data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    const count = (type: string) => this.deps.metrics?.websocketMessages.inc({ type });
    if (isBinary) {
      count("invalid");
      this.error("invalid_request", "Binary messages are not supported: send JSON text messages.");
      return;
    }
    const text = Array.isArray(data) ? Buffer.concat(data).toString("utf8") : Buffer.from(data as ArrayBuffer).toString("utf8");
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      count("invalid");
      this.error("invalid_request", "Message is not valid JSON.");
      return;
    }
    if (message === null || typeof message !== "object" || Array.isArray(message)) {
      count("invalid");
      this.error("invalid_request", "Message must be a JSON object with a \"type\".");
      return;
    }
    const body = message as Record<string, unknown>;
    const type = body["type"];
    if (typeof type !== "string" || !MESSAGE_TYPES.includes(type)) {
      count("invalid");
      this.error("invalid_request", `Unknown message type ${JSON.stringify(type)}: expected one of ${MESSAGE_TYPES.join(", ")}.`, { param: "type" });
      return;
    }
    count(type);
    try {
      switch (type) {
        case "chat_message":
          this.chat(body);
          break;
        case "cancel":
          this.cancel(body);
          break;
        case "subscribe":
          this.subscribe(body);
          break;
        case "unsubscribe":
          this.unsubscribe(body);
          break;
        case "ping":
          this.send({ type: "pong", ...(body["id"] !== undefined ? { id: body["id"] } : {}) });
          break;
      }
    } catch (thrown) {
      const error = toGatewayError(thrown);
      const id = body["id"];
      this.error(error.code, error.message, { ...(error.param ? { param: error.param } : {}), ...(typeof id === "string" || typeof id === "number" ? { id } : {}) });
    }
  }

  private eventList(value: unknown, required: boolean): string[] | undefined {
    if (value === undefined && !required) return undefined;
    const allowed = `${EVENT_NAMES.join(", ")} or "${ALL_EVENTS}"`;
    if (!Array.isArray(value) || value.length === 0) throw new GatewayError("invalid_request", `events must be a non-empty array of: ${allowed}`, { param: "events" });
    for (const event of value) {
      if (event !== ALL_EVENTS && !isEventName(event)) throw new GatewayError("invalid_request", `Unknown event ${JSON.stringify(event)}: expected ${allowed}`, { param: "events" });
    }
    return value as string[];
  }

  private subscribe(body: Record<string, unknown>): void {
    const events = this.eventList(body["events"], true) ?? [];
    for (const event of events) this.subscriptions.add(event);
    this.unsubscribeBus ??= this.deps.bus.subscribe("*", (envelope) => this.push(envelope));
    this.send({ type: "subscribed", events: [...this.subscriptions] });
  }

  private unsubscribe(body: Record<string, unknown>): void {
    const events = this.eventList(body["events"], false);
    if (events === undefined) this.subscriptions.clear();
    else for (const event of events) this.subscriptions.delete(event);
    if (this.subscriptions.size === 0) {
      this.unsubscribeBus?.();
      this.unsubscribeBus = undefined;
    }
    this.send({ type: "unsubscribed", events: [...this.subscriptions] });
  }

  private push(envelope: EventEnvelope): void {
    if (this.closed || (!this.subscriptions.has(envelope.event) && !this.subscriptions.has(ALL_EVENTS))) return;
    if (this.ws.bufferedAmount > this.deps.config.high_water_bytes * EVENT_BACKLOG_FACTOR) {
      this.droppedEvents++;
      return;
    }
    if (this.droppedEvents > 0) {
      this.send({ type: "events_dropped", count: this.droppedEvents });
      this.droppedEvents = 0;
    }
    this.send({ type: "event", event: envelope.event, timestamp: envelope.timestamp, data: envelope.data });
  }

  private cancel(body: Record<string, unknown>): void {
    const id = body["id"];
    const controller = typeof id === "string" || typeof id === "number" ? this.chats.get(String(id)) : undefined;
    if (!controller) throw new GatewayError("invalid_request", `No chat in progress with id ${JSON.stringify(id)}.`, { param: "id" });
    controller.abort(new ChatCancelled("cancelled by the client"));
  }

  private chat(message: Record<string, unknown>): void {
    const rawId = message["id"];
    if (rawId !== undefined && typeof rawId !== "string" && typeof rawId !== "number") throw new GatewayError("invalid_request", "id must be a string or a number", { param: "id" });
    const id = rawId === undefined ? `chat_${this.nextChat++}` : String(rawId);
    if (this.chats.has(id)) throw new GatewayError("invalid_request", `A chat with id '${id}' is already in progress.`, { param: "id" });
    if (this.chats.size >= this.deps.config.max_concurrent_chats) {
      throw new GatewayError("rate_limit_exceeded", `At most ${this.deps.config.max_concurrent_chats} chats may run at once on one connection.`);
    }
    const body = chatBody(message);
    const controller = new AbortController();
    this.chats.set(id, controller);
    void this.runChat(rawId === undefined ? id : rawId, id, body, controller).finally(() => this.chats.delete(id));
  }

  private async runChat(replyId: string | number, id: string, body: { model: string } & Record<string, unknown>, controller: AbortController): Promise<void> {
    const { inference, metrics } = this.deps;
    const started = performance.now();
    const signal = controller.signal;
    let exchange: Exchange | undefined;
    let outcome: "completed" | "error" | "aborted" = "completed";
    try {
      exchange = await sendChecked(inference, "chat", body, signal);
      const model = exchange.entry.id;
      let usage: unknown = null;
      let timings: unknown;
      let finishReason: unknown = null;
      let firstToken = true;
      for await (const event of readSse(exchange.response.body)) {
        if (signal.aborted) break;
        if (event["usage"] !== undefined && event["usage"] !== null) usage = event["usage"];
        if (event["timings"] !== undefined) timings = event["timings"];
        const chunk = chunkOf(event);
        if (!chunk) continue;
        if (chunk.finishReason !== null) finishReason = chunk.finishReason;
        if (!chunk.hasToken && chunk.finishReason === null) continue;
        if (firstToken && chunk.hasToken) {
          firstToken = false;
          metrics?.timeToFirstToken.observe({ dialect: "websocket", model }, (performance.now() - started) / 1000);
        }
        await this.sendWithBackpressure({ type: "chat_chunk", id: replyId, model, content: chunk.content, delta: chunk.delta, finish_reason: chunk.finishReason }, signal);
      }
      if (signal.aborted) throw signal.reason;
      this.send({ type: "chat_done", id: replyId, model, finish_reason: finishReason, usage, ...(timings !== undefined ? { timings } : {}) });
    } catch (thrown) {
      const reason = signal.aborted ? signal.reason : thrown;
      if (reason instanceof ChatCancelled) {
        outcome = "aborted";
        this.error("cancelled", `Chat '${id}' stopped: ${reason.message}.`, { id: replyId });
      } else {
        outcome = "error";
        const error = toGatewayError(reason);
        if (error.statusCode >= 500) this.deps.log.warn({ err: (reason as Error)?.message, chat: id }, "WebSocket chat failed");
        this.error(error.code, error.message, { id: replyId, ...(error.param ? { param: error.param } : {}) });
      }
    } finally {
      // Unread output means the client went away or cancelled: closing the body stops generation upstream.
      exchange?.response.body.destroy();
      exchange?.release();
      metrics?.websocketChats.inc({ outcome });
    }
  }

  /** Test and shutdown hook: the chats in progress. */
  get activeChats(): number {
    return this.chats.size;
  }
}

/** The OpenAI body of a chat message: `message` (a string or one message) or `messages`, plus `options`. */
function chatBody(message: Record<string, unknown>): { model: string } & Record<string, unknown> {
  const options = message["options"];
  if (options !== undefined && (options === null || typeof options !== "object" || Array.isArray(options))) {
    throw new GatewayError("invalid_request", "options must be an object of chat completion parameters", { param: "options" });
  }
  let messages = message["messages"];
  const single = message["message"];
  if (messages === undefined) {
    if (typeof single === "string") messages = [{ role: "user", content: single }];
    else if (single !== null && typeof single === "object" && !Array.isArray(single)) messages = [single];
    else throw new GatewayError("invalid_request", "chat_message needs `message` (a string or a message object) or `messages` (an array)", { param: "message" });
  } else if (single !== undefined) {
    throw new GatewayError("invalid_request", "Send either `message` or `messages`, not both", { param: "messages" });
  }
  // The connection streams, always; usage comes with chat_done.
  const body = { ...(options as Record<string, unknown> | undefined), model: message["model"], messages, stream: true, stream_options: { include_usage: true } };
  return parseBody(chatCompletionRequestSchema, body) as { model: string } & Record<string, unknown>;
}

function chunkOf(event: SseJson): { content: string; delta: Record<string, unknown>; finishReason: string | null; hasToken: boolean } | undefined {
  const choices = event["choices"];
  const choice = (Array.isArray(choices) ? choices[0] : undefined) as Record<string, unknown> | undefined;
  if (!choice) return undefined;
  const delta = (choice["delta"] ?? {}) as Record<string, unknown>;
  const content = typeof delta["content"] === "string" ? delta["content"] : "";
  const reasoning = typeof delta["reasoning_content"] === "string" ? delta["reasoning_content"] : "";
  const hasToken = content !== "" || reasoning !== "" || (Array.isArray(delta["tool_calls"]) && delta["tool_calls"].length > 0);
  const finish = choice["finish_reason"];
  return { content, delta, finishReason: typeof finish === "string" ? finish : null, hasToken };
}
