import assert from "node:assert/strict";
import { test } from "node:test";
import { joinText, render, type Transcript, toSegments, toWords } from "./formats.js";

const segments = toSegments(
  [
    { text: " Hello world.", t0: 0, t1: 2500 },
    { text: " Second one,", t0: 2500, t1: 3723_456 },
  ],
  3723.5,
);

const transcript: Transcript = {
  task: "transcribe",
  language: "en",
  duration: 3723.5,
  text: joinText(segments),
  temperature: 0,
  segments,
  words: [{ word: "Hello", start: 0, end: 0.6 }],
};

test("text, srt and vtt are text/plain in OpenAI's exact layout (hours, commas vs dots)", () => {
  assert.deepEqual(render(transcript, "text"), { contentType: "text/plain; charset=utf-8", body: "Hello world. Second one,\n" });
  assert.equal(
    render(transcript, "srt").body,
    "1\n00:00:00,000 --> 00:00:02,500\nHello world.\n\n2\n00:00:02,500 --> 01:02:03,456\nSecond one,\n\n",
  );
  assert.equal(render(transcript, "vtt").body, "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello world.\n\n00:00:02.500 --> 01:02:03.456\nSecond one,\n\n");
  assert.equal(render(transcript, "srt").contentType, "text/plain; charset=utf-8");
  assert.equal(render({ ...transcript, segments: [], text: "" }, "vtt").body, "WEBVTT\n\n");
});

test("json carries text, language code, duration, plain segments and usage", () => {
  const rendered = render(transcript, "json");
  assert.equal(rendered.contentType, "application/json; charset=utf-8");
  assert.deepEqual(JSON.parse(rendered.body), {
    text: "Hello world. Second one,",
    language: "en",
    duration: 3723.5,
    segments: [
      { start: 0, end: 2.5, text: "Hello world." },
      { start: 2.5, end: 3723.456, text: "Second one," },
    ],
    usage: { type: "duration", seconds: 3724 },
  });
});

test("verbose_json: task, language name, segments with every OpenAI field, words only when asked", () => {
  const body = JSON.parse(render(transcript, "verbose_json").body);
  assert.equal(body.task, "transcribe");
  assert.equal(body.language, "english");
  assert.equal(body.duration, 3723.5);
  assert.deepEqual(Object.keys(body.segments[0]).sort(), ["avg_logprob", "compression_ratio", "end", "id", "no_speech_prob", "seek", "start", "temperature", "text", "tokens"]);
  assert.equal(body.segments[0].text, " Hello world.", "segment text keeps whisper's leading space, as OpenAI's does");
  assert.equal(body.segments[1].id, 1);
  assert.ok(body.segments[0].compression_ratio > 0);
  assert.deepEqual(body.words, [{ word: "Hello", start: 0, end: 0.6 }]);
  const noWords = JSON.parse(render({ ...transcript, words: undefined }, "verbose_json").body);
  assert.equal("words" in noWords, false);
  const wordsOnly = JSON.parse(render({ ...transcript, segments: undefined }, "verbose_json").body);
  assert.equal("segments" in wordsOnly, false);
  const translation = JSON.parse(render({ ...transcript, task: "translate" }, "verbose_json").body);
  assert.equal(translation.task, "translate");
});

test("segments are clamped to the audio and empty ones dropped", () => {
  const clamped = toSegments(
    [
      { text: " a", t0: 80, t1: 16_420 },
      { text: "   ", t0: 16_420, t1: 17_000 },
      { text: " b", t0: 20_000, t1: 30_000 },
    ],
    3,
  );
  assert.deepEqual(clamped, [
    { id: 0, start: 0.08, end: 3, text: " a" },
    { id: 1, start: 3, end: 3, text: " b" },
  ]);
});

test("words: pieces merge until the next leading space; punctuation is stripped, not a word", () => {
  const words = toWords(
    [
      { text: " Hel", t0: 0, t1: 200 },
      { text: "lo", t0: 200, t1: 400 },
      { text: ",", t0: 400, t1: 450 },
      { text: " world", t0: 500, t1: 900 },
      { text: ".", t0: 900, t1: 950 },
      { text: " -", t0: 950, t1: 960 },
      { text: " don't", t0: 1000, t1: 1400 },
    ],
    10,
  );
  assert.deepEqual(words, [
    { word: "Hello", start: 0, end: 0.45 },
    { word: "world", start: 0.5, end: 0.95 },
    { word: "don't", start: 1, end: 1.4 },
  ]);
});
