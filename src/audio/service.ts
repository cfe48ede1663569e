/**
 * Speech to text behind the routes: resolve a whisper model in the catalogue, bound the work per model,
 * decode the upload, lease the model's runner from the lifecycle (which loads it on demand), send it the
 * samples, and turn its answer into a transcript. Every transcription has a timeout; a transcription
 * that is abandoned (timeout or client gone) is stopped in the runner, and since whisper.node's stop()
 * only takes effect between whisper.cpp stages, the runner is then recycled through the lifecycle so the
 * CPU is free at once and the next request gets a fresh process.
 */
import { Readable } from "node:stream";
import type { Logger } from "pino";
import { Agent } from "../upstream/undici.js";
import type { Catalog, ModelEntry } from "../catalog/catalog.js";
import { resolveFrom } from "../config/paths.js";
import { GatewayError, invalidRequest, modelNotFound } from "../errors/index.js";
import type { EventBus } from "../events/bus.js";
import type { Lifecycle } from "../lifecycle/lifecycle.js";
import { type DecodedAudio, decodeToPcm } from "./decode.js";
import { joinText, type Transcript, toSegments, toWords } from "./formats.js";
import { TempFiles } from "./intake.js";
import type { AudioConfig, WhisperModel } from "./models.js";
import { preflight } from "./preflight.js";
import type { AudioRequest } from "./request.js";
import { encodeFrame, type RunnerRequest, type RunnerResult, TRANSCRIBE_PATH } from "./runner/protocol.js";

export interface AudioServiceOptions {
  config: AudioConfig;
  /** Relative `temp_dir` and `ffmpeg` paths resolve from the config file's folder. */
  configDir: string;
  catalog: Catalog;
  lifecycle: Lifecycle;
  bus: EventBus;
  logger: Logger;
  /** The whisper models by catalogue id (from describeAudioModels). */
  models: ReadonlyMap<string, WhisperModel>;
}

export interface Target {
  entry: ModelEntry;
  model: WhisperModel;
}

/** A transcription that ran out of time: answered 503, and clients are told not to retry it as it is. */
export class TranscriptionTimeout extends GatewayError {}

export class AudioService {
  private readonly pending = new Map<string, number>();
  private readonly agent = new Agent({ keepAliveTimeout: 30_000, headersTimeout: 0, bodyTimeout: 0 });

  private constructor(
    private readonly options: AudioServiceOptions,
    readonly temp: TempFiles,
  ) {
  }

  /**
   * Creates the upload folder and, when whisper models are configured, checks that the decoder and the
   * engine work. Returns the problems instead of a service when they do not: the caller refuses to start.
   */
  static async create(input: AudioServiceOptions): Promise<AudioService | { problems: string[] }> {
    const { configDir, models, logger } = input;
    const ffmpeg = input.config.ffmpeg.includes("/") ? resolveFrom(configDir, input.config.ffmpeg) : input.config.ffmpeg;
    const config = { ...input.config, ffmpeg, temp_dir: input.config.temp_dir === undefined ? undefined : resolveFrom(configDir, input.config.temp_dir) };
    const options = { ...input, config };
    if (models.size > 0) {
      const { problems, version } = await preflight(config.ffmpeg);
      if (problems.length > 0) return { problems };
      logger.debug({ decoder: version }, "audio decoder found");
    }
    for (const model of models.values()) {
      if (model.error) logger.error({ model: model.id }, model.error);
      if (model.ignored.length > 0) logger.warn({ model: model.id, parameters: model.ignored }, "whisper ignores these parameters");
    }
    return new AudioService(options, await TempFiles.create(config.temp_dir));
  }

  /** The whisper model a request names (id or alias); 404 for unknown names, 400 for a model that is not whisper. */
  resolve(name: string): Target {
    const entry = this.options.catalog.resolve(name);
    if (!entry) throw modelNotFound(name);
    const model = this.options.models.get(entry.id);
    if (!model) {
      const names = [...this.options.models.keys()];
      const offer = names.length > 0 ? ` Speech-to-text models here: ${names.join(", ")}.` : " No speech-to-text model is configured (audio.models).";
      throw invalidRequest(`Model '${entry.id}' is not a speech-to-text model.${offer}`, "model");
    }
    if (model.error) throw new GatewayError("service_unavailable", `Model '${entry.id}' is unavailable: ${model.error}`);
    return { entry, model };
  }

  /** Counts a request against its model's bound (decoding, waiting and running); call the returned function when it ends. */
  admit({ entry }: Target): () => void {
    const count = this.pending.get(entry.id) ?? 0;
    if (count >= this.options.config.max_queue) {
      throw new GatewayError("rate_limit_exceeded", `Too many transcriptions queued for '${entry.id}' (audio.max_queue ${this.options.config.max_queue}); try again shortly.`, {
        retryAfter: 5,
      });
    }
    this.pending.set(entry.id, count + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = (this.pending.get(entry.id) ?? 1) - 1;
      if (left === 0) this.pending.delete(entry.id);
      else this.pending.set(entry.id, left);
    };
  }

  /** Requests of a model that are decoding, waiting for its runner or running. */
  pendingFor(id: string): number {
    return this.pending.get(id) ?? 0;
  }

  decode(file: string, signal: AbortSignal): Promise<DecodedAudio> {
    const { ffmpeg, max_duration_s } = this.options.config;
    return decodeToPcm(file, { ffmpeg, maxDurationS: max_duration_s, signal });
  }

  /** Checks what only the model can tell (its languages) before any work is done. */
  check({ entry, model }: Target, request: AudioRequest): void {
    if (!model.multilingual && request.language !== undefined && request.language !== "en") {
      throw invalidRequest(`Model '${entry.id}' is English-only; it cannot transcribe language '${request.language}'.`, "language");
    }
  }

  async transcribe({ entry, model }: Target, request: AudioRequest, audio: DecodedAudio, signal: AbortSignal): Promise<Transcript> {
    const began = performance.now();
    const verbose = request.responseFormat === "verbose_json";
    const wantSegments = !verbose || request.granularities.size === 0 || request.granularities.has("segment");
    // OpenAI's translations carry no words.
    const wantWords = verbose && request.task === "transcribe" && request.granularities.has("word");
    const runnerRequest: RunnerRequest = {
      task: request.task,
      ...(request.language ? { language: request.language } : {}),
      ...(request.prompt ? { prompt: request.prompt } : {}),
      ...(request.temperature !== undefined ? { temperature: request.temperature } : {}),
      segments: wantSegments,
      pieces: wantWords,
    };
    const result = await this.run(entry, runnerRequest, audio, signal);
    const segments = wantSegments ? toSegments(result.segments, audio.duration) : undefined;
    const transcript: Transcript = {
      task: request.task,
      language: request.task === "translate" ? "en" : result.language || "en",
      duration: Math.round(audio.duration * 1000) / 1000,
      text: segments ? joinText(segments) : joinText(result.pieces),
      temperature: request.temperature ?? model.temperature,
      segments,
      words: wantWords ? toWords(result.pieces, audio.duration) : undefined,
    };
    this.options.bus.publish("transcription.completed", {
      model_id: entry.id,
      task: request.task,
      language: transcript.language,
      duration_s: transcript.duration,
      processing_ms: Math.round(performance.now() - began) + audio.decodeMs,
      decode_ms: audio.decodeMs,
      inference_ms: result.inference_ms,
    });
    return transcript;
  }

  private async run(entry: ModelEntry, request: RunnerRequest, audio: DecodedAudio, clientSignal: AbortSignal): Promise<RunnerResult> {
    const { lifecycle, config, logger } = this.options;
    const lease = await lifecycle.acquire(entry, { signal: clientSignal });
    const timeout = AbortSignal.timeout(config.timeout_s * 1000);
    const signal = AbortSignal.any([clientSignal, timeout]);
    let abandoned = false;
    try {
      const base = new URL(lease.baseUrl);
      const frame = encodeFrame(request, audio.pcm);
      const response = await this.agent.request({
        origin: base.origin,
        path: TRANSCRIBE_PATH,
        method: "POST",
        headers: { "content-type": "application/octet-stream", "content-length": String(frame.reduce((n, b) => n + b.length, 0)) },
        body: Readable.from(frame),
        signal,
      });
      const body = (await response.body.json()) as RunnerResult & { error?: { message?: string } };
      if (response.statusCode !== 200) {
        throw new GatewayError("upstream_error", `The whisper runner for '${entry.id}' failed: ${body.error?.message ?? `HTTP ${response.statusCode}`}`);
      }
      return body;
    } catch (error) {
      if (signal.aborted) {
        abandoned = true;
        if (timeout.aborted && !clientSignal.aborted) {
          logger.warn({ model: entry.id, timeout_s: config.timeout_s }, "transcription timed out; recycling the runner");
          throw new TranscriptionTimeout("service_unavailable", `The transcription did not finish within ${config.timeout_s} s (audio.timeout_s) and was stopped.`);
        }
        throw clientSignal.reason;
      }
      if (error instanceof GatewayError) throw error;
      throw new GatewayError("upstream_error", `The whisper runner for '${entry.id}' did not answer: ${(error as Error).message}`, { cause: error });
    } finally {
      // Asked first, so the lifecycle grants this runner to no one else before it is replaced.
      if (abandoned) lifecycle.stop(entry.id);
      lease.release();
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
    await this.temp.close();
  }
}
