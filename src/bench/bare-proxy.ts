#!/usr/bin/env node
/**
 * The reference point: a bare Node proxy (node:http + an undici Pool), no validation, no
 * routing, no limits. `node dist/bench/bare-proxy.js --port N --upstream http://127.0.0.1:M`
 */
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Pool } from "undici";

const { values } = parseArgs({ options: { port: { type: "string", default: "0" }, upstream: { type: "string" } } });
const pool = new Pool(values.upstream ?? "http://127.0.0.1:8080", { connections: 256, keepAliveTimeout: 60_000, headersTimeout: 0, bodyTimeout: 0 });

const server = createServer((req, res) => {
  pool
    .request({ method: req.method as "POST", path: req.url ?? "/", headers: { "content-type": req.headers["content-type"] ?? "application/json" }, body: req })
    .then(({ statusCode, headers, body }) => {
      const out: Record<string, string> = { "content-type": String(headers["content-type"] ?? "application/json") };
      if (headers["content-length"] !== undefined) out["content-length"] = String(headers["content-length"]);
      res.writeHead(statusCode, out);
      body.pipe(res);
      res.on("close", () => body.destroy());
    })
    .catch((error: Error) => {
      if (!res.headersSent) res.writeHead(502).end(error.message);
      else res.destroy();
    });
});
server.keepAliveTimeout = 120_000;
server.listen(Number(values.port), "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`bare-proxy listening on http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}\n`);
});
process.on("SIGTERM", () => process.exit(0));
