/**
 * Speech to text end to end: the official `openai` client (and raw HTTP where a client would not send
 * what we test) → the real gateway on both listeners → ffmpeg → a real whisper runner process on a
 * generated tiny random-weight model, next to a real chat model. Audio is made by the test set-up
 * (WAV by code, the rest with ffmpeg, sox and espeak-ng).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, test } from "node:test";
import OpenAI, { toFile } from "openai";
import type { EventEnvelope } from "../events/bus.js";
import { type TestGateway, startGateway } from "../test-support/gateway.js";
import { tinyModelPath } from "../test-support/models.js";
import { ensureTinyWhisperModel } from "./demo/tiny-whisper.js";
import { WHISPER_LANGUAGES } from "./languages.js";
import { type EncodedSet, encodeAll, onPath, TEST_TOOLS, wav } from "./test-support/audio.js";

const EN = "whisper-tiny-en"; // English-only, alias whisper-1
const MULTI = "whisper-tiny-multi"; // multilingual, alias whisper-base
const LIMIT_MB = 2;
const LIMITS = { file_upload_size_mb: LIMIT_MB };

let gw: TestGateway;
let client: OpenAI;
let ollamaClient: OpenAI;
let work: string;
let files: EncodedSet;
let longOpus: Buffer;
const completed: Array<EventEnvelope<"transcription.completed">> = [];
const stopped: Array<{ model: string; reason: string }> = [];

const REAL = process.env["LLAMA_RUNNER_AUDIO_FIXTURES"] ?? new URL("../../../shared/fixtures/audio/", import.meta.url).pathname;
const haveReal = existsSync(join(REAL, "jfk.wav"));

before(async () => {
  const missing = TEST_TOOLS.filter((tool) => !onPath(tool));
  assert.deepEqual(missing, [], `the audio tests need ${missing.join(", ")}: run sudo node scripts/setup-system.mjs --test`);
  work = await mkdtemp(join(tmpdir(), "lr-audio-"));
  const models = join(tmpdir(), "llama-runner-test-models");
  const [en, multi, chat] = await Promise.all([
    ensureTinyWhisperModel(models),
    ensureTinyWhisperModel(models, { multilingual: true }),
    tinyModelPath(),
    mkdir(join(work, "uploads")),
  ]);
  files = await encodeAll(work, wav({ seconds: 11 }));
  // Two minutes of audio: long enough to still be running while other requests come and go.
  await writeFile(join(work, "long.wav"), wav({ seconds: 120, seed: 3 }));
  const { execFileSync } = await import("node:child_process");
  execFileSync("ffmpeg", ["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", join(work, "long.wav"), "-c:a", "libopus", "-b:a", "24k", join(work, "long.ogg")]);
  longOpus = await readFile(join(work, "long.ogg"));

  const whisperParameters = { temperature_increment_on_fallback: 0, threads: 1 };
  gw = await startGateway({
    concurrentRunners: 4,
    proxies: { ollama: { port: 0, rate_limits: LIMITS }, lmstudio: { port: 0, rate_limits: LIMITS } },
    models: { chat: { model_path: chat, parameters: { ctx_size: 512, threads: 1 } } },
    audio: {
      models: {
        [EN]: { model_path: en, aliases: ["whisper-1"], parameters: whisperParameters },
        [MULTI]: { model_path: multi, aliases: ["whisper-base"], parameters: whisperParameters },
        "whisper-ttl": { model_path: en, ttl: 1, parameters: whisperParameters },
      },
      max_queue: 3,
      temp_dir: join(work, "uploads"),
    },
  });
  gw.app.bus.subscribe("transcription.completed", (e) => completed.push(e as EventEnvelope<"transcription.completed">));
  gw.app.bus.subscribe("model.stopped", (e) => {
    const data = (e as EventEnvelope<"model.stopped">).data;
    stopped.push({ model: data.model_id, reason: data.reason });
  });
  client = new OpenAI({ baseURL: `${gw.lmstudio}/v1`, apiKey: "unused", maxRetries: 0 });
  ollamaClient = new OpenAI({ baseURL: `${gw.ollama}/v1`, apiKey: "ollama", maxRetries: 0 });
});

let closed = false;
after(async () => {
  if (!closed) await gw?.close();
  await rm(work, { recursive: true, force: true });
});

const upload = async (path: string, name = path.split("/").at(-1) ?? "audio") => toFile(await readFile(path), name);

async function form(fields: Record<string, string | string[]>, file?: { data: Buffer; name: string }): Promise<FormData> {
  const body = new FormData();
  if (file) body.append("file", new Blob([file.data]), file.name);
  for (const [key, value] of Object.entries(fields)) for (const v of Array.isArray(value) ? value : [value]) body.append(key, v);
  return body;
}

const post = (path: string, body: FormData | string, base = gw.lmstudio) => fetch(`${base}${path}`, { method: "POST", body });

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

const uploadsLeft = () => readdir(gw.app.audio.temp.dir);

/** Whether anything in process group `pgid` is still alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Our descendant processes, by command line (from /proc). */
async function descendants(): Promise<string[]> {
  const parents = new Map<number, number>();
  const commands = new Map<number, string>();
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, "utf8");
      parents.set(Number(name), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
      commands.set(Number(name), (await readFile(`/proc/${name}/cmdline`, "utf8")).replaceAll("\0", " ").trim());
    } catch {
      // gone meanwhile
    }
  }
  const ours = (pid: number): boolean => {
    for (let p = parents.get(pid); p !== undefined && p > 1; p = parents.get(p)) if (p === process.pid) return true;
    return false;
  };
  return [...commands].filter(([pid]) => ours(pid)).map(([, command]) => command);
}

test("every response format for one recording, on both listeners, consistent with each other", async () => {
  const json = await client.audio.transcriptions.create({ file: await upload(files.wav), model: "whisper-1" });
  const extra = json as unknown as { language: string; duration: number; segments: Array<{ start: number; end: number; text: string }>; usage: unknown };
  assert.equal(typeof json.text, "string");
  assert.ok(json.text.length > 0, "the tiny model says something");
  assert.equal(extra.language, "en");
  assert.equal(extra.duration, 11);
  assert.deepEqual(extra.usage, { type: "duration", seconds: 11 });
  assert.ok(extra.segments.length >= 1);
  for (const s of extra.segments) assert.ok(s.start >= 0 && s.start <= s.end && s.end <= 11, JSON.stringify(s));

  const text = await ollamaClient.audio.transcriptions.create({ file: await upload(files.wav), model: "whisper-1", response_format: "text" });
  assert.equal(text, `${json.text}\n`, "text is text/plain (openai-node hands back the string) and deterministic across listeners");

  const verbose = await client.audio.transcriptions.create({ file: await upload(files.wav), model: EN, response_format: "verbose_json" });
  assert.equal(verbose.text, json.text);
  assert.equal(verbose.language, "english");
  assert.equal(verbose.duration, 11);
  assert.equal((verbose as unknown as { task: string }).task, "transcribe");
  assert.equal(verbose.words, undefined, "no words unless asked");
  const segments = verbose.segments ?? [];
  assert.deepEqual(
    segments.map((s) => ({ start: s.start, end: s.end, text: s.text.trim() })),
    extra.segments,
  );
  segments.forEach((s, i) => {
    assert.equal(s.id, i);
    assert.deepEqual(s.tokens, []);
    assert.equal(s.temperature, 0);
    assert.equal(typeof s.compression_ratio, "number");
  });

  const srt = await client.audio.transcriptions.create({ file: await upload(files.wav), model: "whisper-1", response_format: "srt" });
  const vtt = await client.audio.transcriptions.create({ file: await upload(files.wav), model: "whisper-1", response_format: "vtt" });
  const stamp = (t: number, sep: string) => {
    const ms = Math.round(t * 1000);
    const p = (n: number, w = 2) => String(n).padStart(w, "0");
    return `${p(Math.floor(ms / 3_600_000))}:${p(Math.floor(ms / 60_000) % 60)}:${p(Math.floor(ms / 1000) % 60)}${sep}${p(ms % 1000, 3)}`;
  };
  assert.equal(srt, segments.map((s, i) => `${i + 1}\n${stamp(s.start, ",")} --> ${stamp(s.end, ",")}\n${s.text.trim()}\n\n`).join(""));
  assert.equal(vtt, `WEBVTT\n\n${segments.map((s) => `${stamp(s.start, ".")} --> ${stamp(s.end, ".")}\n${s.text.trim()}\n\n`).join("")}`);

  const raw = await post("/v1/audio/transcriptions", await form({ model: "whisper-1", response_format: "srt" }, { data: await readFile(files.wav), name: "a.wav" }));
  assert.equal(raw.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.equal(await raw.text(), srt);
  assert.deepEqual(await uploadsLeft(), [], "every upload's temp file is gone");
});

test("word and segment timestamps; the granularity key with and without []", async () => {
  const both = await client.audio.transcriptions.create({
    file: await upload(files.speech),
    model: "whisper-1",
    response_format: "verbose_json",
    timestamp_granularities: ["word", "segment"],
  });
  const words = both.words ?? [];
  assert.ok(words.length >= 1, "words are there");
  assert.ok((both.segments ?? []).length >= 1, "segments too");
  for (const w of words) {
    assert.match(w.word, /\S/);
    assert.ok(w.start >= 0 && w.start <= w.end && w.end <= both.duration, JSON.stringify(w));
  }
  const letters = (s: string) => s.replace(/[\p{P}\p{S}\s]/gu, "");
  assert.equal(words.map((w) => letters(w.word)).join(""), letters(both.text), "the words spell the text");

  const wordsOnly = await client.audio.transcriptions.create({
    file: await upload(files.speech),
    model: "whisper-1",
    response_format: "verbose_json",
    timestamp_granularities: ["word"],
  });
  assert.deepEqual(wordsOnly.words, words);
  assert.equal(wordsOnly.segments, undefined, "segments only when asked (or by default)");

  for (const key of ["timestamp_granularities", "timestamp_granularities[]"]) {
    const res = await post("/v1/audio/transcriptions", await form({ model: "whisper-1", response_format: "verbose_json", [key]: "word" }, { data: await readFile(files.speech), name: "s.wav" }));
    assert.equal(res.status, 200, key);
    assert.deepEqual(((await res.json()) as { words: unknown }).words, words, key);
  }
});

test("language: given and auto-detected on a multilingual model; refused on an English-only one", async () => {
  const german = await client.audio.transcriptions.create({ file: await upload(files.wav), model: "whisper-base", language: "de", response_format: "verbose_json" });
  assert.equal(german.language, "german");
  const auto = await client.audio.transcriptions.create({ file: await upload(files.wav), model: "whisper-base", response_format: "verbose_json" });
  assert.ok([...WHISPER_LANGUAGES.values()].includes(auto.language), `detected a language whisper knows: ${auto.language}`);
  const autoJson = (await client.audio.transcriptions.create({ file: await upload(files.wav), model: MULTI })) as unknown as { language: string };
  assert.equal(WHISPER_LANGUAGES.get(autoJson.language), auto.language, "json has the code of the same detected language");

  const english = await client.audio.transcriptions.create({ file: await upload(files.wav), model: EN, response_format: "verbose_json" });
  assert.equal(english.language, "english");
  await assert.rejects(
    client.audio.transcriptions.create({ file: await upload(files.wav), model: EN, language: "de" }),
    (e: InstanceType<typeof OpenAI.BadRequestError>) => e.status === 400 && e.param === "language" && /English-only/.test(e.message),
  );
  await assert.rejects(
    client.audio.transcriptions.create({ file: await upload(files.wav), model: MULTI, language: "xx" }),
    (e: InstanceType<typeof OpenAI.BadRequestError>) => e.status === 400 && e.param === "language",
  );
});

test("translations to English: json and verbose_json with task translate and no words", async () => {
  const json = await client.audio.translations.create({ file: await upload(files.mp3), model: "whisper-base", prompt: "Meeting notes.", temperature: 0 });
  assert.ok(json.text.length > 0);
  assert.equal((json as unknown as { language: string }).language, "en");
  const verbose = (await ollamaClient.audio.translations.create({ file: await upload(files.mp3), model: "whisper-base", prompt: "Meeting notes.", response_format: "verbose_json" })) as unknown as OpenAI.Audio.TranslationVerbose;
  assert.equal(verbose.text, json.text);
  assert.equal((verbose as unknown as { task: string }).task, "translate");
  assert.equal(verbose.language, "english");
  assert.ok((verbose.segments ?? []).length >= 1);
  const res = await post("/v1/audio/translations", await form({ model: "whisper-base", response_format: "verbose_json", "timestamp_granularities[]": "word" }, { data: await readFile(files.mp3), name: "a.mp3" }), gw.ollama);
  assert.equal("words" in ((await res.json()) as object), false, "translations carry no words");
  const srt = (await client.audio.translations.create({ file: await upload(files.mp3), model: "whisper-base", response_format: "srt" })) as unknown as string;
  assert.match(srt, /^1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n/);
});

test("every container decodes to the same 11 s: wav at any rate/depth/channels, mp3, ogg (opus, vorbis), flac, m4a, webm", async (t) => {
  // [file name, bytes, seconds]; the big layouts are shorter to stay under the upload limit.
  const variants: Array<[string, Buffer, number]> = [
    ["16k-mono-s16.wav", await readFile(files.wav), 11],
    ["44k1-stereo-s24.wav", wav({ rate: 44100, channels: 2, format: "s24", seconds: 3 }), 3],
    ["8k-mono-u8.wav", wav({ rate: 8000, format: "u8" }), 11],
    ["48k-6ch-f32.wav", wav({ rate: 48000, channels: 6, format: "f32", seconds: 1.5 }), 1.5],
    ["22k05-mono-s32.wav", wav({ rate: 22050, format: "s32", seconds: 5 }), 5],
    ["a.mp3", await readFile(files.mp3), 11],
    ["a.opus.ogg", await readFile(files.oggOpus), 11],
    ["a.vorbis.ogg", await readFile(files.oggVorbis), 11],
    ["a.flac", await readFile(files.flac), 11],
    ["a.m4a", await readFile(files.m4a), 11],
    ["a.webm", await readFile(files.webm), 11],
  ];
  const before = completed.length;
  for (const [name, data, seconds] of variants) {
    const result = (await client.audio.transcriptions.create({ file: await toFile(data, name), model: "whisper-1" })) as unknown as { text: string; duration: number };
    // Lossy encoders add a few ms of priming (AAC: 128 samples).
    assert.ok(Math.abs(result.duration - seconds) < 0.05, `${name}: ${result.duration} s, expected ${seconds}`);
  }
  const events = completed.slice(before);
  assert.equal(events.length, variants.length);
  const decode = events.map((e) => e.data.decode_ms).sort((a, b) => a - b);
  const inference = events.map((e) => e.data.inference_ms).sort((a, b) => a - b);
  t.diagnostic(`per file: decode median ${decode[Math.floor(decode.length / 2)]} ms (min ${decode[0]}), inference median ${inference[Math.floor(inference.length / 2)]} ms (min ${inference[0]})`);
  // Lossless copies of one signal at 16 kHz transcribe identically.
  const flac = await client.audio.transcriptions.create({ file: await upload(files.flac), model: "whisper-1" });
  const wave = await client.audio.transcriptions.create({ file: await upload(files.wav), model: "whisper-1" });
  assert.equal(flac.text, wave.text);
});

test("transcription.completed carries model, task, duration, language and processing time", async () => {
  const before = completed.length;
  await client.audio.transcriptions.create({ file: await upload(files.speech), model: "whisper-1" });
  const event = completed[before];
  assert.ok(event);
  assert.equal(event.event, "transcription.completed");
  assert.equal(event.data.model_id, EN);
  assert.equal(event.data.task, "transcribe");
  assert.equal(event.data.language, "en");
  assert.ok(event.data.duration_s > 3 && event.data.duration_s < 8, String(event.data.duration_s));
  assert.ok(event.data.processing_ms >= event.data.inference_ms + event.data.decode_ms - 1);
  assert.ok(event.data.inference_ms > 0);
});

test("JSON with a base64 file works; a path or URL in its place is refused, never opened", async () => {
  const data = await readFile(files.wav);
  const viaJson = await post("/v1/audio/transcriptions", JSON.stringify({ model: "whisper-1", file: data.toString("base64"), response_format: "text" }));
  assert.equal(viaJson.status, 200);
  const viaForm = await client.audio.transcriptions.create({ file: await upload(files.wav), model: "whisper-1", response_format: "text" });
  assert.equal(await viaJson.text(), viaForm);
  const dataUrl = await post("/v1/audio/transcriptions", JSON.stringify({ model: "whisper-1", file: `data:audio/wav;base64,${data.toString("base64")}` }));
  assert.equal(dataUrl.status, 200);
  for (const file of ["/etc/passwd", files.wav, "http://127.0.0.1:1/x.wav", "file:///etc/hosts"]) {
    const res = await post("/v1/audio/transcriptions", JSON.stringify({ model: "whisper-1", file }));
    assert.equal(res.status, 400, file);
    const body = (await res.json()) as { error: { param: string; type: string } };
    assert.equal(body.error.param, "file");
    assert.equal(body.error.type, "invalid_request_error");
  }
  // A playlist inside an upload may not make the decoder read a file of the client's choosing.
  const playlist = Buffer.from(`#EXTM3U\n#EXT-X-TARGETDURATION:11\n#EXTINF:11,\n${files.wav}\n#EXT-X-ENDLIST\n`);
  const hls = await post("/v1/audio/transcriptions", await form({ model: "whisper-1" }, { data: playlist, name: "list.m3u8" }));
  assert.equal(hls.status, 400);
  assert.deepEqual(await uploadsLeft(), []);
});

test("bad input: garbage, truncated WAVs, empty and missing files, unknown and non-whisper models", async () => {
  const garbage = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919) % 256));
  await assert.rejects(
    client.audio.transcriptions.create({ file: await toFile(garbage, "noise.mp3"), model: "whisper-1" }),
    (e: InstanceType<typeof OpenAI.BadRequestError>) => e.status === 400 && e.param === "file" && /could not be decoded|no audio/.test(e.message),
  );
  // The header promises 11 s; the data stops after 3 s: what is there is transcribed.
  const full = await readFile(files.wav);
  const truncated = full.subarray(0, 44 + 3 * 32000);
  const partial = (await client.audio.transcriptions.create({ file: await toFile(truncated, "cut.wav"), model: "whisper-1" })) as unknown as { duration: number };
  assert.ok(Math.abs(partial.duration - 3) < 0.01, `${partial.duration}`);
  // Cut inside the header: nothing to decode.
  for (const [data, name] of [
    [full.subarray(0, 30), "cut-header.wav"],
    [Buffer.alloc(0), "empty.wav"],
    [full.subarray(0, 44 + 800), "too-short.wav"],
  ] as const) {
    const res = await post("/v1/audio/transcriptions", await form({ model: "whisper-1" }, { data, name }));
    assert.equal(res.status, 400, name);
    const body = (await res.json()) as { error: { message: string; param: string } };
    assert.equal(body.error.param, "file", name);
    assert.doesNotMatch(body.error.message, /llama-runner-audio|\/tmp\//, "no temp path in messages");
  }
  for (const [type, body] of [
    ["multipart/form-data", "garbage"],
    ["multipart/form-data; boundary=xyz", "--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc"],
  ]) {
    const res = await fetch(`${gw.lmstudio}/v1/audio/transcriptions`, { method: "POST", headers: { "content-type": type ?? "" }, body });
    assert.equal(res.status, 400, `malformed multipart: ${type}`);
  }
  const missing = await post("/v1/audio/transcriptions", await form({ model: "whisper-1" }));
  assert.equal(missing.status, 400);
  assert.equal(((await missing.json()) as { error: { param: string } }).error.param, "file");

  await assert.rejects(
    client.audio.transcriptions.create({ file: await upload(files.wav), model: "nope" }),
    (e: InstanceType<typeof OpenAI.NotFoundError>) => e.status === 404 && e.code === "model_not_found",
  );
  await assert.rejects(
    client.audio.transcriptions.create({ file: await upload(files.wav), model: "chat" }),
    (e: InstanceType<typeof OpenAI.BadRequestError>) => e.status === 400 && /not a speech-to-text model/.test(e.message),
  );
  await assert.rejects(
    client.audio.transcriptions.create({ file: await upload(files.wav), model: "whisper-1", response_format: "diarized_json" as "json" }),
    (e: InstanceType<typeof OpenAI.BadRequestError>) => e.status === 400 && e.param === "response_format",
  );
  const chatToWhisper = await fetch(`${gw.lmstudio}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model: "whisper-1", messages: [{ role: "user", content: "hi" }] }) });
  // Refused before any load: a chat request never starts (or evicts a chat model for) a whisper runner.
  assert.equal(chatToWhisper.status, 400);
  assert.match(((await chatToWhisper.json()) as { error: { message: string } }).error.message, /speech-to-text model/);
  assert.deepEqual(await uploadsLeft(), []);
});

test("over the upload limit: 413 as soon as the limit is crossed, before the rest is sent", async () => {
  // Declared too large: refused before any byte of the body.
  const declared = await new Promise<{ status: number; body: string; connection: string | undefined }>((resolve, reject) => {
    const req = httpRequest(`${gw.lmstudio}/v1/audio/transcriptions`, {
      method: "POST",
      headers: { "content-type": "multipart/form-data; boundary=x", "content-length": String(500 * 1024 * 1024) },
    });
    req.on("error", reject);
    req.on("response", (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d));
      res.on("end", () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection });
      });
    });
    req.flushHeaders();
  });
  assert.equal(declared.status, 413);
  assert.equal(declared.connection, "close");
  assert.equal(JSON.parse(declared.body).error.code, "payload_too_large");

  // Streamed without a length: the answer comes while the client still holds most of its upload.
  const boundary = "----lr-test";
  const total = 40 * 1024 * 1024;
  let sent = 0;
  const streamed = await new Promise<{ status: number; body: string; sentAtResponse: number }>((resolve, reject) => {
    const req = httpRequest(`${gw.ollama}/v1/audio/transcriptions`, {
      method: "POST",
      headers: { "content-type": `multipart/form-data; boundary=${boundary}`, "transfer-encoding": "chunked" },
    });
    let answered = false;
    req.on("error", (error) => (answered ? undefined : reject(error)));
    req.on("response", (res) => {
      answered = true;
      const sentAtResponse = sent;
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d));
      res.on("end", () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, body, sentAtResponse });
      });
    });
    req.write(`--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n`);
    req.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\nContent-Type: audio/wav\r\n\r\n`);
    const chunk = Buffer.alloc(64 * 1024, 1);
    const pump = () => {
      while (!answered && sent < total) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once("drain", pump);
      }
    };
    pump();
  });
  assert.equal(streamed.status, 413);
  assert.equal(JSON.parse(streamed.body).error.param, "file");
  assert.ok(streamed.sentAtResponse < total / 2, `answered after ${streamed.sentAtResponse} of ${total} bytes`);

  // The official client gets the error too.
  await assert.rejects(
    client.audio.transcriptions.create({ file: await toFile(Buffer.alloc(LIMIT_MB * 1_000_000 + 1000, 1), "big.wav"), model: "whisper-1" }),
    (e: InstanceType<typeof OpenAI.APIError>) => e.status === 413 && e.code === "payload_too_large",
  );
  await waitFor("uploads removed", async () => (await uploadsLeft()).length === 0, 5000);
});

test("a client that disconnects mid-upload leaves no temp file", async () => {
  const boundary = "----lr-cut";
  const req = httpRequest(`${gw.lmstudio}/v1/audio/transcriptions`, {
    method: "POST",
    headers: { "content-type": `multipart/form-data; boundary=${boundary}`, "transfer-encoding": "chunked" },
  });
  req.on("error", () => {});
  req.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n`);
  req.write((await readFile(files.wav)).subarray(0, 100_000));
  await waitFor("the upload's temp file", async () => (await uploadsLeft()).length === 1);
  req.destroy();
  await waitFor("the temp file removed", async () => (await uploadsLeft()).length === 0, 5000);
});

test("concurrent transcriptions queue per model (bounded), and a chat request is answered meanwhile", async () => {
  // Warm the chat model first, so its answer below measures serving, not loading.
  await client.chat.completions.create({ model: "chat", messages: [{ role: "user", content: "hi" }], max_tokens: 4 });
  const finished: number[] = [];
  const long = () =>
    client.audio.transcriptions.create({ file: new File([longOpus], "long.ogg"), model: "whisper-1" }).then((r) => {
      finished.push(Date.now());
      return r;
    });
  const running = [long(), long(), long()];
  await waitFor("three admitted, one running", () => gw.app.audio.pendingFor(EN) === 3 && gw.app.lifecycle.status(EN).inFlight === 1);
  // The fourth for the same model is over audio.max_queue (3): refused at once, with Retry-After.
  const overflow = await post("/v1/audio/transcriptions", await form({ model: "whisper-1" }, { data: longOpus, name: "long.ogg" }));
  assert.equal(overflow.status, 429);
  assert.equal(overflow.headers.get("retry-after"), "5");

  const chat = await client.chat.completions.create({ model: "chat", messages: [{ role: "user", content: "Hello" }], max_tokens: 8 });
  assert.equal(chat.choices[0]?.finish_reason, "length");
  assert.equal(finished.length, 0, "the chat answer came while the first transcription was still running");
  assert.equal(gw.app.lifecycle.status(EN).inFlight, 1, "one transcription at a time per whisper runner");

  const results = await Promise.all(running);
  assert.equal(new Set(results.map((r) => r.text)).size, 1, "same audio, same transcript");
  assert.ok(((results[0] as unknown as { duration: number }).duration ?? 0) > 119);
});

test("a client that disconnects mid-transcription stops it: the runner is recycled, nothing is left behind", async () => {
  const controller = new AbortController();
  const pending = client.audio.transcriptions.create({ file: await toFile(longOpus, "long.ogg"), model: "whisper-1" }, { signal: controller.signal }).catch((e: unknown) => e);
  await waitFor("the transcription running", () => gw.app.lifecycle.status(EN).inFlight === 1);
  const pgid = gw.app.lifecycle.status(EN).pid;
  assert.ok(pgid);
  const stopsBefore = stopped.length;
  controller.abort();
  assert.ok((await pending) instanceof OpenAI.APIUserAbortError);
  await waitFor("the runner stopped", () => stopped.slice(stopsBefore).some((s) => s.model === EN && s.reason === "requested"));
  await waitFor("the runner's process group gone", () => !groupAlive(pgid), 10_000);
  await waitFor("uploads removed", async () => (await uploadsLeft()).length === 0, 5000);
  // The next request gets a fresh runner.
  const again = await client.audio.transcriptions.create({ file: await upload(files.wav), model: "whisper-1" });
  assert.ok(again.text.length > 0);
  assert.notEqual(gw.app.lifecycle.status(EN).pid, pgid);
});

test("whisper models are catalogue entries: listed, status, system status, unloaded by TTL", async () => {
  const ids = (await client.models.list()).data.map((m) => m.id);
  for (const id of [EN, MULTI, "whisper-ttl", "chat"]) assert.ok(ids.includes(id), id);
  assert.equal((await client.models.retrieve("whisper-1")).id, EN);

  const status = (await (await fetch(`${gw.lmstudio}/v1/models/whisper-1/status`)).json()) as { status: string; memory_usage: number };
  assert.equal(status.status, "loaded");
  await waitFor("memory measured", async () => {
    const s = (await (await fetch(`${gw.lmstudio}/v1/models/whisper-1/status`)).json()) as { memory_usage: number };
    return s.memory_usage > 10 * 2 ** 20;
  });
  const system = (await (await fetch(`${gw.ollama}/v1/system/status`)).json()) as { models: { total: number; loaded: number } };
  assert.equal(system.models.total, 4);
  assert.ok(system.models.loaded >= 2);

  const stopsBefore = stopped.length;
  await client.audio.transcriptions.create({ file: await upload(files.speech), model: "whisper-ttl" });
  await waitFor("TTL unload", () => stopped.slice(stopsBefore).some((s) => s.model === "whisper-ttl" && s.reason === "ttl"), 10_000);
  const after = (await (await fetch(`${gw.lmstudio}/v1/models/whisper-ttl/status`)).json()) as { status: string };
  assert.equal(after.status, "unloaded");
});

test(`real recordings decode and transcribe (${REAL}${haveReal ? "" : "; SKIPPED: folder absent"})`, { skip: !haveReal && "../shared/fixtures/audio is absent" }, async () => {
  const transcribe = async (name: string) =>
    client.audio.transcriptions.create({ file: await upload(join(REAL, name)), model: "whisper-1", response_format: "verbose_json" });
  const jfkWav = await transcribe("jfk.wav");
  const jfkMp3 = await transcribe("jfk.mp3");
  const hello = await transcribe("hello-16k.wav");
  assert.ok(Math.abs(jfkWav.duration - 11) < 0.1, `jfk.wav ${jfkWav.duration} s`);
  assert.ok(Math.abs(jfkMp3.duration - jfkWav.duration) < 0.1, `jfk.mp3 ${jfkMp3.duration} s`);
  const helloBytes = (await readFile(join(REAL, "hello-16k.wav"))).length;
  assert.ok(Math.abs(hello.duration - (helloBytes - 44) / 32000) < 0.05, `hello-16k.wav ${hello.duration} s`);
  for (const result of [jfkWav, jfkMp3, hello]) assert.ok((result.segments ?? []).length >= 1);
});

test("no temp file and, after shutdown, no child process is left", async () => {
  assert.deepEqual(await uploadsLeft(), []);
  const runners = await descendants();
  assert.ok(runners.some((c) => c.includes("audio/runner/main.js")), "runners were running");
  closed = true;
  await gw.close();
  await waitFor("children gone", async () => (await descendants()).length === 0, 15_000);
  assert.equal(existsSync(gw.app.audio.temp.dir), false, "the upload folder is removed at shutdown");
});
