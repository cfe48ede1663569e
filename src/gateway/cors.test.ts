/** The CORS and Host policy on a bare Fastify app (inject), then on a real listener of the gateway. */
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { hostname } from "node:os";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { pino } from "pino";
import { defaultConfig } from "../config/schema.js";
import { type TestGateway, startGateway } from "../test-support/gateway.js";
import { tinyModelPath } from "../test-support/models.js";
import { ALLOWED_HEADERS, hostAllowed, hostOf, originAllowed, originPattern, registerNetworkPolicy } from "./cors.js";
import { buildListener } from "./server.js";

test("Ollama's default origins, browser extensions, same origin and configured patterns", () => {
  const extra = ["https://webui.example.com", "https://*.corp.example"].map(originPattern);
  for (const origin of [
    "http://localhost",
    "http://localhost:3000",
    "https://127.0.0.1:8443",
    "http://0.0.0.0:8080",
    "app://obsidian.md",
    "file://",
    "tauri://localhost",
    "vscode-webview://1abc",
    "vscode-file://vscode-app",
    "chrome-extension://abcdef",
    "moz-extension://1234",
    "https://webui.example.com",
    "https://chat.corp.example",
  ]) {
    assert.ok(originAllowed(origin, extra), origin);
  }
  for (const origin of ["https://evil.com", "http://localhost.evil.com", "http://127.0.0.1.evil.com:80", "null", "https://webui.example.com.evil", "http://corp.example"]) {
    assert.ok(!originAllowed(origin, extra), origin);
  }
  assert.ok(originAllowed("http://mybox:11434", [], "mybox:11434"), "a page served by the listener itself");
});

test("Host check: local names and addresses pass, anything else is refused", () => {
  assert.equal(hostOf("[::1]:11434"), "::1");
  assert.equal(hostOf("example.com:80"), "example.com");
  assert.equal(hostOf("::1"), "::1");
  for (const host of [undefined, "", "localhost", "localhost:11434", "127.0.0.1:1234", "[::1]:11434", "10.1.2.3", "192.168.0.5:80", "0.0.0.0", "app.localhost", "box.local", "svc.internal", hostname()]) {
    assert.ok(hostAllowed(host), String(host));
  }
  for (const host of ["evil.com", "evil.com:11434", "8.8.8.8", "localhost.evil.com", "[2001:db8::1]:80"]) {
    assert.ok(!hostAllowed(host), host);
  }
});

function policyApp(loopback: boolean, origins: string[] = []): FastifyInstance {
  const app = Fastify();
  registerNetworkPolicy(app, { origins, forbidden: (message) => ({ error: message }), boundToLoopback: () => loopback });
  app.post("/api/chat", async () => ({ ok: true }));
  app.get("/api/tags", async () => ({ models: [] }));
  // A streaming route writes to the raw response, as the dialects' streams do.
  app.post("/stream", async (_request, reply) => {
    reply.hijack();
    reply.raw.writeHead(200, { "content-type": "application/x-ndjson" });
    reply.raw.end('{"done":true}\n');
  });
  return app;
}

test("preflight on every route: 204 with Ollama's methods and headers, x-stainless-* reflected", async () => {
  const app = policyApp(true);
  for (const url of ["/api/chat", "/v1/chat/completions", "/anything/at/all"]) {
    const res = await app.inject({
      method: "OPTIONS",
      url,
      headers: { host: "localhost:11434", origin: "http://localhost:3000", "access-control-request-method": "POST", "access-control-request-headers": "content-type,x-stainless-brand-new" },
    });
    assert.equal(res.statusCode, 204, url);
    assert.equal(res.headers["access-control-allow-origin"], "http://localhost:3000");
    const allowed = String(res.headers["access-control-allow-headers"]).split(",").map((h) => h.trim().toLowerCase());
    for (const header of [...ALLOWED_HEADERS.map((h) => h.toLowerCase()), "x-stainless-brand-new"]) assert.ok(allowed.includes(header), header);
    assert.match(String(res.headers["access-control-allow-methods"]), /DELETE/);
    assert.match(String(res.headers["vary"]), /Origin/i);
  }
  const bare = await app.inject({ method: "OPTIONS", url: "/api/chat", headers: { host: "localhost" } });
  assert.equal(bare.statusCode, 204, "a preflight without Origin is answered too");
  await app.close();
});

test("allowed origins get the header (also on hijacked streams); others 403; configured origins pass", async () => {
  const app = policyApp(false, ["https://webui.example.com"]);
  const ok = await app.inject({ method: "GET", url: "/api/tags", headers: { origin: "app://obsidian.md" } });
  assert.equal(ok.statusCode, 200);
  assert.equal(ok.headers["access-control-allow-origin"], "app://obsidian.md");
  const stream = await app.inject({ method: "POST", url: "/stream", headers: { origin: "http://127.0.0.1:5173" }, payload: {} });
  assert.equal(stream.statusCode, 200);
  assert.equal(stream.headers["access-control-allow-origin"], "http://127.0.0.1:5173");
  const configured = await app.inject({ method: "POST", url: "/api/chat", headers: { origin: "https://webui.example.com" }, payload: {} });
  assert.equal(configured.statusCode, 200);
  const evil = await app.inject({ method: "POST", url: "/api/chat", headers: { origin: "https://evil.com" }, payload: {} });
  assert.equal(evil.statusCode, 403);
  assert.match(evil.json<{ error: string }>().error, /origin "https:\/\/evil.com" is not allowed/);
  const noOrigin = await app.inject({ method: "GET", url: "/api/tags" });
  assert.equal(noOrigin.statusCode, 200, "non-browser clients send no Origin");
  assert.equal(noOrigin.headers["access-control-allow-origin"], undefined);
  await app.close();
});

test("Host check applies only when bound to loopback", async () => {
  const loopback = policyApp(true);
  assert.equal((await loopback.inject({ method: "GET", url: "/api/tags", headers: { host: "evil.com" } })).statusCode, 403);
  assert.equal((await loopback.inject({ method: "GET", url: "/api/tags", headers: { host: "localhost:11434" } })).statusCode, 200);
  await loopback.close();
  const open = policyApp(false);
  assert.equal((await open.inject({ method: "GET", url: "/api/tags", headers: { host: "evil.com" } })).statusCode, 200);
  await open.close();
});

test("configured origins and version reach a listener through the config", async () => {
  const config = defaultConfig();
  config.ollama.origins = ["https://webui.example.com"];
  config.ollama.version = "0.13.1";
  const deps = { config, logger: pino({ level: "silent" }), version: "test", startedAt: Date.now(), proxies: () => ({}) } as unknown as Parameters<typeof buildListener>[1];
  const app = buildListener("ollama", { ...deps, catalog: { entries: [], resolve: () => undefined } as never, lifecycle: {} as never, inference: {} as never });
  const res = await app.inject({ method: "OPTIONS", url: "/api/tags", headers: { origin: "https://webui.example.com", "access-control-request-method": "GET" } });
  assert.equal(res.statusCode, 204);
  assert.equal(res.headers["access-control-allow-origin"], "https://webui.example.com");
  const version = await app.inject({ method: "GET", url: "/api/version" });
  assert.deepEqual(version.json(), { version: "0.13.1" });
  await app.close();
});

let gw: TestGateway;
before(async () => {
  gw = await startGateway({ models: { tiny: { model_path: await tinyModelPath(), parameters: { ctx_size: 512 } } } });
});
after(() => gw?.close());

function rawGet(base: string, path: string, host: string): Promise<number> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, path: url.pathname, method: "GET", headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}

test("the real listeners (bound to 127.0.0.1) refuse a rebinding Host and answer preflights", async () => {
  for (const base of [gw.ollama, gw.lmstudio]) {
    assert.equal(await rawGet(base, "/v1/models", "attacker.example:80"), 403);
    assert.equal(await rawGet(base, "/v1/models", `localhost:${new URL(base).port}`), 200);
    const preflight = await fetch(`${base}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: { origin: "vscode-webview://abc", "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type,x-stainless-os" },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), "vscode-webview://abc");
  }
  const denied = await fetch(`${gw.ollama}/api/tags`, { headers: { origin: "https://evil.com" } });
  assert.equal(denied.status, 403);
  assert.match(((await denied.json()) as { error: string }).error, /not allowed/);
  const deniedV1 = await fetch(`${gw.lmstudio}/v1/models`, { headers: { origin: "https://evil.com" } });
  assert.equal(deniedV1.status, 403);
  assert.equal(((await deniedV1.json()) as { error: { code: string } }).error.code, "forbidden");
});
