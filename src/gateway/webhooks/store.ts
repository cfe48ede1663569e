/**
 * Webhook registrations and their delivery queue, in one SQLite file under LLAMA_RUNNER_HOME
 * (`webhooks.sqlite`, owner-only 0600; WAL, so a crash loses nothing that was committed). A delivery
 * row is the queue entry and the delivery log at once: `pending` until a 2xx answer (`delivered`) or
 * its last attempt (`failed`); each attempt is recorded in `webhook_attempts`.
 *
 * better-sqlite3 is synchronous; every statement here is a small indexed read or write (tens of µs).
 */
import { chmodSync, closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";

export interface WebhookRecord {
  id: string;
  url: string;
  events: string[];
  secret: string;
  description: string | null;
  created_at: string;
}

export type DeliveryStatus = "pending" | "delivered" | "failed";

export interface DeliveryRecord {
  id: number;
  webhook_id: string;
  event: string;
  /** The exact body that is sent and signed. */
  payload: string;
  status: DeliveryStatus;
  attempts: number;
  /** Unix ms. */
  next_attempt_at: number;
  created_at: number;
  updated_at: number;
  delivered_at: number | null;
  last_status_code: number | null;
  last_error: string | null;
}

export interface AttemptRecord {
  delivery_id: number;
  attempt: number;
  started_at: number;
  duration_ms: number;
  status_code: number | null;
  error: string | null;
}

interface WebhookRow extends Omit<WebhookRecord, "events"> {
  events: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS webhooks (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  events TEXT NOT NULL,
  secret TEXT NOT NULL,
  description TEXT,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
  event TEXT NOT NULL,
  payload TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  delivered_at INTEGER,
  last_status_code INTEGER,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_queue ON webhook_deliveries (webhook_id, status, id);
CREATE TABLE IF NOT EXISTS webhook_attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
  attempt INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  status_code INTEGER,
  error TEXT
);
CREATE INDEX IF NOT EXISTS webhook_attempts_by_delivery ON webhook_attempts (delivery_id, attempt);
`;

/** Creates the file owner-only before SQLite opens it (SQLite gives its -wal and -shm files the same mode). */
function createPrivateFile(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, "a", 0o600));
  chmodSync(path, 0o600);
}

export class WebhookStore {
  private readonly db: Database.Database;
  private readonly statements;

  constructor(readonly path: string) {
    createPrivateFile(path);
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    this.db.exec(SCHEMA);
    for (const suffix of ["-wal", "-shm"]) {
      try {
        chmodSync(`${path}${suffix}`, 0o600);
      } catch {
        // Not created (yet).
      }
    }
    const db = this.db;
    this.statements = {
      insertWebhook: db.prepare(
        "INSERT INTO webhooks (id, url, events, secret, description, created_at) VALUES (@id, @url, @events, @secret, @description, @created_at)",
      ),
      allWebhooks: db.prepare("SELECT * FROM webhooks ORDER BY created_at, id"),
      webhook: db.prepare("SELECT * FROM webhooks WHERE id = ?"),
      deleteWebhook: db.prepare("DELETE FROM webhooks WHERE id = ?"),
      insertDelivery: db.prepare(
        "INSERT INTO webhook_deliveries (webhook_id, event, payload, status, attempts, next_attempt_at, created_at, updated_at, last_error) " +
          "VALUES (@webhook_id, @event, @payload, @status, 0, @now, @now, @now, @last_error)",
      ),
      pendingCount: db.prepare("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE webhook_id = ? AND status = 'pending'"),
      allPending: db.prepare("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status = 'pending'"),
      /** The head of each webhook's queue: its oldest pending delivery. */
      heads: db.prepare(
        "SELECT d.* FROM webhook_deliveries d JOIN (SELECT webhook_id, MIN(id) AS id FROM webhook_deliveries WHERE status = 'pending' GROUP BY webhook_id) h ON d.id = h.id",
      ),
      delivery: db.prepare("SELECT * FROM webhook_deliveries WHERE id = ?"),
      deliveries: db.prepare("SELECT * FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT ?"),
      deliveriesByStatus: db.prepare("SELECT * FROM webhook_deliveries WHERE webhook_id = ? AND status = ? ORDER BY id DESC LIMIT ?"),
      attemptsOf: db.prepare("SELECT * FROM webhook_attempts WHERE delivery_id = ? ORDER BY attempt"),
      insertAttempt: db.prepare(
        "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error) VALUES (@delivery_id, @attempt, @started_at, @duration_ms, @status_code, @error)",
      ),
      finishAttempt: db.prepare(
        "UPDATE webhook_deliveries SET status = @status, attempts = @attempts, next_attempt_at = @next_attempt_at, updated_at = @now, " +
          "delivered_at = @delivered_at, last_status_code = @status_code, last_error = @error WHERE id = @id",
      ),
      prune: db.prepare(
        "DELETE FROM webhook_deliveries WHERE webhook_id = @webhook_id AND status != 'pending' AND id NOT IN " +
          "(SELECT id FROM webhook_deliveries WHERE webhook_id = @webhook_id AND status != 'pending' ORDER BY id DESC LIMIT @keep)",
      ),
    };
  }

  addWebhook(record: WebhookRecord): void {
    this.statements.insertWebhook.run({ ...record, events: JSON.stringify(record.events) });
  }

  webhooks(): WebhookRecord[] {
    return (this.statements.allWebhooks.all() as WebhookRow[]).map(fromRow);
  }

  webhook(id: string): WebhookRecord | undefined {
    const row = this.statements.webhook.get(id) as WebhookRow | undefined;
    return row && fromRow(row);
  }

  /** Deletes a webhook with its deliveries and their attempts. */
  deleteWebhook(id: string): boolean {
    return this.statements.deleteWebhook.run(id).changes > 0;
  }

  /**
   * Queues one event for several webhooks in one transaction. A webhook whose queue already holds
   * `maxPending` deliveries gets the delivery logged as failed instead (returned in `dropped`).
   */
  enqueue(items: Array<{ webhookId: string; event: string; payload: string }>, maxPending: number, now = Date.now()): { queued: number; dropped: number } {
    let queued = 0;
    let dropped = 0;
    this.db.transaction(() => {
      for (const item of items) {
        const { n } = this.statements.pendingCount.get(item.webhookId) as { n: number };
        const full = n >= maxPending;
        this.statements.insertDelivery.run({
          webhook_id: item.webhookId,
          event: item.event,
          payload: item.payload,
          status: full ? "failed" : "pending",
          now,
          last_error: full ? `dropped: ${maxPending} deliveries were already waiting for this webhook` : null,
        });
        if (full) dropped++;
        else queued++;
      }
    })();
    return { queued, dropped };
  }

  /** The oldest pending delivery of every webhook that has one. */
  queueHeads(): DeliveryRecord[] {
    return this.statements.heads.all() as DeliveryRecord[];
  }

  pendingCount(webhookId: string): number {
    return (this.statements.pendingCount.get(webhookId) as { n: number }).n;
  }

  pendingTotal(): number {
    return (this.statements.allPending.get() as { n: number }).n;
  }

  delivery(id: number): DeliveryRecord | undefined {
    return this.statements.delivery.get(id) as DeliveryRecord | undefined;
  }

  deliveries(webhookId: string, limit: number, status?: DeliveryStatus): DeliveryRecord[] {
    return (
      status === undefined ? this.statements.deliveries.all(webhookId, limit) : this.statements.deliveriesByStatus.all(webhookId, status, limit)
    ) as DeliveryRecord[];
  }

  attempts(deliveryId: number): AttemptRecord[] {
    return this.statements.attemptsOf.all(deliveryId) as AttemptRecord[];
  }

  /** Records one attempt and the delivery's new state, then trims the webhook's finished deliveries to `keep`. */
  recordAttempt(
    delivery: DeliveryRecord,
    attempt: AttemptRecord,
    next: { status: DeliveryStatus; nextAttemptAt: number },
    keep: number,
  ): void {
    const now = Date.now();
    this.db.transaction(() => {
      // The webhook may have been deleted while the attempt ran: then there is nothing to record.
      if (!this.statements.delivery.get(delivery.id)) return;
      this.statements.insertAttempt.run(attempt);
      this.statements.finishAttempt.run({
        id: delivery.id,
        status: next.status,
        attempts: attempt.attempt,
        next_attempt_at: next.nextAttemptAt,
        now,
        delivered_at: next.status === "delivered" ? now : null,
        status_code: attempt.status_code,
        error: attempt.error,
      });
      if (next.status !== "pending") this.statements.prune.run({ webhook_id: delivery.webhook_id, keep });
    })();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function fromRow(row: WebhookRow): WebhookRecord {
  let events: string[] = [];
  try {
    const parsed: unknown = JSON.parse(row.events);
    if (Array.isArray(parsed)) events = parsed.filter((e): e is string => typeof e === "string");
  } catch {
    // A damaged row subscribes to nothing rather than stopping the gateway.
  }
  return { ...row, events };
}
