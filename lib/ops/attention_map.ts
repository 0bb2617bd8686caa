/**
 * Attention maps of Mamba layers: the channel average of the SSM's input-to-output matrices (paper Eq. 8) and the
 * "average attention mask" (paper section 2), computed from a layer's scan inputs. Analysis only: no gradient, not
 * a tape primitive. GPU kernels in kernels/attention_map.wgsl, float64 references below.
 *
 * ## Math (one run k, batch row b; s_c(i, j) = Σ_{t=j+1}^{i} Δ_t[c] is the decay exponent of channel c)
 * Mamba 1 (channels e < E, states n < N; the scan y_i = Σ_{j≤i} M_e[i, j]·u_j of channel e):
 *   map[i, j]  = (1/E) Σ_e Σ_n C_i[n] · exp(A[e, n]·s_e(i, j)) · Δ_j[e] · B_j[n]       (j ≤ i; 0 above)
 *   mask[i, j] = (1/(E·N)) Σ_e Σ_n exp(A[e, n]·s_e(i, j))
 * Mamba 2 (heads h < H, head h reads group g(h) = h / (H/G); each head's map stands for its P channels, so the
 * channel average is the head average):
 *   map[i, j]  = (1/H) Σ_h (C_i · B_j)_{g(h)} · exp(A_h·s_h(i, j)) · dt_j[h]
 *   mask[i, j] = (1/H) Σ_h exp(A_h·s_h(i, j))
 *
 * ## Precision: no differences of long prefix sums
 * With S_t = Σ_{u≤t} Δ_u, s(i, j) = S_i − S_j carries the f32 rounding of S_i (≈ ε·S_i, S_i up to T·Δ) however
 * small s is, so exp(A·s) gets a relative error up to |A|·ε·S_i whatever its size: up to ~2e-4 for entries near the
 * diagonal at T = 1000, Δ ≈ 1, |A| = 4. Here time is cut into blocks of TB = 16 (the tile edge) and a `prefix` pass
 * stores, per channel, the inclusive prefix U_t from the start of t's block, the exclusive suffix R_t to its end,
 * and each block's sum BS_b, all summed sequentially in a fixed order. For i in block bi and j in block bj:
 *   bi = bj:  s = U_i − U_j                          (a difference of sums of at most 16 terms)
 *   bi > bj:  s = U_i + R_j + Σ_{bj < b < bi} BS_b    (positive terms only)
 * so s has a relative error of at most ~(TB + T/TB)·ε (typically far less), and exp(A·s) a relative error
 * ≲ |A·s|·(TB + T/TB)·ε: proportional to the exponent, small wherever the entry is not negligible, and not
 * growing with the position i. The map's sums are two-level (chunks of 32 channels, then chunk totals).
 * Measured at T = 1000 (Δ ∈ [0.5, 1.5], A ∈ [−4, −1e-3], tests/attention_map_test.ts): max error 1.3e-7 of
 * max |map|, against 5e-6 – 1e-5 with exponents from naive f32 prefix-sum differences.
 *
 * ## GPU layout and cost
 * One workgroup per 16×16 tile (i block, j block, k), one thread per (i, j); tiles above the diagonal write zeros.
 * Mamba 1 stages, per chunk of 32 channels, the exponent parts and Δ_j in workgroup memory and keeps NB (a divisor
 * of N, ≤ 16) accumulators per thread in registers, so each (i, j, e, n) costs one exp and three multiply-adds:
 * ≈ E·N·T²/2 exps (T = 1000, E = 2048, N = 32: 3.3e10 exps, ~1.3e11 FLOP). The exp unit bounds it: an H100
 * does ~16 exp/clk/SM, 3.7e12/s, so ≥ 9 ms for that map, tens of ms expected (tests/attention_map_bench.ts
 * measures it; on llvmpipe T = 1000 takes ~9 s even for E·N = 6, so tests keep E, N tiny there). A restructuring
 * that was considered: exp(A(U_i + V_j)) = exp(A·U_i)·exp(A·V_j) with both factors ≤ 1 (stable), which turns each
 * off-diagonal tile row into a T×T×(E·N) matrix product with only T·E·N exps per block row — fewer exps but the
 * same multiply-add count and a matmul-style kernel; not done, since a map is computed a handful of times per run.
 * Mamba 2 is cheap: per (i, j) one G·N dot product and H exps (T = 1000, H = 32, N = 128: ~1e8 FLOP).
 * @module
 */
import { kernelSource } from "../core/kernels.ts";
import { dispatch, type Kernel } from "../core/runtime.ts";
import { empty, type Tensor } from "../core/tensor.ts";
import { expectF32, grid1d } from "./util.ts";

/** Tile edge and time block of the prefix sums (TB in the kernel). */
const TB = 16;

/** Scan inputs of a Mamba 1 layer that its attention map needs (as from `mamba1ScanInputs`). */
export interface Mamba1MapInputs {
  /** Δ, (K, Bt, T, E), positive */
  delta: Tensor;
  /** (K, E, N), negative */
  A: Tensor;
  /** (K, Bt, T, N) */
  B: Tensor;
  /** (K, Bt, T, N) */
  C: Tensor;
}

/** Scan inputs of a Mamba 2 layer that its attention map needs (as from `mamba2ScanInputs`). */
export interface Mamba2MapInputs {
  /** (K, Bt, T, H), positive */
  dt: Tensor;
  /** (K, H), negative */
  A: Tensor;
  /** (K, Bt, T, G, N) */
  B: Tensor;
  /** (K, Bt, T, G, N) */
  C: Tensor;
}

/** Options of the attention maps. */
export interface AttentionMapOptions {
  /** The batch row to map; default 0. */
  batchIndex?: number;
}

/** An attention map and average attention mask per run: (K, T, T) each, row i = query (output) position. */
export interface AttentionMap {
  map: Tensor;
  mask: Tensor;
}

const shapeStr = (t: Tensor | readonly number[]) => `[${("shape" in t ? t.shape : t).join(", ")}]`;

function expectShape(op: string, name: string, t: Tensor, shape: readonly number[], letters: string): void {
  if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new RangeError(
      `${op}: expected ${name} of shape ${shapeStr(shape)} ${letters}, got ${shapeStr(t)}`,
    );
  }
}

function checkBatchIndex(op: string, batchIndex: number, Bt: number): void {
  if (!Number.isInteger(batchIndex) || batchIndex < 0 || batchIndex >= Bt) {
    throw new RangeError(`${op}: expected batchIndex an integer in [0, ${Bt}), got ${batchIndex}`);
  }
}

/** Sizes of a Mamba 1 map; throws a RangeError on bad shapes. */
export function mamba1MapDims(
  { delta, A, B, C }: Mamba1MapInputs,
): { K: number; Bt: number; T: number; E: number; N: number } {
  const op = "mamba1AttentionMap";
  for (const t of [delta, A, B, C]) expectF32(op, t);
  if (delta.rank !== 4) {
    throw new RangeError(`${op}: expected delta of shape (K, Bt, T, E), got ${shapeStr(delta)}`);
  }
  const [K, Bt, T, E] = delta.shape;
  if (A.rank !== 3) throw new RangeError(`${op}: expected A of shape (K, E, N), got ${shapeStr(A)}`);
  const N = A.shape[2];
  expectShape(op, "A", A, [K, E, N], "(K, E, N)");
  expectShape(op, "B", B, [K, Bt, T, N], "(K, Bt, T, N)");
  expectShape(op, "C", C, [K, Bt, T, N], "(K, Bt, T, N)");
  if ([K, Bt, T, E, N].some((d) => d < 1)) {
    throw new RangeError(`${op}: every size must be ≥ 1, got delta ${shapeStr(delta)} and A ${shapeStr(A)}`);
  }
  return { K, Bt, T, E, N };
}

/** Sizes of a Mamba 2 map; throws a RangeError on bad shapes. */
export function mamba2MapDims(
  { dt, A, B, C }: Mamba2MapInputs,
): { K: number; Bt: number; T: number; H: number; G: number; N: number } {
  const op = "mamba2AttentionMap";
  for (const t of [dt, A, B, C]) expectF32(op, t);
  if (dt.rank !== 4) throw new RangeError(`${op}: expected dt of shape (K, Bt, T, H), got ${shapeStr(dt)}`);
  const [K, Bt, T, H] = dt.shape;
  if (B.rank !== 5) throw new RangeError(`${op}: expected B of shape (K, Bt, T, G, N), got ${shapeStr(B)}`);
  const [, , , G, N] = B.shape;
  expectShape(op, "A", A, [K, H], "(K, H)");
  expectShape(op, "B", B, [K, Bt, T, G, N], "(K, Bt, T, G, N)");
  expectShape(op, "C", C, [K, Bt, T, G, N], "(K, Bt, T, G, N)");
  if ([K, Bt, T, H, G, N].some((d) => d < 1)) {
    throw new RangeError(`${op}: every size must be ≥ 1, got dt ${shapeStr(dt)} and B ${shapeStr(B)}`);
  }
  if (H % G !== 0) throw new RangeError(`${op}: the groups G = ${G} must divide the heads H = ${H}`);
  return { K, Bt, T, H, G, N };
}

// ---------------------------------------------------------------------------------------------------------------
// Kernels

const BINDINGS = [
  "read",
  "read_write",
  "read_write",
  "read_write",
  "read",
  "read",
  "read",
  "read_write",
  "read_write",
] as const;

/** States per register pass of the Mamba 1 kernel: the largest divisor of N that is ≤ 16 (no padded states). */
function statesPerPass(N: number): number {
  for (let nb = Math.min(N, 16); nb > 1; nb--) if (N % nb === 0) return nb;
  return 1;
}

/** The unrolled Mamba 1 inner loop for NB accumulators a0 .. a{NB−1}. */
function accCode(NB: number): Record<string, string> {
  const q = [...Array(NB).keys()];
  return {
    NB: String(NB),
    ACC_DECL: q.map((i) => `var a${i} = 0.0;`).join(" "),
    ACC_STEP: [
      ...q.map((i) => `let x${i} = exp(sa[ab + ${i}u] * s);`),
      ...q.map((i) => `a${i} = fma(x${i}, d, a${i});`),
      `m += ${q.map((i) => `x${i}`).join(" + ")};`,
    ].join("\n        "),
    ACC_DOT: q.map((i) => `a${i} * sci[ly * NB + ${i}u] * sbj[lx * NB + ${i}u]`).join(" + "),
  };
}

const kernelCache = new Map<string, Kernel>();

function mapKernel(entry: "prefix" | "mamba1" | "mamba2", NB = 1): Kernel {
  const cacheKey = `${entry}|${NB}`;
  let kernel = kernelCache.get(cacheKey);
  if (!kernel) {
    kernel = {
      name: `attention_map_${entry}`,
      code: kernelSource("attention_map.wgsl", accCode(NB)),
      entry,
      bindings: entry === "prefix" ? BINDINGS.slice(0, 4) : BINDINGS,
    };
    kernelCache.set(cacheKey, kernel);
  }
  return kernel;
}

/** Runs the prefix pass and the map kernel; returns map and mask (K, T, T). */
function runMap(
  entry: "mamba1" | "mamba2",
  d: { K: number; Bt: number; T: number; Ch: number; N: number; G: number; b: number; NB: number },
  delta: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
): AttentionMap {
  const { K, Bt, T, Ch, N, G, b } = d;
  const nb = Math.ceil(T / TB);
  const U = empty([K, T, Ch]), R = empty([K, T, Ch]), BS = empty([K, nb, Ch]);
  const count = K * nb * Ch;
  const uniforms = [T, Ch, N, G, Bt, b, nb, count];
  dispatch(mapKernel("prefix"), [delta, U, R, BS].map((t) => t.buffer), uniforms, grid1d(count));
  const map = empty([K, T, T]), mask = empty([K, T, T]);
  dispatch(
    mapKernel(entry, d.NB),
    [delta, U, R, BS, A, B, C, map, mask].map((t) => t.buffer),
    uniforms,
    [nb, nb, K],
  );
  // Released buffers return to the pool only after the recorded work is submitted, so this is safe.
  U.dispose();
  R.dispose();
  BS.dispose();
  return { map, mask };
}

// ---------------------------------------------------------------------------------------------------------------
// The maps

/**
 * The attention map of a Mamba 1 layer (paper Eq. 8 averaged over its E channels) and its average attention mask,
 * for one batch row: map[i, j] = (1/E) Σ_e Σ_n C_i[n]·exp(A[e, n]·Σ_{t=j+1}^{i} Δ_t[e])·Δ_j[e]·B_j[n] for j ≤ i
 * (0 above the diagonal), mask[i, j] = (1/(E·N)) Σ_e Σ_n exp(A[e, n]·Σ_{t=j+1}^{i} Δ_t[e]).
 * Not differentiable (records nothing on the tape).
 * @param inputs Δ (K, Bt, T, E), A (K, E, N), B and C (K, Bt, T, N): `mamba1ScanInputs`' tensors.
 * @returns map and mask, (K, T, T) each; row i is the output (query) position, column j the input (key).
 * @throws {RangeError} on mismatched shapes or a batchIndex outside [0, Bt).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "../core/runtime.ts";
 * import { full, tensor } from "../core/tensor.ts";
 * import { mamba1AttentionMap } from "./attention_map.ts";
 * await initGpu();
 * // K = Bt = 1, T = 3, E = N = 1, Δ = 1, A = ln(1/2): map[i, j] = C_i·B_j·2^−(i−j)
 * const { map, mask } = mamba1AttentionMap({
 *   delta: full([1, 1, 3, 1], 1),
 *   A: tensor([Math.log(0.5)], [1, 1, 1]),
 *   B: full([1, 1, 3, 1], 1),
 *   C: full([1, 1, 3, 1], 2),
 * });
 * const near = (a: ArrayLike<number>, b: number[]) => b.every((v, i) => Math.abs(a[i] - v) < 1e-6);
 * assert.ok(near(await map.toArray(), [2, 0, 0, 1, 2, 0, 0.5, 1, 2]));
 * assert.ok(near(await mask.toArray(), [1, 0, 0, 0.5, 1, 0, 0.25, 0.5, 1]));
 * ```
 */
export function mamba1AttentionMap(inputs: Mamba1MapInputs, opts: AttentionMapOptions = {}): AttentionMap {
  const { K, Bt, T, E, N } = mamba1MapDims(inputs);
  const b = opts.batchIndex ?? 0;
  checkBatchIndex("mamba1AttentionMap", b, Bt);
  const { delta, A, B, C } = inputs;
  return runMap("mamba1", { K, Bt, T, Ch: E, N, G: 1, b, NB: statesPerPass(N) }, delta, A, B, C);
}

/**
 * The attention map of a Mamba 2 layer (Eq. 8 per head, averaged over the H heads, which is the average over all
 * channels since each head's map serves its P channels) and its average attention mask, for one batch row:
 * map[i, j] = (1/H) Σ_h (C_i·B_j)_{g(h)}·exp(A_h·Σ_{t=j+1}^{i} dt_t[h])·dt_j[h], mask[i, j] = (1/H) Σ_h exp(A_h·…).
 * Not differentiable (records nothing on the tape).
 * @param inputs dt (K, Bt, T, H), A (K, H), B and C (K, Bt, T, G, N): `mamba2ScanInputs`' tensors.
 * @returns map and mask, (K, T, T) each; row i is the output (query) position, column j the input (key).
 * @throws {RangeError} on mismatched shapes, G not dividing H, or a batchIndex outside [0, Bt).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "../core/runtime.ts";
 * import { full, tensor } from "../core/tensor.ts";
 * import { mamba2AttentionMap } from "./attention_map.ts";
 * await initGpu();
 * // K = Bt = 1, T = 2, H = G = N = 1, dt = 1, A = ln(1/2), B = C = 1: map = [[1, 0], [0.5, 1]]
 * const { map } = mamba2AttentionMap({
 *   dt: full([1, 1, 2, 1], 1),
 *   A: tensor([Math.log(0.5)], [1, 1]),
 *   B: full([1, 1, 2, 1, 1], 1),
 *   C: full([1, 1, 2, 1, 1], 1),
 * });
 * const got = await map.toArray();
 * assert.ok([1, 0, 0.5, 1].every((v, i) => Math.abs(got[i] - v) < 1e-6));
 * ```
 */
export function mamba2AttentionMap(inputs: Mamba2MapInputs, opts: AttentionMapOptions = {}): AttentionMap {
  const { K, Bt, T, H, G, N } = mamba2MapDims(inputs);
  const b = opts.batchIndex ?? 0;
  checkBatchIndex("mamba2AttentionMap", b, Bt);
  const { dt, A, B, C } = inputs;
  return runMap("mamba2", { K, Bt, T, Ch: H, N, G, b, NB: 1 }, dt, A, B, C);
}

// ---------------------------------------------------------------------------------------------------------------
// Display

/**
 * One run's T×T map as rows for `heatmap()` (lib/study/charts.ts), optionally downsampled by averaging stride×stride
 * blocks (the last block of a row or column averages only the entries that exist). For run k of a (K, T, T)
 * readback pass `data.subarray(k·T·T, (k+1)·T·T)`.
 * @param map T·T values, row-major (row i = query position).
 * @param stride block edge ≥ 1; default 1 (no downsampling).
 * @returns ceil(T / stride) rows of ceil(T / stride) numbers.
 * @throws {RangeError} unless map has T·T entries and stride is a positive integer.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { attentionMapToRows } from "./attention_map.ts";
 * const rows = attentionMapToRows(Float32Array.from([1, 0, 0, 1, 2, 0, 1, 2, 3]), 3, 2);
 * assert.deepEqual(rows, [[1, 0], [1.5, 3]]);
 * ```
 */
export function attentionMapToRows(map: ArrayLike<number>, T: number, stride = 1): number[][] {
  if (!Number.isInteger(T) || T < 1) {
    throw new RangeError(`attentionMapToRows: expected T a positive integer, got ${T}`);
  }
  if (map.length !== T * T) {
    throw new RangeError(`attentionMapToRows: expected map of T·T = ${T * T} entries, got ${map.length}`);
  }
  if (!Number.isInteger(stride) || stride < 1) {
    throw new RangeError(`attentionMapToRows: expected stride a positive integer, got ${stride}`);
  }
  const n = Math.ceil(T / stride);
  const rows: number[][] = [];
  for (let r = 0; r < n; r++) {
    const row: number[] = [];
    const i1 = Math.min((r + 1) * stride, T);
    for (let c = 0; c < n; c++) {
      const j1 = Math.min((c + 1) * stride, T);
      let s = 0;
      for (let i = r * stride; i < i1; i++) for (let j = c * stride; j < j1; j++) s += map[i * T + j];
      row.push(s / ((i1 - r * stride) * (j1 - c * stride)));
    }
    rows.push(row);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------------------
// Float64 references (the definition, with exponents from float64 prefix sums)

/** Host arrays of a Mamba 1 map's inputs, row-major in the shapes of {@link Mamba1MapInputs}. */
export interface Mamba1MapArrays {
  delta: ArrayLike<number>;
  A: ArrayLike<number>;
  B: ArrayLike<number>;
  C: ArrayLike<number>;
}

/** Host arrays of a Mamba 2 map's inputs, row-major in the shapes of {@link Mamba2MapInputs}. */
export interface Mamba2MapArrays {
  dt: ArrayLike<number>;
  A: ArrayLike<number>;
  B: ArrayLike<number>;
  C: ArrayLike<number>;
}

/** Float64 maps: map and mask, (K, T, T) each. */
export interface AttentionMapArrays {
  map: Float64Array;
  mask: Float64Array;
}

/** Float64 prefix sums S[t, c] = Σ_{u≤t} Δ[u, c] of batch row b of run k. */
function prefixRef(
  delta: ArrayLike<number>,
  k: number,
  b: number,
  Bt: number,
  T: number,
  Ch: number,
): Float64Array {
  const S = new Float64Array(T * Ch);
  const base = (k * Bt + b) * T * Ch;
  for (let c = 0; c < Ch; c++) {
    let run = 0;
    for (let t = 0; t < T; t++) S[t * Ch + c] = run += delta[base + t * Ch + c];
  }
  return S;
}

/**
 * Float64 reference of {@link mamba1AttentionMap}.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mamba1AttentionMapRef } from "./attention_map.ts";
 * const dims = { K: 1, Bt: 1, T: 2, E: 1, N: 1 };
 * const { map } = mamba1AttentionMapRef({ delta: [1, 1], A: [Math.log(0.5)], B: [1, 1], C: [1, 1] }, dims);
 * assert.ok([1, 0, 0.5, 1].every((v, i) => Math.abs(map[i] - v) < 1e-12));
 * ```
 */
export function mamba1AttentionMapRef(
  a: Mamba1MapArrays,
  dims: { K: number; Bt: number; T: number; E: number; N: number },
  batchIndex = 0,
): AttentionMapArrays {
  const { K, Bt, T, E, N } = dims;
  const map = new Float64Array(K * T * T), mask = new Float64Array(K * T * T);
  for (let k = 0; k < K; k++) {
    const S = prefixRef(a.delta, k, batchIndex, Bt, T, E);
    const row = (k * Bt + batchIndex) * T;
    for (let i = 0; i < T; i++) {
      for (let j = 0; j <= i; j++) {
        let m = 0, mk = 0;
        for (let e = 0; e < E; e++) {
          const s = S[i * E + e] - S[j * E + e];
          const dj = a.delta[(row + j) * E + e];
          for (let n = 0; n < N; n++) {
            const x = Math.exp(a.A[(k * E + e) * N + n] * s);
            m += a.C[(row + i) * N + n] * x * dj * a.B[(row + j) * N + n];
            mk += x;
          }
        }
        map[(k * T + i) * T + j] = m / E;
        mask[(k * T + i) * T + j] = mk / (E * N);
      }
    }
  }
  return { map, mask };
}

/**
 * Float64 reference of {@link mamba2AttentionMap}.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mamba2AttentionMapRef } from "./attention_map.ts";
 * const dims = { K: 1, Bt: 1, T: 2, H: 1, G: 1, N: 1 };
 * const { mask } = mamba2AttentionMapRef({ dt: [1, 1], A: [Math.log(0.5)], B: [1, 1], C: [1, 1] }, dims);
 * assert.ok([1, 0, 0.5, 1].every((v, i) => Math.abs(mask[i] - v) < 1e-12));
 * ```
 */
export function mamba2AttentionMapRef(
  a: Mamba2MapArrays,
  dims: { K: number; Bt: number; T: number; H: number; G: number; N: number },
  batchIndex = 0,
): AttentionMapArrays {
  const { K, Bt, T, H, G, N } = dims;
  const HG = H / G;
  const map = new Float64Array(K * T * T), mask = new Float64Array(K * T * T);
  const cb = new Float64Array(G);
  for (let k = 0; k < K; k++) {
    const S = prefixRef(a.dt, k, batchIndex, Bt, T, H);
    const row = (k * Bt + batchIndex) * T;
    for (let i = 0; i < T; i++) {
      for (let j = 0; j <= i; j++) {
        for (let g = 0; g < G; g++) {
          let s = 0;
          for (let n = 0; n < N; n++) {
            s += a.C[((row + i) * G + g) * N + n] * a.B[((row + j) * G + g) * N + n];
          }
          cb[g] = s;
        }
        let m = 0, mk = 0;
        for (let h = 0; h < H; h++) {
          const x = Math.exp(a.A[k * H + h] * (S[i * H + h] - S[j * H + h]));
          m += cb[Math.floor(h / HG)] * x * a.dt[(row + j) * H + h];
          mk += x;
        }
        map[(k * T + i) * T + j] = m / H;
        mask[(k * T + i) * T + j] = mk / H;
      }
    }
  }
  return { map, mask };
}
