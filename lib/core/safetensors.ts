/**
 * The safetensors format, read and written on the host (no GPU): 8 bytes of header length N (u64, little-endian),
 * N bytes of JSON header `{ "<name>": { "dtype", "shape", "data_offsets": [begin, end] }, ..., "__metadata__":
 * { "<key>": "<string>" } }` (padded with spaces), then the tensors' raw little-endian elements, offsets counted
 * from the end of the header. Every byte of the data is one tensor's: no holes, no overlaps, nothing after.
 *
 * Reading checks all of that and says which file and tensor break it ({@link SafetensorsError}, a RangeError, so
 * scripts turn it into one line and exit code 2 through `runMain`). {@link SafetensorsFile.f32} converts F32,
 * F64, F16 and BF16 tensors to f32 (F64 rounds to nearest; F16 and BF16 convert exactly).
 *
 * Glossary: none (plain arrays).
 * @module
 */
import { writeFileAtomic } from "./fs.ts";

/** A file that breaks the safetensors format, or a tensor of a dtype the caller cannot use. */
export class SafetensorsError extends RangeError {
  override name = "SafetensorsError";
}

/** Bytes per element of each safetensors dtype. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};

/** The float dtypes {@link SafetensorsFile.f32} converts to f32. */
export const FLOAT_DTYPES: readonly string[] = ["F32", "F64", "F16", "BF16"];

/** One tensor's header entry. */
export interface SafetensorsInfo {
  dtype: string;
  shape: number[];
  /** Byte range [begin, end) within the data section. */
  dataOffsets: [number, number];
}

/** The largest header this reader accepts (the reference implementation's limit). */
const MAX_HEADER_BYTES = 100_000_000;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A parsed safetensors file: its header, checked, and each tensor's elements on demand. */
export class SafetensorsFile {
  /** @internal use {@link parseSafetensors} or {@link readSafetensors}. */
  constructor(
    /** The file's name, for messages. */
    readonly file: string,
    /** Every tensor's entry, in header order. */
    readonly tensors: ReadonlyMap<string, SafetensorsInfo>,
    /** `__metadata__`, or null when the header has none. */
    readonly metadata: Readonly<Record<string, string>> | null,
    readonly data: Uint8Array,
  ) {}

  /** Whether the file holds a tensor of this name. */
  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /**
   * The elements of tensor `name` as f32 (converted from F64, F16 or BF16).
   * @throws {SafetensorsError} when there is no such tensor or its dtype is not a float dtype.
   */
  f32(name: string): Float32Array {
    const info = this.tensors.get(name);
    if (!info) throw new SafetensorsError(`${this.file}: no tensor ${name}`);
    const [begin, end] = info.dataOffsets;
    const bytes = this.data.slice(begin, end); // a fresh, aligned copy
    if (!LITTLE_ENDIAN) throw new SafetensorsError(`${this.file}: this reader needs a little-endian host`);
    switch (info.dtype) {
      case "F32":
        return new Float32Array(bytes.buffer);
      case "F64":
        return Float32Array.from(new Float64Array(bytes.buffer));
      case "BF16": {
        const half = new Uint16Array(bytes.buffer);
        const bits = new Uint32Array(half.length);
        for (let i = 0; i < half.length; i++) bits[i] = half[i] << 16;
        return new Float32Array(bits.buffer);
      }
      case "F16": {
        const half = new Uint16Array(bytes.buffer);
        const out = new Float32Array(half.length);
        for (let i = 0; i < half.length; i++) out[i] = f16ToNumber(half[i]);
        return out;
      }
      default:
        throw new SafetensorsError(
          `${this.file}: tensor ${name} has dtype ${info.dtype}; expected a float dtype (${
            FLOAT_DTYPES.join(", ")
          })`,
        );
    }
  }
}

/** The value of an IEEE half-precision bit pattern (exact in f32). */
export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/**
 * Parses and checks a safetensors file held in memory; `file` names it in messages.
 * @throws {SafetensorsError} naming the file (and the tensor) when the header is malformed, an entry's byte range
 * does not match its dtype and shape, the ranges leave holes or overlap, or the file is shorter (truncated) or
 * longer than its header says.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeSafetensors, parseSafetensors } from "./safetensors.ts";
 * const bytes = encodeSafetensors({ w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
 * const st = parseSafetensors(bytes, "w.safetensors");
 * assert.deepEqual(st.tensors.get("w")?.shape, [2]);
 * assert.deepEqual(Array.from(st.f32("w")), [1, 2]);
 * ```
 */
export function parseSafetensors(bytes: Uint8Array, file = "<safetensors>"): SafetensorsFile {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${file}: ${msg}`);
  };
  if (bytes.length < 8) {
    fail(`${bytes.length} bytes is too short for a safetensors file (8-byte header length)`);
  }
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n} is over the ${MAX_HEADER_BYTES}-byte limit`);
  const headerLen = Number(n);
  if (8 + headerLen > bytes.length) {
    fail(`truncated: the header is ${headerLen} bytes but only ${bytes.length - 8} follow the length field`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    fail(`the header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("the header is not a JSON object");
  }
  const data = bytes.subarray(8 + headerLen);
  let metadata: Record<string, string> | null = null;
  const tensors = new Map<string, SafetensorsInfo>();
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
        fail("__metadata__ is not an object of strings");
      }
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== "string") fail(`__metadata__.${k} is not a string`);
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (typeof e !== "object" || e === null) fail(`tensor ${name}: the entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = e!;
    if (typeof dtype !== "string" || !(dtype in SAFETENSORS_DTYPE_BYTES)) {
      fail(`tensor ${name}: unknown dtype ${JSON.stringify(dtype)}`);
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      fail(`tensor ${name}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]
    ) {
      fail(
        `tensor ${name}: data_offsets ${JSON.stringify(offsets)} is not a pair [begin, end] with begin ≤ end`,
      );
    }
    const [begin, end] = offsets as [number, number];
    const need = (shape as number[]).reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[dtype as string];
    if (end - begin !== need) {
      fail(
        `tensor ${name}: data_offsets [${begin}, ${end}] span ${end - begin} bytes, but ${dtype} [${
          (shape as number[]).join(", ")
        }] needs ${need}`,
      );
    }
    tensors.set(name, { dtype: dtype as string, shape: shape as number[], dataOffsets: [begin, end] });
  }
  // The data section must be covered exactly: sorted by begin, each tensor starts where the previous one ended.
  const ranges = [...tensors.entries()].sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0]);
  let at = 0;
  for (const [name, { dataOffsets: [begin, end] }] of ranges) {
    if (begin !== at) {
      fail(
        begin > at
          ? `tensor ${name} starts at byte ${begin} of the data, leaving a hole after byte ${at}`
          : `tensor ${name} starts at byte ${begin} of the data, overlapping the tensor before it (ends at ${at})`,
      );
    }
    at = end;
  }
  if (at > data.length) {
    const last = ranges.find(([, i]) => i.dataOffsets[1] > data.length)![0];
    fail(
      `truncated: the header needs ${at} bytes of tensor data, the file has ${data.length} (tensor ${last} ` +
        "runs past the end)",
    );
  }
  if (at < data.length) {
    fail(`${data.length - at} bytes after the last tensor's data (the header covers ${at})`);
  }
  return new SafetensorsFile(file, tensors, metadata, data);
}

/**
 * Reads and checks a safetensors file.
 * @throws {SafetensorsError} when it is missing or malformed (see {@link parseSafetensors}).
 */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new SafetensorsError(`${path}: no such file`);
    throw e;
  }
  return parseSafetensors(bytes, path);
}

/** One tensor to write: its dtype, shape and elements (a typed array whose bytes are the elements). */
export interface SafetensorsEntry {
  dtype: string;
  shape: readonly number[];
  data: ArrayBufferView;
}

/**
 * Encodes tensors (in the order given) and optional `__metadata__` as a safetensors file; the header is padded
 * with spaces to a multiple of 8 bytes, as the reference writer does, so every tensor starts 8-byte aligned when
 * the tensors before it are.
 * @throws {SafetensorsError} when an entry's bytes do not match its dtype and shape.
 */
export function encodeSafetensors(
  tensors: Readonly<Record<string, SafetensorsEntry>>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  if (!LITTLE_ENDIAN) throw new SafetensorsError("encodeSafetensors: this writer needs a little-endian host");
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let at = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const size = SAFETENSORS_DTYPE_BYTES[t.dtype];
    if (size === undefined) {
      throw new SafetensorsError(`encodeSafetensors: tensor ${name}: unknown dtype ${t.dtype}`);
    }
    const need = t.shape.reduce((a, b) => a * b, 1) * size;
    if (t.data.byteLength !== need) {
      throw new SafetensorsError(
        `encodeSafetensors: tensor ${name}: ${t.data.byteLength} bytes, but ${t.dtype} [${
          t.shape.join(", ")
        }] needs ${need}`,
      );
    }
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [at, at + need] };
    at += need;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLen = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLen + at);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  let off = 8 + headerLen;
  for (const t of Object.values(tensors)) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), off);
    off += t.data.byteLength;
  }
  return out;
}

/** Writes tensors as a safetensors file, atomically ({@link encodeSafetensors}, then `writeFileAtomic`). */
export function writeSafetensors(
  path: string,
  tensors: Readonly<Record<string, SafetensorsEntry>>,
  metadata?: Readonly<Record<string, string>>,
): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}
