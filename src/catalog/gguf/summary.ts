/**
 * Parses a GGUF header into a GgufSummary with Hugging Face's `@huggingface/gguf` (well kept,
 * header-only; importing node-llama-cpp in the gateway would cost ~37 MB). Runs in the reader's worker
 * thread (metadata.ts), never in the gateway's own heap: a header holds the whole vocabulary (32,000 to
 * 256,000 strings, with as many scores and types), which would otherwise stay in the gateway's RSS.
 */
import { GGMLFileQuantizationType, gguf } from "@huggingface/gguf";
import type { GgufSummary, SpecialTokens } from "./metadata.js";

const EMBEDDING_ARCHITECTURES = new Set(["bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "t5encoder", "modern-bert", "neo-bert"]);

export async function summarizeGguf(path: string, sizeBytes: number, modifiedMs: number): Promise<GgufSummary> {
  const parsed = await gguf(path, { allowLocalFile: true, computeParametersCount: true });
  const meta = parsed.metadata as unknown as Record<string, unknown>;
  const architecture = String(meta["general.architecture"] ?? "unknown");
  const archKey = (key: string) => toNumber(meta[`${architecture}.${key}`]);
  const fileType = toNumber(meta["general.file_type"]);
  const poolingType = archKey("pooling_type");
  return {
    architecture,
    name: optionalString(meta["general.name"]),
    basename: optionalString(meta["general.basename"]),
    contextLength: archKey("context_length"),
    embeddingLength: archKey("embedding_length"),
    blockCount: archKey("block_count"),
    headCount: archKey("attention.head_count"),
    headCountKv: archKey("attention.head_count_kv"),
    parameterCount: toNumber(meta["general.parameter_count"]) ?? parsed.parameterCount,
    quantization: quantizationName(fileType),
    fileType,
    sizeBytes,
    modifiedMs,
    chatTemplate: optionalString(meta["tokenizer.chat_template"]),
    isEmbedding: EMBEDDING_ARCHITECTURES.has(architecture) || (poolingType !== undefined && poolingType > 0),
    poolingType,
    license: optionalString(meta["general.license"]),
    vocabularySize: Array.isArray(meta["tokenizer.ggml.tokens"]) ? (meta["tokenizer.ggml.tokens"] as unknown[]).length : 0,
    specialTokens: specialTokens(meta),
    flat: scalarsOnly(meta),
  };
}

/**
 * Token ids from the header, as text from the vocabulary. llama.cpp's converters write FIM ids under two
 * generations of keys (`fim_pre_token_id`, older `prefix_token_id`); either names the same token.
 */
function specialTokens(meta: Record<string, unknown>): SpecialTokens {
  const vocabulary = meta["tokenizer.ggml.tokens"];
  const text = (...keys: string[]): string | undefined => {
    if (!Array.isArray(vocabulary)) return undefined;
    for (const key of keys) {
      const id = toNumber(meta[`tokenizer.ggml.${key}`]);
      const token: unknown = id === undefined ? undefined : vocabulary[id];
      if (typeof token === "string" && token.length > 0) return token;
    }
    return undefined;
  };
  const bosId = toNumber(meta["tokenizer.ggml.bos_token_id"]);
  const found: SpecialTokens = {
    bos: text("bos_token_id"),
    prependedBosId: meta["tokenizer.ggml.add_bos_token"] === true ? bosId : undefined,
    fimPrefix: text("fim_pre_token_id", "prefix_token_id"),
    fimSuffix: text("fim_suf_token_id", "suffix_token_id"),
    fimMiddle: text("fim_mid_token_id", "middle_token_id"),
  };
  return Object.fromEntries(Object.entries(found).filter(([, value]) => value !== undefined));
}

export function quantizationName(fileType: number | undefined): string {
  if (fileType === undefined) return "unknown";
  return GGMLFileQuantizationType[fileType] ?? `type-${fileType}`;
}

/** Drops the tokenizer's arrays and other lists; what remains is small and JSON-safe. */
function scalarsOnly(meta: Record<string, unknown>): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(meta)) {
    if (typeof value === "bigint") out[key] = Number(value);
    else if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") out[key] = value;
  }
  return out;
}

const toNumber = (value: unknown): number | undefined =>
  typeof value === "number" ? value : typeof value === "bigint" ? Number(value) : undefined;

const optionalString = (value: unknown): string | undefined => (typeof value === "string" && value.length > 0 ? value : undefined);
