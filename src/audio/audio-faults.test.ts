/**
 * Speech to text when things go wrong: a transcription that runs out of time, a whisper model that
 * does not fit the memory budget beside an LLM, a missing decoder, a file that is not a whisper model,
 * a name used twice.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, test } from "node:test";
import OpenAI, { toFile } from "openai";
import { pino } from "pino";
import { ConfigError } from "../config/load.js";
import type { EventEnvelope } from "../events/bus.js";
import { buildApp } from "../main.js";
import { startGateway } from "../test-support/gateway.js";
import { tinyModelPath } from "../test-support/models.js";
import { ensureTinyWhisperModel } from "./demo/tiny-whisper.js";
import { wav } from "./test-support/audio.js";

let work: string;
let whisperPath: string;
let chatPath: string;
let longOgg: Buffer;

before(async () => {
  work = await mkdtemp(join(tmpdir(), "lr-audio-faults-"));
  [whisperPath, chatPath] = await Promise.all([ensureTinyWhisperModel(join(tmpdir(), "llama-runner-test-models")), tinyModelPath()]);
  await writeFile(join(work, "long.wav"), wav({ seconds: 120, seed: 3 }));
  execFileSync("ffmpeg", ["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", join(work, "long.wav"), "-c:a", "libopus", "-b:a", "24k", join(work, "long.ogg")]);
  longOgg = await readFile(join(work, "long.ogg"));
});
after(() => rm(work, { recursive: true, force: true }));

async function waitFor(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

const whisper = { temperature_increment_on_fallback: 0, threads: 1 };

test("a transcription over audio.timeout_s is stopped: 503 that clients do not retry, runner recycled", async () => {
  const gw = await startGateway({ audio: { timeout_s: 0.5, models: { w: { model_path: whisperPath, parameters: whisper } } } });
  const stops: string[] = [];
  gw.app.bus.subscribe("model.stopped", (e) => stops.push((e as EventEnvelope<"model.stopped">).data.reason));
  try {
    // Load the runner first, so the timeout falls on the transcription and not on the load.
    await gw.app.lifecycle.start(gw.app.catalog.resolve("w")!);
    const pgid = gw.app.lifecycle.status("w").pid;
    const body = new FormData();
    body.append("file", new Blob([longOgg]), "long.ogg");
    body.append("model", "w");
    const res = await fetch(`${gw.lmstudio}/v1/audio/transcriptions`, { method: "POST", body });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("x-should-retry"), "false");
    const error = ((await res.json()) as { error: { message: string; type: string } }).error;
    assert.match(error.message, /did not finish within 0.5 s/);
    assert.equal(error.type, "service_unavailable");
    await waitFor("runner recycled", () => stops.includes("requested"));
    await waitFor("old runner gone", () => {
      try {
        process.kill(-(pgid ?? 0), 0);
        return false;
      } catch {
        return true;
      }
    });
    assert.deepEqual(await readdir(gw.app.audio.temp.dir), []);
  } finally {
    await gw.close();
  }
});

test("whisper models count in the memory budget beside LLMs: loading one evicts an idle chat model; one too big is refused", async () => {
  const gw = await startGateway({
    concurrentRunners: 4,
    memory_budget: "300MiB",
    models: { chat: { model_path: chatPath, memory: "200MiB", parameters: { ctx_size: 512, threads: 1 } } },
    audio: {
      models: {
        w: { model_path: whisperPath, memory: "200MiB", parameters: whisper },
        huge: { model_path: whisperPath, memory: "1GiB", parameters: whisper },
      },
    },
  });
  const stops: Array<{ model: string; reason: string }> = [];
  gw.app.bus.subscribe("model.stopped", (e) => {
    const data = (e as EventEnvelope<"model.stopped">).data;
    stops.push({ model: data.model_id, reason: data.reason });
  });
  const client = new OpenAI({ baseURL: `${gw.lmstudio}/v1`, apiKey: "unused", maxRetries: 0 });
  try {
    await client.chat.completions.create({ model: "chat", messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
    const file = await toFile(wav({ seconds: 2 }), "a.wav");
    const result = await client.audio.transcriptions.create({ file, model: "w" });
    assert.equal(typeof result.text, "string");
    assert.deepEqual(stops, [{ model: "chat", reason: "evicted" }]);
    await assert.rejects(
      client.audio.transcriptions.create({ file: await toFile(wav({ seconds: 2 }), "a.wav"), model: "huge" }),
      (e: InstanceType<typeof OpenAI.BadRequestError>) => e.status === 400 && /Cannot load/.test(e.message),
    );
  } finally {
    await gw.close();
  }
});

test("a file that is not a whisper model is listed and refused with its reason; the rest of the gateway serves", async () => {
  const gw = await startGateway({ audio: { models: { broken: { model_path: chatPath }, gone: { model_path: join(work, "nope.bin") } } } });
  try {
    const ids = ((await (await fetch(`${gw.lmstudio}/v1/models`)).json()) as { data: Array<{ id: string }> }).data.map((m) => m.id);
    assert.deepEqual(ids.sort(), ["broken", "gone"]);
    const body = new FormData();
    body.append("file", new Blob([wav({ seconds: 1 })]), "a.wav");
    body.append("model", "broken");
    const res = await fetch(`${gw.lmstudio}/v1/audio/transcriptions`, { method: "POST", body });
    assert.equal(res.status, 503);
    const message = ((await res.json()) as { error: { message: string } }).error.message;
    assert.match(message, /is a GGUF file, not a whisper\.cpp model/);
    assert.doesNotMatch(message, /\/tmp\//, "names the file, not its folder");
    assert.deepEqual(await readdir(gw.app.audio.temp.dir), []);
  } finally {
    await gw.close();
  }
});

async function startFails(config: Record<string, unknown>): Promise<ConfigError> {
  const home = await mkdtemp(join(tmpdir(), "lr-audio-start-"));
  const configFile = join(home, "config.json");
  await writeFile(configFile, JSON.stringify({ demo_model: false, proxies: { ollama: { port: 0 }, lmstudio: { port: 0 } }, ...config }));
  try {
    await buildApp({ configFile, home, logger: pino({ level: "silent" }) });
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error;
  } finally {
    await rm(home, { recursive: true, force: true });
  }
  assert.fail("the gateway started");
}

test("a missing decoder stops start-up with what to install, not a 500 at request time", async () => {
  const error = await startFails({ audio: { ffmpeg: join(work, "no-ffmpeg-here"), models: { w: { model_path: whisperPath } } } });
  assert.match(error.message, /audio: the decoder '.*no-ffmpeg-here' was not found\. Install ffmpeg .*apt-get install --no-install-recommends ffmpeg/);
  // Without whisper models the decoder is not needed.
  const gw = await startGateway({ audio: { ffmpeg: join(work, "no-ffmpeg-here") } });
  await gw.close();
});

test("a name used by an LLM and a whisper model stops start-up", async () => {
  const error = await startFails({ models: { chat: { model_path: chatPath, aliases: ["whisper-1"] } }, audio: { models: { w: { model_path: whisperPath, aliases: ["whisper-1"] } } } });
  assert.match(error.message, /audio\.models\.w: the name 'whisper-1' is already used by models\.chat/);
});
