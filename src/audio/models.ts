/**
 * Whisper models as catalogue entries. Each `audio.models` entry becomes a model of the catalogue's
 * existing `command` kind whose command is our whisper runner (src/audio/runner/main.ts) on the port the
 * lifecycle picks. So whisper models are loaded on demand, single-flight, unloaded by TTL, evicted and
 * counted in the memory budget by the same scheduler as the LLMs, and they show in /v1/models and the
 * status endpoints, without the lifecycle knowing anything about audio.
 *
 * This module also reads the whisper file's header (to refuse a broken file with a clear reason and to
 * know whether the model is multilingual) and maps the original config's parameters to whisper.cpp's.
 */
import { open, stat } from "node:fs/promises";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultThreads } from "../backends/embedded.js";
import type { ParameterValue } from "../catalog/catalog.js";
import { resolveFrom } from "../config/paths.js";
import type { Config, ModelConfig } from "../config/schema.js";
import { languageCode } from "./languages.js";
import type { EngineDefaults, RunnerSpec } from "./runner/protocol.js";

export type AudioConfig = Config["audio"];

const RUNNER_ENTRY = fileURLToPath(new URL("./runner/main.js", import.meta.url));

export interface WhisperHeader {
  nVocab: number;
  nAudioCtx: number;
  nAudioState: number;
  nAudioLayer: number;
  nTextLayer: number;
  nMels: number;
  ftype: number;
  multilingual: boolean;
  sizeBytes: number;
}

const GGML_MAGIC = 0x67676d6c;

/** Reads the 48-byte header of a whisper.cpp model file (legacy ggml format); throws with a reason when it is not one. */
export async function readWhisperHeader(path: string): Promise<WhisperHeader> {
  const info = await stat(path);
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(48);
    const { bytesRead } = await handle.read(buffer, 0, 48, 0);
    if (bytesRead < 48 || buffer.readUInt32LE(0) !== GGML_MAGIC) {
      const gguf = buffer.toString("latin1", 0, 4) === "GGUF";
      throw new Error(gguf ? "is a GGUF file, not a whisper.cpp model (ggml-*.bin)" : "is not a whisper.cpp model (ggml-*.bin): bad magic");
    }
    const field = (i: number) => buffer.readInt32LE(4 + i * 4);
    const header: WhisperHeader = {
      nVocab: field(0),
      nAudioCtx: field(1),
      nAudioState: field(2),
      nAudioLayer: field(4),
      nTextLayer: field(8),
      nMels: field(9),
      ftype: field(10),
      multilingual: field(0) >= 51865,
      sizeBytes: info.size,
    };
    if (header.nVocab < 51864 || header.nAudioState <= 0 || header.nAudioLayer <= 0 || header.nTextLayer <= 0 || (header.nMels !== 80 && header.nMels !== 128)) {
      throw new Error(`is not a whisper.cpp model: implausible hyper-parameters (n_vocab ${header.nVocab}, n_mels ${header.nMels})`);
    }
    return header;
  } finally {
    await handle.close();
  }
}

/**
 * Memory before it is measured: whisper.cpp's published figures (tiny 75 MB file → ~273 MB, large
 * 2.9 GB → ~3.9 GB) fit 1.3 × the file plus ~180 MB of compute buffers; plus the Node process.
 */
export const estimateWhisperBytes = (fileBytes: number): number => Math.round(fileBytes * 1.3) + 192 * 2 ** 20;

/** How the original config's parameters (faster-whisper and whisper.cpp names) reach whisper.cpp. */
interface Mapped {
  spec: Pick<RunnerSpec, "threads" | "flashAttn"> & { defaults: EngineDefaults };
  /** "name: why" for each parameter that has no effect. */
  ignored: string[];
}

type NumericDefault = { [K in keyof EngineDefaults]-?: NonNullable<EngineDefaults[K]> extends number ? K : never }[keyof EngineDefaults];

const NUMBER_OPTIONS: Record<string, NumericDefault> = {
  temperature: "temperature",
  temperature_increment_on_fallback: "temperatureInc",
  temperature_inc: "temperatureInc",
  best_of: "bestOf",
  max_context: "maxContext",
  n_max_text_ctx: "maxContext",
  word_threshold: "wordThold",
  word_thold: "wordThold",
  n_processors: "nProcessors",
};
const THREADS = new Set(["threads", "cpu_threads", "n_threads"]);
const CPU_BUILD = new Set(["device", "compute_type", "gpu_layers", "n_gpu_layers", "ngl", "use_gpu", "num_workers"]);
const NOT_EXPOSED = "not exposed by whisper.node 1.1.3";
const WHY: Record<string, string> = {
  beam_size: "whisper.node 1.1.3 always decodes greedily, so beam search cannot be switched on",
  patience: "whisper.node 1.1.3 always decodes greedily",
  no_speech_threshold: NOT_EXPOSED,
  log_prob_threshold: NOT_EXPOSED,
  logprob_threshold: NOT_EXPOSED,
  compression_ratio_threshold: NOT_EXPOSED,
  vad_filter: NOT_EXPOSED,
  parallel: "a whisper runner transcribes one request at a time; more wait in the queue",
};

export function mapParameters(parameters: Record<string, ParameterValue>): Mapped {
  const defaults: EngineDefaults = {};
  const ignored: string[] = [];
  let threads = defaultThreads();
  let flashAttn = false;
  for (const [key, value] of Object.entries(parameters)) {
    const option = NUMBER_OPTIONS[key];
    if (option && typeof value === "number" && Number.isFinite(value)) {
      defaults[option] = value;
    } else if (THREADS.has(key) && typeof value === "number" && Number.isInteger(value) && value > 0) {
      threads = value;
    } else if (key === "language" && typeof value === "string") {
      const code = value === "auto" ? undefined : languageCode(value);
      if (value !== "auto" && !code) ignored.push(`language: '${value}' is not a language whisper knows`);
      else if (code) defaults.language = code;
    } else if ((key === "initial_prompt" || key === "prompt") && typeof value === "string") {
      defaults.prompt = value;
    } else if (key === "condition_on_previous_text" && typeof value === "boolean") {
      // whisper.cpp's equivalent: no text context carried from one 30 s window to the next.
      if (!value) defaults.maxContext = 0;
    } else if (key === "flash_attn" && typeof value === "boolean") {
      flashAttn = value;
    } else if (CPU_BUILD.has(key)) {
      // Accepted without effect on this CPU-only build, so configs stay portable.
    } else {
      ignored.push(`${key}: ${WHY[key] ?? (option || THREADS.has(key) ? `expected a number, got ${JSON.stringify(value)}` : "unknown to whisper.cpp")}`);
    }
  }
  return { spec: { threads, flashAttn, defaults }, ignored };
}

export interface WhisperModel {
  id: string;
  path: string;
  multilingual: boolean;
  sizeBytes: number;
  /** The temperature decoding starts at unless a request gives one. */
  temperature: number;
  /** Why the model cannot be served (missing or not a whisper file); clients see this, so no folders. */
  error: string | undefined;
  /** Parameters that have no effect, with the reason. */
  ignored: string[];
}

export interface AudioCatalogue {
  /** Entries to merge into `config.models` before the catalogue is built. */
  catalogConfigs: Record<string, ModelConfig>;
  models: Map<string, WhisperModel>;
  /** Config problems (a name used twice); the caller refuses to start. */
  problems: string[];
}

const shellQuote = (value: string) => `'${value.replaceAll("'", `'\\''`)}'`;

/** Builds the whisper catalogue entries from `audio.models`; paths resolve from the config file's folder. */
export async function describeAudioModels(config: Config, configDir: string): Promise<AudioCatalogue> {
  const catalogConfigs: Record<string, ModelConfig> = {};
  const models = new Map<string, WhisperModel>();
  const problems: string[] = [];
  const taken = new Map<string, string>();
  for (const [id, model] of Object.entries(config.models)) for (const name of [id, ...model.aliases]) taken.set(name, `models.${id}`);

  for (const [id, model] of Object.entries(config.audio.models)) {
    for (const name of [id, ...model.aliases]) {
      const owner = taken.get(name);
      if (owner) problems.push(`audio.models.${id}: the name '${name}' is already used by ${owner}`);
      taken.set(name, `audio.models.${id}`);
    }
    const path = resolveFrom(configDir, model.model_path);
    let header: WhisperHeader | undefined;
    let error: string | undefined;
    try {
      header = await readWhisperHeader(path);
    } catch (failure) {
      error =
        (failure as NodeJS.ErrnoException).code === "ENOENT"
          ? `model file ${basename(path)} not found`
          : `${basename(path)} ${(failure as Error).message.replaceAll(path, basename(path))}`;
    }
    const mapped = mapParameters(model.parameters);
    const spec: RunnerSpec = { modelPath: path, multilingual: header?.multilingual ?? false, ...mapped.spec };
    const encoded = Buffer.from(JSON.stringify(spec), "utf8").toString("base64");
    models.set(id, {
      id,
      path,
      multilingual: spec.multilingual,
      sizeBytes: header?.sizeBytes ?? 0,
      temperature: spec.defaults.temperature ?? 0,
      error,
      ignored: mapped.ignored,
    });
    catalogConfigs[id] = {
      aliases: model.aliases,
      // ${HOST} and ${PORT} are filled in (quoted) by the command backend; the spec is base64, so no macro or quote can hide in it.
      command: `${shellQuote(process.execPath)} ${shellQuote(RUNNER_ENTRY)} --host \${HOST} --port \${PORT} --spec ${encoded}`,
      parameters: {},
      health_path: "/health",
      ttl: model.ttl,
      pinned: model.pinned,
      preload: model.preload,
      auto_start: true,
      memory: model.memory ?? estimateWhisperBytes(header?.sizeBytes ?? 0),
      // The whisper runner transcribes one file at a time and refuses a second: requests wait in the gateway.
      queue_ahead: 0,
    };
  }
  return { catalogConfigs, models, problems };
}
