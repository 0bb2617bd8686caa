/**
 * Checkpoints: every tensor of some trees (params, optimiser state) plus JSON metadata, in one file written
 * atomically, so an interrupted run resumes from its last checkpoint with bit-identical state.
 *
 * Format: "MIMETIC1" (8 bytes), header length (u32 LE), header JSON { meta, tensors: [{ name, shape, dtype }] },
 * zero padding to a multiple of 4, then each tensor's raw little-endian elements in header order.
 * @module
 */
import { writeFileAtomic } from "../core/fs.ts";
import { mapTree, readTensors, type Tensor } from "../core/tensor.ts";
import { writeBuffer } from "../core/runtime.ts";

const MAGIC = "MIMETIC1";

function named(trees: Record<string, unknown>): { name: string; t: Tensor }[] {
  const out: { name: string; t: Tensor }[] = [];
  for (const key of Object.keys(trees).sort()) {
    mapTree(trees[key], (t, path) => out.push({ name: `${key}/${path}`, t }));
  }
  return out;
}

/** Reads the tensors of `trees` back (one round trip) and writes them with `meta` to `path` atomically. */
export async function saveCheckpoint(
  path: string,
  trees: Record<string, unknown>,
  meta: unknown,
): Promise<void> {
  const entries = named(trees);
  const arrays = await readTensors(entries.map((e) => e.t));
  const header = new TextEncoder().encode(JSON.stringify({
    meta,
    tensors: entries.map((e) => ({ name: e.name, shape: e.t.shape, dtype: e.t.dtype })),
  }));
  const headerEnd = 12 + header.length;
  const dataStart = Math.ceil(headerEnd / 4) * 4;
  const total = dataStart + arrays.reduce((s, a) => s + a.byteLength, 0);
  const bytes = new Uint8Array(total);
  bytes.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(bytes.buffer).setUint32(8, header.length, true);
  bytes.set(header, 12);
  let off = dataStart;
  for (const a of arrays) {
    bytes.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), off);
    off += a.byteLength;
  }
  await writeFileAtomic(path, bytes);
}

/** A loaded checkpoint: its metadata and each tensor's elements by name. */
export interface Checkpoint<M> {
  meta: M;
  tensors: Map<string, { shape: number[]; data: Float32Array | Int32Array }>;
}

/** Loads a checkpoint, or returns null if `path` does not exist. Throws on a corrupt file. */
export async function loadCheckpoint<M>(path: string): Promise<Checkpoint<M> | null> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  if (new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) {
    throw new Error(`${path} is not a mimetic checkpoint`);
  }
  const len = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + len)));
  let off = Math.ceil((12 + len) / 4) * 4;
  const tensors = new Map<string, { shape: number[]; data: Float32Array | Int32Array }>();
  for (const t of header.tensors as { name: string; shape: number[]; dtype: string }[]) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const buf = bytes.slice(off, off + n * 4).buffer;
    tensors.set(t.name, {
      shape: t.shape,
      data: t.dtype === "i32" ? new Int32Array(buf) : new Float32Array(buf),
    });
    off += n * 4;
  }
  return { meta: header.meta as M, tensors };
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
