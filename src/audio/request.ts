/**
 * The fields of a transcription or translation request, from a form (every value a string, arrays as
 * repeated `key[]`) or a JSON body (typed values), checked into one shape. Unknown fields are ignored,
 * as OpenAI clients send some we do not use.
 */
import { invalidRequest } from "../errors/index.js";
import { RESPONSE_FORMATS, type ResponseFormat, type Task } from "./formats.js";
import { languageCode } from "./languages.js";

export type Granularity = "segment" | "word";

export interface AudioRequest {
  task: Task;
  model: string;
  /** Whisper language code; undefined = the model's default, else auto-detect. */
  language: string | undefined;
  prompt: string | undefined;
  temperature: number | undefined;
  responseFormat: ResponseFormat;
  granularities: Set<Granularity>;
}

const optionalString = (fields: Record<string, unknown>, key: string): string | undefined => {
  const value = fields[key];
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") throw invalidRequest(`'${key}' must be a string.`, key);
  return value;
};

/** openai-node sends `timestamp_granularities[]`; curl users write either spelling, once or repeated. */
function granularities(fields: Record<string, unknown>): Set<Granularity> {
  const raw = [fields["timestamp_granularities"], fields["timestamp_granularities[]"]].flatMap((v) => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v]));
  const values = raw.flatMap((v) => (typeof v === "string" ? v.split(",").map((s) => s.trim()).filter(Boolean) : [v]));
  const result = new Set<Granularity>();
  for (const value of values) {
    if (value !== "segment" && value !== "word") {
      throw invalidRequest(`'timestamp_granularities' accepts 'segment' and 'word', got ${JSON.stringify(value)}.`, "timestamp_granularities");
    }
    result.add(value);
  }
  return result;
}

export function parseAudioRequest(fields: Record<string, unknown>, task: Task): AudioRequest {
  const model = optionalString(fields, "model");
  if (!model) throw invalidRequest("'model' is required.", "model");

  const languageField = optionalString(fields, "language");
  let language: string | undefined;
  if (languageField !== undefined && languageField !== "auto") {
    language = languageCode(languageField);
    if (!language) throw invalidRequest(`Unknown language '${languageField}'; use an ISO-639-1 code such as 'en' or 'de'.`, "language");
  }

  const format = optionalString(fields, "response_format") ?? "json";
  if (!(RESPONSE_FORMATS as readonly string[]).includes(format)) {
    const hint = format === "diarized_json" ? " (speaker diarization is not supported by whisper models)" : "";
    throw invalidRequest(`'response_format' must be one of ${RESPONSE_FORMATS.join(", ")}; got '${format}'${hint}.`, "response_format");
  }

  const rawTemperature = fields["temperature"];
  let temperature: number | undefined;
  if (rawTemperature !== undefined && rawTemperature !== null && rawTemperature !== "") {
    temperature = typeof rawTemperature === "number" ? rawTemperature : typeof rawTemperature === "string" ? Number(rawTemperature) : NaN;
    if (!Number.isFinite(temperature) || temperature < 0 || temperature > 1) throw invalidRequest("'temperature' must be a number between 0 and 1.", "temperature");
  }

  const stream = fields["stream"];
  if (stream === true || stream === "true") throw invalidRequest("Streaming transcriptions are not supported for whisper models; send the request without 'stream'.", "stream");

  return {
    task,
    model,
    language,
    prompt: optionalString(fields, "prompt"),
    temperature,
    responseFormat: format as ResponseFormat,
    granularities: granularities(fields),
  };
}
