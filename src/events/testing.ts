/**
 * Shared by the tests of webhooks, the WebSocket API, metrics and logs: a real gateway on a home folder
 * that outlives it (so a test can restart the gateway on the same home), `command` models that run the
 * fake llama-server, a real HTTP receiver for webhooks, and polling.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { type App, buildApp } from "../main.js";

const FAKE = fileURLToPath(new URL("../test-support/fake-upstream.js", import.meta.url));
const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** A `command` model that runs the fake llama-server with `flags` (see test-support/fake-upstream.ts). */
export function fakeModel(flags = "", extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { command: `${quote(process.execPath)} ${quote(FAKE)} --port \${PORT} ${flags}`, ...extra };
}

export interface RunningGateway {
  app: App;
  home: string;
  lmstudio: string;
  ollama: string;
  /** Stops the gateway; the home folder stays (restart on it with `startGateway(home, ...)`). */
  close(): Promise<void>;
}

export function newHome(): Promise<string> {
  return mkdtemp(join(tmpdir(), "lr-events-"));
}

export function removeHome(home: string): Promise<void> {
  return rm(home, { recursive: true, force: true });
}

/** Writes `config` into `home`/config.json and starts a gateway there on free loopback ports. */
export async function startGateway(home: string, config: Record<string, unknown> = {}): Promise<RunningGateway> {
  const configFile = join(home, "config.json");
  const proxies = (config["proxies"] ?? {}) as Record<string, { rate_limits?: Record<string, unknown> } | undefined>;
  // Tests send many requests from loopback: the per-client limits are off unless a test sets them.
  const listener = (name: string) => ({ port: 0, ...proxies[name], rate_limits: { exempt_loopback: true, ...proxies[name]?.rate_limits } });
  await writeFile(
    configFile,
    JSON.stringify({
      demo_model: false,
      models_dir: join(home, "models"),
      runner: { load_timeout_s: 10, stop_grace_s: 1 },
      ...config,
      proxies: { ollama: listener("ollama"), lmstudio: listener("lmstudio") },
    }),
  );
  const app = await buildApp({ configFile, home, logger: pino({ level: process.env["TEST_LOG_LEVEL"] ?? "silent" }), env: {} });
  const bound = await app.listen();
  const url = (name: "lmstudio" | "ollama") => `http://127.0.0.1:${bound.get(name)?.port ?? 0}`;
  return { app, home, lmstudio: url("lmstudio"), ollama: url("ollama"), close: () => app.close() };
}

export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

export async function json<T = Record<string, unknown>>(url: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<{ status: number; body: T }> {
  const response = await fetch(url, {
    method: init.method ?? (init.body === undefined ? "GET" : "POST"),
    headers: { "content-type": "application/json", ...init.headers },
    body: init.body === undefined ? undefined : typeof init.body === "string" ? init.body : JSON.stringify(init.body),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: the text.
  }
  return { status: response.status, body: body as T };
}

export interface Received {
  headers: IncomingHttpHeaders;
  /** The raw body, exactly as received. */
  body: Buffer;
  status: number;
}

/** A webhook receiver: records every request and answers with `respond(n)` (n counts from 0). */
export class Receiver {
  readonly received: Received[] = [];
  respond: (index: number, request: Received) => number = () => 200;
  private readonly server: Server;
  url = "";

  constructor() {
    this.server = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (chunk: Buffer) => parts.push(chunk));
      req.on("end", () => {
        const request: Received = { headers: req.headers, body: Buffer.concat(parts), status: 0 };
        request.status = this.respond(this.received.length, request);
        this.received.push(request);
        res.writeHead(request.status, { "content-type": "text/plain" }).end(request.status < 300 ? "ok" : "nope");
      });
    });
  }

  async start(port = 0): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(port, "127.0.0.1", resolve));
    const address = this.server.address();
    this.url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : port}/hooks/llama`;
    return this;
  }

  /** Received requests whose payload has this event name, in arrival order. */
  ofEvent(event: string): Received[] {
    return this.received.filter((r) => (JSON.parse(r.body.toString("utf8")) as { event: string }).event === event);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
