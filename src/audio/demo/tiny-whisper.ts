/**
 * A tiny whisper model with random weights, made on the spot so that tests never download one. The
 * weights are nonsense, but the file is a real whisper.cpp model (the legacy ggml format its loader
 * reads): the 11 hyper-parameters, the Slaney mel filterbank, a vocabulary, and every tensor the
 * loader expects with its exact shape and type. The vocabulary is made of printable ASCII syllables,
 * so whatever the random decoder picks is readable, valid UTF-8 text; it includes the single-space
 * token whisper.cpp looks up unconditionally (without it the native side throws and the JavaScript
 * promise never settles).
 */
import { createCipheriv, createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { ensureCachedFile } from "../../catalog/demo/cached-file.js";
import { float32ToFloat16Bits } from "../../catalog/gguf/gguf-writer.js";

export interface TinyWhisperOptions {
  /** n_audio_state = n_text_state. */
  state?: number;
  heads?: number;
  audioLayers?: number;
  textLayers?: number;
  /** 51865 tokens (99 languages, translation) instead of the English-only 51864. */
  multilingual?: boolean;
  seed?: number;
}

/** Part of the cache key: bump it whenever the bytes written for the same options change. */
const GENERATOR_VERSION = 1;

const GGML_MAGIC = 0x67676d6c;
const N_AUDIO_CTX = 1500; // the encoder's input is always 30 s of mel frames; whisper.cpp relies on it
const N_TEXT_CTX = 448;
const N_MELS = 80;
const N_FFT_BINS = 201; // 400-point FFT
const SAMPLE_RATE = 16000;
/** The GPT-2 vocabulary size every whisper model file carries; whisper.cpp adds the special tokens. */
const FILE_VOCAB = 50257;

const F32 = 0;
const F16 = 1;

type Resolved = Required<TinyWhisperOptions>;

function resolve(options: TinyWhisperOptions): Resolved {
  const o: Resolved = {
    state: options.state ?? 16,
    heads: options.heads ?? 2,
    audioLayers: options.audioLayers ?? 1,
    textLayers: options.textLayers ?? 1,
    multilingual: options.multilingual ?? false,
    seed: options.seed ?? 1,
  };
  for (const key of ["state", "heads", "audioLayers", "textLayers"] as const) {
    if (!Number.isInteger(o[key]) || o[key] < 1) throw new RangeError(`${key} must be a positive integer, got ${o[key]}`);
  }
  if (o.state % o.heads !== 0) throw new RangeError("state must be a multiple of heads");
  if (!Number.isInteger(o.seed)) throw new RangeError("seed must be an integer");
  return o;
}

/** Mel filterbank as librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) computes it (Slaney scale and norm). */
export function slaneyMelFilters(nMels = N_MELS, nFftBins = N_FFT_BINS, sampleRate = SAMPLE_RATE): Float32Array {
  const minLogHz = 1000;
  const fSp = 200 / 3;
  const minLogMel = minLogHz / fSp;
  const logStep = Math.log(6.4) / 27;
  const hzToMel = (hz: number) => (hz < minLogHz ? hz / fSp : minLogMel + Math.log(hz / minLogHz) / logStep);
  const melToHz = (mel: number) => (mel < minLogMel ? mel * fSp : minLogHz * Math.exp(logStep * (mel - minLogMel)));
  const nyquist = sampleRate / 2;
  const fftFreqs = Array.from({ length: nFftBins }, (_, i) => (i * nyquist) / (nFftBins - 1));
  const maxMel = hzToMel(nyquist);
  const melHz = Array.from({ length: nMels + 2 }, (_, i) => melToHz((i * maxMel) / (nMels + 1)));
  const filters = new Float32Array(nMels * nFftBins);
  for (let m = 0; m < nMels; m++) {
    const [lo, centre, hi] = [melHz[m]!, melHz[m + 1]!, melHz[m + 2]!];
    const norm = 2 / (hi - lo);
    for (let k = 0; k < nFftBins; k++) {
      const f = fftFreqs[k]!;
      const rising = (f - lo) / (centre - lo);
      const falling = (hi - f) / (hi - centre);
      filters[m * nFftBins + k] = Math.max(0, Math.min(rising, falling)) * norm;
    }
  }
  return filters;
}

const CONSONANTS = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "ch", "sh", "th", "y"];
const VOWELS = ["a", "e", "i", "o", "u"];
const SYLLABLES = CONSONANTS.flatMap((c) => VOWELS.map((v) => c + v));

/**
 * 50257 distinct printable tokens: " " (required), a few punctuation marks, then syllable words with
 * and without a leading space, the way BPE vocabularies mark word starts. The last one is GPT-2's
 * end-of-text token, which whisper.cpp treats as end of transcript for English-only models.
 */
function vocabulary(): string[] {
  const tokens = [" ", ".", ",", "?", "!", " -", " '"];
  for (let n = 0; tokens.length < FILE_VOCAB - 1; n++) {
    let word = "";
    let rest = n;
    do {
      word += SYLLABLES[rest % SYLLABLES.length];
      rest = Math.floor(rest / SYLLABLES.length);
    } while (rest > 0);
    tokens.push(` ${word}`);
    if (tokens.length < FILE_VOCAB - 1) tokens.push(word);
  }
  tokens.push("<|endoftext|>");
  return tokens;
}

/** Deterministic uniform values in [-scale, scale): an AES-CTR keystream keyed by seed and tensor name. */
function randomValues(seed: number, name: string, count: number, scale: number): Float32Array {
  const key = createHash("sha256").update(`${seed}:${name}`).digest();
  const cipher = createCipheriv("aes-128-ctr", key.subarray(0, 16), key.subarray(16, 32));
  const bytes = cipher.update(Buffer.alloc(count * 4));
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = (bytes.readUInt32LE(i * 4) / 4294967296) * 2 * scale - scale;
  return values;
}

interface Tensor {
  name: string;
  /** ggml order: fastest-varying first. */
  dims: number[];
  type: typeof F32 | typeof F16;
  values: Float32Array;
}

function tensors(o: Resolved, nVocab: number): Tensor[] {
  const s = o.state;
  const list: Tensor[] = [];
  const weight = (name: string, dims: number[], type: typeof F32 | typeof F16 = F16) => {
    const count = dims.reduce((a, d) => a * d, 1);
    list.push({ name, dims, type, values: randomValues(o.seed, name, count, 1 / Math.sqrt(dims[0]!)) });
  };
  const constant = (name: string, dims: number[], value: number) => {
    list.push({ name, dims, type: F32, values: new Float32Array(dims.reduce((a, d) => a * d, 1)).fill(value) });
  };
  const layerNorm = (prefix: string) => {
    constant(`${prefix}.weight`, [s], 1);
    constant(`${prefix}.bias`, [s], 0);
  };
  const attention = (prefix: string) => {
    weight(`${prefix}.query.weight`, [s, s]);
    constant(`${prefix}.query.bias`, [s], 0);
    weight(`${prefix}.key.weight`, [s, s]);
    weight(`${prefix}.value.weight`, [s, s]);
    constant(`${prefix}.value.bias`, [s], 0);
    weight(`${prefix}.out.weight`, [s, s]);
    constant(`${prefix}.out.bias`, [s], 0);
  };
  const mlp = (prefix: string) => {
    weight(`${prefix}.mlp.0.weight`, [s, 4 * s]);
    constant(`${prefix}.mlp.0.bias`, [4 * s], 0);
    weight(`${prefix}.mlp.2.weight`, [4 * s, s]);
    constant(`${prefix}.mlp.2.bias`, [s], 0);
  };

  weight("encoder.positional_embedding", [s, N_AUDIO_CTX], F32);
  weight("encoder.conv1.weight", [3, N_MELS, s]);
  constant("encoder.conv1.bias", [1, s], 0);
  weight("encoder.conv2.weight", [3, s, s]);
  constant("encoder.conv2.bias", [1, s], 0);
  layerNorm("encoder.ln_post");
  for (let i = 0; i < o.audioLayers; i++) {
    const p = `encoder.blocks.${i}`;
    layerNorm(`${p}.mlp_ln`);
    mlp(p);
    layerNorm(`${p}.attn_ln`);
    attention(`${p}.attn`);
  }
  weight("decoder.positional_embedding", [s, N_TEXT_CTX], F32);
  weight("decoder.token_embedding.weight", [s, nVocab]);
  layerNorm("decoder.ln");
  for (let i = 0; i < o.textLayers; i++) {
    const p = `decoder.blocks.${i}`;
    layerNorm(`${p}.mlp_ln`);
    mlp(p);
    layerNorm(`${p}.attn_ln`);
    attention(`${p}.attn`);
    layerNorm(`${p}.cross_attn_ln`);
    attention(`${p}.cross_attn`);
  }
  return list;
}

function build(o: Resolved): Buffer {
  const nVocab = o.multilingual ? 51865 : 51864;
  const parts: Buffer[] = [];
  const i32s = (...values: number[]) => {
    const b = Buffer.alloc(values.length * 4);
    values.forEach((v, i) => b.writeInt32LE(v, i * 4));
    parts.push(b);
  };
  const header = Buffer.alloc(4);
  header.writeUInt32LE(GGML_MAGIC, 0);
  parts.push(header);
  // n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype (1 = F16)
  i32s(nVocab, N_AUDIO_CTX, o.state, o.heads, o.audioLayers, N_TEXT_CTX, o.state, o.heads, o.textLayers, N_MELS, 1);
  i32s(N_MELS, N_FFT_BINS);
  parts.push(Buffer.from(slaneyMelFilters().buffer));
  const vocab = vocabulary();
  i32s(vocab.length);
  for (const token of vocab) {
    const bytes = Buffer.from(token, "utf8");
    i32s(bytes.length);
    parts.push(bytes);
  }
  for (const t of tensors(o, nVocab)) {
    const name = Buffer.from(t.name, "utf8");
    i32s(t.dims.length, name.length, t.type, ...t.dims);
    parts.push(name);
    if (t.type === F32) {
      parts.push(Buffer.from(t.values.buffer, t.values.byteOffset, t.values.byteLength));
    } else {
      const half = Buffer.alloc(t.values.length * 2);
      t.values.forEach((v, i) => half.writeUInt16LE(float32ToFloat16Bits(v), i * 2));
      parts.push(half);
    }
  }
  return Buffer.concat(parts);
}

export async function writeTinyWhisperModel(path: string, options: TinyWhisperOptions = {}): Promise<void> {
  await writeFile(path, build(resolve(options)));
}

/** Cached by a hash of the resolved options: returns dir/tiny-whisper-<hash>.bin, written (temp name, then rename) only when missing. */
export async function ensureTinyWhisperModel(dir: string, options: TinyWhisperOptions = {}): Promise<string> {
  const resolved = resolve(options);
  return ensureCachedFile(dir, "tiny-whisper", ".bin", { version: GENERATOR_VERSION, ...resolved }, (path) => writeFile(path, build(resolved)));
}
