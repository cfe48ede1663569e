/**
 * `GET /logs` (a snapshot, JSON or text) and `GET /logs/stream` (server-sent events: the recent lines,
 * then every new one) for the gateway and each backend, on both listeners.
 *
 *   ?source=gateway | <model id or alias>   default: every source, merged in order
 *   ?limit=N (GET /logs, default 100) or ?tail=N (stream backlog, default 100), at most the ring size
 *   ?since=SEQ   only lines after this sequence number (the stream also honours Last-Event-ID)
 *   ?level=warn  gateway lines at this level or above (backend output has no level and is kept)
 *   ?format=text plain text lines instead of JSON (GET /logs)
 */
import type { ServerResponse } from "node:http";
import type { FastifyInstance } from "fastify";
import type { Catalog } from "../../catalog/catalog.js";
import { GatewayError } from "../../errors/index.js";
import { GATEWAY_SOURCE, LEVELS, type LogEntry, type LogHub, passes } from "./hub.js";

export interface LogRoutesOptions {
  logs: LogHub;
  catalog: Catalog;
  /** Lines kept per source: the most a request can ask for. */
  capacity: number;
  /** Seconds between SSE comments that keep proxies from closing an idle stream. */
  heartbeatS?: number;
}

interface LogQuery {
  source?: string;
  limit?: string;
  tail?: string;
  since?: string;
  level?: string;
  format?: string;
}

/** Entries a slow SSE client may fall behind by before lines are dropped (and it is told how many). */
const MAX_PENDING = 1000;

function count(value: string | undefined, name: string, fallback: number, max: number): number {
  if (value === undefined || value === "") return Math.min(fallback, max);
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new GatewayError("invalid_request", `${name} must be a non-negative integer`, { param: name });
  return Math.min(n, max);
}

export function formatText(entry: LogEntry): string {
  const level = entry.level === null ? "" : ` ${entry.level.toUpperCase()}`;
  const fields = entry.fields ? ` ${JSON.stringify(entry.fields)}` : "";
  return `${entry.time} [${entry.source}]${level} ${entry.message}${fields}`;
}

export async function logRoutes(app: FastifyInstance, { logs, catalog, capacity, heartbeatS = 15 }: LogRoutesOptions): Promise<void> {
  const streams = new Set<ServerResponse>();

  const parse = (query: LogQuery) => {
    let source: string | undefined;
    if (query.source !== undefined && query.source !== "" && query.source !== "all") {
      if (query.source === GATEWAY_SOURCE) source = GATEWAY_SOURCE;
      else {
        const entry = catalog.resolve(query.source);
        if (!entry) {
          throw new GatewayError("model_not_found", `Unknown log source '${query.source}': expected 'gateway', 'all' or a model id.`, { param: "source" });
        }
        source = entry.id;
      }
    }
    let minLevel: number | undefined;
    if (query.level !== undefined && query.level !== "") {
      minLevel = LEVELS[query.level.toLowerCase()];
      if (minLevel === undefined) {
        throw new GatewayError("invalid_request", `level must be one of ${Object.keys(LEVELS).join(", ")}`, { param: "level" });
      }
    }
    const since = count(query.since, "since", 0, Number.MAX_SAFE_INTEGER);
    return { source, minLevel, since };
  };

  app.get<{ Querystring: LogQuery }>("/logs", async (request, reply) => {
    const { source, minLevel, since } = parse(request.query);
    const limit = count(request.query.limit, "limit", 100, capacity);
    const data = logs.entries(source, { since, limit, minLevel });
    if (request.query.format === "text") {
      return reply.type("text/plain; charset=utf-8").send(data.map((e) => `${formatText(e)}\n`).join(""));
    }
    return { object: "list", source: source ?? "all", data, last_seq: logs.lastSeq };
  });

  app.get<{ Querystring: LogQuery }>("/logs/stream", async (request, reply) => {
    const { source, minLevel, since } = parse(request.query);
    const lastEventId = Number(request.headers["last-event-id"]);
    const resumeFrom = Number.isInteger(lastEventId) && lastEventId > 0 ? lastEventId : since;
    // A resuming client wants everything it missed that is still kept; a new one the recent lines.
    const tail = count(request.query.tail, "tail", resumeFrom > 0 ? capacity : 100, capacity);

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" });
    res.flushHeaders();
    streams.add(res);

    const frame = (entry: LogEntry) => `id: ${entry.seq}\nevent: log\ndata: ${JSON.stringify(entry)}\n\n`;
    const pending: string[] = [];
    let dropped = 0;
    let blocked = false;
    const write = (text: string) => {
      if (res.destroyed || res.writableEnded) return;
      if (blocked) {
        if (pending.length < MAX_PENDING) pending.push(text);
        else dropped++;
        return;
      }
      if (!res.write(text)) blocked = true;
    };
    const onDrain = () => {
      blocked = false;
      if (dropped > 0) {
        const notice = `event: dropped\ndata: ${JSON.stringify({ count: dropped })}\n\n`;
        dropped = 0;
        write(notice);
      }
      while (pending.length > 0 && !blocked) write(pending.shift() as string);
    };
    res.on("drain", onDrain);

    // Subscribe before reading the backlog: nothing falls between the two, and seq removes overlap.
    let lastSent = resumeFrom;
    const unsubscribe = logs.subscribe(source, (entry) => {
      if (entry.seq <= lastSent || !passes(entry, minLevel)) return;
      lastSent = entry.seq;
      write(frame(entry));
    });
    for (const entry of logs.entries(source, { since: resumeFrom, limit: tail, minLevel })) {
      if (entry.seq <= lastSent) continue;
      lastSent = entry.seq;
      write(frame(entry));
    }
    const heartbeat = setInterval(() => write(": keep-alive\n\n"), heartbeatS * 1000);
    heartbeat.unref();
    res.once("close", () => {
      clearInterval(heartbeat);
      unsubscribe();
      streams.delete(res);
    });
  });

  // Shutdown: end the open streams so the listener can close at once.
  app.addHook("preClose", async () => {
    for (const res of streams) res.end();
  });
}
