/**
 * A small GGUF v3 writer (little-endian): typed metadata, F32/F16 tensors, 32-byte alignment.
 * Tensor values are produced one tensor at a time while the file is written, so a model of a
 * hundred megabytes never has to exist as one JavaScript array.
 */
import { open } from "node:fs/promises";

export const GGUF_ALIGNMENT = 32;

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const GGUF_VERSION = 3;

export const GgmlType = { F32: 0, F16: 1 } as const;
export type GgmlType = (typeof GgmlType)[keyof typeof GgmlType];

const valueTypeIds = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

export type GgufNumberType = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64";
export type GgufBigIntType = "u64" | "i64";

export type GgufValue =
  | { type: GgufNumberType; value: number }
  | { type: GgufBigIntType; value: bigint | number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; itemType: GgufNumberType; values: ArrayLike<number> }
  | { type: "array"; itemType: GgufBigIntType; values: ArrayLike<bigint | number> }
  | { type: "array"; itemType: "bool"; values: readonly boolean[] }
  | { type: "array"; itemType: "string"; values: readonly string[] };

export interface GgufTensor {
  name: string;
  /** ggml order: the fastest-varying dimension first (for a weight matrix, its input size). */
  dims: readonly number[];
  type: GgmlType;
  /** Called once, when the tensor's turn to be written comes; must return exactly prod(dims) values. */
  values(): Float32Array;
}

export interface GgufFile {
  /** `general.alignment` is written by the writer itself, since it owns the layout. */
  metadata: ReadonlyArray<readonly [key: string, value: GgufValue]>;
  tensors: readonly GgufTensor[];
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE 754 binary16 bits of `value`, rounded to nearest, ties to even. */
export function float32ToFloat16Bits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Subnormal half: the value is significand × 2^(exponent - 150) and the unit is 2^-24.
    const shift = 126 - exponent;
    if (shift > 25) return sign;
    const significand = mantissa | 0x800000;
    const half = significand >>> shift;
    const rest = significand & ((1 << shift) - 1);
    const midpoint = 1 << (shift - 1);
    return sign | (rest > midpoint || (rest === midpoint && (half & 1) === 1) ? half + 1 : half);
  }
  const half = (halfExponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  return sign | (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1) ? half + 1 : half);
}

/** A little-endian byte sink that grows as needed; only the header goes through it. */
class ByteWriter {
  private buffer = Buffer.alloc(4096);
  length = 0;

  private reserve(size: number): void {
    if (this.length + size <= this.buffer.length) return;
    const next = Buffer.alloc(Math.max(this.buffer.length * 2, this.length + size));
    this.buffer.copy(next, 0, 0, this.length);
    this.buffer = next;
  }

  u8(v: number): void {
    this.reserve(1);
    this.length = this.buffer.writeUInt8(v, this.length);
  }
  i8(v: number): void {
    this.reserve(1);
    this.length = this.buffer.writeInt8(v, this.length);
  }
  u16(v: number): void {
    this.reserve(2);
    this.length = this.buffer.writeUInt16LE(v, this.length);
  }
  i16(v: number): void {
    this.reserve(2);
    this.length = this.buffer.writeInt16LE(v, this.length);
  }
  u32(v: number): void {
    this.reserve(4);
    this.length = this.buffer.writeUInt32LE(v, this.length);
  }
  i32(v: number): void {
    this.reserve(4);
    this.length = this.buffer.writeInt32LE(v, this.length);
  }
  f32(v: number): void {
    this.reserve(4);
    this.length = this.buffer.writeFloatLE(v, this.length);
  }
  f64(v: number): void {
    this.reserve(8);
    this.length = this.buffer.writeDoubleLE(v, this.length);
  }
  u64(v: bigint | number): void {
    this.reserve(8);
    this.length = this.buffer.writeBigUInt64LE(BigInt(v), this.length);
  }
  i64(v: bigint | number): void {
    this.reserve(8);
    this.length = this.buffer.writeBigInt64LE(BigInt(v), this.length);
  }
  string(v: string): void {
    const bytes = Buffer.from(v, "utf8");
    this.u64(bytes.length);
    this.reserve(bytes.length);
    this.length += bytes.copy(this.buffer, this.length);
  }
  padTo(alignment: number): void {
    const padding = paddingFor(this.length, alignment);
    this.reserve(padding);
    this.buffer.fill(0, this.length, this.length + padding);
    this.length += padding;
  }
  bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

function paddingFor(offset: number, alignment: number): number {
  return (alignment - (offset % alignment)) % alignment;
}

function writeScalar(out: ByteWriter, type: Exclude<GgufValue["type"], "array">, value: unknown): void {
  switch (type) {
    case "u8":
    case "i8":
    case "u16":
    case "i16":
    case "u32":
    case "i32":
    case "f32":
    case "f64":
      out[type](value as number);
      return;
    case "u64":
    case "i64":
      out[type](value as bigint | number);
      return;
    case "bool":
      out.u8(value ? 1 : 0);
      return;
    case "string":
      out.string(value as string);
      return;
  }
}

function writeValue(out: ByteWriter, value: GgufValue): void {
  out.u32(valueTypeIds[value.type]);
  if (value.type !== "array") {
    writeScalar(out, value.type, value.value);
    return;
  }
  out.u32(valueTypeIds[value.itemType]);
  out.u64(value.values.length);
  for (let i = 0; i < value.values.length; i++) writeScalar(out, value.itemType, value.values[i]);
}

function elementCount(tensor: GgufTensor): number {
  return tensor.dims.reduce((a, b) => a * b, 1);
}

function tensorBytes(tensor: GgufTensor, values: Float32Array): Buffer {
  const count = elementCount(tensor);
  if (values.length !== count) {
    throw new RangeError(`tensor ${tensor.name}: expected ${count} values, got ${values.length}`);
  }
  if (tensor.type === GgmlType.F32) {
    const bytes = Buffer.alloc(count * 4);
    for (let i = 0; i < count; i++) bytes.writeFloatLE(values[i]!, i * 4);
    return bytes;
  }
  const bytes = Buffer.alloc(count * 2);
  for (let i = 0; i < count; i++) bytes.writeUInt16LE(float32ToFloat16Bits(values[i]!), i * 2);
  return bytes;
}

export async function writeGguf(path: string, file: GgufFile): Promise<void> {
  if (file.metadata.some(([key]) => key === "general.alignment")) {
    throw new TypeError("general.alignment is set by the writer");
  }
  const header = new ByteWriter();
  header.u32(GGUF_MAGIC);
  header.u32(GGUF_VERSION);
  header.u64(file.tensors.length);
  header.u64(file.metadata.length + 1);
  for (const [key, value] of file.metadata) {
    header.string(key);
    writeValue(header, value);
  }
  header.string("general.alignment");
  writeValue(header, { type: "u32", value: GGUF_ALIGNMENT });

  let offset = 0;
  for (const tensor of file.tensors) {
    header.string(tensor.name);
    header.u32(tensor.dims.length);
    for (const dim of tensor.dims) header.u64(dim);
    header.u32(tensor.type);
    header.u64(offset);
    const size = elementCount(tensor) * (tensor.type === GgmlType.F32 ? 4 : 2);
    offset += size + paddingFor(size, GGUF_ALIGNMENT);
  }
  header.padTo(GGUF_ALIGNMENT);

  const handle = await open(path, "w");
  try {
    await handle.write(header.bytes());
    for (const tensor of file.tensors) {
      const bytes = tensorBytes(tensor, tensor.values());
      await handle.write(bytes);
      const padding = paddingFor(bytes.length, GGUF_ALIGNMENT);
      if (padding > 0) await handle.write(Buffer.alloc(padding));
    }
  } finally {
    await handle.close();
  }
}
