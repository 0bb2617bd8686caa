/**
 * Checkpoints: every tensor of some trees (params, optimiser state) plus JSON metadata, in one file written
 * atomically, so an interrupted run resumes from its last checkpoint with bit-identical state.
 *
 * Format "MIMETIC2": the magic (8 bytes), the header length (u32 LE), the header JSON
 * `{ meta, tensors: [{ name, shape, dtype }], dataBytes, sha256 }`, zero padding to a multiple of 4, then each
 * tensor's raw little-endian elements in header order. `sha256` is the SHA-256 of the header's other fields and of
 * the data, so a truncated file, a garbled header or flipped bits in the tensor data are all detected on load
 * ({@link CheckpointError}) instead of being resumed silently.
 * @module
 */
import { createHash } from "node:crypto";
import { writeFileAtomic } from "../core/fs.ts";
import { writeBuffer } from "../core/runtime.ts";
import { mapTree, readTensors, type Tensor } from "../core/tensor.ts";

const MAGIC = "MIMETIC2";

/** A checkpoint file that cannot be used: truncated, garbled, from another format, or failing its checksum. */
export class CheckpointError extends Error {
  override name = "CheckpointError";
  constructor(readonly path: string, readonly reason: string) {
    super(`checkpoint ${path} is damaged (${reason})`);
  }
}

function named(trees: Record<string, unknown>): { name: string; t: Tensor }[] {
  const out: { name: string; t: Tensor }[] = [];
  for (const key of Object.keys(trees).sort()) {
    mapTree(trees[key], (t, path) => out.push({ name: `${key}/${path}`, t }));
  }
  return out;
}

function digest(headerFields: string, data: Uint8Array): string {
  return createHash("sha256").update(headerFields).update(data).digest("hex");
}

/** Reads the tensors of `trees` back (one round trip) and writes them with `meta` to `path` atomically. */
export async function saveCheckpoint(
  path: string,
  trees: Record<string, unknown>,
  meta: unknown,
): Promise<void> {
  const entries = named(trees);
  const arrays = await readTensors(entries.map((e) => e.t));
  const dataBytes = arrays.reduce((s, a) => s + a.byteLength, 0);
  const data = new Uint8Array(dataBytes);
  let off = 0;
  for (const a of arrays) {
    data.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), off);
    off += a.byteLength;
  }
  const fields = {
    meta,
    tensors: entries.map((e) => ({ name: e.name, shape: e.t.shape, dtype: e.t.dtype })),
    dataBytes,
  };
  const header = new TextEncoder().encode(
    JSON.stringify({ ...fields, sha256: digest(JSON.stringify(fields), data) }),
  );
  const dataStart = Math.ceil((12 + header.length) / 4) * 4;
  const bytes = new Uint8Array(dataStart + dataBytes);
  bytes.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(bytes.buffer).setUint32(8, header.length, true);
  bytes.set(header, 12);
  bytes.set(data, dataStart);
  await writeFileAtomic(path, bytes);
}

/** A loaded checkpoint: its metadata and each tensor's elements by name. */
export interface Checkpoint<M> {
  meta: M;
  tensors: Map<string, { shape: number[]; data: Float32Array | Int32Array }>;
}

/**
 * Loads a checkpoint, or returns null if `path` does not exist.
 * @throws {CheckpointError} naming the file when it is truncated, garbled or fails its checksum.
 */
export async function loadCheckpoint<M>(path: string): Promise<Checkpoint<M> | null> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const bad = (reason: string) => new CheckpointError(path, reason);
  if (bytes.length < 12) throw bad(`${bytes.length} bytes, shorter than the file header`);
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== MAGIC) throw bad(`starts with ${JSON.stringify(magic)}, expected ${MAGIC}`);
  const len = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  if (12 + len > bytes.length) throw bad(`header of ${len} bytes runs past the end of the file`);
  let header: {
    meta: M;
    tensors: { name: string; shape: number[]; dtype: string }[];
    dataBytes: number;
    sha256: string;
  };
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(12, 12 + len)));
  } catch (e) {
    throw bad(`header is not valid JSON: ${(e as Error).message}`);
  }
  if (!header || !Array.isArray(header.tensors) || typeof header.sha256 !== "string") {
    throw bad("header lacks its tensors or checksum");
  }
  const dataStart = Math.ceil((12 + len) / 4) * 4;
  if (bytes.length !== dataStart + header.dataBytes) {
    throw bad(`${bytes.length} bytes, expected ${dataStart + header.dataBytes}`);
  }
  const data = bytes.subarray(dataStart);
  const { sha256, ...fields } = header;
  if (digest(JSON.stringify(fields), data) !== sha256) throw bad("checksum mismatch");
  let off = 0;
  const tensors = new Map<string, { shape: number[]; data: Float32Array | Int32Array }>();
  for (const t of header.tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (off + 4 * n > data.length) throw bad(`tensor ${t.name} runs past the end of the data`);
    const buf = data.slice(off, off + n * 4).buffer;
    tensors.set(t.name, {
      shape: t.shape,
      data: t.dtype === "i32" ? new Int32Array(buf) : new Float32Array(buf),
    });
    off += n * 4;
  }
  return { meta: header.meta, tensors };
}

/** Writes a loaded checkpoint's elements into the matching tensors of `trees` (same names and shapes). */
export function restoreCheckpoint(trees: Record<string, unknown>, ckpt: Checkpoint<unknown>): void {
  const entries = named(trees);
  if (entries.length !== ckpt.tensors.size) {
    throw new Error(`checkpoint has ${ckpt.tensors.size} tensors, the model has ${entries.length}`);
  }
  for (const { name, t } of entries) {
    const saved = ckpt.tensors.get(name);
    if (!saved || saved.data.length !== t.size) {
      throw new Error(`checkpoint tensor ${name} is missing or has another size`);
    }
    if (t.size > 0) writeBuffer(t.buffer, saved.data);
  }
}
