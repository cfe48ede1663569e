import assert from "node:assert/strict";
import { test } from "node:test";
import { GatewayError } from "../errors/index.js";
import { parseAudioRequest } from "./request.js";

const rejects = (fields: Record<string, unknown>, param: string) =>
  assert.throws(
    () => parseAudioRequest(fields, "transcribe"),
    (e: unknown) => e instanceof GatewayError && e.statusCode === 400 && e.param === param,
  );

test("form fields (strings) and JSON fields (typed) give the same request", () => {
  const form = parseAudioRequest({ model: "whisper-1", temperature: "0.2", language: "German", response_format: "srt" }, "transcribe");
  const json = parseAudioRequest({ model: "whisper-1", temperature: 0.2, language: "de", response_format: "srt" }, "transcribe");
  assert.deepEqual(form, json);
  assert.equal(form.language, "de");
  assert.equal(form.responseFormat, "srt");
});

test("defaults: json, no language (auto), segment granularity implied", () => {
  const request = parseAudioRequest({ model: "m", language: "auto", unknown_field: 1 }, "translate");
  assert.equal(request.responseFormat, "json");
  assert.equal(request.language, undefined);
  assert.equal(request.task, "translate");
  assert.equal(request.granularities.size, 0);
});

test("timestamp_granularities with and without [], once, repeated, as an array or comma list", () => {
  const cases: Array<Record<string, unknown>> = [
    { "timestamp_granularities[]": ["word", "segment"] },
    { timestamp_granularities: ["word", "segment"] },
    { "timestamp_granularities[]": "word", timestamp_granularities: "segment" },
    { timestamp_granularities: "word,segment" },
  ];
  for (const fields of cases) {
    assert.deepEqual([...parseAudioRequest({ model: "m", ...fields }, "transcribe").granularities].sort(), ["segment", "word"]);
  }
});

test("bad fields are 400 naming the field", () => {
  rejects({}, "model");
  rejects({ model: "m", language: "klingon" }, "language");
  rejects({ model: "m", response_format: "xml" }, "response_format");
  rejects({ model: "m", response_format: "diarized_json" }, "response_format");
  rejects({ model: "m", temperature: "hot" }, "temperature");
  rejects({ model: "m", temperature: 1.5 }, "temperature");
  rejects({ model: "m", "timestamp_granularities[]": "char" }, "timestamp_granularities");
  rejects({ model: "m", stream: "true" }, "stream");
  rejects({ model: 42 }, "model");
});
