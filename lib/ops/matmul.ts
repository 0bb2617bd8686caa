/**
 * Batched matrix multiplication with optional transposes: `matmul(a, b, { transA, transB })`.
 * GPU forward in kernels/matmul.wgsl (tiled, register-blocked, vec4 loads where aligned), VJP through `matmul`
 * itself with transpose flags (no transpose is ever materialised), float64 references.
 *
 * The main use is per-run weights: x (K, B·T, D) @ W (K, D, E) → (K, B·T, E), one batch entry per run.
 * @module
 */
import { kernelData, kernelSource } from "../core/kernels.ts";
import { dispatch, formatBytes, gpu, gpuInfo, type Kernel } from "../core/runtime.ts";
import { record, type VjpRule } from "../core/tape.ts";
import { empty, type Shape, sizeOf, type Tensor } from "../core/tensor.ts";
import { sum, sumInto } from "./reduce.ts";
import { bindingLimits, slice } from "./split.ts";
import { concat, splitAlong } from "./concat.ts";
import { expectF32, sameShape } from "./util.ts";

/** Transpose flags: `transA` reads a as (..., Kd, M), `transB` reads b as (..., N, Kd). */
export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  /**
   * Tile configuration (for tuning and tests); when absent, from this adapter's tuning table
   * (kernels/matmul_tuning.json, `tilesFromTable`) or else the rule `chooseTiles`.
   */
  tiles?: MatmulTiles;
  /**
   * Split-K parts of the forward product (for tuning and tests; 1 turns it off); chosen from the problem size
   * when absent (`chooseSplitK`). Gradients always choose their own.
   */
  splitK?: number;
}

/**
 * A tile configuration of the kernel: each of the 256 threads computes TM×TN outputs of a (16·TM)×(16·TN) tile;
 * the Kd axis is walked in steps of BK.
 */
export interface MatmulTiles {
  TM: 4 | 8;
  TN: 4 | 8;
  BK: 8 | 16;
}

/** The sizes of one product: per batch entry op(A) (M, Kd) · op(B) (Kd, N). */
interface Dims {
  batch: number;
  M: number;
  N: number;
  Kd: number;
}

/** The shapes of a and b read through the transpose flags; throws a RangeError naming what does not fit. */
function matmulDims(
  aShape: Shape,
  bShape: Shape,
  transA: boolean,
  transB: boolean,
): Dims & { outShape: number[] } {
  if (aShape.length < 2 || bShape.length < 2) {
    throw new RangeError(
      `matmul: expected a and b of rank ≥ 2, got a [${aShape.join(", ")}] and b [${bShape.join(", ")}]`,
    );
  }
  const [ar, ac] = aShape.slice(-2);
  const [br, bc] = bShape.slice(-2);
  const [M, Kd] = transA ? [ac, ar] : [ar, ac];
  const [KdB, N] = transB ? [bc, br] : [br, bc];
  if (Kd !== KdB) {
    throw new RangeError(
      `matmul: inner dimensions differ: a [${aShape.join(", ")}]${transA ? "ᵀ" : ""} has ${Kd} columns but ` +
        `b [${bShape.join(", ")}]${transB ? "ᵀ" : ""} has ${KdB} rows`,
    );
  }
  const aBatch = aShape.slice(0, -2);
  const bBatch = bShape.slice(0, -2);
  if (bBatch.length > 0 && !sameShape(aBatch, bBatch)) {
    throw new RangeError(
      `matmul: batch dimensions must be equal or b must be 2-D: got a [${aShape.join(", ")}] and ` +
        `b [${bShape.join(", ")}]`,
    );
  }
  return { batch: sizeOf(aBatch), M, N, Kd, outShape: [...aBatch, M, N] };
}

/**
 * The rule when the tuning table has no entry near the shape (kernels/matmul_tuning.json, per adapter).
 * Fits the tile to the work: 128×128 tiles (the fastest on the H100 at 2048³ and on the per-run shape, measured by
 * tests/matmul_bench.ts with MATMUL_TUNE=1) only when there are enough of them to give the 132 SMs ~2 each;
 * smaller tiles otherwise. BK = 16 measured no better than 8.
 */
export function chooseTiles({ batch, M, N }: { batch: number; M: number; N: number }): MatmulTiles {
  const groups = (bm: number, bn: number) => batch * Math.ceil(M / bm) * Math.ceil(N / bn);
  const wide = groups(128, 128) >= 256;
  const BK = 8;
  if (wide) return { TM: 8, TN: 8, BK };
  if (groups(128, 64) >= 256) return { TM: 8, TN: 4, BK };
  if (groups(64, 128) >= 256) return { TM: 4, TN: 8, BK };
  return { TM: 4, TN: 4, BK };
}

/** One product's shape and transposes, as a tuning table keys it. */
export interface MatmulShape {
  batch: number;
  M: number;
  N: number;
  Kd: number;
  transA: boolean;
  transB: boolean;
}

/** A measured best tile configuration for one shape (kernels/matmul_tuning.json). */
export interface MatmulTuningEntry extends MatmulShape {
  tiles: MatmulTiles;
  /** Seconds it took, and what the rule (`chooseTiles`) took, when measured. */
  seconds?: number;
  ruleSeconds?: number;
}

/** The tuning table: measured entries per adapter description (`gpuInfo().description`). */
export interface MatmulTuningTable {
  adapters: Record<string, { measured: string; entries: MatmulTuningEntry[] }>;
}

/**
 * The tiles for a shape from a tuning table's entries: the entry of the same shape if there is one, else the
 * nearest measured shape with the same transposes whose batch·M, N and Kd are each within a factor of 2 (distance
 * in log2 of the three), else undefined (the caller falls back to `chooseTiles`). Tiles never change results:
 * every output is summed over Kd in the same order whatever the tile (kernels/matmul.wgsl), so this may look at
 * the batch; only split-K changes the order, and it is chosen from M, N, Kd alone (`chooseSplitK`).
 */
export function tilesFromTable(
  entries: readonly MatmulTuningEntry[],
  s: MatmulShape,
): MatmulTiles | undefined {
  let best: MatmulTuningEntry | undefined, bestDistance = Infinity;
  for (const e of entries) {
    if (e.transA !== s.transA || e.transB !== s.transB) continue;
    const d = [
      Math.log2((e.batch * e.M) / (s.batch * s.M)),
      Math.log2(e.N / s.N),
      Math.log2(e.Kd / s.Kd),
    ];
    if (d.some((x) => Math.abs(x) > 1)) continue;
    const distance = d.reduce((a, x) => a + x * x, 0);
    if (distance < bestDistance) [best, bestDistance] = [e, distance];
  }
  return best?.tiles;
}

/** This adapter's measured entries (empty when the table has none for it). */
function tuningEntries(): readonly MatmulTuningEntry[] {
  if (adapterEntries === null) {
    const table = kernelData("matmul_tuning.json") as MatmulTuningTable;
    adapterEntries = table.adapters[gpuInfo().description]?.entries ?? [];
    for (const e of adapterEntries) {
      const { TM, TN, BK } = e.tiles ?? {};
      if (![4, 8].includes(TM) || ![4, 8].includes(TN) || ![8, 16].includes(BK)) {
        throw new Error(
          `kernels/matmul_tuning.json: bad tiles ${JSON.stringify(e.tiles)} for ${gpuInfo().description}; ` +
            "rerun MATMUL_TUNE=1 deno run -A tests/matmul_bench.ts or remove the entry",
        );
      }
    }
  }
  return adapterEntries;
}
let adapterEntries: readonly MatmulTuningEntry[] | null = null;

let shapeLog: MatmulShape[] | null = null;

/**
 * Runs `record` and returns the shape of every product it recorded (forward and gradients, in order): what a
 * tuning run measures (tests/matmul_bench.ts with MATMUL_TUNE=1 collects a training step's products this way).
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { matmul, matmulShapesOf } from "./matmul.ts";
 * await initGpu();
 * const a = tensor([1, 2, 3, 4], [2, 2]);
 * console.log(matmulShapesOf(() => matmul(a, a).dispose())); // [{ batch: 1, M: 2, N: 2, Kd: 2, ... }]
 * ```
 */
export function matmulShapesOf(record: () => void): MatmulShape[] {
  const outer = shapeLog;
  const log: MatmulShape[] = [];
  shapeLog = log;
  try {
    record();
  } finally {
    shapeLog = outer;
  }
  outer?.push(...log);
  return log;
}

/** Streaming multiprocessors of the H100 (WebGPU does not report the GPU's size). */
const SMS = 132;

/**
 * Split-K: when the output tiles are fewer than the SMs (small outputs with a long Kd, as the weight gradients
 * dW = Xᵀ·dY of small models over many tokens), split the Kd sum into parts of at least 256 that run as separate
 * workgroups, aiming at ~4 workgroups per SM, and sum the parts afterwards (fixed order). Measured on the H100:
 * the fig7 quick model's 12 weight-gradient products of this kind took 13.3 ms of a 35.7 ms training step
 * without it (tests/lm_step_bench.ts, LM_PROFILE=1).
 */
function chooseSplitK({ M, N, Kd }: Dims): number {
  // From one product's own size, never the batch: the batch holds the run axis K, and a run's bits must not depend
  // on which runs share its group (the same spec gives the same bits, whatever the sweep packs with it). Tiles are
  // counted at 64×64 for the same reason (the tile shape is chosen with the batch; the sum order is not).
  const groups = Math.ceil(M / 64) * Math.ceil(N / 64);
  if (groups >= SMS) return 1;
  return Math.max(1, Math.min(Math.ceil((4 * SMS) / groups), Math.floor(Kd / 256)));
}

/**
 * Elements of the split-K scratch (batch, parts, M, N) that a product of these sizes allocates on top of its
 * output (0 when it needs no split-K), for memory estimates.
 */
export function matmulScratchElements(batch: number, M: number, N: number, Kd: number): number {
  const parts = chooseSplitK({ batch, M, N, Kd });
  if (parts <= 1) return 0;
  const kChunk = Math.ceil(Kd / parts / 8) * 8;
  const used = Math.ceil(Kd / kChunk);
  return used > 1 ? batch * used * M * N : 0;
}

/** The flag bits of the kernel's `Params.flags`. */
const FLAG_BITS = { TRANS_A: 1, TRANS_B: 2, VEC_A: 4, VEC_B: 8 } as const;

/**
 * The kernel for a tile shape and flags. On GPUs the flags are compile-time constants (each combination its own
 * pipeline, with the unused load paths compiled away); on CPU adapters they are read from `Params.flags`, since
 * llvmpipe takes seconds to compile each pipeline and one per tile shape is enough there.
 */
function matmulKernel(t: MatmulTiles, flags: number): Kernel {
  // Cached: substituting the source costs more than recording the dispatch itself.
  const cacheKey = `${t.TM},${t.TN},${t.BK},${flags}`;
  let kernel = kernelCache.get(cacheKey);
  if (!kernel) kernelCache.set(cacheKey, kernel = buildKernel(t, flags));
  return kernel;
}
const kernelCache = new Map<string, Kernel>();

function buildKernel(t: MatmulTiles, flags: number): Kernel {
  let { TM, TN, BK } = t;
  // Two double-buffered, padded k-major tiles must fit in workgroup memory; halve BK where they do not.
  const bytes = (bk: number) => 2 * bk * (16 * TM + 4 + 16 * TN + 4) * 4;
  if (BK === 16 && bytes(16) > gpu().limits.maxComputeWorkgroupStorageSize) BK = 8;
  const runtimeFlags = gpuInfo().isCpu;
  const subst: Record<string, string | number> = { TM, TN, BK };
  for (const [name, bit] of Object.entries(FLAG_BITS)) {
    subst[name] = runtimeFlags ? `(p.flags & ${bit}u) != 0u` : String((flags & bit) !== 0);
  }
  return {
    name: `matmul_${TM}x${TN}x${BK}_${runtimeFlags ? "f" : flags}`,
    code: kernelSource("matmul.wgsl", subst),
    bindings: ["read", "read", "read", "read", "read_write"],
  };
}

/**
 * Records C[z] = op(A[z]) · op(B[z]) into `out`, for z < batch. `strideA`/`strideB` are the element offsets between
 * batch entries (0: one matrix shared by all entries). The building block of the forward and of both gradients.
 * Operands larger than one storage binding are split (`splitPlan`).
 */
function matmulInto(
  a: Tensor,
  b: Tensor,
  out: Tensor,
  d: Dims,
  transA: boolean,
  transB: boolean,
  sharedA: boolean,
  sharedB: boolean,
  tiles?: MatmulTiles,
  splitK?: number,
): void {
  const { batch, M, N, Kd } = d;
  if (batch === 0 || M === 0 || N === 0) return;
  shapeLog?.push({ batch, M, N, Kd, transA, transB });
  let t = tiles ?? tilesFromTable(tuningEntries(), { batch, M, N, Kd, transA, transB }) ?? chooseTiles(d);
  // Split-K parts: kChunk a multiple of 8, whatever the tile's BK, so that the parts (and with them the rounding)
  // do not depend on the tile, which may be chosen with the batch; the kernel's K-steps must not cross into the
  // next part, so a BK of 16 that does not divide kChunk drops to 8.
  const wanted = splitK ?? chooseSplitK(d);
  if (!Number.isInteger(wanted) || wanted < 1) {
    throw new RangeError(`matmul: splitK must be a positive integer, got ${wanted}`);
  }
  const plan = splitPlan(d, transA, transB, sharedA, sharedB, wanted, 8);
  const kChunk = plan.kChunk;
  const parts = plan.parts;
  if (parts > 1 && kChunk % t.BK !== 0) t = { ...t, BK: 8 };
  const target = parts > 1 ? empty([batch, parts, M, N]) : out;
  // vec4 loads need each group of 4 along the contiguous axis to start at a multiple of 4 (the row length, and
  // with it every batch offset, is then a multiple of 4).
  const vecA = (transA ? M : Kd) % 4 === 0;
  const vecB = (transB ? Kd : N) % 4 === 0;
  const flags = (transA ? FLAG_BITS.TRANS_A : 0) | (transB ? FLAG_BITS.TRANS_B : 0) |
    (vecA ? FLAG_BITS.VEC_A : 0) | (vecB ? FLAG_BITS.VEC_B : 0);
  const kernel = matmulKernel(t, flags);
  const strideA = sharedA ? 0 : M * Kd, strideB = sharedB ? 0 : Kd * N;
  const params = (rows: number, zBase: number, offs: readonly number[]) => [
    rows,
    N,
    Kd,
    strideA,
    strideB,
    M * N,
    zBase,
    flags,
    parts,
    kChunk,
    ...offs.map((o) => o >>> 0), // mod 2^32: the kernel adds them in u32 arithmetic
  ];
  const grid = (rows: number, zs: number): [number, number, number] => [
    Math.ceil(N / (16 * t.TN)),
    Math.ceil(rows / (16 * t.TM)),
    zs,
  ];
  if (plan.kind === "whole") {
    const maxBatch = gpu().limits.maxComputeWorkgroupsPerDimension;
    // The z grid dimension is capped (65535): longer grids take several dispatches, starting at entry z0.
    const zTotal = batch * parts;
    for (let z0 = 0; z0 < zTotal; z0 += maxBatch) {
      const zs = Math.min(maxBatch, zTotal - z0);
      dispatch(kernel, [a.buffer, a.buffer, b.buffer, b.buffer, target.buffer], params(M, z0, [0, 0, 0]), [
        ...grid(M, zs),
      ]);
    }
  } else {
    // Each piece binds the elements [start, end) of each operand it reads, from an aligned start; the offsets
    // make the kernel's indices (z·stride + row·width + ...) address the slices.
    for (const piece of plan.pieces) {
      const view = (x: Tensor, [s0, s1]: readonly [number, number]) => slice(x, s0, s1 - s0);
      const av = view(a, piece.a), bv = view(b, piece.b), cv = view(target, piece.c);
      dispatch(
        kernel,
        [av, av, bv, bv, cv],
        params(piece.rows, piece.zBase, [piece.offA, piece.offB, piece.offC]),
        grid(piece.rows, piece.zs),
      );
    }
  }
  if (parts > 1) {
    sumInto(target, [batch, parts, M * N], out);
    target.dispose();
  }
}

/** One dispatch of a split product: its rows of C, grid entries, element ranges bound, and index offsets. */
interface Piece {
  rows: number;
  zBase: number;
  zs: number;
  a: readonly [number, number];
  b: readonly [number, number];
  c: readonly [number, number];
  offA: number;
  offB: number;
  offC: number;
}

type SplitPlan =
  | { kind: "whole"; parts: number; kChunk: number }
  | { kind: "split"; parts: number; kChunk: number; pieces: Piece[] };

/**
 * How a product is dispatched when an operand exceeds one storage binding (`maxStorageBufferBindingSize`):
 * 1. whole: everything fits (the usual case);
 * 2. by batch entries: runs of consecutive entries whose slices fit; the same kernel, tiles and split-K parts
 *    per entry as unsplit, so the same bits;
 * 3. by rows of C (one entry's A or C too large, A not transposed): chunks of rows of A and C, the same bits;
 * 4. by the Kd sum (A transposed, as in the weight gradients Xᵀ·G over B·T tokens, or A's entry fitting whole):
 *    split-K with enough parts that each part's rows of A and B fit, summed in a fixed order. The parts depend
 *    only on one product's size and the device's limit, never on the batch axis (which holds the runs).
 * @throws {RangeError} when no split fits (B transposed and larger than one binding, or a shared operand larger
 *   than one binding).
 */
function splitPlan(
  d: Dims,
  transA: boolean,
  transB: boolean,
  sharedA: boolean,
  sharedB: boolean,
  wantedParts: number,
  BK: number,
): SplitPlan {
  const { batch, M, N, Kd } = d;
  const { maxBytes, align } = bindingLimits();
  const unit = Math.max(4, align / 4); // elements of one offset-alignment step
  const cap = Math.floor(maxBytes / 4) - unit; // elements a slice may hold after rounding its start down
  const kChunkOf = (parts: number) => (Kd === 0 ? 1 : Math.ceil(Kd / parts / BK) * BK);
  const partsOf = (kChunk: number) => (Kd === 0 ? 1 : Math.ceil(Kd / kChunk));
  let kChunk = kChunkOf(wantedParts);
  let parts = partsOf(kChunk);
  const aEntry = M * Kd, bEntry = Kd * N, cEntry = M * N * parts;
  const aTotal = sharedA ? aEntry : batch * aEntry, bTotal = sharedB ? bEntry : batch * bEntry;
  if (Math.max(aTotal, bTotal, batch * cEntry) * 4 <= maxBytes) return { kind: "whole", parts, kChunk };
  const down = (x: number) => Math.floor(x / unit) * unit;
  const range = (s0: number, s1: number): [number, number] => [down(s0), s1];
  const aStart = (z: number) => (sharedA ? 0 : z * aEntry),
    bStart = (z: number) => (sharedB ? 0 : z * bEntry);
  const fail = (why: string) =>
    new RangeError(
      `matmul: ${why} (batch ${batch}, ${M}×${Kd} · ${Kd}×${N}${transA ? ", A transposed" : ""}${
        transB ? ", B transposed" : ""
      }) exceeds this adapter's maxStorageBufferBindingSize of ${formatBytes(maxBytes)} and cannot be split`,
    );
  if (sharedA && aEntry > cap) throw fail("the shared A");
  if (sharedB && bEntry > cap) throw fail("the shared B");
  const pieces: Piece[] = [];
  const aOk = sharedA || aEntry <= cap, bOk = sharedB || bEntry <= cap;
  if (aOk && bOk && cEntry <= cap) {
    // 2. runs of whole entries
    const zMax = Math.floor(gpu().limits.maxComputeWorkgroupsPerDimension / parts);
    const per = Math.max(
      1,
      Math.min(zMax, Math.floor(cap / Math.max(sharedA ? 1 : aEntry, sharedB ? 1 : bEntry, cEntry))),
    );
    for (let z0 = 0; z0 < batch; z0 += per) {
      const z1 = Math.min(batch, z0 + per);
      const a = sharedA ? [0, aEntry] as [number, number] : range(z0 * aEntry, z1 * aEntry);
      const b = sharedB ? [0, bEntry] as [number, number] : range(z0 * bEntry, z1 * bEntry);
      const c = range(z0 * cEntry, z1 * cEntry);
      pieces.push({
        rows: M,
        zBase: z0 * parts,
        zs: (z1 - z0) * parts,
        a,
        b,
        c,
        offA: -a[0],
        offB: -b[0],
        offC: -c[0],
      });
    }
    return { kind: "split", parts, kChunk, pieces };
  }
  if (!transA && bOk && Kd <= cap && N <= cap) {
    // 3. rows of C within each entry (and each split-K part), with the matching rows of A
    const rowsPer = Math.floor(cap / Math.max(Kd, N));
    for (let z = 0; z < batch; z++) {
      for (let m0 = 0; m0 < M; m0 += rowsPer) {
        const m1 = Math.min(M, m0 + rowsPer);
        const a = range(aStart(z) + m0 * Kd, aStart(z) + m1 * Kd);
        const b = range(bStart(z), bStart(z) + bEntry);
        for (let part = 0; part < parts; part++) {
          const zt = z * parts + part;
          const c = range((zt * M + m0) * N, (zt * M + m1) * N);
          pieces.push({
            rows: m1 - m0,
            zBase: zt,
            zs: 1,
            a,
            b,
            c,
            offA: m0 * Kd - a[0],
            offB: -b[0],
            offC: m0 * N - c[0],
          });
        }
      }
    }
    return { kind: "split", parts, kChunk, pieces };
  }
  if ((transA || aOk) && (!transB || bOk) && M * N <= cap) {
    // 4. the Kd sum in parts whose rows of A (transposed: (Kd, M)) and B ((Kd, N)) fit
    const rowWidth = Math.max(transA ? M : 0, transB ? 0 : N, 1);
    const kFit = Math.floor(cap / rowWidth / BK) * BK;
    if (kFit < BK) throw fail("one step of the Kd sum");
    kChunk = Math.min(kChunk, kFit);
    parts = partsOf(kChunk);
    const cPer = M * N * parts;
    const c = [0, batch * cPer] as [number, number];
    if (batch * cPer > cap) throw fail("the split-K partial sums");
    for (let z = 0; z < batch; z++) {
      for (let part = 0; part < parts; part++) {
        const k0 = part * kChunk, k1 = Math.min(Kd, k0 + kChunk);
        const a = transA
          ? range(aStart(z) + k0 * M, aStart(z) + k1 * M)
          : range(aStart(z), aStart(z) + aEntry);
        const b = transB
          ? range(bStart(z), bStart(z) + bEntry)
          : range(bStart(z) + k0 * N, bStart(z) + k1 * N);
        pieces.push({ rows: M, zBase: z * parts + part, zs: 1, a, b, c, offA: -a[0], offB: -b[0], offC: 0 });
      }
    }
    return { kind: "split", parts, kChunk, pieces };
  }
  throw fail(transB ? "B transposed" : "an entry");
}

/**
 * Matrix product over the last two axes, batched over the leading ones.
 *
 * a: (..., M, Kd), or (..., Kd, M) with `transA`; b: (..., Kd, N), or (..., N, Kd) with `transB`, with the same
 * leading (batch) axes as a, or 2-D (one matrix shared by every batch entry). Returns (..., M, N).
 * Saves nothing beyond its inputs: the backward needs exactly a and b.
 * @throws {RangeError} on ranks below 2, mismatched inner or batch dimensions, or non-f32 inputs.
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { matmul } from "./matmul.ts";
 * await initGpu();
 * const x = tensor([1, 2, 3, 4, 5, 6], [1, 2, 3]); // (K=1, B·T=2, D=3)
 * const w = tensor([1, 0, 0, 1, 1, 1], [1, 3, 2]); // (K=1, D=3, E=2)
 * console.log(await matmul(x, w).toArray()); // [4, 5, 10, 11]
 * ```
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  expectF32("matmul", a);
  expectF32("matmul", b);
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const d = matmulDims(a.shape, b.shape, transA, transB);
  const out = empty(d.outShape);
  matmulInto(a, b, out, d, transA, transB, false, b.rank === 2 && a.rank > 2, opts.tiles, opts.splitK);
  record("matmul", [a, b], [out], { transA, transB });
  return out;
}

/**
 * The VJP of C = op(A)·op(B) with cotangent G (per batch entry; Xᵀ below is a flag, never a copy):
 *   d op(A) = G·op(B)ᵀ, so dA = G·op(B)ᵀ, or its transpose op(B)·Gᵀ when transA;
 *   d op(B) = op(A)ᵀ·G, so dB = op(A)ᵀ·G, or its transpose Gᵀ·op(A) when transB.
 * With a shared 2-D b, dB sums over the batch: when A's entries stack along M (not transA), the sum is one
 * product over the flattened (batch·M) axis; otherwise the per-entry products are summed over the batch axis.
 */
export const matmulVjp: VjpRule<{ transA: boolean; transB: boolean }> = (
  { inputs: [a, b], attrs: { transA, transB } },
  [g],
) => {
  const { batch, M, N, Kd } = matmulDims(a.shape, b.shape, transA, transB);
  const sharedB = b.rank === 2 && a.rank > 2;
  const G = g!;

  // dA has a's stored shape; G is (batch, M, N).
  const da = empty(a.shape);
  if (!transA) {
    // dA (M, Kd) = G (M, N) · op(B)ᵀ (N, Kd): B's stored form read with the opposite flag.
    matmulInto(G, b, da, { batch, M, N: Kd, Kd: N }, false, !transB, false, sharedB);
  } else {
    // dA (Kd, M) = op(B) (Kd, N) · Gᵀ (N, M).
    matmulInto(b, G, da, { batch, M: Kd, N: M, Kd: N }, transB, true, sharedB, false);
  }

  let db: Tensor;
  if (!sharedB || !transA) {
    // Per entry (or, for a shared b, over the flattened batch·M axis, which sums the entries in the product).
    const rows = sharedB ? batch * M : M;
    const nb = sharedB ? 1 : batch;
    db = empty(b.shape);
    if (!transB) {
      // dB (Kd, N) = op(A)ᵀ (Kd, M) · G (M, N).
      matmulInto(a, G, db, { batch: nb, M: Kd, N, Kd: rows }, !transA, false, false, false);
    } else {
      // dB (N, Kd) = Gᵀ (N, M) · op(A) (M, Kd).
      matmulInto(G, a, db, { batch: nb, M: N, N: Kd, Kd: rows }, true, transA, false, false);
    }
  } else {
    // Shared b with transA: A's entries are (Kd, M) blocks that do not stack into one matrix; sum per-entry
    // gradients over the batch in a fixed order.
    const per = empty([batch, ...b.shape]);
    if (!transB) matmulInto(a, G, per, { batch, M: Kd, N, Kd: M }, false, false, false, false);
    else matmulInto(G, a, per, { batch, M: N, N: Kd, Kd: M }, true, true, false, false);
    db = sum(per, 0);
    per.dispose();
  }
  return [da, db];
};

// ---------------------------------------------------------------------------------------------------------------
// Float64 references

/** op(X)[i][k] of one batch entry of X stored (rows, cols) row-major at `off`. */
function at(x: Float64Array, off: number, cols: number, trans: boolean, i: number, k: number): number {
  return trans ? x[off + k * cols + i] : x[off + i * cols + k];
}

/**
 * The products of one input with several matrices, x·w_1, …, x·w_n, computed as one product with their
 * concatenation [w_1 | … | w_n] and split: thin products (a few dozen columns) fill the GPU badly alone, and the
 * backward then forms one gradient of x instead of n to add up. The same values as n products, up to rounding
 * (the tiles and split-K of the fused product are chosen for its own shape).
 * @param x (K, M, Kd)
 * @param ws each (K, Kd, N_j)
 * @returns x·w_j for each j, (K, M, N_j)
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { matmulParts } from "./matmul.ts";
 * await initGpu();
 * const x = tensor([1, 2, 3, 4], [1, 2, 2]);
 * const [a, b] = matmulParts(x, [tensor([1, 0, 0, 1], [1, 2, 2]), tensor([1, 1], [1, 2, 1])]);
 * console.log(await a.toArray(), await b.toArray()); // [1, 2, 3, 4] [3, 7]
 * ```
 */
export function matmulParts(x: Tensor, ws: readonly Tensor[]): Tensor[] {
  if (ws.length === 1) return [matmul(x, ws[0])];
  return splitAlong(matmul(x, concat(ws, -1)), ws.map((w) => w.shape[w.rank - 1]), -1);
}

/**
 * Float64 reference of `matmul`: same shapes and flags.
 * @example
 * ```ts
 * import { matmulRef } from "./matmul.ts";
 * const { data, shape } = matmulRef(new Float64Array([1, 2, 3, 4]), [2, 2], new Float64Array([1, 0, 0, 1]), [2, 2]);
 * console.log(shape, data); // [2, 2] [1, 2, 3, 4]
 * ```
 */
export function matmulRef(
  a: Float64Array,
  aShape: Shape,
  b: Float64Array,
  bShape: Shape,
  opts: { transA?: boolean; transB?: boolean } = {},
): { data: Float64Array; shape: number[] } {
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  const { batch, M, N, Kd, outShape } = matmulDims(aShape, bShape, transA, transB);
  const sharedB = bShape.length === 2 && aShape.length > 2;
  const aCols = aShape[aShape.length - 1], bCols = bShape[bShape.length - 1];
  const out = new Float64Array(batch * M * N);
  for (let z = 0; z < batch; z++) {
    const ao = z * M * Kd, bo = sharedB ? 0 : z * Kd * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < Kd; k++) s += at(a, ao, aCols, transA, i, k) * at(b, bo, bCols, transB, k, j);
        out[(z * M + i) * N + j] = s;
      }
    }
  }
  return { data: out, shape: outShape };
}

/**
 * Float64 reference VJP of `matmul`: the gradients of <matmul(a, b), g> with respect to a and b (stored shapes).
 * @example
 * ```ts
 * import { matmulVjpRef } from "./matmul.ts";
 * const [da, db] = matmulVjpRef(new Float64Array([1, 2]), [1, 2], new Float64Array([3, 4]), [2, 1], new Float64Array([1]));
 * console.log(da, db); // [3, 4] [1, 2]
 * ```
 */
export function matmulVjpRef(
  a: Float64Array,
  aShape: Shape,
  b: Float64Array,
  bShape: Shape,
  g: Float64Array,
  opts: { transA?: boolean; transB?: boolean } = {},
): [Float64Array, Float64Array] {
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  const { batch, M, N, Kd } = matmulDims(aShape, bShape, transA, transB);
  const sharedB = bShape.length === 2 && aShape.length > 2;
  const aCols = aShape[aShape.length - 1], bCols = bShape[bShape.length - 1];
  const da = new Float64Array(a.length), db = new Float64Array(b.length);
  // C[i][j] = Σ_k op(A)[i][k] op(B)[k][j]: each product term sends g[i][j] times its partner to both factors.
  for (let z = 0; z < batch; z++) {
    const ao = z * M * Kd, bo = sharedB ? 0 : z * Kd * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        const gij = g[(z * M + i) * N + j];
        for (let k = 0; k < Kd; k++) {
          const ai = ao + (transA ? k * aCols + i : i * aCols + k);
          const bi = bo + (transB ? j * bCols + k : k * bCols + j);
          da[ai] += gij * b[bi];
          db[bi] += gij * a[ai];
        }
      }
    }
  }
  return [da, db];
}
