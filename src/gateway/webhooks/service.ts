/**
 * Webhooks: registrations, and the persistent delivery queue that turns bus events into signed POSTs.
 *
 * - An event never waits for a delivery: the bus listener only buffers the envelope; on the next turn of
 *   the event loop it is written to SQLite (one row per subscribed webhook) and the pump is woken.
 * - Each webhook receives its events one at a time, oldest first, so a receiver sees them in order: the
 *   head of a webhook's queue is retried (exponential backoff with jitter, up to `max_attempts`) before
 *   the next event goes out. Different webhooks are delivered in parallel (`concurrency`).
 * - At-least-once: a delivery is marked delivered only after a 2xx answer. One in flight at shutdown
 *   stays pending and is sent again after the restart, so receivers de-duplicate by
 *   `X-LlamaRunner-Delivery`.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { Agent } from "../../upstream/undici.js";
import type { Config } from "../../config/schema.js";
import { ALL_EVENTS, EVENT_NAMES, type EventBus, type EventEnvelope, isEventName } from "../../events/bus.js";
import { GatewayError } from "../../errors/index.js";
import type { WebhookObserver } from "../metrics/metrics.js";
import { newSecret, SIGNATURE_HEADER, sign } from "./signature.js";
import { type AttemptRecord, type DeliveryRecord, type DeliveryStatus, WebhookStore, type WebhookRecord } from "./store.js";

export const WEBHOOK_DB_FILE = "webhooks.sqlite";

export interface WebhookServiceOptions {
  /** LLAMA_RUNNER_HOME: the database lives here. */
  home: string;
  bus: EventBus;
  logger: Logger;
  config: Config["webhooks"];
  version: string;
  observer?: WebhookObserver;
}

export interface RegisterInput {
  url: unknown;
  events: unknown;
  description?: unknown;
}

export interface PublicWebhook {
  id: string;
  object: "webhook";
  url: string;
  events: string[];
  description: string | null;
  created_at: string;
}

const MAX_URL_CHARS = 2048;
const RESPONSE_SNIPPET_BYTES = 512;
/** How long shutdown waits for deliveries in flight before abandoning them (they are sent after a restart). */
const SHUTDOWN_GRACE_MS = 1000;

export function validateWebhookUrl(value: unknown): string {
  if (typeof value !== "string" || value.trim() === "") throw new GatewayError("invalid_request", "url is required: an http or https URL", { param: "url" });
  if (value.length > MAX_URL_CHARS) throw new GatewayError("invalid_request", `url is longer than ${MAX_URL_CHARS} characters`, { param: "url" });
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    throw new GatewayError("invalid_request", `url is not a valid URL: ${JSON.stringify(value)}`, { param: "url" });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new GatewayError("invalid_request", `url must use http or https, not ${url.protocol.replace(/:$/, "")}`, { param: "url" });
  }
  if (url.username !== "" || url.password !== "") {
    throw new GatewayError("invalid_request", "url must not contain credentials; the signature authenticates deliveries", { param: "url" });
  }
  return url.href;
}

export function validateEvents(value: unknown): string[] {
  const allowed = `${EVENT_NAMES.join(", ")} or "${ALL_EVENTS}"`;
  if (!Array.isArray(value) || value.length === 0) throw new GatewayError("invalid_request", `events must be a non-empty array of: ${allowed}`, { param: "events" });
  const events = new Set<string>();
  for (const event of value) {
    if (event !== ALL_EVENTS && !isEventName(event)) {
      throw new GatewayError("invalid_request", `Unknown event ${JSON.stringify(event)}: expected ${allowed}`, { param: "events" });
    }
    events.add(event);
  }
  return [...events];
}

export class WebhookService {
  /**
   * Opened at start when the queue file exists, else by the first registration: a gateway that has never
   * had a webhook does not load SQLite (idle RSS median 76.7 vs 80.6 MB in probes without and with it).
   */
  private opened: WebhookStore | undefined;
  private readonly storePath: string;
  private readonly agent: Agent;
  private readonly webhooks = new Map<string, WebhookRecord>();
  private readonly inFlight = new Map<string, { controller: AbortController; done: Promise<void>; cancelled: boolean }>();
  private buffered: EventEnvelope[] = [];
  private flushScheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private closed = false;

  constructor(private readonly options: WebhookServiceOptions) {
    this.storePath = join(options.home, WEBHOOK_DB_FILE);
    const timeoutMs = options.config.timeout_s * 1000;
    this.agent = new Agent({ connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, keepAliveTimeout: 10_000 });
    if (existsSync(this.storePath)) for (const webhook of this.store.webhooks()) this.webhooks.set(webhook.id, webhook);
  }

  private get store(): WebhookStore {
    this.opened ??= new WebhookStore(this.storePath);
    return this.opened;
  }

  /** Subscribes to the bus and sends what was still pending when the gateway last stopped. */
  start(): void {
    if (this.unsubscribe || this.closed) return;
    this.unsubscribe = this.options.bus.subscribe("*", (envelope) => {
      this.buffered.push(envelope);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
    this.pump();
  }

  register(input: RegisterInput): PublicWebhook & { secret: string } {
    if (input === null || typeof input !== "object") throw new GatewayError("invalid_request", "Request body must be a JSON object");
    const url = validateWebhookUrl(input.url);
    const events = validateEvents(input.events);
    if (input.description !== undefined && input.description !== null && (typeof input.description !== "string" || input.description.length > 500)) {
      throw new GatewayError("invalid_request", "description must be a string of at most 500 characters", { param: "description" });
    }
    const record: WebhookRecord = {
      id: `wh_${randomBytes(12).toString("hex")}`,
      url,
      events,
      secret: newSecret(),
      description: typeof input.description === "string" ? input.description : null,
      created_at: new Date().toISOString(),
    };
    this.store.addWebhook(record);
    this.webhooks.set(record.id, record);
    this.options.logger.info({ webhook: record.id, url: record.url, events }, "webhook registered");
    return { ...toPublic(record), secret: record.secret };
  }

  list(): Array<PublicWebhook & { pending_deliveries: number }> {
    return [...this.webhooks.values()].map((record) => ({ ...toPublic(record), pending_deliveries: this.store.pendingCount(record.id) }));
  }

  get(id: string): PublicWebhook | undefined {
    const record = this.webhooks.get(id);
    return record && toPublic(record);
  }

  delete(id: string): boolean {
    if (!this.webhooks.has(id)) return false;
    const flight = this.inFlight.get(id);
    if (flight) {
      flight.cancelled = true;
      flight.controller.abort(new Error("webhook deleted"));
    }
    this.webhooks.delete(id);
    this.store.deleteWebhook(id);
    this.options.logger.info({ webhook: id }, "webhook deleted");
    return true;
  }

  /** The delivery log of a webhook, newest first, each with its attempts. */
  deliveries(id: string, limit: number, status?: DeliveryStatus) {
    return this.store.deliveries(id, limit, status).map((delivery) => publicDelivery(delivery, this.store.attempts(delivery.id)));
  }

  pendingTotal(): number {
    return this.opened?.pendingTotal() ?? 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Events published during shutdown (model.stopped "shutdown") are queued before the database closes.
    this.flush();
    this.closed = true;
    this.unsubscribe?.();
    clearTimeout(this.timer);
    const flights = [...this.inFlight.values()];
    if (flights.length > 0) {
      const grace = new Promise((resolve) => setTimeout(resolve, SHUTDOWN_GRACE_MS).unref());
      await Promise.race([Promise.all(flights.map((f) => f.done)), grace]);
      for (const flight of this.inFlight.values()) {
        flight.cancelled = true;
        flight.controller.abort(new Error("gateway shutting down"));
      }
      await Promise.all(flights.map((f) => f.done));
    }
    await this.agent.destroy().catch(() => {});
    this.opened?.close();
  }


  /** Writes buffered events to the queue, one delivery per subscribed webhook. */
  private flush(): void {
    this.flushScheduled = false;
    if (this.closed || this.buffered.length === 0) return;
    const envelopes = this.buffered;
    this.buffered = [];
    const items: Array<{ webhookId: string; event: string; payload: string }> = [];
    for (const envelope of envelopes) {
      const payload = JSON.stringify({ event: envelope.event, timestamp: envelope.timestamp, data: envelope.data });
      for (const webhook of this.webhooks.values()) {
        if (webhook.events.includes(envelope.event) || webhook.events.includes(ALL_EVENTS)) items.push({ webhookId: webhook.id, event: envelope.event, payload });
      }
    }
    if (items.length === 0) return;
    try {
      const { dropped } = this.store.enqueue(items, this.options.config.max_pending);
      for (let i = 0; i < dropped; i++) this.options.observer?.finished("failed");
      if (dropped > 0) this.options.logger.warn({ dropped }, "webhook queue full: events dropped");
    } catch (error) {
      this.options.logger.error({ err: (error as Error).message }, "could not queue webhook deliveries");
      return;
    }
    this.pump();
  }

  /** Starts every delivery that is due and may go now; sets a timer for the next one that is not due yet. */
  private pump(): void {
    // Nothing can be queued before a store exists.
    if (this.closed || !this.opened) return;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    let heads: DeliveryRecord[];
    try {
      heads = this.opened.queueHeads();
    } catch (error) {
      this.options.logger.error({ err: (error as Error).message }, "could not read the webhook queue");
      return;
    }
    heads.sort((a, b) => a.next_attempt_at - b.next_attempt_at || a.id - b.id);
    for (const head of heads) {
      if (this.inFlight.has(head.webhook_id)) continue;
      if (head.next_attempt_at > now) {
        next = Math.min(next, head.next_attempt_at);
        continue;
      }
      // Full: the next delivery to finish pumps again.
      if (this.inFlight.size >= this.options.config.concurrency) break;
      this.dispatch(head);
    }
    this.schedule(next);
  }

  private schedule(at: number): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (at === Number.POSITIVE_INFINITY) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, Math.max(0, at - Date.now()));
    this.timer.unref();
  }

  private dispatch(delivery: DeliveryRecord): void {
    const webhook = this.webhooks.get(delivery.webhook_id);
    if (!webhook) return;
    const controller = new AbortController();
    const flight = { controller, cancelled: false, done: Promise.resolve() };
    this.inFlight.set(webhook.id, flight);
    flight.done = this.attempt(webhook, delivery, controller.signal)
      .then((result) => {
        // Deleted, or the gateway is stopping: the delivery stays as it was (pending: sent after a restart).
        if (!flight.cancelled) this.finish(delivery, result);
      })
      .catch((error: unknown) => this.options.logger.error({ err: (error as Error).message, webhook: webhook.id }, "webhook delivery bookkeeping failed"))
      .finally(() => {
        this.inFlight.delete(webhook.id);
        this.pump();
      });
  }

  private async attempt(webhook: WebhookRecord, delivery: DeliveryRecord, signal: AbortSignal): Promise<AttemptRecord> {
    const attempt = delivery.attempts + 1;
    const started = Date.now();
    const timeoutMs = this.options.config.timeout_s * 1000;
    const timeout = setTimeout(() => this.abortFlight(webhook.id, `timed out after ${timeoutMs} ms`), timeoutMs);
    let statusCode: number | null = null;
    let error: string | null = null;
    try {
      const url = new URL(webhook.url);
      const response = await this.agent.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: "POST",
        body: delivery.payload,
        signal,
        headers: {
          "content-type": "application/json",
          "user-agent": `LlamaRunner-Webhook/${this.options.version}`,
          [SIGNATURE_HEADER.toLowerCase()]: sign(webhook.secret, delivery.payload),
          "x-llamarunner-event": delivery.event,
          "x-llamarunner-delivery": String(delivery.id),
          "x-llamarunner-attempt": String(attempt),
          "x-llamarunner-webhook-id": webhook.id,
        },
      });
      statusCode = response.statusCode;
      const snippet = await readSnippet(response.body);
      if (statusCode < 200 || statusCode >= 300) error = `HTTP ${statusCode}${snippet ? `: ${snippet}` : ""}`;
    } catch (thrown) {
      const reason = signal.aborted ? signal.reason : thrown;
      error = reason instanceof Error ? reason.message : String(reason);
    } finally {
      clearTimeout(timeout);
    }
    return { delivery_id: delivery.id, attempt, started_at: started, duration_ms: Date.now() - started, status_code: statusCode, error };
  }

  private abortFlight(webhookId: string, why: string): void {
    this.inFlight.get(webhookId)?.controller.abort(new Error(why));
  }

  private finish(delivery: DeliveryRecord, result: AttemptRecord): void {
    const { config, observer, logger } = this.options;
    const ok = result.error === null;
    observer?.attempt(ok);
    let status: DeliveryStatus = "pending";
    let nextAttemptAt = 0;
    if (ok) status = "delivered";
    else if (result.attempt >= config.max_attempts) status = "failed";
    else nextAttemptAt = Date.now() + this.backoffMs(result.attempt);
    this.store.recordAttempt(delivery, result, { status, nextAttemptAt }, config.log_retention);
    if (status !== "pending") observer?.finished(status === "delivered" ? "delivered" : "failed");
    if (status === "failed") {
      logger.warn({ webhook: delivery.webhook_id, delivery: delivery.id, event: delivery.event, attempts: result.attempt, error: result.error }, "webhook delivery failed");
    } else if (!ok) {
      logger.info({ webhook: delivery.webhook_id, delivery: delivery.id, attempt: result.attempt, error: result.error }, "webhook delivery will be retried");
    }
  }

  /** initial × 2^(attempt−1), capped, ±20 % so that many failing receivers do not retry in lockstep. */
  private backoffMs(attempt: number): number {
    const { retry_initial_s, retry_max_s } = this.options.config;
    const base = Math.min(retry_initial_s * 2 ** (attempt - 1), retry_max_s) * 1000;
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }
}

async function readSnippet(body: AsyncIterable<Buffer | Uint8Array | string> & { destroy(): void }): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      const buffer = typeof chunk === "string" ? Buffer.from(chunk) : Buffer.from(chunk);
      parts.push(buffer);
      size += buffer.length;
      if (size >= RESPONSE_SNIPPET_BYTES) break;
    }
  } catch {
    // What arrived is enough for the log.
  } finally {
    body.destroy();
  }
  return Buffer.concat(parts).subarray(0, RESPONSE_SNIPPET_BYTES).toString("utf8").trim().replace(/\s+/g, " ");
}

function toPublic(record: WebhookRecord): PublicWebhook {
  return { id: record.id, object: "webhook", url: record.url, events: record.events, description: record.description, created_at: record.created_at };
}

const iso = (ms: number | null) => (ms === null || ms === 0 ? null : new Date(ms).toISOString());

function publicDelivery(delivery: DeliveryRecord, attempts: AttemptRecord[]) {
  return {
    id: delivery.id,
    object: "webhook.delivery",
    webhook_id: delivery.webhook_id,
    event: delivery.event,
    status: delivery.status,
    attempts: delivery.attempts,
    created_at: iso(delivery.created_at),
    next_attempt_at: delivery.status === "pending" ? iso(delivery.next_attempt_at) : null,
    delivered_at: iso(delivery.delivered_at),
    last_status_code: delivery.last_status_code,
    last_error: delivery.last_error,
    payload: JSON.parse(delivery.payload) as unknown,
    attempt_log: attempts.map((a) => ({
      attempt: a.attempt,
      started_at: iso(a.started_at),
      duration_ms: a.duration_ms,
      status_code: a.status_code,
      error: a.error,
    })),
  };
}
