/**
 * What Ollama says about a model, derived from our catalogue entry and its GGUF header: `details`, digest,
 * sizes, capabilities, `model_info`, `template`, `parameters` and `modelfile`. Nothing here names a file
 * or folder: clients see catalogue names only.
 */
import { createHash } from "node:crypto";
import type { ModelEntry } from "../../catalog/catalog.js";
import { contextSize } from "../../lifecycle/memory.js";

export interface OllamaDetails {
  parent_model: string;
  format: string;
  family: string;
  families: string[];
  parameter_size: string;
  quantization_level: string;
}

/** RFC 3339 with fractional seconds and a numeric zone (Go's RFC3339Nano; Python's fromisoformat reads it). */
export function rfc3339(ms: number): string {
  const offsetMin = -new Date(ms).getTimezoneOffset();
  const local = new Date(ms + offsetMin * 60_000).toISOString().slice(0, 23);
  const sign = offsetMin < 0 ? "-" : "+";
  const abs = Math.abs(offsetMin);
  return `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}

/** Ollama keeps a model "forever" by expiring it MaxInt64 nanoseconds from now (about 292 years). */
export const FOREVER_MS = 9_223_372_036_854;

/** Ollama's format.HumanNumber as its tags show it: 8.0B, 7.6B, 494.03M, 128K. */
export function parameterSize(count: number): string {
  const fmt = (value: number, unit: string, digits: number) => (Number.isInteger(value) ? `${value}${unit}` : `${value.toFixed(digits)}${unit}`);
  if (count >= 1e12) return fmt(count / 1e12, "T", 1);
  if (count >= 1e9) return fmt(count / 1e9, "B", 1);
  if (count >= 1e6) return fmt(count / 1e6, "M", 2);
  if (count >= 1e3) return `${Math.round(count / 1e3)}K`;
  return String(Math.max(0, Math.round(count)));
}

/** A stable 64-hex id for the model's content (the file's identity, not Ollama's manifest hash). */
export function digest(entry: ModelEntry): string {
  const identity = [entry.path ?? entry.url ?? entry.command ?? entry.id, entry.gguf?.sizeBytes ?? 0, entry.gguf?.modifiedMs ?? 0].join("\0");
  return createHash("sha256").update(identity).digest("hex");
}

export function details(entry: ModelEntry): OllamaDetails {
  const gguf = entry.gguf;
  const family = gguf?.architecture ?? "";
  return {
    parent_model: "",
    format: gguf ? "gguf" : "",
    family,
    families: family === "" ? [] : [family],
    parameter_size: gguf && gguf.parameterCount > 0 ? parameterSize(gguf.parameterCount) : "",
    quantization_level: gguf?.quantization ?? "",
  };
}

export const modifiedMs = (entry: ModelEntry): number => entry.gguf?.modifiedMs ?? entry.created * 1000;
export const sizeBytes = (entry: ModelEntry): number => entry.gguf?.sizeBytes ?? 0;

/** A configured multimodal projector (llama-server's `mmproj`) is what makes a model take images. */
export const hasVision = (entry: ModelEntry): boolean =>
  entry.parameters["mmproj"] !== undefined && entry.parameters["mmproj"] !== null && entry.parameters["mmproj"] !== false;

/** Jinja chat templates that take a `tools` list render tool definitions: the model was trained for tools. */
export const templateHasTools = (entry: ModelEntry): boolean => /\btools\b/.test(entry.gguf?.chatTemplate ?? "");

const templateThinks = (entry: ModelEntry): boolean => /<think>|enable_thinking|reasoning_content/.test(entry.gguf?.chatTemplate ?? "");

export interface FimFormat {
  prefix: string;
  suffix: string;
  middle: string;
}

/**
 * Fill-in-the-middle, for any model whose GGUF names its prefix, suffix and middle tokens: the prompt is
 * built as text from those tokens (prefix-suffix-middle order, as llama.cpp's infill), and both backends
 * parse special tokens in a raw completion prompt. CodeLlama's tokens are the one family written with
 * spaces around them, as its reference code does.
 */
export function fimFormat(entry: ModelEntry): FimFormat | undefined {
  const tokens = entry.gguf?.specialTokens;
  if (!tokens?.fimPrefix || !tokens.fimSuffix || !tokens.fimMiddle || entry.gguf?.isEmbedding) return undefined;
  // CodeLlama's format is "<PRE> {prefix} <SUF>{suffix} <MID>". Its own vocabulary spells the tokens
  // "▁<PRE>", "▁<SUF>", "▁<MID>": SentencePiece's space mark is part of the token, so only the space
  // after the prefix token is text.
  if (tokens.fimPrefix === "<PRE>") return { prefix: "<PRE> ", suffix: ` ${tokens.fimSuffix}`, middle: ` ${tokens.fimMiddle}` };
  if (tokens.fimPrefix === "▁<PRE>") return { prefix: "▁<PRE> ", suffix: tokens.fimSuffix, middle: tokens.fimMiddle };
  return { prefix: tokens.fimPrefix, suffix: tokens.fimSuffix, middle: tokens.fimMiddle };
}

export function fimPrompt(format: FimFormat, prompt: string, suffix: string): string {
  return `${format.prefix}${prompt}${format.suffix}${suffix}${format.middle}`;
}

/** Ollama's capability names (types/model/capability.go), derived from the model itself. */
export function capabilities(entry: ModelEntry): string[] {
  if (entry.gguf?.isEmbedding) return ["embedding"];
  const out = ["completion"];
  if (templateHasTools(entry)) out.push("tools");
  if (fimFormat(entry)) out.push("insert");
  if (hasVision(entry)) out.push("vision");
  if (templateThinks(entry)) out.push("thinking");
  return out;
}

/**
 * `template`: the model's own (Jinja) chat template, which is what the backend applies. Models we can do
 * fill-in-the-middle with get Ollama's `.Suffix` branch in front, which is how Continue detects FIM.
 */
export function template(entry: ModelEntry): string {
  const chat = entry.gguf?.chatTemplate ?? "{{ .Prompt }}";
  const fim = fimFormat(entry);
  if (!fim) return chat;
  return `{{- if .Suffix }}${fim.prefix}{{ .Prompt }}${fim.suffix}{{ .Suffix }}${fim.middle}{{- else }}${chat}{{- end }}`;
}

/** Go's `%-30s %#v`: every line matches Continue's /^(\S+)\s+((?:".*")|\S+)$/. Never empty. */
export function parameters(entry: ModelEntry): string {
  const lines: Array<[string, string | number]> = [["num_ctx", contextSize(entry)]];
  return lines.map(([key, value]) => `${key.padEnd(30)} ${typeof value === "string" ? JSON.stringify(value) : value}`).join("\n");
}

/** A string metadata value that looks like a local path is left out: clients never see the file system. */
const looksLikePath = (value: string, entry: ModelEntry): boolean =>
  /^(\/|~\/|[A-Za-z]:\\|\\\\)/.test(value) || (entry.path !== undefined && value.includes(entry.path));

/**
 * `model_info`: the GGUF header's scalar keys, without `general.name` and the chat template (as Ollama), and
 * `<arch>.context_length` set to the context the backend really runs with, so clients such as Copilot size
 * their prompts to fit it. Always an object.
 */
export function modelInfo(entry: ModelEntry, requestedName?: string): Record<string, string | number | boolean> {
  const gguf = entry.gguf;
  if (!gguf) return requestedName === undefined ? {} : { "general.basename": requestedName };
  const info: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(gguf.flat)) {
    if (k === "general.name" || k === "tokenizer.chat_template") continue;
    if (typeof v === "string" && looksLikePath(v, entry)) continue;
    info[k] = v;
  }
  info["general.architecture"] = gguf.architecture;
  info["general.parameter_count"] = gguf.parameterCount;
  info[`${gguf.architecture}.context_length`] = contextSize(entry);
  if (requestedName !== undefined) info["general.basename"] = requestedName;
  return info;
}

/** A Modelfile that names the model, never its file. */
export function modelfile(name: string, entry: ModelEntry): string {
  const lines = [
    '# Modelfile generated by "ollama show"',
    "# To build a new Modelfile based on this, replace FROM with:",
    `# FROM ${name}`,
    "",
    `FROM ${name}`,
    `TEMPLATE """${template(entry)}"""`,
    ...parameters(entry)
      .split("\n")
      .map((line) => `PARAMETER ${line.replace(/\s+/, " ")}`),
  ];
  if (entry.gguf?.license) lines.push(`LICENSE """${entry.gguf.license}"""`);
  return `${lines.join("\n")}\n`;
}
