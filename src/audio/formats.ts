/**
 * A transcript in each response format (CLIENT_CONFORMANCE.md §3.5, OpenAI's shapes): json, text, srt,
 * vtt and verbose_json. Pure functions of the engine's output, so every format is tested without audio.
 */
import { deflateSync } from "node:zlib";
import { languageName } from "./languages.js";
import type { TimedText } from "./runner/protocol.js";

export const RESPONSE_FORMATS = ["json", "text", "srt", "verbose_json", "vtt"] as const;
export type ResponseFormat = (typeof RESPONSE_FORMATS)[number];
export type Task = "transcribe" | "translate";

export interface Segment {
  id: number;
  /** Seconds. */
  start: number;
  end: number;
  /** As whisper wrote it, usually with a leading space (" Hello world."), as OpenAI returns it. */
  text: string;
}

export interface Word {
  word: string;
  start: number;
  end: number;
}

export interface Transcript {
  task: Task;
  /** Whisper language code of the output text ("en" for every translation). */
  language: string;
  /** Seconds of audio. */
  duration: number;
  text: string;
  /** The temperature decoding started at. */
  temperature: number;
  /** undefined when not asked for (verbose_json with word granularity only). */
  segments: Segment[] | undefined;
  /** Only with word granularity. */
  words: Word[] | undefined;
}

const seconds = (ms: number, duration: number) => Math.round(Math.min(Math.max(ms, 0) / 1000, duration) * 1000) / 1000;

/**
 * Whisper segments with times in seconds, clamped to the audio: a random or confused model may stamp
 * a segment past the end, and a subtitle must not outlast its audio.
 */
export function toSegments(raw: readonly TimedText[], duration: number): Segment[] {
  return raw
    .map((s, id) => {
      const end = seconds(s.t1, duration);
      return { id, start: Math.min(seconds(s.t0, duration), end), end, text: s.text };
    })
    .filter((s) => s.text.trim() !== "")
    .map((s, id) => ({ ...s, id }));
}

// Characters that are not part of a word: OpenAI's words carry no surrounding punctuation.
const EDGE_PUNCTUATION = /^[\p{P}\p{S}\s]+|[\p{P}\p{S}\s]+$/gu;

/**
 * Words from token pieces (whisper's tokens with their own timestamps): a piece that starts with a space
 * starts a word, any other continues the current one ("Hel" + "lo" + ","). Surrounding punctuation is
 * dropped; a word that is only punctuation disappears.
 */
export function toWords(pieces: readonly TimedText[], duration: number): Word[] {
  const words: Word[] = [];
  let current: { text: string; t0: number; t1: number } | undefined;
  const flush = () => {
    if (!current) return;
    const word = current.text.replace(EDGE_PUNCTUATION, "");
    if (word !== "") {
      const end = seconds(current.t1, duration);
      words.push({ word, start: Math.min(seconds(current.t0, duration), end), end });
    }
    current = undefined;
  };
  for (const piece of pieces) {
    if (piece.text === "") continue;
    if (!current || /^\s/.test(piece.text)) {
      flush();
      current = { text: piece.text, t0: piece.t0, t1: piece.t1 };
    } else {
      current.text += piece.text;
      current.t1 = piece.t1;
    }
  }
  flush();
  return words;
}

export const joinText = (parts: ReadonlyArray<{ text: string }>): string => parts.map((p) => p.text).join("").trim();

/** zlib ratio of the text, as OpenAI's whisper computes it (a high value means repetitive output). */
function compressionRatio(text: string): number {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length === 0) return 0;
  return Math.round((bytes.length / deflateSync(bytes).length) * 1000) / 1000;
}

function timestamp(secondsValue: number, separator: "," | "."): string {
  const totalMs = Math.round(secondsValue * 1000);
  const ms = totalMs % 1000;
  const s = Math.floor(totalMs / 1000) % 60;
  const m = Math.floor(totalMs / 60_000) % 60;
  const h = Math.floor(totalMs / 3_600_000);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(h)}:${two(m)}:${two(s)}${separator}${String(ms).padStart(3, "0")}`;
}

export interface Rendered {
  contentType: string;
  body: string;
}

const TEXT_PLAIN = "text/plain; charset=utf-8";
const JSON_TYPE = "application/json; charset=utf-8";

export function render(t: Transcript, format: ResponseFormat): Rendered {
  const segments = t.segments ?? [];
  const usage = { type: "duration", seconds: Math.ceil(t.duration) };
  switch (format) {
    case "text":
      return { contentType: TEXT_PLAIN, body: `${t.text}\n` };
    case "srt":
      return {
        contentType: TEXT_PLAIN,
        body: segments.map((s, i) => `${i + 1}\n${timestamp(s.start, ",")} --> ${timestamp(s.end, ",")}\n${s.text.trim()}\n\n`).join(""),
      };
    case "vtt":
      return {
        contentType: TEXT_PLAIN,
        body: `WEBVTT\n\n${segments.map((s) => `${timestamp(s.start, ".")} --> ${timestamp(s.end, ".")}\n${s.text.trim()}\n\n`).join("")}`,
      };
    case "json":
      // OpenAI's {text} plus what the API reference promises: language code, duration, plain segments.
      return {
        contentType: JSON_TYPE,
        body: JSON.stringify({
          text: t.text,
          language: t.language,
          duration: t.duration,
          segments: segments.map((s) => ({ start: s.start, end: s.end, text: s.text.trim() })),
          usage,
        }),
      };
    case "verbose_json":
      return {
        contentType: JSON_TYPE,
        body: JSON.stringify({
          task: t.task,
          language: languageName(t.language),
          duration: t.duration,
          text: t.text,
          ...(t.segments
            ? {
                segments: t.segments.map((s) => ({
                  id: s.id,
                  // Mel frames (10 ms) of the segment's start; whisper.node does not report its window.
                  seek: Math.round(s.start * 100),
                  start: s.start,
                  end: s.end,
                  text: s.text,
                  // whisper.node 1.1.3 does not expose token ids or probabilities.
                  tokens: [],
                  temperature: t.temperature,
                  avg_logprob: 0,
                  compression_ratio: compressionRatio(s.text),
                  no_speech_prob: 0,
                })),
              }
            : {}),
          ...(t.words ? { words: t.words } : {}),
          usage,
        }),
      };
    default: {
      const unreachable: never = format;
      throw new Error(`unknown format ${String(unreachable)}`);
    }
  }
}
