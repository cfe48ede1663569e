/**
 * Any upload to 16 kHz mono 16-bit PCM with ffmpeg (wav of any rate, depth and channel count, mp3,
 * ogg/opus, flac, m4a/aac, webm, ...). ffmpeg runs as a child process, so decoding costs the gateway's
 * event loop nothing but the pipe reads.
 *
 * The upload is hostile input, so ffmpeg may only open the one local file we name (`-protocol_whitelist
 * file`) with an audio container demuxer (`-format_whitelist`): no playlist, concat list or network
 * source inside an upload can make it read a path or URL of the client's choosing. Output is bounded by
 * `max_duration_s`, so a small file that decodes to hours (a decompression bomb) is refused.
 */
import { spawn } from "node:child_process";
import { GatewayError, invalidRequest } from "../errors/index.js";
import { BYTES_PER_SAMPLE, SAMPLE_RATE } from "./runner/protocol.js";

/** Demuxers of the audio containers we accept (ffmpeg names; "mov" covers mp4/m4a, "matroska" webm). */
const FORMATS = ["wav", "w64", "mp3", "ogg", "flac", "mov", "matroska", "webm", "aac", "aiff", "caf", "amr", "au"].join(",");

export interface DecodedAudio {
  /** 16 kHz mono s16le, in the chunks ffmpeg wrote. */
  pcm: Buffer[];
  bytes: number;
  /** Seconds. */
  duration: number;
  decodeMs: number;
}

export interface DecodeOptions {
  ffmpeg: string;
  maxDurationS: number;
  signal: AbortSignal;
}

const MIN_DURATION_S = 0.1;
const STDERR_KEEP = 4096;

export function decodeToPcm(file: string, { ffmpeg, maxDurationS, signal }: DecodeOptions): Promise<DecodedAudio> {
  const began = performance.now();
  const maxBytes = Math.ceil(maxDurationS * SAMPLE_RATE) * BYTES_PER_SAMPLE;
  const args = [
    "-nostdin", "-hide_banner", "-loglevel", "error",
    "-protocol_whitelist", "file", "-format_whitelist", FORMATS,
    "-i", file,
    "-map", "0:a:0", "-vn", "-sn", "-dn",
    "-ac", "1", "-ar", String(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "s16le", "pipe:1",
  ];
  return new Promise<DecodedAudio>((resolve, reject) => {
    signal.throwIfAborted();
    const child = spawn(ffmpeg, args, { stdio: ["ignore", "pipe", "pipe"] });
    const pcm: Buffer[] = [];
    let bytes = 0;
    let stderr = "";
    let failure: unknown;
    const fail = (error: unknown) => {
      failure ??= error;
      child.kill("SIGKILL");
    };
    const onAbort = () => fail(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    child.stdout.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > maxBytes) {
        fail(invalidRequest(`The audio is longer than the ${maxDurationS} s this server accepts (audio.max_duration_s).`, "file"));
        return;
      }
      pcm.push(chunk);
    });
    child.stderr.setEncoding("utf8").on("data", (text: string) => {
      stderr = (stderr + text).slice(-STDERR_KEEP);
    });
    child.once("error", (error: NodeJS.ErrnoException) => {
      signal.removeEventListener("abort", onAbort);
      reject(failure ?? new GatewayError("server_error", `The audio decoder '${ffmpeg}' could not be started: ${error.message}`, { cause: error }));
    });
    child.once("close", (code) => {
      signal.removeEventListener("abort", onAbort);
      if (failure !== undefined) return reject(failure);
      if (code !== 0) {
        // The client sees why, but never our temp path.
        const reason = stderr.replaceAll(file, "the upload").trim().split("\n").filter(Boolean).at(-1) ?? `ffmpeg exited with code ${code}`;
        return reject(invalidRequest(`The file could not be decoded as audio: ${reason}`, "file"));
      }
      const usable = bytes - (bytes % BYTES_PER_SAMPLE);
      const duration = usable / BYTES_PER_SAMPLE / SAMPLE_RATE;
      if (usable === 0) return reject(invalidRequest("The file contains no audio.", "file"));
      if (duration < MIN_DURATION_S) return reject(invalidRequest(`Audio file is too short. Minimum audio length is ${MIN_DURATION_S} seconds.`, "file"));
      if (usable !== bytes) {
        const last = pcm.at(-1);
        if (last) pcm[pcm.length - 1] = last.subarray(0, last.length - (bytes - usable));
      }
      resolve({ pcm, bytes: usable, duration, decodeMs: Math.round(performance.now() - began) });
    });
  });
}
