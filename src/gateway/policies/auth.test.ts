/**
 * Auth on every route of both listeners, driven by the listeners' own route tables: a route added
 * later is checked without anyone remembering to add it here.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { TestGateway } from "../../test-support/gateway.js";
import { startGateway } from "../../test-support/gateway.js";
import { tinyModelPath } from "../../test-support/models.js";

const KEY = "sk-test-0123456789";
let gw: TestGateway;

before(async () => {
  gw = await startGateway({ api_keys: [KEY], models: { tiny: { model_path: await tinyModelPath(), parameters: { ctx_size: 256 } } } });
});
after(() => gw?.close());

const isLiveness = (method: string, url: string) => url === "/health" || (url === "/" && (method === "GET" || method === "HEAD"));
const concrete = (url: string) => url.replace(/:\w+/g, "tiny").replace(/\*$/, "tiny");

async function routes(listener: "ollama" | "lmstudio") {
  const app = gw.app.listeners.get(listener);
  assert.ok(app);
  await app.ready();
  return app.routeTable.filter((r) => r.method !== "OPTIONS");
}

for (const listener of ["ollama", "lmstudio"] as const) {
  test(`${listener}: every route but liveness refuses a request without a valid key, in its dialect's format`, async () => {
    const base = listener === "ollama" ? gw.ollama : gw.lmstudio;
    const table = await routes(listener);
    assert.ok(table.length > 20, "the route table is populated");
    for (const { method, url } of table) {
      const path = concrete(url);
      for (const headers of [{}, { authorization: "Bearer wrong-key-000000" }, { "x-api-key": "nope" }, { authorization: "Bearer " }] as Array<Record<string, string>>) {
        const res = await fetch(`${base}${path}`, { method, headers, ...(method === "GET" || method === "HEAD" ? {} : { body: "{}" }) });
        if (isLiveness(method, url)) {
          assert.equal(res.status, 200, `${method} ${url} is liveness`);
          await res.body?.cancel();
          continue;
        }
        assert.equal(res.status, 401, `${method} ${url} with ${JSON.stringify(headers)}`);
        if (method === "HEAD") continue;
        const body = (await res.json()) as { error: unknown };
        if (listener === "ollama" && url.startsWith("/api/")) {
          assert.equal(typeof body.error, "string", `${url}: Ollama's {"error": "..."}`);
        } else {
          assert.equal((body.error as { code: string }).code, "invalid_api_key", `${url}: OpenAI's error object`);
        }
      }
    }
  });

  test(`${listener}: the right key opens every route, as a bearer token or x-api-key`, async () => {
    const base = listener === "ollama" ? gw.ollama : gw.lmstudio;
    for (const { method, url } of await routes(listener)) {
      for (const headers of [{ authorization: `Bearer ${KEY}` }, { "x-api-key": KEY }] as Array<Record<string, string>>) {
        const res = await fetch(`${base}${concrete(url)}`, { method, headers, ...(method === "GET" || method === "HEAD" ? {} : { body: "{}" }) });
        assert.notEqual(res.status, 401, `${method} ${url}`);
        await res.body?.cancel();
      }
    }
  });
}

test("CORS preflights pass without a key (browsers never send one on OPTIONS)", async () => {
  const res = await fetch(`${gw.ollama}/api/chat`, {
    method: "OPTIONS",
    headers: { origin: "http://localhost:3000", "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" },
  });
  assert.ok(res.status === 204 || res.status === 200);
});
