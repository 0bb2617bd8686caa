/**
 * Embedding lookup: out[k, b, t, :] = table[k, ids[k, b, t], :], one table per run k.
 * GPU forward and deterministic backward in kernels/embedding.wgsl, the VJP, float64 references, and `checkIds`.
 *
 * Out-of-range ids: ops never read values back, so the kernel cannot report them. It clamps them to [0, V-1]
 * (forward and backward alike, so gradients stay the adjoint of the forward); `checkIds` validates ids on the CPU,
 * where they are made, and throws instead.
 * @module
 */
import { kernelSource } from "../core/kernels.ts";
import { dispatch, type Kernel } from "../core/runtime.ts";
import { record, type VjpRule } from "../core/tape.ts";
import { empty, type Tensor } from "../core/tensor.ts";
import { sumInto } from "./reduce.ts";
import { rowChunks, slice } from "./split.ts";
import { expectF32, grid1d } from "./util.ts";

/** Throws a RangeError naming `op` unless `ids` is an i32 tensor of rank ≥ 1 with K rows. */
function expectIds(op: string, ids: Tensor, K: number): void {
  if (ids.dtype !== "i32") throw new RangeError(`${op}: expected i32 ids, got ${ids}`);
  if (ids.rank < 1 || ids.shape[0] !== K) {
    throw new RangeError(`${op}: expected ids of shape (K=${K}, ...), got [${ids.shape.join(", ")}]`);
  }
}

/**
 * Throws a RangeError unless every id is an integer in [0, V). The GPU ops clamp bad ids silently; call this where
 * ids are made (data pipelines) to catch them.
 * @param what names the ids in the message (e.g. "embedding ids", "targets").
 * @example
 * ```ts
 * import { checkIds } from "./embedding.ts";
 * checkIds(new Int32Array([0, 3, 2]), 4); // fine
 * try { checkIds(new Int32Array([0, 4]), 4); } catch (e) { console.log((e as Error).message); }
 * ```
 */
export function checkIds(ids: ArrayLike<number>, V: number, what = "embedding ids"): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= V) {
      throw new RangeError(`${what}: expected integers in [0, ${V}), found ${id} at flat index ${i}`);
    }
  }
}

/**
 * Looks up rows of a per-run table. Ids outside [0, V) are clamped to [0, V-1] (see the module note).
 * Saves nothing for the backward beyond its inputs: the backward needs only the ids.
 * @param table (K, V, D) f32
 * @param ids (K, B, T) i32 (any shape (K, ...) works)
 * @returns (K, B, T, D)
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { embedding } from "./embedding.ts";
 * await initGpu();
 * const table = tensor([0, 0, 1, 1, 2, 2], [1, 3, 2]); // K=1, V=3, D=2
 * const ids = tensor(new Int32Array([2, 0, 1]), [1, 1, 3], "i32");
 * console.log(await embedding(table, ids).toArray()); // [2, 2, 0, 0, 1, 1]
 * ```
 */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  expectF32("embedding", table);
  if (table.rank !== 3) throw new RangeError(`embedding: expected a table of shape (K, V, D), got ${table}`);
  const [K, V, D] = table.shape;
  if (V < 1) {
    throw new RangeError(`embedding: expected V ≥ 1, got a table of shape [${table.shape.join(", ")}]`);
  }
  expectIds("embedding", ids, K);
  const N = ids.size / K;
  const out = empty([...ids.shape, D]);
  const kernel: Kernel = {
    name: "embedding_forward",
    code: kernelSource("embedding.wgsl", { PER_THREAD: 1 }),
    entry: "forward",
    bindings: ["read", "read", "read_write"],
  };
  // positions are independent: chunks of positions for outputs larger than one binding (the table is bound whole)
  for (const [r0, n] of rowChunks(kernel.name, K * N, [D, 1], `positions of ${D}`)) {
    dispatch(kernel, [table.buffer, slice(ids, r0, n), slice(out, r0 * D, n * D)], [K, V, N, D, r0, n], [
      ...grid1d(n * D),
    ]);
  }
  record("embedding", [table, ids], [out], {});
  return out;
}

/**
 * Chunks of positions the embedding backward splits B·T = N positions into, for a vocabulary of V (see
 * `embeddingVjp`): about 512 / V of at least 256 positions each, so that small vocabularies get ~512
 * workgroups per run (one chunk when V ≥ 512). From V and N only, never K: a run's bits do not depend on the runs
 * packed with it.
 */
export function embeddingBackwardChunks(V: number, N: number): { chunks: number; chunkLen: number } {
  const wanted = Math.max(1, Math.min(Math.ceil(N / 256), Math.ceil(512 / V)));
  const chunkLen = Math.max(256, Math.ceil(N / wanted / 256) * 256);
  return { chunks: Math.max(1, Math.ceil(N / chunkLen)), chunkLen };
}

/**
 * d table[k, v, :] = Σ over positions n of run k whose (clamped) id is v of g[k, n, :], summed in increasing n
 * within chunks of positions (`embeddingBackwardChunks`), then over the chunks in order. No float atomics: one
 * workgroup per (k, v) and chunk scans the chunk's ids (kernels/embedding.wgsl). Cost: K·V·B·T integer compares
 * from cache (1.3e8 per run at V = 8192, B·T = 64·256; measured 1.4 s on llvmpipe at V = 8192, B·T = 2048,
 * D = 32) plus one read of g and one write per chunk of d table. Unchunked, a small vocabulary left only K·V
 * workgroups each walking all B·T positions in series: 0.93 ms of the D 1024 LM's 37.9 ms step on the H200 (V 32,
 * B·T 8192).
 */
export const embeddingVjp: VjpRule = ({ inputs: [table, ids] }, [g]) => {
  const [K, V, D] = table.shape;
  const N = ids.size / K;
  const { chunks, chunkLen } = embeddingBackwardChunks(V, N);
  const partial = empty(chunks > 1 ? [chunks, K, V, D] : table.shape);
  dispatch(
    {
      name: "embedding_backward",
      code: kernelSource("embedding.wgsl", { PER_THREAD: Math.max(1, Math.ceil(D / 256)) }),
      entry: "backward",
      bindings: ["read", "read", "read_write"],
    },
    [ids.buffer, g!.buffer, partial.buffer],
    [K, V, N, D, 0, K * N, chunkLen],
    grid1d(chunks * K * V, 1),
  );
  if (chunks === 1) return [partial, null];
  const dTable = empty(table.shape);
  sumInto(partial, [1, chunks, K * V * D], dTable);
  partial.dispose();
  return [dTable, null];
};

const clampId = (id: number, V: number) => Math.min(Math.max(Math.trunc(id), 0), V - 1);

/**
 * Float64 reference of `embedding` (ids clamped like the kernel).
 * @param table (K, V, D) flat
 * @param ids (K, N) flat, N = B·T
 * @returns (K, N, D) flat
 */
export function embeddingRef(
  table: Float64Array,
  ids: ArrayLike<number>,
  K: number,
  V: number,
  D: number,
): Float64Array {
  const N = ids.length / K;
  const out = new Float64Array(K * N * D);
  for (let k = 0; k < K; k++) {
    for (let n = 0; n < N; n++) {
      const v = clampId(ids[k * N + n], V);
      for (let d = 0; d < D; d++) out[(k * N + n) * D + d] = table[(k * V + v) * D + d];
    }
  }
  return out;
}

/**
 * Float64 reference VJP of `embedding`: the gradient of the table.
 * @param g (K, N, D) flat cotangent
 * @returns d table (K, V, D) flat
 */
export function embeddingVjpRef(
  g: Float64Array,
  ids: ArrayLike<number>,
  K: number,
  V: number,
  D: number,
): Float64Array {
  const N = ids.length / K;
  const dTable = new Float64Array(K * V * D);
  for (let k = 0; k < K; k++) {
    for (let n = 0; n < N; n++) {
      const v = clampId(ids[k * N + n], V);
      for (let d = 0; d < D; d++) dTable[(k * V + v) * D + d] += g[(k * N + n) * D + d];
    }
  }
  return dTable;
}
