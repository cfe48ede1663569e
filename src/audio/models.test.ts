import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { configSchema } from "../config/schema.js";
import { tinyModelPath } from "../test-support/models.js";
import { slaneyMelFilters, writeTinyWhisperModel } from "./demo/tiny-whisper.js";
import { describeAudioModels, estimateWhisperBytes, mapParameters, readWhisperHeader } from "./models.js";
import type { RunnerSpec } from "./runner/protocol.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "lr-audio-models-"));
});
after(() => rm(dir, { recursive: true, force: true }));

const sha = async (path: string) => createHash("sha256").update(await readFile(path)).digest("hex");

test("the tiny whisper generator is deterministic and writes a whisper.cpp header", async () => {
  const [a, b, c, m] = ["a", "b", "c", "m"].map((n) => join(dir, `${n}.bin`)) as [string, string, string, string];
  await writeTinyWhisperModel(a);
  await writeTinyWhisperModel(b);
  await writeTinyWhisperModel(c, { seed: 2 });
  await writeTinyWhisperModel(m, { multilingual: true });
  assert.equal(await sha(a), await sha(b));
  assert.notEqual(await sha(a), await sha(c));
  const header = await readWhisperHeader(a);
  assert.deepEqual(
    { nVocab: header.nVocab, ctx: header.nAudioCtx, state: header.nAudioState, layers: [header.nAudioLayer, header.nTextLayer], mels: header.nMels, multilingual: header.multilingual },
    { nVocab: 51864, ctx: 1500, state: 16, layers: [1, 1], mels: 80, multilingual: false },
  );
  assert.ok(header.sizeBytes > 2_000_000 && header.sizeBytes < 3_000_000, `about 2.5 MB, got ${header.sizeBytes}`);
  assert.equal((await readWhisperHeader(m)).multilingual, true);
});

test("the Slaney filterbank: triangles on the Slaney mel scale, area-normalised", () => {
  const filters = slaneyMelFilters();
  assert.equal(filters.length, 80 * 201);
  // Filter 0 spans 0–74.48 Hz peaking at 37.24 Hz; the 40 Hz bin sits on its falling edge:
  // (74.48 - 40) / (74.48 - 37.24) × 2 / 74.48 = 0.02486 (whisper's mel_filters.npz has the same value).
  assert.ok(Math.abs((filters[1] ?? 0) - 0.02486) < 1e-4, `got ${filters[1]}`);
  assert.ok((filters[79 * 201 + 199] ?? 0) > 0);
  assert.equal(filters[0], 0);
});

test("the header reader names what is wrong with a file that is not a whisper model", async () => {
  await assert.rejects(readWhisperHeader(await tinyModelPath()), /is a GGUF file/);
  const junk = join(dir, "junk.bin");
  await writeFile(junk, Buffer.alloc(100, 7));
  await assert.rejects(readWhisperHeader(junk), /not a whisper\.cpp model/);
});

test("parameters: whisper.cpp ones are mapped, CPU-irrelevant ones accepted, the rest reported with a reason", () => {
  const { spec, ignored } = mapParameters({
    language: "German",
    threads: 3,
    temperature: 0.1,
    temperature_increment_on_fallback: 0,
    best_of: 2,
    initial_prompt: "Glossary: gRPC",
    condition_on_previous_text: false,
    flash_attn: true,
    device: "cuda",
    beam_size: 5,
    no_speech_threshold: 0.6,
    vad_filter: true,
    mystery: 1,
  });
  assert.deepEqual(spec, {
    threads: 3,
    flashAttn: true,
    defaults: { language: "de", temperature: 0.1, temperatureInc: 0, bestOf: 2, prompt: "Glossary: gRPC", maxContext: 0 },
  });
  assert.deepEqual(
    ignored.map((line) => line.split(":")[0]),
    ["beam_size", "no_speech_threshold", "vad_filter", "mystery"],
  );
  assert.match(ignored[0] ?? "", /greedily/);
});

test("audio models become command entries: quoted path, base64 spec, memory estimate; a name used twice is a config problem", async () => {
  const path = join(dir, "it's ${PORT} here.bin");
  await writeTinyWhisperModel(path, { multilingual: true });
  const config = configSchema.parse({
    models: { chat: { model_path: "/x.gguf", aliases: ["whisper-1"] } },
    audio: {
      models: {
        small: { model_path: path, aliases: ["whisper-base"], ttl: 30, parameters: { threads: 2 } },
        clash: { model_path: "missing.bin", aliases: ["whisper-1"] },
      },
    },
  });
  const described = await describeAudioModels(config, dir);
  assert.deepEqual(described.problems, ["audio.models.clash: the name 'whisper-1' is already used by models.chat"]);
  const small = described.catalogConfigs["small"];
  assert.ok(small?.command);
  assert.deepEqual(small.aliases, ["whisper-base"]);
  assert.equal(small.ttl, 30);
  assert.equal(small.memory, estimateWhisperBytes((await readWhisperHeader(path)).sizeBytes));
  assert.match(small.command, /--host \$\{HOST\} --port \$\{PORT\} --spec [A-Za-z0-9+/=]+$/);
  const spec = JSON.parse(Buffer.from(small.command.split("--spec ")[1] ?? "", "base64").toString()) as RunnerSpec;
  assert.equal(spec.modelPath, path);
  assert.equal(spec.multilingual, true);
  assert.equal(spec.threads, 2);
  assert.equal(described.models.get("small")?.error, undefined);
  assert.equal(described.models.get("clash")?.error, "model file missing.bin not found");
});
