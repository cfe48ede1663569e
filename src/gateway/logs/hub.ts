/**
 * The live logs behind `GET /logs` and `GET /logs/stream`: one bounded ring per source (the gateway
 * itself, and each backend by model id), a sequence number shared by all sources (so a merged view is
 * ordered and an SSE client can resume after `Last-Event-ID`), and subscribers for the live stream.
 *
 * Gateway lines arrive as pino JSON through `gatewaySink()` (the logger is teed into it, src/logger.ts);
 * backend lines through the `llama-runner:backend-log` diagnostics channel that the supervisor feeds.
 */
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { BACKEND_LOG_CHANNEL, type BackendLogLine } from "../../events/channels.js";

export const GATEWAY_SOURCE = "gateway";

export interface LogEntry {
  /** Increases by one per line over all sources. */
  seq: number;
  /** ISO 8601. */
  time: string;
  /** `gateway` or a model id. */
  source: string;
  /** The gateway's pino level (`info`, `warn`, ...); null for a backend's output, which has none we can trust. */
  level: string | null;
  message: string;
  /** The structured fields of a gateway line (model, listener, err, ...). */
  fields?: Record<string, unknown>;
}

export interface LogHubOptions {
  /** Lines kept per source. */
  capacity: number;
  /** Maps a backend's model id to the source name to file it under; undefined drops the line (not ours). */
  backendSource?: (model: string) => string | undefined;
}

export type LogListener = (entry: LogEntry) => void;

const MAX_LINE_CHARS = 8 * 1024;
const MAX_SOURCES = 256;

export const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
const LABELS = new Map(Object.entries(LEVELS).map(([label, value]) => [value, label]));

/** A fixed-size ring: push is O(1), the oldest entry falls out. */
class Ring<T> {
  private readonly items: T[] = [];
  private head = 0;

  constructor(private readonly capacity: number) {}

  push(item: T): void {
    if (this.items.length < this.capacity) this.items.push(item);
    else {
      this.items[this.head] = item;
      this.head = (this.head + 1) % this.capacity;
    }
  }

  /** Oldest first. */
  toArray(): T[] {
    return this.head === 0 ? this.items.slice() : [...this.items.slice(this.head), ...this.items.slice(0, this.head)];
  }
}

const clip = (text: string) => (text.length > MAX_LINE_CHARS ? `${text.slice(0, MAX_LINE_CHARS)}… (${text.length - MAX_LINE_CHARS} more characters)` : text);

export class LogHub {
  private readonly rings = new Map<string, Ring<LogEntry>>();
  private readonly listeners = new Set<{ source: string | undefined; listener: LogListener }>();
  private seq = 0;
  private closed = false;
  private readonly onBackendLine = (message: unknown) => {
    const { model, line } = message as BackendLogLine;
    const source = this.options.backendSource ? this.options.backendSource(model) : model;
    if (source !== undefined && source !== GATEWAY_SOURCE) this.append(source, null, line);
  };

  private started = false;

  constructor(private readonly options: LogHubOptions) {}

  /** Starts collecting backend output (gateway lines come through `gatewaySink()` from the start). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    subscribe(BACKEND_LOG_CHANNEL, this.onBackendLine);
  }

  /** The stream the gateway's logger writes a copy of every line to (one pino JSON line per call). */
  gatewaySink(): { write(line: string): void } {
    return {
      write: (line: string) => {
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(line) as Record<string, unknown>;
        } catch {
          this.append(GATEWAY_SOURCE, null, line.trimEnd());
          return;
        }
        const { level, time, msg, ...rest } = parsed;
        const fields = line.length > 4 * MAX_LINE_CHARS ? { truncated: true } : rest;
        const label = typeof level === "number" ? (LABELS.get(level) ?? String(level)) : typeof level === "string" ? level : null;
        const when = typeof time === "string" ? time : typeof time === "number" ? new Date(time).toISOString() : undefined;
        this.append(GATEWAY_SOURCE, label, typeof msg === "string" ? msg : "", Object.keys(fields).length > 0 ? fields : undefined, when);
      },
    };
  }

  append(source: string, level: string | null, message: string, fields?: Record<string, unknown>, time = new Date().toISOString()): void {
    if (this.closed) return;
    let ring = this.rings.get(source);
    if (!ring) {
      if (this.rings.size >= MAX_SOURCES) return;
      ring = new Ring(this.options.capacity);
      this.rings.set(source, ring);
    }
    const entry: LogEntry = { seq: ++this.seq, time, source, level, message: clip(message) };
    if (fields) entry.fields = fields;
    ring.push(entry);
    for (const subscriber of this.listeners) {
      if (subscriber.source !== undefined && subscriber.source !== source) continue;
      try {
        subscriber.listener(entry);
      } catch {
        // A broken stream must not stop logging.
      }
    }
  }

  /** Sources that have lines. */
  sources(): string[] {
    return [...this.rings.keys()];
  }

  /** The last `limit` lines of one source (or all, merged by seq) after `since`, at `minLevel` or above. */
  entries(source: string | undefined, { since = 0, limit = 100, minLevel }: { since?: number; limit?: number; minLevel?: number } = {}): LogEntry[] {
    const rings = source === undefined ? [...this.rings.values()] : [this.rings.get(source)].filter((r) => r !== undefined);
    let all = rings.flatMap((ring) => ring.toArray()).filter((e) => e.seq > since && passes(e, minLevel));
    if (rings.length > 1) all.sort((a, b) => a.seq - b.seq);
    if (all.length > limit) all = all.slice(all.length - limit);
    return all;
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** Live lines of one source (or all); returns the unsubscribe function. */
  subscribe(source: string | undefined, listener: LogListener): () => void {
    const subscriber = { source, listener };
    this.listeners.add(subscriber);
    return () => this.listeners.delete(subscriber);
  }

  close(): void {
    this.closed = true;
    if (this.started) unsubscribe(BACKEND_LOG_CHANNEL, this.onBackendLine);
    this.listeners.clear();
  }
}

export function passes(entry: LogEntry, minLevel: number | undefined): boolean {
  if (minLevel === undefined || entry.level === null) return true;
  return (LEVELS[entry.level] ?? 0) >= minLevel;
}
