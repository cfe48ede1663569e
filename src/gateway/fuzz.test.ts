/**
 * Hostile input against every route of every dialect (property-based, fast-check): malformed and
 * random JSON, wrong types, huge and deeply nested values, invalid UTF-8, bad multipart and odd
 * headers. Whatever arrives, the answer is never a 5xx, errors come in the route's own dialect
 * format, the server stays healthy, and no process or temp file is left behind.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { type TestGateway, startGateway } from "../test-support/gateway.js";
import type { RouteEntry } from "./server.js";

const FAKE = fileURLToPath(new URL("../test-support/fake-upstream.js", import.meta.url));
let gw: TestGateway;
let uploads: string;
const tables: Record<"ollama" | "lmstudio", RouteEntry[]> = { ollama: [], lmstudio: [] };

before(async () => {
  uploads = await mkdtemp(join(tmpdir(), "lr-fuzz-uploads-"));
  gw = await startGateway({
    models: { fake: { command: `'${process.execPath}' '${FAKE}' --port \${PORT}`, parameters: { parallel: 4 } } },
    audio: { temp_dir: uploads },
  });
  for (const name of ["ollama", "lmstudio"] as const) {
    const app = gw.app.listeners.get(name);
    assert.ok(app);
    await app.ready();
    tables[name] = app.routeTable.filter((r) => r.method !== "OPTIONS");
  }
});
after(async () => {
  await gw?.close();
  await rm(uploads, { recursive: true, force: true });
});

interface Sent {
  status: number;
  contentType: string;
  body: Buffer;
}

function send(base: string, method: string, path: string, headers: Record<string, string>, body: Buffer | undefined): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method, headers: { ...headers, ...(body ? { "content-length": String(body.length) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      const done = () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers["content-type"] ?? ""), body: Buffer.concat(chunks) });
      // A stream that was accepted (a generation, a log tail) is not what this test is about: hang up at once.
      if ((res.statusCode ?? 0) < 400 && /event-stream|ndjson/.test(String(res.headers["content-type"]))) {
        res.destroy();
        done();
        return;
      }
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", done);
      res.on("close", done);
    });
    req.on("error", reject);
    req.end(body);
  });
}

const model = fc.constantFrom("fake", "fake:latest", "nope", "", "../../etc/passwd", "%2e%2e%2f");
const jsonish = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.record({ model, messages: fc.jsonValue({ maxDepth: 3 }) }),
  fc.record({ model, prompt: fc.jsonValue({ maxDepth: 2 }), stream: fc.jsonValue({ maxDepth: 1 }) }),
  fc.record({ model, input: fc.jsonValue({ maxDepth: 2 }), encoding_format: fc.jsonValue({ maxDepth: 1 }) }),
  fc.record({ model, messages: fc.constant([{ role: "user", content: "hi" }]), max_tokens: fc.jsonValue({ maxDepth: 1 }), temperature: fc.jsonValue({ maxDepth: 1 }) }),
  fc.record({ name: model, source: model, destination: fc.jsonValue({ maxDepth: 1 }), keep_alive: fc.jsonValue({ maxDepth: 1 }) }),
);

type Payload = { headers: Record<string, string>; body: Buffer | undefined };

const payload = fc.oneof<fc.Arbitrary<Payload>[]>(
  jsonish.map((v) => ({ headers: { "content-type": "application/json" }, body: Buffer.from(JSON.stringify(v) ?? "null") })),
  fc.string({ maxLength: 200 }).map((s) => ({ headers: { "content-type": "application/json" }, body: Buffer.from(s) })),
  fc.uint8Array({ maxLength: 300 }).map((b) => ({ headers: { "content-type": "application/json" }, body: Buffer.from(b) })),
  fc.constantFrom<Payload>(
    // Deep nesting, both kinds.
    { headers: {}, body: Buffer.from(`${"[".repeat(20_000)}${"]".repeat(20_000)}`) },
    { headers: {}, body: Buffer.from(`{"model":"fake","messages":${'{"a":'.repeat(5_000)}1${"}".repeat(5_000)}}`) },
    // Huge values.
    { headers: {}, body: Buffer.from(JSON.stringify({ model: "fake", messages: [{ role: "user", content: "x".repeat(300_000) }], max_tokens: 1 })) },
    { headers: {}, body: Buffer.from(JSON.stringify({ model: "x".repeat(100_000), prompt: "hi" })) },
    // Invalid UTF-8 inside an otherwise valid body.
    { headers: { "content-type": "application/json" }, body: Buffer.concat([Buffer.from('{"model":"fake","prompt":"'), Buffer.from([0xff, 0xfe, 0xc3, 0x28]), Buffer.from('"}')]) },
    // Bad multipart.
    { headers: { "content-type": "multipart/form-data; boundary=XYZ" }, body: Buffer.from("--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\x00\x00") },
    { headers: { "content-type": "multipart/form-data" }, body: Buffer.from("no boundary at all") },
    { headers: { "content-type": "multipart/form-data; boundary=B" }, body: Buffer.from("--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nfake\r\n--B--\r\n") },
    // Odd headers.
    { headers: { "content-type": "application/json; charset=utf-16" }, body: Buffer.from('{"model":"fake"}') },
    { headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: Buffer.from("not gzip") },
    { headers: { "content-type": "text/html" }, body: Buffer.from("<html></html>") },
    { headers: { "content-type": "application/json", authorization: "Basic Zm9vOmJhcg==" }, body: Buffer.from("{}") },
    { headers: { "content-type": "application/x-www-form-urlencoded" }, body: Buffer.from("model=fake&prompt=hi") },
    { headers: {}, body: undefined },
  ),
);

function assertDialectError(listener: "ollama" | "lmstudio", route: RouteEntry, sent: Sent, what: string): void {
  assert.ok(sent.status < 500, `${what}: got ${sent.status} ${sent.body.toString().slice(0, 300)}`);
  if (sent.status < 400 || route.method === "HEAD") return;
  assert.match(sent.contentType, /application\/json/, `${what}: error content type`);
  const parsed = JSON.parse(sent.body.toString()) as { error: unknown };
  if (listener === "ollama" && route.url.startsWith("/api/")) {
    assert.equal(typeof parsed.error, "string", `${what}: Ollama's {"error": "..."}`);
  } else {
    const error = parsed.error as { message?: unknown; type?: unknown };
    assert.equal(typeof error?.message, "string", `${what}: OpenAI's error object`);
    assert.equal(typeof error?.type, "string", `${what}: OpenAI's error object`);
  }
}

/** Live child processes of this test process (the gateway runs in it), read from /proc. */
const children = () =>
  readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        return Number(fields[1]) === process.pid && fields[0] !== "Z";
      } catch {
        return false;
      }
    }).length;

test("every route of every dialect answers hostile input with a 4xx in its own format, and stays healthy", async () => {
  const before = children();
  await fc.assert(
    fc.asyncProperty(fc.constantFrom("ollama" as const, "lmstudio" as const), fc.nat(), payload, async (listener, pick, { headers, body }) => {
      const table = tables[listener];
      const route = table[pick % table.length] as RouteEntry;
      const path = route.url.replace(/:\w+/g, "fake").replace(/\*$/, "fake");
      const base = listener === "ollama" ? gw.ollama : gw.lmstudio;
      const withBody = route.method !== "GET" && route.method !== "HEAD";
      const sent = await send(base, route.method, path, withBody ? headers : {}, withBody ? body : undefined);
      assertDialectError(listener, route, sent, `${listener} ${route.method} ${route.url}`);
    }),
    { numRuns: 400 },
  );
  for (const base of [gw.ollama, gw.lmstudio]) assert.equal((await fetch(`${base}/health`)).status, 200);
  // The fake backend may be running (at most one process); nothing else was started.
  assert.ok(children() <= Math.max(before, 1), "no process leaked");
  // The audio service keeps one work folder of its own in temp_dir; no upload may remain in it.
  const left = await readdir(uploads, { recursive: true, withFileTypes: true });
  assert.deepEqual(left.filter((e) => e.isFile()).map((e) => e.name), [], "no upload temp file left behind");
});
