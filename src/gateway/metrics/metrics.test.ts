/**
 * `/metrics` against real traffic: it parses as Prometheus text (a strict parser), and its counters move
 * by exactly what was sent: requests by route, dialect and status, latency and time-to-first-token
 * histograms, tokens (from a real embedded backend's timings, and from a fake one's usage), model loads,
 * loaded models, queue depth, rate-limit refusals, webhook deliveries and failures, WebSocket chats.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { publishRateLimitRejection } from "../../events/channels.js";
import { fakeModel, json, newHome, Receiver, removeHome, type RunningGateway, startGateway, waitFor } from "../../events/testing.js";
import { tinyModelPath } from "../../test-support/models.js";
import { carriesToken, dialectOf } from "./http.js";
import { type Family, parsePrometheusText, sampleSum } from "./prometheus-text.js";

let home: string;
let gw: RunningGateway;
let receiver: Receiver;

async function scrape(base = gw.lmstudio): Promise<Map<string, Family>> {
  const response = await fetch(`${base}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await response.text());
}

/** Runs `traffic` and returns how much each probed series moved. */
async function delta(traffic: () => Promise<void>, probes: Record<string, [string, Record<string, string>?]>): Promise<Record<string, number>> {
  const before = await scrape();
  await traffic();
  const after = await scrape();
  return Object.fromEntries(Object.entries(probes).map(([key, [name, labels]]) => [key, sampleSum(after, name, labels) - sampleSum(before, name, labels)]));
}

const chat = (model: string, stream: boolean, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: "user", content: "Hello there" }],
  stream,
  ...extra,
});

before(async () => {
  receiver = await new Receiver().start();
  home = await newHome();
  gw = await startGateway(home, {
    models: {
      fake: fakeModel("--chunks 4 --chunk-delay-ms 5"),
      slow: fakeModel("--chunks 200 --chunk-delay-ms 20"),
      tiny: { model_path: await tinyModelPath(), parameters: { ctx_size: 512 } },
    },
    concurrentRunners: 3,
    webhooks: { retry_initial_s: 0.05, retry_max_s: 0.1 },
    proxies: { ollama: { rate_limits: { exempt_loopback: false, requests_per_minute: 1000, concurrent_requests: 2 } } },
  });
});
after(async () => {
  await gw?.close();
  await receiver.close();
  await removeHome(home);
});

test("the exposition parses strictly and names every metric the issue asks for", async () => {
  const families = await scrape();
  for (const [name, type] of [
    ["llama_runner_http_requests_total", "counter"],
    ["llama_runner_http_request_duration_seconds", "histogram"],
    ["llama_runner_time_to_first_token_seconds", "histogram"],
    ["llama_runner_generated_tokens_total", "counter"],
    ["llama_runner_model_load_duration_seconds", "histogram"],
    ["llama_runner_models_loaded", "gauge"],
    ["llama_runner_model_loaded", "gauge"],
    ["llama_runner_queue_depth", "gauge"],
    ["llama_runner_rate_limit_rejections_total", "counter"],
    ["llama_runner_webhook_deliveries_total", "counter"],
    ["llama_runner_webhook_delivery_failures_total", "counter"],
    ["llama_runner_webhook_queue_depth", "gauge"],
    ["process_cpu_user_seconds_total", "counter"],
  ] as const) {
    assert.equal(families.get(name)?.type, type, `${name} should be a ${type}`);
    assert.ok(families.get(name)?.help, `${name} has HELP`);
  }
  // Both listeners serve the same registry.
  assert.ok((await scrape(gw.ollama)).has("llama_runner_http_requests_total"));
});

test("requests by route, dialect and status; latency; time to first token; tokens from usage", async () => {
  const moved = await delta(
    async () => {
      for (let i = 0; i < 3; i++) assert.equal((await json(`${gw.lmstudio}/v1/chat/completions`, { body: chat("fake", false) })).status, 200);
      for (let i = 0; i < 2; i++) {
        const response = await fetch(`${gw.lmstudio}/v1/chat/completions`, { method: "POST", body: JSON.stringify(chat("fake", true)) });
        assert.equal(response.status, 200);
        await response.text();
      }
      const ndjson = await fetch(`${gw.ollama}/api/chat`, { method: "POST", body: JSON.stringify(chat("fake", true)) });
      await ndjson.text();
      assert.equal((await json(`${gw.lmstudio}/v1/chat/completions`, { body: { model: "fake" } })).status, 400);
      assert.equal((await json(`${gw.lmstudio}/v1/nowhere`)).status, 404);
    },
    {
      ok: ["llama_runner_http_requests_total", { listener: "lmstudio", dialect: "openai", route: "/v1/chat/completions", method: "POST", status: "200" }],
      bad: ["llama_runner_http_requests_total", { listener: "lmstudio", route: "/v1/chat/completions", status: "400" }],
      unmatched: ["llama_runner_http_requests_total", { listener: "lmstudio", dialect: "none", route: "unmatched", status: "404" }],
      ollama: ["llama_runner_http_requests_total", { listener: "ollama", dialect: "ollama", route: "/api/chat", status: "200" }],
      latency: ["llama_runner_http_request_duration_seconds_count", { listener: "lmstudio", route: "/v1/chat/completions" }],
      ttftOpenAI: ["llama_runner_time_to_first_token_seconds_count", { dialect: "openai", model: "fake" }],
      ttftOllama: ["llama_runner_time_to_first_token_seconds_count", { dialect: "ollama", model: "fake" }],
      tokens: ["llama_runner_generated_tokens_total", { model: "fake" }],
      upstream: ["llama_runner_upstream_requests_total", { model: "fake", endpoint: "chat", status: "200" }],
    },
  );
  assert.deepEqual(moved, { ok: 5, bad: 1, unmatched: 1, ollama: 1, latency: 6, ttftOpenAI: 2, ttftOllama: 1, tokens: 6 * 4, upstream: 6 });
});

test("a real backend: tokens from its timings, the model load, loaded models", async () => {
  const moved = await delta(
    async () => {
      const answer = await json<{ usage: { completion_tokens: number } }>(`${gw.lmstudio}/v1/chat/completions`, { body: chat("tiny", false, { max_tokens: 7, temperature: 0 }) });
      assert.equal(answer.status, 200);
      assert.equal(answer.body.usage.completion_tokens, 7);
      const stream = await fetch(`${gw.ollama}/v1/chat/completions`, { method: "POST", body: JSON.stringify(chat("tiny", true, { max_tokens: 5, temperature: 0 })) });
      await stream.text();
    },
    {
      tokens: ["llama_runner_generated_tokens_total", { model: "tiny" }],
      prompt: ["llama_runner_prompt_tokens_total", { model: "tiny" }],
      loads: ["llama_runner_model_load_duration_seconds_count", { model: "tiny" }],
      started: ["llama_runner_events_total", { event: "model.started" }],
      ttft: ["llama_runner_time_to_first_token_seconds_count", { dialect: "openai", model: "tiny" }],
    },
  );
  assert.equal(moved["tokens"], 12);
  assert.ok((moved["prompt"] ?? 0) > 0);
  assert.equal(moved["loads"], 1);
  assert.equal(moved["started"], 1);
  assert.equal(moved["ttft"], 1);
  const families = await scrape();
  assert.equal(sampleSum(families, "llama_runner_model_loaded", { model: "tiny" }), 1);
  assert.ok(sampleSum(families, "llama_runner_models_loaded") >= 1);
  assert.ok(sampleSum(families, "llama_runner_model_load_duration_seconds_sum", { model: "tiny" }) > 0);
});

test("queue depth and in-flight requests while a request waits; rate-limit refusals", async () => {
  // `slow` serves one request at a time: a second one queues behind it.
  const first = fetch(`${gw.lmstudio}/v1/chat/completions`, { method: "POST", body: JSON.stringify(chat("slow", true)) });
  const firstResponse = await first;
  const controller = new AbortController();
  const second = fetch(`${gw.lmstudio}/v1/chat/completions`, { method: "POST", body: JSON.stringify(chat("slow", true)), signal: controller.signal }).catch(() => undefined);
  const queued = await waitFor(async () => {
    const families = await scrape();
    return sampleSum(families, "llama_runner_queue_depth", { model: "slow" }) === 1 && families;
  }, "a queued request");
  assert.equal(sampleSum(queued, "llama_runner_model_in_flight_requests", { model: "slow" }), 1);
  controller.abort();
  await second;
  await firstResponse.body?.cancel();
  await waitFor(async () => sampleSum(await scrape(), "llama_runner_queue_depth", { model: "slow" }) === 0 || undefined, "the queue to empty");
  // The client that went away first counts as 499.
  await waitFor(
    async () => sampleSum(await scrape(), "llama_runner_http_requests_total", { route: "/v1/chat/completions", status: "499" }) >= 2 || undefined,
    "two 499s",
  );

  const moved = await delta(
    async () => {
      // The ollama listener allows 2 requests in flight per client: a third concurrent one is refused.
      const controllers = [new AbortController(), new AbortController()];
      const streams = controllers.map((c) =>
        fetch(`${gw.ollama}/v1/chat/completions`, { method: "POST", body: JSON.stringify(chat("slow", true)), signal: c.signal })
          .then((r) => r.text())
          .catch(() => undefined),
      );
      const { lifecycle } = gw.app;
      await waitFor(() => lifecycle.status("slow").inFlight + (lifecycle.queueDepth().get("slow") ?? 0) === 2, "two requests in flight");
      const refused = await json(`${gw.ollama}/v1/models`);
      assert.equal(refused.status, 429);
      for (const c of controllers) c.abort();
      await Promise.all(streams);
      publishRateLimitRejection({ listener: "lmstudio", limit: "custom" });
    },
    {
      concurrent: ["llama_runner_rate_limit_rejections_total", { listener: "ollama", limit: "concurrent_requests" }],
      custom: ["llama_runner_rate_limit_rejections_total", { listener: "lmstudio", limit: "custom" }],
      status429: ["llama_runner_http_requests_total", { listener: "ollama", status: "429" }],
    },
  );
  assert.deepEqual(moved, { concurrent: 1, custom: 1, status429: 1 });
});

test("webhook deliveries and failures; WebSocket chats", async () => {
  const { body: hook } = await json<{ id: string }>(`${gw.lmstudio}/v1/webhooks/register`, { body: { url: receiver.url, events: ["model.error"] } });
  receiver.respond = (n) => (n < 2 ? 500 : 200);
  const moved = await delta(
    async () => {
      gw.app.bus.publish("model.error", { model_id: "fake", error: "test" });
      await waitFor(() => receiver.received.length === 3, "three attempts");
      await waitFor(async () => {
        const { body } = await json<{ data: Array<{ status: string }> }>(`${gw.lmstudio}/v1/webhooks/${hook.id}/deliveries`);
        return body.data[0]?.status === "delivered";
      }, "the delivery to be recorded");
      const ws = new WebSocket(`${gw.ollama.replace(/^http/, "ws")}/v1/ws`);
      await new Promise((resolve) => ws.once("open", resolve));
      const done = new Promise((resolve) => ws.on("message", (data) => String(data).includes("chat_done") && resolve(undefined)));
      ws.send(JSON.stringify({ type: "chat_message", model: "fake", message: "hi" }));
      ws.send("garbage");
      await done;
      ws.close();
    },
    {
      delivered: ["llama_runner_webhook_deliveries_total", { result: "delivered" }],
      failures: ["llama_runner_webhook_delivery_failures_total"],
      attempts: ["llama_runner_webhook_delivery_attempts_total"],
      chats: ["llama_runner_websocket_chats_total", { outcome: "completed" }],
      invalid: ["llama_runner_websocket_messages_total", { type: "invalid" }],
      ttft: ["llama_runner_time_to_first_token_seconds_count", { dialect: "websocket", model: "fake" }],
      tokens: ["llama_runner_generated_tokens_total", { model: "fake" }],
    },
  );
  assert.deepEqual(moved, { delivered: 1, failures: 2, attempts: 3, chats: 1, invalid: 1, ttft: 1, tokens: 4 });
});

test("the parser rejects what Prometheus would", () => {
  const good = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1",y="q\\"uote"} 3\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n';
  const families = parsePrometheusText(good);
  assert.equal(sampleSum(families, "a_total", { y: 'q"uote' }), 3);
  for (const bad of [
    "a b c d\n",
    "1abc 3\n",
    'a{x="1" 3\n',
    "a{x=1} 3\n",
    "a three\n",
    "# TYPE a counter\na -1\n",
    "# TYPE a flux\n",
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\n',
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_count 1\n',
    '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 3\n',
  ]) {
    assert.throws(() => parsePrometheusText(bad), Error, JSON.stringify(bad));
  }
});

test("route classification and token detection", () => {
  assert.equal(dialectOf("/v1/chat/completions"), "openai");
  assert.equal(dialectOf("/v1/models/:id/status"), "management");
  assert.equal(dialectOf("/api/v0/chat/completions"), "lmstudio");
  assert.equal(dialectOf("/api/chat"), "ollama");
  assert.equal(dialectOf("/v1/webhooks/:id"), "webhooks");
  assert.equal(dialectOf("/metrics"), "gateway");
  assert.equal(dialectOf(undefined), "none");
  assert.equal(carriesToken('data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'), false);
  assert.equal(carriesToken(Buffer.from('data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n')), true);
  assert.equal(carriesToken('{"model":"m","message":{"role":"assistant","content":"x"},"done":false}\n'), true);
  assert.equal(carriesToken('{"model":"m","response":"","done":true}\n'), false);
  assert.equal(carriesToken('data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}\n\n'), true);
});
