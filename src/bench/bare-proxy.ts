#!/usr/bin/env node
/**
 * The reference point: a bare Node proxy (node:http + an undici Pool), no validation, no
 * routing, no limits. `node dist/bench/bare-proxy.js --port N --upstream http://127.0.0.1:M`
 *
 * It relays with `pool.dispatch` and a handler writing straight to the client's socket: the leanest
 * way to use undici (its `request()` + `pipe()` costs ~35 µs more per small request here), so the
 * gateway is compared with the best a bare Node proxy does, not with a slow one.
 */
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Pool } from "undici";

const { values } = parseArgs({ options: { port: { type: "string", default: "0" }, upstream: { type: "string" } } });
const pool = new Pool(values.upstream ?? "http://127.0.0.1:8080", { connections: 256, keepAliveTimeout: 60_000, headersTimeout: 0, bodyTimeout: 0 });

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    let abort: ((error?: Error) => void) | undefined;
    res.once("close", () => {
      if (!res.writableFinished) abort?.(new Error("client closed"));
    });
    pool.dispatch(
      { method: req.method as "POST", path: req.url ?? "/", headers: { "content-type": req.headers["content-type"] ?? "application/json" }, body: Buffer.concat(chunks) },
      {
        onConnect: (abortRequest) => {
          abort = abortRequest;
        },
        onHeaders: (statusCode, raw, resume) => {
          const headers: Record<string, string> = {};
          for (let i = 0; i + 1 < raw.length; i += 2) {
            const name = String(raw[i]).toLowerCase();
            if (name === "content-type" || name === "content-length") headers[name] = String(raw[i + 1]);
          }
          res.writeHead(statusCode, headers);
          res.on("drain", resume);
          return true;
        },
        onData: (chunk) => res.write(chunk),
        onComplete: () => void res.end(),
        onError: (error) => {
          if (!res.headersSent) res.writeHead(502).end(error.message);
          else res.destroy();
        },
      },
    );
  });
});
server.keepAliveTimeout = 120_000;
server.listen(Number(values.port), "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`bare-proxy listening on http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}\n`);
});
process.on("SIGTERM", () => process.exit(0));
