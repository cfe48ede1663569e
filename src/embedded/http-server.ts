/**
 * The runner's HTTP layer on plain node:http: a route table, bounded JSON bodies, one abort signal per
 * request that fires when the client goes away, uniform error bodies and one log line per request.
 * node:http rather than a framework because every route here is either one JSON answer or an SSE stream
 * that must be flushed chunk by chunk, and the runner's hot path should carry nothing else.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { ApiError, badRequest, notFound, toApiError } from "./errors.js";
import { log } from "./log.js";

/** llama-server has no body limit worth the name; 64 MiB keeps one bad client from exhausting memory. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;

export class ClientGoneError extends Error {
  constructor() {
    super("the client closed the connection");
    this.name = "ClientGoneError";
  }
}

export interface RouteContext {
  readonly method: string;
  readonly path: string;
  /** Parsed JSON body for POST routes, undefined otherwise. */
  readonly body: unknown;
  readonly res: ServerResponse;
  /** Aborts when the client disconnects or the runner shuts down. */
  readonly signal: AbortSignal;
  /** Adds a note (token counts, speed) to this request's log line. */
  note(text: string): void;
}

export type RouteHandler = (context: RouteContext) => Promise<void> | void;

export interface Routes {
  readonly [methodAndPath: string]: RouteHandler;
}

export interface RunnerServerOptions {
  /** While true, a request for a route not registered yet is answered 503 "Loading model", as llama-server does. */
  loading(): boolean;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > MAX_BODY_BYTES) {
      throw new ApiError(413, "invalid_request_error", `the request body is larger than ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim().length === 0) throw badRequest("the request body is empty; expected a JSON object");
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw badRequest(`the request body is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
}

export interface RunnerServer {
  readonly server: Server;
  /** Routes can be added after listening, so the server answers /health before the heavy modules load. */
  addRoutes(routes: Routes): void;
  /** Aborts every request in flight (their generations stop) and stops accepting new connections. */
  close(): Promise<void>;
}

export function createRunnerServer(initialRoutes: Routes, options: RunnerServerOptions): RunnerServer {
  const routes: Record<string, RouteHandler> = { ...initialRoutes };
  const inFlight = new Set<AbortController>();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const method = req.method ?? "GET";
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const controller = new AbortController();
    inFlight.add(controller);
    const notes: string[] = [];
    // 'close' on the response fires both after a normal end and when the socket dies; only the latter aborts.
    res.on("close", () => {
      inFlight.delete(controller);
      if (!res.writableFinished) controller.abort(new ClientGoneError());
      const status = res.writableFinished ? String(res.statusCode) : `${res.headersSent ? res.statusCode : "-"} aborted`;
      log(`${method} ${path} ${status} ${Math.round(performance.now() - started)} ms${notes.length ? ` ${notes.join(" ")}` : ""}`);
    });

    try {
      const route = routes[`${method} ${path}`] ?? (method === "HEAD" ? routes[`GET ${path}`] : undefined);
      if (route === undefined) throw options.loading() ? new ApiError(503, "unavailable_error", "Loading model") : notFound();
      const body = method === "POST" ? await readJsonBody(req) : undefined;
      await route({ method, path, body, res, signal: controller.signal, note: (text) => notes.push(text) });
    } catch (error) {
      if (controller.signal.aborted && controller.signal.reason instanceof ClientGoneError) return;
      const apiError = toApiError(error);
      if (apiError.status >= 500) notes.push(`error: ${apiError.message}`);
      if (!res.headersSent) {
        sendJson(res, apiError.status, apiError.toBody());
      } else if (!res.writableEnded) {
        // Mid-stream: the status is already sent, so the error travels as an SSE event, as llama-server does.
        res.end(`data: ${JSON.stringify(apiError.toBody())}\n\n`);
      }
    }
  }

  const server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    void handle(req, res);
  });
  // Generations can take minutes; only the request itself (headers and body) has to arrive promptly.
  server.requestTimeout = 120_000;

  return {
    server,
    addRoutes(more) {
      Object.assign(routes, more);
    },
    close() {
      const reason = new ApiError(503, "unavailable_error", "the runner is shutting down");
      for (const controller of inFlight) controller.abort(reason);
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
