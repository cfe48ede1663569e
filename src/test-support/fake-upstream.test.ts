/** The fake llama-server itself: protocol shapes and scripted faults, spoken to directly. */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterEach, test } from "node:test";
import { freePort } from "../runner/ports.js";

const FAKE = fileURLToPath(new URL("./fake-upstream.js", import.meta.url));
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
});

async function start(...flags: string[]): Promise<{ child: ChildProcess; base: string; stderr: () => string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [FAKE, "--port", String(port), ...flags], { stdio: ["ignore", "ignore", "pipe"] });
  children.push(child);
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  return { child, base: `http://127.0.0.1:${port}`, stderr: () => stderr };
}

async function health(base: string): Promise<number> {
  for (;;) {
    try {
      return (await fetch(`${base}/health`)).status;
    } catch {
      await sleep(20);
    }
  }
}

const post = (base: string, path: string, body: unknown) => fetch(`${base}${path}`, { method: "POST", body: JSON.stringify(body) });

test("health, chat, stream with usage, completions, embeddings", async () => {
  const { base } = await start("--start-delay-ms", "300", "--chunks", "3");
  assert.equal(await health(base), 503);
  await sleep(350);
  assert.equal(await health(base), 200);

  const res = await post(base, "/v1/chat/completions", { model: "x", messages: [] });
  const text = await res.text();
  assert.ok(Math.abs(text.length - 300) <= 5, `about 300 bytes, got ${text.length}`);
  const chat = JSON.parse(text) as { object: string; model: string; usage: { total_tokens: number } };
  assert.equal(chat.object, "chat.completion");
  assert.equal(chat.model, "x");
  assert.ok(chat.usage.total_tokens > 0);

  const sse = await (await post(base, "/v1/chat/completions", { model: "x", stream: true, stream_options: { include_usage: true } })).text();
  const events = sse.split("\n\n").filter(Boolean).map((e) => e.replace(/^data: /, ""));
  assert.equal(events.length, 1 + 3 + 1 + 1 + 1, sse);
  assert.equal(events.at(-1), "[DONE]");
  assert.deepEqual((JSON.parse(events[0] ?? "") as { choices: Array<{ delta: unknown }> }).choices[0]?.delta, { role: "assistant", content: "" });
  assert.ok((JSON.parse(events.at(-2) ?? "") as { usage?: unknown }).usage);

  const completion = (await (await post(base, "/v1/completions", { model: "x", prompt: "hi" })).json()) as { object: string };
  assert.equal(completion.object, "text_completion");
  const embeddings = (await (await post(base, "/v1/embeddings", { model: "x", input: ["a", "b"] })).json()) as { data: unknown[] };
  assert.equal(embeddings.data.length, 2);
});

test("--body-bytes, --exit-on-start with --log-line, --crash-after-chunks", async () => {
  const sized = await start("--body-bytes", "4000");
  await health(sized.base);
  assert.ok(Math.abs((await (await post(sized.base, "/v1/completions", { model: "x", prompt: "hi" })).text()).length - 4000) <= 5);

  const exiting = await start("--exit-on-start", "7", "--log-line", "HELLO-LOG");
  const [code] = (await once(exiting.child, "exit")) as [number];
  assert.equal(code, 7);
  assert.match(exiting.stderr(), /HELLO-LOG/);

  const crashing = await start("--chunks", "10", "--crash-after-chunks", "2");
  await health(crashing.base);
  const exited = once(crashing.child, "exit");
  const res = await post(crashing.base, "/v1/chat/completions", { model: "x", stream: true });
  await assert.rejects(res.text(), "the stream is cut");
  const [, signal] = (await exited) as [number | null, string];
  assert.equal(signal, "SIGKILL");
});
