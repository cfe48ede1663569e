#!/usr/bin/env node
/**
 * A fake llama-server for tests and benchmarks: just enough of its protocol (`GET /health`, the
 * OpenAI routes, SSE streams) over node:http, plus flags that script the faults a real backend has.
 *
 *   node dist/test-support/fake-upstream.js --port N [options]
 *
 *   --host H                 bind address (default 127.0.0.1)
 *   --start-delay-ms MS      /health answers 503 for this long after start
 *   --never-healthy          /health answers 503 forever
 *   --exit-on-start CODE     print a line to stderr and exit with CODE at once
 *   --crash-after-chunks N   during a stream, SIGKILL itself after N content chunks
 *   --crash-before-response  a non-stream request makes it exit before answering
 *   --ignore-sigterm         log and ignore SIGTERM (only SIGKILL stops it)
 *   --chunks N               content chunks per stream (default 5)
 *   --chunk-delay-ms D       pause before each content chunk (default 0)
 *   --body-bytes B           size of a non-stream chat/completion body (default ~300)
 *   --log-line TEXT          printed to stderr at start (repeatable)
 *   --watch-stdin            exit when stdin ends (off by default: the gateway's watchdog is what is tested;
 *                            note that under the watchdog stdin is /dev/null, so this exits at once there)
 *
 * Embeddings answers carry `x_body_sha256`, the SHA-256 of the request body exactly as received.
 *
 * It never dies of a broken stdout/stderr pipe, so a test of the gateway's orphan handling sees the
 * watchdog at work, not an EPIPE.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { parseArgs } from "node:util";

const { values: opts } = parseArgs({
  options: {
    port: { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    "start-delay-ms": { type: "string", default: "0" },
    "never-healthy": { type: "boolean", default: false },
    "exit-on-start": { type: "string" },
    "crash-after-chunks": { type: "string" },
    "crash-before-response": { type: "boolean", default: false },
    "ignore-sigterm": { type: "boolean", default: false },
    chunks: { type: "string", default: "5" },
    "chunk-delay-ms": { type: "string", default: "0" },
    "body-bytes": { type: "string", default: "300" },
    "log-line": { type: "string", multiple: true, default: [] },
    "watch-stdin": { type: "boolean", default: false },
  },
  strict: true,
});

const num = (name: keyof typeof opts, value: string | undefined): number => {
  const n = Number(value);
  if (value === undefined || !Number.isFinite(n) || n < 0) {
    process.stderr.write(`fake-upstream: --${String(name)} needs a non-negative number, got ${String(value)}\n`);
    process.exit(2);
  }
  return n;
};

const log = (line: string) => process.stderr.write(`${line}\n`);
process.stdout.on("error", () => {});
process.stderr.on("error", () => {});

for (const line of opts["log-line"] ?? []) log(line);

if (opts["exit-on-start"] !== undefined) {
  const code = num("exit-on-start", opts["exit-on-start"]);
  log(`fake-upstream: exiting with code ${code} on start (--exit-on-start)`);
  process.exit(code);
}

const port = num("port", opts.port);
const startDelayMs = num("start-delay-ms", opts["start-delay-ms"]);
const chunkCount = num("chunks", opts.chunks);
const chunkDelayMs = num("chunk-delay-ms", opts["chunk-delay-ms"]);
const bodyBytes = num("body-bytes", opts["body-bytes"]);
const crashAfter = opts["crash-after-chunks"] === undefined ? undefined : num("crash-after-chunks", opts["crash-after-chunks"]);
const readyAt = Date.now() + startDelayMs;

if (opts["ignore-sigterm"]) process.on("SIGTERM", () => log("fake-upstream: ignoring SIGTERM"));
if (opts["watch-stdin"]) {
  process.stdin.on("end", () => process.exit(0)).on("close", () => process.exit(0)).resume();
}

const created = () => Math.floor(Date.now() / 1000);
const usage = { prompt_tokens: 7, completion_tokens: chunkCount, total_tokens: 7 + chunkCount };

/** Fills `make(text)`'s JSON up to about `bytes` long with filler words. */
function padded(make: (text: string) => object, bytes: number): string {
  const bare = JSON.stringify(make("")).length;
  const filler = "lorem ipsum dolor sit amet ".repeat(Math.ceil(Math.max(0, bytes - bare) / 27) + 1).slice(0, Math.max(1, bytes - bare));
  return JSON.stringify(make(filler));
}

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/** The parsed body, and the raw text it came as. */
function readJson(req: IncomingMessage): Promise<{ body: Record<string, unknown>; text: string }> {
  return new Promise((resolve) => {
    let text = "";
    req.setEncoding("utf8").on("data", (d: string) => (text += d));
    req.on("end", () => {
      try {
        const value: unknown = JSON.parse(text);
        resolve({ body: value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {}, text });
      } catch {
        resolve({ body: {}, text });
      }
    });
  });
}

/** The SSE stream of a chat or legacy completion: role chunk (chat), content chunks, finish, usage, [DONE]. */
function stream(res: ServerResponse, body: Record<string, unknown>, chat: boolean): void {
  const model = String(body["model"] ?? "fake");
  const id = chat ? "chatcmpl-fake" : "cmpl-fake";
  const object = chat ? "chat.completion.chunk" : "text_completion";
  const wantUsage = (body["stream_options"] as { include_usage?: unknown } | undefined)?.include_usage === true;
  const event = (choices: unknown[], extra: object = {}) => `data: ${JSON.stringify({ id, object, created: created(), model, choices, ...extra })}\n\n`;
  const choice = (content: string | undefined, finish: string | null) =>
    chat ? { index: 0, delta: content === undefined ? {} : { content }, finish_reason: finish } : { index: 0, text: content ?? "", finish_reason: finish };

  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  res.flushHeaders();
  if (chat) res.write(event([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }]));
  let sent = 0;
  let timer: NodeJS.Timeout | undefined;
  res.on("close", () => clearTimeout(timer));
  const next = () => {
    if (res.destroyed) return;
    while (sent < chunkCount) {
      sent++;
      const crash = crashAfter !== undefined && sent >= crashAfter;
      // The crash waits for the chunk to reach the socket, so the client really has N chunks.
      const room = res.write(event([choice(`tok${sent} `, null)]), crash ? () => process.kill(process.pid, "SIGKILL") : undefined);
      if (crash) return;
      if (chunkDelayMs > 0) {
        timer = setTimeout(next, chunkDelayMs);
        return;
      }
      // Without a delay it is a firehose, limited only by the reader: write until the socket is full.
      if (!room) {
        res.once("drain", next);
        return;
      }
    }
    res.write(event([choice(undefined, "stop")]));
    if (wantUsage) res.write(event([], { usage }));
    res.end("data: [DONE]\n\n");
  };
  if (crashAfter === 0) process.kill(process.pid, "SIGKILL");
  timer = setTimeout(next, chunkDelayMs);
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? "/").split("?")[0];
  if (req.method === "GET" && path === "/health") {
    const ready = !opts["never-healthy"] && Date.now() >= readyAt;
    if (ready) send(res, 200, JSON.stringify({ status: "ok" }));
    else send(res, 503, JSON.stringify({ error: { code: 503, message: "Loading model", type: "unavailable_error" } }));
    return;
  }
  if (req.method === "GET" && path === "/v1/models") {
    send(res, 200, JSON.stringify({ object: "list", data: [{ id: "fake", object: "model", created: created(), owned_by: "fake-upstream" }] }));
    return;
  }
  if (req.method !== "POST" || !["/v1/chat/completions", "/v1/completions", "/v1/embeddings"].includes(path ?? "")) {
    send(res, 404, JSON.stringify({ error: { code: 404, message: "File Not Found", type: "not_found_error" } }));
    return;
  }
  const { body, text: received } = await readJson(req);
  const model = String(body["model"] ?? "fake");
  if (path === "/v1/embeddings") {
    const inputs = Array.isArray(body["input"]) ? body["input"] : [body["input"]];
    const vector = [0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7, -0.8];
    const encode = (v: number[]) => (body["encoding_format"] === "base64" ? Buffer.from(new Float32Array(v).buffer).toString("base64") : v);
    const data = inputs.map((_, index) => ({ object: "embedding", index, embedding: encode(vector) }));
    // What the proxy in front sent, byte for byte, for tests of what it forwards.
    const receivedSha256 = createHash("sha256").update(received).digest("hex");
    send(res, 200, JSON.stringify({ object: "list", data, model, usage: { prompt_tokens: inputs.length, total_tokens: inputs.length }, x_body_sha256: receivedSha256 }));
    return;
  }
  const chat = path === "/v1/chat/completions";
  if (body["stream"] === true) {
    stream(res, body, chat);
    return;
  }
  if (opts["crash-before-response"]) {
    log("fake-upstream: exiting before the response (--crash-before-response)");
    process.exit(1);
  }
  const text = (content: string) =>
    chat
      ? { id: "chatcmpl-fake", object: "chat.completion", created: created(), model, choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }], usage }
      : { id: "cmpl-fake", object: "text_completion", created: created(), model, choices: [{ index: 0, text: content, finish_reason: "stop" }], usage };
  send(res, 200, padded(text, bodyBytes));
}

const server = createServer((req, res) => {
  handle(req, res).catch((error: unknown) => {
    log(`fake-upstream: ${(error as Error).message}`);
    if (!res.headersSent) send(res, 500, JSON.stringify({ error: { code: 500, message: "fake failure", type: "server_error" } }));
    else res.destroy();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, opts.host, () => log(`fake-upstream: listening on http://${opts.host}:${port} (pid ${process.pid})`));
