/**
 * What the gateway and a whisper runner say to each other. The runner is an HTTP server on a port the
 * gateway picked (like every backend, so the lifecycle starts, health-checks, measures and stops it the
 * same way); besides `GET /health` it serves one route:
 *
 *   POST /transcribe   body = u32 LE length of the JSON options, the options, then 16 kHz mono s16le PCM
 *                      → 200 RunnerResult | 4xx/5xx {"error":{"message",...}}
 *
 * Audio crosses as decoded samples, never as a path or URL, so nothing a client chose reaches the engine.
 */

export const TRANSCRIBE_PATH = "/transcribe";
export const SAMPLE_RATE = 16000;
export const BYTES_PER_SAMPLE = 2;

/** How the runner is started: everything it needs, passed as one base64 JSON argument. */
export interface RunnerSpec {
  modelPath: string;
  /** false for English-only models (n_vocab 51864): they always get language "en". */
  multilingual: boolean;
  threads: number;
  flashAttn: boolean;
  /** Model defaults (from config parameters) that a request can override. */
  defaults: EngineDefaults;
}

export interface EngineDefaults {
  language?: string;
  prompt?: string;
  temperature?: number;
  temperatureInc?: number;
  bestOf?: number;
  maxContext?: number;
  wordThold?: number;
  nProcessors?: number;
}

export interface RunnerRequest {
  task: "transcribe" | "translate";
  /** A whisper language code; undefined = the model default, else auto-detect. */
  language?: string;
  prompt?: string;
  temperature?: number;
  /** Whisper segments (a normal pass). */
  segments: boolean;
  /** Token pieces with timestamps (a second pass with token timestamps, one piece per segment). */
  pieces: boolean;
}

/** Times in ms from the start of the audio, as whisper.node reports them. */
export interface TimedText {
  text: string;
  t0: number;
  t1: number;
}

export interface RunnerResult {
  /** The language whisper decoded in (detected, or the one it was given). */
  language: string;
  segments: TimedText[];
  pieces: TimedText[];
  /** Time spent in whisper itself. */
  inference_ms: number;
}

export function encodeFrame(request: RunnerRequest, pcm: readonly Buffer[]): Buffer[] {
  const json = Buffer.from(JSON.stringify(request), "utf8");
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length, 0);
  return [length, json, ...pcm];
}

/**
 * Reads a frame as it arrives. The PCM goes straight into its own ArrayBuffer (whisper.node wants one),
 * sized from the Content-Length, so a long recording is never held twice.
 */
export async function readFrame(body: AsyncIterable<Uint8Array>, totalLength: number): Promise<{ request: RunnerRequest; pcm: ArrayBuffer }> {
  let head = Buffer.alloc(0);
  let request: RunnerRequest | undefined;
  let pcm: Uint8Array | undefined;
  let filled = 0;
  const take = (chunk: Uint8Array) => {
    if (!pcm) throw new Error("frame header not read yet");
    if (filled + chunk.length > pcm.length) throw new Error("frame longer than its Content-Length");
    pcm.set(chunk, filled);
    filled += chunk.length;
  };
  for await (const chunk of body) {
    if (pcm) {
      take(chunk);
      continue;
    }
    head = Buffer.concat([head, chunk]);
    if (head.length < 4) continue;
    const jsonLength = head.readUInt32LE(0);
    if (head.length < 4 + jsonLength) continue;
    request = JSON.parse(head.subarray(4, 4 + jsonLength).toString("utf8")) as RunnerRequest;
    const pcmLength = totalLength - 4 - jsonLength;
    if (pcmLength < 0 || pcmLength % BYTES_PER_SAMPLE !== 0) throw new Error("PCM length is not a whole number of 16-bit samples");
    pcm = new Uint8Array(pcmLength);
    take(head.subarray(4 + jsonLength));
  }
  if (!request || !pcm || filled !== pcm.length) throw new Error("frame shorter than its Content-Length");
  return { request, pcm: pcm.buffer as ArrayBuffer };
}
