/**
 * RMSNorm and LayerNorm over the last axis, with per-run parameters: x (K, ..., D), weight and bias (K, D).
 * Fused GPU forward and backward in kernels/norm.wgsl, the VJP rules, and float64 references.
 *
 * Forward: y = x̂ · w (+ b), x̂ = (x − μ) · rstd, rstd = (mean((x − μ)²) + eps)^(-1/2), μ = mean(x) for LayerNorm
 * and 0 for RMSNorm (two passes over the row, μ then the variance about it). It saves the per-row stats [μ, rstd],
 * shape (K, ..., 2), so the backward recomputes x̂ from x without another reduction.
 *
 * Backward. With ĝ = g · w and n = D, differentiating x̂ = (x − μ) · rstd through μ and rstd gives
 *   dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂))     (for RMSNorm drop the mean(ĝ) term: μ is not a function of x)
 *   dw = Σ_rows g · x̂,   db = Σ_rows g              (sums over the rows of the same run k)
 *
 * Row kernels (forward and dx), layout from `rowLayout`: a workgroup of 256 threads takes 256 / TPR rows, TPR
 * threads a row, TPR the smallest power of two that leaves each thread ≤ 4 elements (vec4 when D % 4 == 0, else
 * scalars): D 128 → 8 threads, 32 rows a workgroup; D 256 → 16, 16; D 1024 → 64, 4. A thread holds its elements
 * in registers, so x (and g) are read once and each pass over the row (μ, variance, output; or the two sums and
 * dx) runs from registers; rows of more than 2048 elements are walked in chunks and read once per pass. A row sum
 * is each thread's partial (its elements in order), then after one workgroup barrier the row's TPR partials added
 * by every thread of the row in a fixed order (four interleaved running sums). So a row costs one barrier per sum
 * (RMSNorm forward 1, LayerNorm 2, dx 1), where one row a workgroup with a shared-memory tree cost a barrier per
 * level, and the forward moves the minimum: x in, y and the stats out. (The old layout, a row a workgroup of up to
 * 256 threads, ran at 0.8–1.6 TB/s of the H200's ~4.3 TB/s at these widths.)
 *
 * dw, db: deterministic, without atomics, in two stages: stage 1 gives each thread one (k, s, element) and sums
 * the rows of chunk s of run k in order into partials (K, S, D), issuing 8 rows' loads before their adds; stage 2
 * (reduce.ts `sum`, a thread per (k, d)) adds the S partials in order. With R rows per run the chunk is ⌈√R⌉ rows
 * and S = ⌈R / chunk⌉ ≈ √R, so both stages loop ≈ √R times and stage 1 has K·S·D threads, one float each (for
 * R = 1760, D = 1024: 43 k threads, where one thread per (k, d) would give 1 k threads looping 1760 times). Its
 * kernels are compiled with scalar elements whatever D: with vec4s, a quarter of the threads, RMSNorm's took
 * 58.7 µs at fig7 quick's size (K 4 × 7040 rows of 256) on the H200, against 24.9 µs scalar; the adds and their
 * order are a vec4 lane's, so the bits are the same either way.
 * Cost: stage 1 reads x and g once more (2·K·R·D floats, the same as the dx kernel) and writes K·S·D partials
 * per parameter (≈ K·√R·D floats, 4 % of x for R = 1760); stage 2 reads those back. Every sum's order depends only
 * on the shapes, so the results are bit-identical run to run (and when rows are split over several dispatches).
 * @module
 */
import { kernelSource } from "../core/kernels.ts";
import { type Binding, dispatch, f32, type Kernel } from "../core/runtime.ts";
import { isRecording, record, type VjpRule } from "../core/tape.ts";
import { empty, type Shape, sizeOf, type Tensor } from "../core/tensor.ts";
import { sum } from "./reduce.ts";
import { bindingLimits, rowChunks, slice } from "./split.ts";
import { expectF32, grid1d, repeatBlocks } from "./util.ts";

/** Attributes of a norm node. */
interface NormAttrs {
  eps: number;
}

/** Rows per run R, width D, runs K of an x of shape (K, ..., D). */
interface Dims {
  K: number;
  R: number;
  D: number;
}

function checkInputs(op: string, x: Tensor, params: [string, Tensor][], eps: number): Dims {
  expectF32(op, x);
  if (x.rank < 2) throw new RangeError(`${op}: expected x of shape (K, ..., D), got ${x}`);
  const K = x.shape[0], D = x.shape[x.rank - 1];
  if (x.size === 0) throw new RangeError(`${op}: expected a non-empty x, got ${x}`);
  for (const [name, t] of params) {
    expectF32(op, t);
    if (t.rank !== 2 || t.shape[0] !== K || t.shape[1] !== D) {
      throw new RangeError(`${op}: expected ${name} of shape [${K}, ${D}] (K, D) to match x ${x}, got ${t}`);
    }
  }
  if (!(eps >= 0)) throw new RangeError(`${op}: expected eps >= 0, got ${eps}`);
  return { K, R: x.size / (K * D), D };
}

/** Most elements a thread of a row kernel holds in registers per tensor; longer rows are walked in chunks. */
const MAX_NV = 8;

/** Rows whose loads a thread of the dw stage issues at once (kernels/norm.wgsl `partials`). */
const AHEAD = 8;

/**
 * How the row kernels (kernels/norm.wgsl and gated_norm.wgsl) lay rows of `width` floats over a workgroup of 256
 * threads: elements of 4 floats when width % 4 == 0 (else of 1), `dv` of them a row; `tpr` threads a row, the
 * smallest power of two that leaves each at most 4 elements (up to 256), so `rpw` = 256 / tpr rows a workgroup;
 * `nv` elements a thread in registers. `fits` is false past 256 · 8 elements (8192 floats, or 2048 when not a
 * multiple of 4): the row is then walked in chunks of 256 · 8 elements. With `scalar`, elements of 1 float
 * whatever the width (the dw stage's layout).
 * @example
 * ```ts
 * import { rowLayout } from "./norm.ts";
 * console.log(rowLayout(256)); // vec4, 64 elements a row: 16 threads of 4 each, 16 rows a workgroup
 * ```
 */
export function rowLayout(width: number, scalar = false): RowLayout {
  const vec = !scalar && width % 4 === 0;
  const dv = vec ? width / 4 : width;
  let tpr = 1;
  while (tpr * 4 < dv && tpr < 256) tpr *= 2;
  const fits = dv <= 256 * MAX_NV;
  return { vec, dv, tpr, nv: fits ? Math.ceil(dv / tpr) : MAX_NV, fits, rpw: 256 / tpr };
}

/** A row layout (see `rowLayout`). */
export interface RowLayout {
  /** Elements of 4 floats (width % 4 == 0), else of 1. */
  vec: boolean;
  /** Elements a row. */
  dv: number;
  /** Threads a row, a power of two in [1, 256]. */
  tpr: number;
  /** Elements a thread holds per tensor (per chunk when the row does not fit). */
  nv: number;
  /** The whole row in registers (dv ≤ tpr · nv). */
  fits: boolean;
  /** Rows a workgroup of 256 threads. */
  rpw: number;
}

const codeCache = new Map<string, string>();

/**
 * The code of a norm kernel file for rows of `width` floats: its layout placeholders filled in (with `subst`; the
 * layout of `rowLayout(width, scalar)`), its repeat blocks expanded (cached: ops build their kernel per call).
 */
export function rowKernelCode(
  file: "norm.wgsl" | "gated_norm.wgsl",
  width: number,
  subst: Record<string, string | number>,
  scalar = false,
): string {
  const l = rowLayout(width, scalar);
  const all = {
    ...subst,
    T: l.vec ? "vec4<f32>" : "f32",
    HSUM: l.vec ? "return (v.x + v.y) + (v.z + v.w);" : "return v;",
    DV: l.dv,
    TPR: l.tpr,
    NV: l.nv,
    FITS: String(l.fits),
    AHEAD,
  };
  const key = `${file}|${JSON.stringify(all)}`;
  let code = codeCache.get(key);
  if (code === undefined) {
    codeCache.set(key, code = repeatBlocks(kernelSource(file, all), { NV: l.nv, AHEAD }));
  }
  return code;
}

/** Row chunk of the dweight/dbias stage 1: ⌈√R⌉ rows, so S ≈ √R chunks. */
function chunking(R: number): { chunk: number; S: number } {
  const chunk = Math.ceil(Math.sqrt(R));
  return { chunk, S: Math.ceil(R / chunk) };
}

function normKernel(center: boolean, D: number, entry: string, outputs: number): Kernel {
  return {
    name: `${center ? "layer" : "rms"}_norm_${entry}`,
    // The dw stage takes one float a thread (see the module notes), the row kernels vec4s where they can.
    code: rowKernelCode("norm.wgsl", D, { CENTER: String(center), D }, entry.startsWith("backward_dw")),
    entry,
    bindings: ["read", "read", "read", "read", "read_write", ...new Array(outputs).fill("read_write")],
  };
}

/** The kernel's Params for a dispatch over `rows` rows from global row `row0` (all rows: K·R from 0). */
function uniforms({ K, R }: Dims, eps: number, rows = K * R, row0 = 0, first = 0, last = 0) {
  const { chunk, S } = chunking(R);
  return [rows, R, f32(eps), chunk, S, row0, first, last];
}

/**
 * Dispatches a row kernel (forward or backward_dx) over chunks of rows that fit one binding each: the row
 * tensors (`rowTensors`, D floats a row; `stats`, 2) are sliced, the weight and bias bound whole.
 */
function rowDispatch(
  kernel: Kernel,
  dims: Dims,
  eps: number,
  bind: (rows: (t: Tensor, perRow: number) => Binding) => Binding[],
): void {
  const { K, R, D } = dims;
  for (const [r0, n] of rowChunks(kernel.name, K * R, [D, 2], `rows of ${D}`)) {
    const bindings = bind((t, perRow) => slice(t, r0 * perRow, n * perRow));
    dispatch(kernel, bindings, uniforms(dims, eps, n, r0), grid1d(n, rowLayout(D).rpw));
  }
}

/**
 * Chunks of the dw stage's (k, s) blocks (block b = k·S + s sums rows [k·R + s·chunk, ...) of run k) whose rows
 * fit one binding, as [first block, end block, first row bound, end row]: consecutive blocks cover consecutive rows,
 * and each chunk's binding starts at the aligned row at or before its first row.
 */
function blockChunks(op: string, dims: Dims): [number, number, number, number][] {
  const { K, R, D } = dims;
  const { chunk, S } = chunking(R);
  const { maxBytes, align } = bindingLimits();
  const rowStart = (b: number) => Math.floor(b / S) * R + Math.min((b % S) * chunk, R);
  const total = K * S;
  if (K * R * D * 4 <= maxBytes) return [[0, total, 0, K * R]];
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const step = Math.max(align / gcd(D * 4, align), align / gcd(8, align));
  const out: [number, number, number, number][] = [];
  for (let b0 = 0; b0 < total;) {
    const r0 = Math.floor(rowStart(b0) / step) * step;
    let b1 = b0;
    while (b1 < total && (rowStart(b1 + 1) - r0) * D * 4 <= maxBytes) b1++;
    if (b1 === b0) {
      throw new RangeError(`${op}: ${chunk} rows of ${D} exceed this adapter's maxStorageBufferBindingSize`);
    }
    out.push([b0, b1, r0, rowStart(b1)]);
    b0 = b1;
  }
  return out;
}

function normForward(center: boolean, x: Tensor, weight: Tensor, bias: Tensor | null, eps: number): Tensor {
  const op = center ? "layerNorm" : "rmsNorm";
  const params: [string, Tensor][] = bias ? [["weight", weight], ["bias", bias]] : [["weight", weight]];
  const dims = checkInputs(op, x, params, eps);
  const y = empty(x.shape);
  const stats = empty([...x.shape.slice(0, -1), 2]);
  rowDispatch(normKernel(center, dims.D, "forward", 1), dims, eps, (r) => {
    const xs = r(x, dims.D);
    return [xs, weight.buffer, (bias ?? weight).buffer, xs, r(stats, 2), r(y, dims.D)];
  });
  const inputs = bias ? [x, weight, bias] : [x, weight];
  if (isRecording(inputs)) record<NormAttrs>(op, inputs, [y], { eps }, [stats]);
  else stats.dispose();
  return y;
}

/**
 * RMSNorm over the last axis with a weight per run: y = x / sqrt(mean(x²) + eps) · w.
 * Saves the per-row rstd (with μ = 0), shape (K, ..., 2), for the backward.
 * @param x (K, ..., D)
 * @param weight (K, D)
 * @returns y (K, ..., D)
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { rmsNorm } from "./norm.ts";
 * await initGpu();
 * const y = rmsNorm(tensor([3, 4], [1, 1, 2]), tensor([1, 2], [1, 2]), 0);
 * console.log(await y.toArray()); // ≈ [0.8485, 2.2627]: [3, 4] / sqrt(12.5) · [1, 2]
 * ```
 */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-5): Tensor {
  return normForward(false, x, weight, null, eps);
}

/**
 * LayerNorm over the last axis with a weight and bias per run: y = (x − μ) / sqrt(var(x) + eps) · w + b
 * (biased variance, as torch.nn.LayerNorm). Saves the per-row [μ, rstd], shape (K, ..., 2), for the backward.
 * @param x (K, ..., D)
 * @param weight (K, D)
 * @param bias (K, D)
 * @returns y (K, ..., D)
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { layerNorm } from "./norm.ts";
 * await initGpu();
 * const y = layerNorm(tensor([1, 3], [1, 1, 2]), tensor([1, 1], [1, 2]), tensor([0, 10], [1, 2]), 0);
 * console.log(await y.toArray()); // [-1, 11]
 * ```
 */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  return normForward(true, x, weight, bias, eps);
}

/** The GPU backward shared by both norms: dx, dw and (LayerNorm) db. */
function normBackward(
  center: boolean,
  x: Tensor,
  weight: Tensor,
  stats: Tensor,
  g: Tensor,
  eps: number,
): Tensor[] {
  const K = x.shape[0], D = x.shape[x.rank - 1];
  const dims = { K, R: x.size / (K * D), D };
  const dx = empty(x.shape);
  rowDispatch(normKernel(center, D, "backward_dx", 1), dims, eps, (r) => {
    return [r(x, D), weight.buffer, weight.buffer, r(g, D), r(stats, 2), r(dx, D)];
  });
  const { S } = chunking(dims.R);
  const pw = empty([K, S, D]);
  const pb = center ? empty([K, S, D]) : null;
  const dwKernel = normKernel(center, D, center ? "backward_dwdb" : "backward_dw", center ? 2 : 1);
  const dv = rowLayout(D, true).dv;
  for (const [b0, b1, r0, r1] of blockChunks(dwKernel.name, dims)) {
    const rowsOf = (t: Tensor, perRow: number) => slice(t, r0 * perRow, (r1 - r0) * perRow);
    const xs = rowsOf(x, D);
    dispatch(
      dwKernel,
      [xs, xs, xs, rowsOf(g, D), rowsOf(stats, 2), pw.buffer, ...(pb ? [pb.buffer] : [])],
      uniforms(dims, eps, K * dims.R, r0, b0 * dv, b1 * dv),
      grid1d((b1 - b0) * dv),
    );
  }
  const finish = (partial: Tensor) => {
    const out = sum(partial, 1);
    partial.dispose();
    return out;
  };
  return [dx, finish(pw), ...(pb ? [finish(pb)] : [])];
}

/** VJP of `rmsNorm`: [dx, dweight]. */
export const rmsNormVjp: VjpRule<NormAttrs> = ({ inputs: [x, w], saved: [stats], attrs: { eps } }, [g]) =>
  normBackward(false, x, w, stats, g!, eps);

/** VJP of `layerNorm`: [dx, dweight, dbias]. */
export const layerNormVjp: VjpRule<NormAttrs> = ({ inputs: [x, w], saved: [stats], attrs: { eps } }, [g]) =>
  normBackward(true, x, w, stats, g!, eps);

// ---------------------------------------------------------------------------------------------------------------
// Float64 references (plain loops over rows; the same formulas as the module comment)

function refDims(shape: Shape): Dims {
  const K = shape[0], D = shape[shape.length - 1];
  return { K, R: sizeOf(shape) / (K * D), D };
}

/** Per row: μ (0 without centring) and rstd. */
function refStats(x: Float64Array, shape: Shape, center: boolean, eps: number) {
  const { K, R, D } = refDims(shape);
  const mu = new Float64Array(K * R), rstd = new Float64Array(K * R);
  for (let row = 0; row < K * R; row++) {
    let m = 0;
    if (center) {
      for (let d = 0; d < D; d++) m += x[row * D + d];
      m /= D;
    }
    let q = 0;
    for (let d = 0; d < D; d++) q += (x[row * D + d] - m) ** 2;
    mu[row] = m;
    rstd[row] = 1 / Math.sqrt(q / D + eps);
  }
  return { mu, rstd };
}

function normRef(
  center: boolean,
  x: Float64Array,
  weight: Float64Array,
  bias: Float64Array | null,
  shape: Shape,
  eps: number,
): Float64Array {
  const { K, R, D } = refDims(shape);
  const { mu, rstd } = refStats(x, shape, center, eps);
  const y = new Float64Array(x.length);
  for (let row = 0; row < K * R; row++) {
    const k = Math.floor(row / R);
    for (let d = 0; d < D; d++) {
      const i = row * D + d;
      y[i] = (x[i] - mu[row]) * rstd[row] * weight[k * D + d] + (bias ? bias[k * D + d] : 0);
    }
  }
  return y;
}

function normVjpRef(
  center: boolean,
  x: Float64Array,
  weight: Float64Array,
  shape: Shape,
  g: Float64Array,
  eps: number,
): [Float64Array, Float64Array, Float64Array] {
  const { K, R, D } = refDims(shape);
  const { mu, rstd } = refStats(x, shape, center, eps);
  const dx = new Float64Array(x.length), dw = new Float64Array(K * D), db = new Float64Array(K * D);
  for (let row = 0; row < K * R; row++) {
    const k = Math.floor(row / R);
    let sg = 0, sgx = 0;
    for (let d = 0; d < D; d++) {
      const i = row * D + d;
      const xh = (x[i] - mu[row]) * rstd[row];
      const gh = g[i] * weight[k * D + d];
      sg += gh;
      sgx += gh * xh;
      dw[k * D + d] += g[i] * xh;
      db[k * D + d] += g[i];
    }
    const mg = center ? sg / D : 0, mgx = sgx / D;
    for (let d = 0; d < D; d++) {
      const i = row * D + d;
      const xh = (x[i] - mu[row]) * rstd[row];
      dx[i] = rstd[row] * (g[i] * weight[k * D + d] - mg - xh * mgx);
    }
  }
  return [dx, dw, db];
}

/**
 * Float64 reference of `rmsNorm`.
 * @param x (K, ..., D), of shape `shape`
 * @param weight (K, D)
 * @example
 * ```ts
 * import { rmsNormRef } from "./norm.ts";
 * console.log(rmsNormRef(new Float64Array([3, 4]), new Float64Array([1, 1]), [1, 2], 0)); // [0.8485.., 1.1313..]
 * ```
 */
export function rmsNormRef(x: Float64Array, weight: Float64Array, shape: Shape, eps = 1e-5): Float64Array {
  return normRef(false, x, weight, null, shape, eps);
}

/**
 * Float64 reference VJP of `rmsNorm` for the cotangent g (K, ..., D).
 * @returns [dx (K, ..., D), dweight (K, D)]
 * @example
 * ```ts
 * import { rmsNormVjpRef } from "./norm.ts";
 * const [dx, dw] = rmsNormVjpRef(new Float64Array([3, 4]), new Float64Array([1, 1]), [1, 2], new Float64Array([1, 0]));
 * console.log(dx, dw);
 * ```
 */
export function rmsNormVjpRef(
  x: Float64Array,
  weight: Float64Array,
  shape: Shape,
  g: Float64Array,
  eps = 1e-5,
): [Float64Array, Float64Array] {
  const [dx, dw] = normVjpRef(false, x, weight, shape, g, eps);
  return [dx, dw];
}

/**
 * Float64 reference of `layerNorm`.
 * @param x (K, ..., D), of shape `shape`
 * @param weight (K, D)
 * @param bias (K, D)
 * @example
 * ```ts
 * import { layerNormRef } from "./norm.ts";
 * const y = layerNormRef(new Float64Array([1, 3]), new Float64Array([1, 1]), new Float64Array([0, 10]), [1, 2], 0);
 * console.log(y); // [-1, 11]
 * ```
 */
export function layerNormRef(
  x: Float64Array,
  weight: Float64Array,
  bias: Float64Array,
  shape: Shape,
  eps = 1e-5,
): Float64Array {
  return normRef(true, x, weight, bias, shape, eps);
}

/**
 * Float64 reference VJP of `layerNorm` for the cotangent g (K, ..., D) (the bias does not enter the gradients).
 * @returns [dx (K, ..., D), dweight (K, D), dbias (K, D)]
 * @example
 * ```ts
 * import { layerNormVjpRef } from "./norm.ts";
 * const [dx, dw, db] = layerNormVjpRef(new Float64Array([1, 3]), new Float64Array([1, 1]), [1, 2], new Float64Array([1, 0]));
 * console.log(dx, dw, db);
 * ```
 */
export function layerNormVjpRef(
  x: Float64Array,
  weight: Float64Array,
  shape: Shape,
  g: Float64Array,
  eps = 1e-5,
): [Float64Array, Float64Array, Float64Array] {
  return normVjpRef(true, x, weight, shape, g, eps);
}
