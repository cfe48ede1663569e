/**
 * Audio for tests, made on the spot: WAV files written by code (any rate, bit depth and channel count)
 * and the compressed formats converted from them with the same tools the project installs (ffmpeg, sox;
 * scripts/setup-system.mjs --test). Deterministic, so a transcript can be compared across formats.
 */
import { execFile } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { writeFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export type SampleFormat = "u8" | "s16" | "s24" | "s32" | "f32";

export interface WavOptions {
  rate?: number;
  channels?: number;
  format?: SampleFormat;
  seconds?: number;
  seed?: number;
}

/** A chirp over noise: broadband enough to reach every mel band, the same for the same arguments. */
export function signal(seconds: number, rate: number, seed = 7): Float32Array {
  const n = Math.round(seconds * rate);
  const out = new Float32Array(n);
  let state = seed >>> 0;
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const t = i / rate;
    const noise = (state / 4294967296 - 0.5) * 0.3;
    // The envelope makes syllable-like bursts, so the audio is not one steady tone.
    const envelope = 0.5 + 0.5 * Math.sin(2 * Math.PI * 3 * t);
    out[i] = 0.5 * envelope * Math.sin(2 * Math.PI * (220 + 40 * t) * t) + noise;
  }
  return out;
}

export function wav({ rate = 16000, channels = 1, format = "s16", seconds = 11, seed = 7 }: WavOptions = {}): Buffer {
  const samples = signal(seconds, rate, seed);
  const bytes = { u8: 1, s16: 2, s24: 3, s32: 4, f32: 4 }[format];
  const data = Buffer.alloc(samples.length * channels * bytes);
  let offset = 0;
  for (const sample of samples) {
    for (let c = 0; c < channels; c++) {
      // Channels differ a little, so a downmix is not a copy of one of them.
      const v = Math.max(-1, Math.min(1, sample * (1 - 0.1 * c)));
      switch (format) {
        case "u8":
          data.writeUInt8(Math.round(v * 127 + 128), offset);
          break;
        case "s16":
          data.writeInt16LE(Math.round(v * 32767), offset);
          break;
        case "s24":
          data.writeIntLE(Math.round(v * 8388607), offset, 3);
          break;
        case "s32":
          data.writeInt32LE(Math.round(v * 2147483647), offset);
          break;
        case "f32":
          data.writeFloatLE(v, offset);
          break;
      }
      offset += bytes;
    }
  }
  const header = Buffer.alloc(44);
  header.write("RIFF", 0, "latin1");
  header.writeUInt32LE(36 + data.length, 4);
  header.write("WAVE", 8, "latin1");
  header.write("fmt ", 12, "latin1");
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(format === "f32" ? 3 : 1, 20);
  header.writeUInt16LE(channels, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * channels * bytes, 28);
  header.writeUInt16LE(channels * bytes, 32);
  header.writeUInt16LE(bytes * 8, 34);
  header.write("data", 36, "latin1");
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]);
}

export function onPath(command: string): boolean {
  return (process.env["PATH"] ?? "").split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Tools the audio tests make their files with; scripts/setup-system.mjs --test installs them. */
export const TEST_TOOLS = ["ffmpeg", "sox", "espeak-ng"] as const;

export interface EncodedSet {
  wav: string;
  mp3: string;
  oggOpus: string;
  oggVorbis: string;
  flac: string;
  m4a: string;
  webm: string;
  speech: string;
}

/** Writes `source` as WAV into `dir` and encodes it into every compressed format we accept; speech comes from espeak-ng. */
export async function encodeAll(dir: string, source: Buffer): Promise<EncodedSet> {
  const path = (name: string) => join(dir, name);
  const wavPath = path("source.wav");
  await writeFile(wavPath, source);
  const ffmpeg = (out: string, ...codec: string[]) => run("ffmpeg", ["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", wavPath, ...codec, out]);
  const speechRaw = path("speech-raw.wav");
  await Promise.all([
    ffmpeg(path("a.mp3"), "-c:a", "libmp3lame", "-b:a", "64k"),
    ffmpeg(path("a.opus.ogg"), "-c:a", "libopus", "-b:a", "32k"),
    ffmpeg(path("a.m4a"), "-c:a", "aac", "-b:a", "64k"),
    ffmpeg(path("a.webm"), "-c:a", "libopus", "-b:a", "32k"),
    run("sox", [wavPath, path("a.flac")]),
    run("sox", [wavPath, path("a.vorbis.ogg")]),
    run("espeak-ng", ["-v", "en-us", "-w", speechRaw, "Hello world. This is a test of the transcription service."]).then(() =>
      run("sox", [speechRaw, "-r", "16000", "-c", "1", "-b", "16", path("speech.wav")]),
    ),
  ]);
  return {
    wav: wavPath,
    mp3: path("a.mp3"),
    oggOpus: path("a.opus.ogg"),
    oggVorbis: path("a.vorbis.ogg"),
    flac: path("a.flac"),
    m4a: path("a.m4a"),
    webm: path("a.webm"),
    speech: path("speech.wav"),
  };
}
