/**
 * A tiny llama model with random weights, made on the spot so that tests and the first-start demo
 * never download anything. The weights are nonsense, but the file is a real GGUF that llama.cpp
 * loads: a SentencePiece vocabulary that round-trips English text, a ChatML chat template, and an
 * output layer shaped so that generation yields valid UTF-8 and never ends before max_tokens.
 */
import { ensureCachedFile } from "./cached-file.js";
import { GgmlType, writeGguf, type GgufTensor, type GgufValue } from "../gguf/gguf-writer.js";

export interface TinyLlamaOptions {
  embeddingLength?: number;
  blockCount?: number;
  feedForwardLength?: number;
  headCount?: number;
  headCountKv?: number;
  contextLength?: number;
  seed?: number;
  /** general.name */
  name?: string;
  /** llama.pooling_type when set (1 = mean), so llama-server serves embeddings without --pooling. */
  poolingType?: number;
  /**
   * Pads the vocabulary with unused tokens up to this size (Llama-style models have 32,000), so the token
   * embedding and the output layer, and sampling over the logits, cost what they cost in a real model.
   * The padding is never generated. Absent: the bare ~460-token vocabulary.
   */
  vocabularySize?: number;
  /** Adds three control tokens and declares them as the fill-in-the-middle prefix, suffix and middle tokens. */
  fillInTheMiddle?: boolean;
}

/**
 * The benchmark model: ~58 M parameters, as FIXTURES.md describes it: 8 blocks of 512, and a 32,000-token
 * vocabulary whose embedding and output layer are a third of the per-token work in a real small model.
 */
export const BENCH_MODEL_OPTIONS: TinyLlamaOptions = {
  embeddingLength: 512,
  blockCount: 8,
  feedForwardLength: 1536,
  vocabularySize: 32_000,
};

/** Part of the cache key: bump it whenever the bytes written for the same options change. */
const GENERATOR_VERSION = 1;

type ResolvedOptions = Required<Omit<TinyLlamaOptions, "poolingType" | "vocabularySize" | "fillInTheMiddle">> & {
  poolingType: number | undefined;
  vocabularySize: number | undefined;
  fillInTheMiddle: true | undefined;
};

function resolveOptions(options: TinyLlamaOptions): ResolvedOptions {
  const resolved: ResolvedOptions = {
    embeddingLength: options.embeddingLength ?? 64,
    blockCount: options.blockCount ?? 2,
    feedForwardLength: options.feedForwardLength ?? 128,
    headCount: options.headCount ?? 4,
    headCountKv: options.headCountKv ?? 2,
    contextLength: options.contextLength ?? 2048,
    seed: options.seed ?? 1,
    name: options.name ?? "llama-runner tiny random",
    poolingType: options.poolingType,
    vocabularySize: options.vocabularySize,
    // undefined rather than false, so the cache key of every model without FIM stays what it was.
    fillInTheMiddle: options.fillInTheMiddle === true ? true : undefined,
  };
  if (resolved.vocabularySize !== undefined && (!Number.isInteger(resolved.vocabularySize) || resolved.vocabularySize < 1)) {
    throw new RangeError(`vocabularySize must be a positive integer, got ${resolved.vocabularySize}`);
  }
  for (const key of [
    "embeddingLength",
    "blockCount",
    "feedForwardLength",
    "headCount",
    "headCountKv",
    "contextLength",
  ] as const) {
    if (!Number.isInteger(resolved[key]) || resolved[key] < 1) {
      throw new RangeError(`${key} must be a positive integer, got ${resolved[key]}`);
    }
  }
  if (resolved.embeddingLength % resolved.headCount !== 0) {
    throw new RangeError("embeddingLength must be a multiple of headCount");
  }
  if (resolved.headCount % resolved.headCountKv !== 0) {
    throw new RangeError("headCount must be a multiple of headCountKv");
  }
  if (!Number.isInteger(resolved.seed)) throw new RangeError("seed must be an integer");
  return resolved;
}

const TokenType = { normal: 1, unknown: 2, control: 3, unused: 5, byte: 6 } as const;

/**
 * Common English pieces, in merge order: each is the concatenation of two earlier pieces or
 * characters, because the SentencePiece tokenizer only builds a piece from two adjacent symbols
 * that are already tokens. Earlier pieces get higher scores and so merge first.
 */
const MERGED_PIECES = [
  "▁t", "he", "▁the", "▁a", "in", "er", "an", "on", "re", "▁s", "en", "at", "or", "▁w", "▁o", "it",
  "is", "es", "▁b", "▁c", "ou", "ed", "nd", "ing", "▁f", "▁m", "▁p", "▁d", "ar", "al", "le", "st",
  "▁h", "▁i", "▁and", "▁to", "▁of", "▁in", "▁is", "▁it", "ll", "▁th", "▁that", "▁wh", "▁be", "▁for",
  "▁on", "ith", "▁with", "as", "▁as", "▁was", "▁he", "▁I", "▁y", "▁you", "▁this", "▁are", "▁ha", "ve",
  "▁have", "▁n", "ot", "▁not", "ut", "▁but", "▁fr", "om", "▁from", "▁they", "▁we", "▁can", "ill",
  "▁will", "▁an", "▁or", "▁by", "▁at", "▁all", "▁there", "ion", "tion", "ly", "ent", "ter", "▁r",
  "▁re", "▁so", "▁do", "▁my", "ne", "▁one", "▁what", "▁H", "ell", "ello", "▁Hello", "ld", "orld",
  "▁world", "est", "▁test", "im", "ime", "▁time", "▁T", "▁Th", "▁The",
];

interface Vocabulary {
  tokens: string[];
  scores: number[];
  types: number[];
  bosId: number;
  eosId: number;
  unknownId: number;
  /** Prefix, suffix and middle token ids, when the model has them. */
  fim: [number, number, number] | undefined;
  /** The id of `<0x00>`; the 256 byte tokens follow in order. */
  firstByteId: number;
}

function buildVocabulary(size: number | undefined, fillInTheMiddle: boolean): Vocabulary {
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  const add = (token: string, type: number, score = 0): number => {
    tokens.push(token);
    scores.push(score);
    types.push(type);
    return tokens.length - 1;
  };
  const unknownId = add("<unk>", TokenType.unknown);
  const bosId = add("<s>", TokenType.control);
  const eosId = add("</s>", TokenType.control);
  const firstByteId = tokens.length;
  for (let byte = 0; byte < 256; byte++) {
    add(`<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`, TokenType.byte);
  }
  add("<|im_start|>", TokenType.control);
  add("<|im_end|>", TokenType.control);
  const fim = fillInTheMiddle
    ? ([add("<fim_begin>", TokenType.control), add("<fim_hole>", TokenType.control), add("<fim_end>", TokenType.control)] as [number, number, number])
    : undefined;
  // Single characters score below every merged piece, as in a trained SentencePiece model.
  const characters = ["▁"];
  for (let code = 0x21; code <= 0x7e; code++) characters.push(String.fromCharCode(code));
  characters.forEach((c, i) => add(c, TokenType.normal, -(MERGED_PIECES.length + i)));
  MERGED_PIECES.forEach((piece, i) => add(piece, TokenType.normal, -i));
  // Unused tokens are never merged into by the tokenizer and never emitted (isEmittable), so padding
  // changes the model's cost, not its behaviour.
  while (size !== undefined && tokens.length < size) add(`<unused${tokens.length}>`, TokenType.unused, -1e9);
  return { tokens, scores, types, bosId, eosId, unknownId, fim, firstByteId };
}

/**
 * Whether generation may produce this token. Any byte but printable ASCII and "\n" could start or
 * end a broken UTF-8 sequence, and control tokens end or restructure the output. "<" is left out
 * too: it begins ChatML's textual stop trigger "<|im_end|>", and node-llama-cpp holds such a
 * partial match back and drops it at max_tokens, so a response would come back a token short.
 */
function isEmittable(vocab: Vocabulary, token: number): boolean {
  const type = vocab.types[token];
  let text: string;
  if (type === TokenType.normal) text = vocab.tokens[token]!;
  else if (type === TokenType.byte) text = String.fromCharCode(token - vocab.firstByteId);
  else return false;
  return !text.startsWith("<") && /^([\x20-\x7e\n]|▁)+$/.test(text);
}

const CHATML_TEMPLATE =
  "{% for message in messages %}" +
  "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** mulberry32: tiny, fast and the same on every platform. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Each tensor gets its own stream, so its values depend on the seed and its name, not on write order. */
function tensorSeed(seed: number, name: string): number {
  let hash = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

function randomWeights(seed: number, name: string, dims: readonly [number, number]): Float32Array {
  const [fanIn, rows] = dims;
  const random = mulberry32(tensorSeed(seed, name));
  const scale = 1 / Math.sqrt(fanIn);
  const values = new Float32Array(fanIn * rows);
  for (let i = 0; i < values.length; i++) values[i] = (random() * 2 - 1) * scale;
  return values;
}

function buildModel(o: ResolvedOptions): { metadata: [string, GgufValue][]; tensors: GgufTensor[] } {
  const vocab = buildVocabulary(o.vocabularySize, o.fillInTheMiddle === true);
  const nVocab = vocab.tokens.length;
  const nEmbd = o.embeddingLength;
  const headDim = nEmbd / o.headCount;
  const nEmbdKv = headDim * o.headCountKv;

  const weight = (
    name: string,
    fanIn: number,
    rows: number,
    adjust: (values: Float32Array) => void = () => {},
  ): GgufTensor => ({
    name,
    dims: [fanIn, rows],
    type: GgmlType.F16,
    values: () => {
      const values = randomWeights(o.seed, name, [fanIn, rows]);
      adjust(values);
      return values;
    },
  });
  const norm = (name: string): GgufTensor => ({
    name,
    dims: [nEmbd],
    type: GgmlType.F32,
    values: () => new Float32Array(nEmbd).fill(1),
  });

  // Pitfall: random logits happily pick EOS, control tokens and lone UTF-8 continuation bytes.
  // Zeroing those output rows (logit 0) and scaling the others ×4 is enough for greedy and for
  // top-k sampling, but with top-k off and a high temperature the ~170 tokens at logit 0 still
  // get picked. So residual dimension 0 carries a constant instead: every embedding has 1 there
  // and no layer writes to it, so after the final RMS norm it is a positive number, and an output
  // weight of -1000 on it sinks those tokens' logits far below anything sampling reaches.
  const setBiasDimension = (values: Float32Array): void => {
    for (let token = 0; token < nVocab; token++) values[token * nEmbd] = 1;
  };
  // In ggml order each output's weights form one contiguous row of fanIn values.
  const notWritingBiasDimension = (fanIn: number) => (values: Float32Array): void => {
    values.fill(0, 0, fanIn);
  };
  // Read by the layers, the constant would swamp the token signal and every position would
  // predict the same few tokens.
  const notReadingBiasDimension = (fanIn: number) => (values: Float32Array): void => {
    for (let i = 0; i < values.length; i += fanIn) values[i] = 0;
  };
  const shapeOutputRows = (values: Float32Array): void => {
    for (let token = 0; token < nVocab; token++) {
      const row = values.subarray(token * nEmbd, (token + 1) * nEmbd);
      const emittable = isEmittable(vocab, token);
      if (emittable) row.forEach((v, i) => (row[i] = v * 4));
      else row.fill(0);
      row[0] = emittable ? 0 : -1000;
    }
  };

  const tensors: GgufTensor[] = [
    weight("token_embd.weight", nEmbd, nVocab, setBiasDimension),
    norm("output_norm.weight"),
    weight("output.weight", nEmbd, nVocab, shapeOutputRows),
  ];
  for (let b = 0; b < o.blockCount; b++) {
    const p = `blk.${b}`;
    tensors.push(
      norm(`${p}.attn_norm.weight`),
      weight(`${p}.attn_q.weight`, nEmbd, nEmbd, notReadingBiasDimension(nEmbd)),
      weight(`${p}.attn_k.weight`, nEmbd, nEmbdKv, notReadingBiasDimension(nEmbd)),
      weight(`${p}.attn_v.weight`, nEmbd, nEmbdKv, notReadingBiasDimension(nEmbd)),
      weight(`${p}.attn_output.weight`, nEmbd, nEmbd, notWritingBiasDimension(nEmbd)),
      norm(`${p}.ffn_norm.weight`),
      weight(`${p}.ffn_gate.weight`, nEmbd, o.feedForwardLength, notReadingBiasDimension(nEmbd)),
      weight(`${p}.ffn_up.weight`, nEmbd, o.feedForwardLength, notReadingBiasDimension(nEmbd)),
      weight(`${p}.ffn_down.weight`, o.feedForwardLength, nEmbd, notWritingBiasDimension(o.feedForwardLength)),
    );
  }
  const parameterCount = tensors.reduce((sum, t) => sum + t.dims.reduce((a, d) => a * d, 1), 0);

  const metadata: [string, GgufValue][] = [
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: o.name }],
    ["general.file_type", { type: "u32", value: 1 }],
    ["general.parameter_count", { type: "u64", value: parameterCount }],
    ["llama.vocab_size", { type: "u32", value: nVocab }],
    ["llama.context_length", { type: "u32", value: o.contextLength }],
    ["llama.embedding_length", { type: "u32", value: nEmbd }],
    ["llama.block_count", { type: "u32", value: o.blockCount }],
    ["llama.feed_forward_length", { type: "u32", value: o.feedForwardLength }],
    ["llama.attention.head_count", { type: "u32", value: o.headCount }],
    ["llama.attention.head_count_kv", { type: "u32", value: o.headCountKv }],
    ["llama.rope.dimension_count", { type: "u32", value: headDim }],
    ["llama.rope.freq_base", { type: "f32", value: 10000 }],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: 1e-5 }],
  ];
  if (o.poolingType !== undefined) metadata.push(["llama.pooling_type", { type: "u32", value: o.poolingType }]);
  metadata.push(
    ["tokenizer.ggml.model", { type: "string", value: "llama" }],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", values: vocab.tokens }],
    ["tokenizer.ggml.scores", { type: "array", itemType: "f32", values: vocab.scores }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "i32", values: vocab.types }],
    ["tokenizer.ggml.bos_token_id", { type: "u32", value: vocab.bosId }],
    ["tokenizer.ggml.eos_token_id", { type: "u32", value: vocab.eosId }],
    ["tokenizer.ggml.unknown_token_id", { type: "u32", value: vocab.unknownId }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: true }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: false }],
    ["tokenizer.chat_template", { type: "string", value: CHATML_TEMPLATE }],
  );
  if (vocab.fim) {
    const [prefix, suffix, middle] = vocab.fim;
    metadata.push(
      ["tokenizer.ggml.fim_pre_token_id", { type: "u32", value: prefix }],
      ["tokenizer.ggml.fim_suf_token_id", { type: "u32", value: suffix }],
      ["tokenizer.ggml.fim_mid_token_id", { type: "u32", value: middle }],
    );
  }
  return { metadata, tensors };
}

export async function writeTinyLlamaGguf(path: string, options: TinyLlamaOptions = {}): Promise<void> {
  await writeGguf(path, buildModel(resolveOptions(options)));
}

/** Cached by a hash of the resolved options: returns dir/tiny-llama-<hash>.gguf, writing it (to a temp name, then rename, so concurrent callers and crashes never see a half file) only when missing. */
export async function ensureTinyLlamaGguf(dir: string, options: TinyLlamaOptions = {}): Promise<string> {
  const resolved = resolveOptions(options);
  return ensureCachedFile(dir, "tiny-llama", ".gguf", { version: GENERATOR_VERSION, ...resolved }, (path) => writeGguf(path, buildModel(resolved)));
}
