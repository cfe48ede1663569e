#!/usr/bin/env node
/**
 * The bench's own fake llama-server: as cheap as node:http allows, so that a proxy's cost is what
 * the numbers show. (src/test-support/fake-upstream.ts scripts faults for tests; the bench also needs
 * per-chunk send timestamps and per-request pacing, so it has this one.)
 *
 *   node dist/bench/fake-upstream.js --port N [--body-bytes 300]
 *
 * - `GET /health` → 200.
 * - `POST /v1/chat/completions` without `stream`: a fixed JSON completion of `--body-bytes` bytes.
 * - with `"stream": true`: a role chunk, `max_tokens` content chunks (default 1000), a finish chunk and
 *   `data: [DONE]`, in llama-server's chunk shape. Every content chunk carries `"x_t"`, the
 *   CLOCK_MONOTONIC time in ns when it was written (process.hrtime is system-wide on Linux), so a client
 *   on the same machine knows each chunk's delivery latency. `"x_delay_ms"` in the request paces the
 *   chunks (default 1 ms: a fast model's ~1,000 tokens/s; 0 = back to back, yielding to I/O between).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    "body-bytes": { type: "string", default: "300" },
  },
});

const bodyBytes = Number(values["body-bytes"]);

function completion(bytes: number): Buffer {
  const make = (content: string) =>
    JSON.stringify({
      id: "chatcmpl-bench",
      object: "chat.completion",
      created: 1700000000,
      model: "fake",
      choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "length" }],
      usage: { prompt_tokens: 9, completion_tokens: 1, total_tokens: 10 },
    });
  const bare = make("").length;
  return Buffer.from(make("x".repeat(Math.max(1, bytes - bare))));
}
const COMPLETION = completion(bodyBytes);
const HEALTH = Buffer.from('{"status":"ok"}');

const chunkHead = 'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" tok"}}],"created":1700000000,"id":"chatcmpl-bench","model":"fake","object":"chat.completion.chunk","x_t":';
const ROLE = 'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1700000000,"id":"chatcmpl-bench","model":"fake","object":"chat.completion.chunk"}\n\n';
const FINISH = 'data: {"choices":[{"finish_reason":"length","index":0,"delta":{}}],"created":1700000000,"id":"chatcmpl-bench","model":"fake","object":"chat.completion.chunk"}\n\ndata: [DONE]\n\n';

function stream(res: ServerResponse, chunks: number, delayMs: number): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  res.write(ROLE);
  let sent = 0;
  let timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  let closed = false;
  res.on("close", () => {
    closed = true;
    if (timer) (delayMs > 0 ? clearTimeout(timer as NodeJS.Timeout) : clearImmediate(timer as NodeJS.Immediate));
  });
  const schedule = () => (timer = delayMs > 0 ? setTimeout(next, delayMs) : setImmediate(next));
  const next = () => {
    if (closed) return;
    if (sent >= chunks) {
      res.end(FINISH);
      return;
    }
    sent++;
    const ok = res.write(`${chunkHead}${process.hrtime.bigint()}}\n\n`);
    if (ok) schedule();
    else res.once("drain", schedule);
  };
  schedule();
}

function handle(req: IncomingMessage, res: ServerResponse, raw: string): void {
  if (req.method === "GET" && req.url === "/health") {
    res.writeHead(200, { "content-type": "application/json", "content-length": HEALTH.length });
    res.end(HEALTH);
    return;
  }
  if (req.method !== "POST") {
    res.writeHead(404, { "content-type": "application/json" });
    res.end('{"error":{"code":404,"message":"File Not Found","type":"not_found_error"}}');
    return;
  }
  // Only streams need the body parsed; a non-stream answer is a constant.
  if (raw.includes('"stream":true')) {
    let body: { max_tokens?: unknown; x_delay_ms?: unknown } = {};
    try {
      body = JSON.parse(raw) as typeof body;
    } catch {
      // a constant stream then
    }
    const chunks = typeof body.max_tokens === "number" && body.max_tokens > 0 ? body.max_tokens : 1000;
    const delay = typeof body.x_delay_ms === "number" && body.x_delay_ms >= 0 ? body.x_delay_ms : 1;
    stream(res, chunks, delay);
    return;
  }
  res.writeHead(200, { "content-type": "application/json; charset=utf-8", "content-length": COMPLETION.length });
  res.end(COMPLETION);
}

const server = createServer((req, res) => {
  let raw = "";
  req.setEncoding("utf8");
  req.on("data", (d: string) => (raw += d));
  req.on("end", () => handle(req, res, raw));
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 0;
server.requestTimeout = 0;
server.listen(Number(values.port), values.host, () => {
  const address = server.address();
  process.stdout.write(`fake-upstream listening on http://${values.host}:${typeof address === "object" && address ? address.port : 0}\n`);
});
process.on("SIGTERM", () => process.exit(0));
