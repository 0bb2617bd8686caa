/**
 * Masked cross-entropy per run, fused and numerically stable, and `argmaxLastAxis` for evaluation.
 * GPU kernels in kernels/cross_entropy.wgsl, the VJP, float64 references.
 *
 * Loss of run k over its rows r (R = B·T positions), with lse_r = log Σ_v exp(x_rv):
 *   L_k = Σ_r m_r (lse_r - x_r[t_r]) / max(Σ_r m_r, 1e-9)          (0 when the mask of run k is all zero)
 * Backward: ∂lse_r/∂x_rv = softmax(x_r)_v, so
 *   d x_rv = g_k · m_r / max(Σ_r m_r, 1e-9) · (exp(x_rv - lse_r) - [v = t_r]).
 * Targets outside [0, V) are clamped to [0, V-1] (kernels cannot report them; validate with `checkIds` from
 * embedding.ts where targets are made). The mask holds non-negative weights (usually 0/1); a row with mask 0
 * contributes exactly 0 and gets a zero gradient even if its logits are not finite.
 * Precision: the backward's exp(x − lse) carries the f32 rounding of lse, a relative error of about |lse|·6e-8 in
 * the softmax (6e-6 at logits near 100; at 1e30 the gradient is meaningless, though the loss stays exact).
 * Determinism: the per-run sums are a second small kernel, one workgroup per run, in a fixed order.
 * @module
 */
import { kernelSource } from "../core/kernels.ts";
import { dispatch } from "../core/runtime.ts";
import { isRecording, record, type VjpRule } from "../core/tape.ts";
import { empty, type Tensor } from "../core/tensor.ts";
import { rowChunks, slice } from "./split.ts";
import { expectF32, grid1d, sameShape } from "./util.ts";

/** A kernel of cross_entropy.wgsl with `reads` read-only bindings followed by `writes` read-write ones. */
const kernel = (entry: string, reads: number, writes: number) => ({
  name: `cross_entropy_${entry}`,
  code: kernelSource("cross_entropy.wgsl"),
  entry,
  bindings: [
    ...new Array(reads).fill("read"),
    ...new Array(writes).fill("read_write"),
  ] as ("read" | "read_write")[],
});

/**
 * Masked mean cross-entropy of each run. Saves for the backward the per-row logsumexp (K, R) and the per-run mask
 * sum (K), so the backward is one elementwise pass with no reduction.
 * @param logits (K, R, V) f32 (any (K, ..., V) works; R is then the product of the middle axes)
 * @param targets (K, R) i32 class ids in [0, V) (same shape as logits without its last axis)
 * @param mask (K, R) f32 non-negative weights, usually 0/1 (not differentiated)
 * @returns (K): per run Σ mask·(logsumexp − picked logit) / Σ mask, 0 where Σ mask = 0
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { maskedCrossEntropy } from "./cross_entropy.ts";
 * await initGpu();
 * const logits = tensor([0, 0, 5, -5], [1, 2, 2]); // K=1, R=2, V=2
 * const targets = tensor(new Int32Array([1, 0]), [1, 2], "i32");
 * const mask = tensor([1, 0], [1, 2]);
 * console.log(await maskedCrossEntropy(logits, targets, mask).toArray()); // [ln 2 ≈ 0.693]
 * ```
 */
export function maskedCrossEntropy(logits: Tensor, targets: Tensor, mask: Tensor): Tensor {
  expectF32("maskedCrossEntropy", logits);
  expectF32("maskedCrossEntropy", mask);
  if (targets.dtype !== "i32") {
    throw new RangeError(`maskedCrossEntropy: expected i32 targets, got ${targets}`);
  }
  if (logits.rank < 2 || logits.shape.at(-1)! < 1) {
    throw new RangeError(
      `maskedCrossEntropy: expected logits of shape (K, R, V) with V ≥ 1, got [${logits.shape.join(", ")}]`,
    );
  }
  const rowShape = logits.shape.slice(0, -1);
  for (const [name, t] of [["targets", targets], ["mask", mask]] as const) {
    if (!sameShape(t.shape, rowShape)) {
      throw new RangeError(
        `maskedCrossEntropy: expected ${name} of shape [${rowShape.join(", ")}] (logits without V), got [${
          t.shape.join(", ")
        }]`,
      );
    }
  }
  const K = logits.shape[0], V = logits.shape.at(-1)!;
  const R = logits.size / (K * V);
  const lse = empty([K, R]);
  const rowLoss = empty([K, R]);
  // rows are independent: chunks of rows for logits larger than one binding
  const rowsKernel = kernel("rows", 3, 2);
  for (const [r0, n] of rowChunks(rowsKernel.name, K * R, [V, 1], `rows of ${V}`)) {
    const rows = (t: Tensor, per = 1) => slice(t, r0 * per, n * per);
    dispatch(
      rowsKernel,
      [rows(logits, V), rows(targets), rows(mask), rows(lse), rows(rowLoss)],
      [K, R, V, r0, n],
      grid1d(n, 1),
    );
  }
  const loss = empty([K]);
  const msum = empty([K]);
  dispatch(
    kernel("runs", 2, 2),
    [rowLoss.buffer, mask.buffer, loss.buffer, msum.buffer],
    [K, R, V, 0, K * R],
    grid1d(K, 1),
  );
  rowLoss.dispose();
  if (isRecording([logits, targets, mask])) {
    record("crossEntropy", [logits, targets, mask], [loss], {}, [lse, msum]);
  } else {
    lse.dispose();
    msum.dispose();
  }
  return loss;
}

export const crossEntropyVjp: VjpRule = ({ inputs: [logits, targets, mask], saved: [lse, msum] }, [g]) => {
  const K = logits.shape[0], V = logits.shape.at(-1)!;
  const R = logits.size / (K * V);
  const dLogits = empty(logits.shape);
  const backwardKernel = kernel("backward", 6, 1);
  for (const [r0, n] of rowChunks(backwardKernel.name, K * R, [V, 1], `rows of ${V}`)) {
    const rows = (t: Tensor, per = 1) => slice(t, r0 * per, n * per);
    dispatch(
      backwardKernel,
      [rows(logits, V), rows(targets), rows(mask), rows(lse), msum.buffer, g!.buffer, rows(dLogits, V)],
      [K, R, V, r0, n],
      grid1d(n * V),
    );
  }
  return [dLogits, null, null];
};

/**
 * Index of the maximum along the last axis; on ties the first (smallest) index wins, as in NumPy. Not
 * differentiable (records nothing). A row containing NaN has an unspecified result.
 * @param x (..., V) f32, V ≥ 1
 * @returns (...) i32
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { argmaxLastAxis } from "./cross_entropy.ts";
 * await initGpu();
 * console.log(await argmaxLastAxis(tensor([1, 3, 3, 0, 2, -1], [2, 3])).toArray()); // [1, 1]
 * ```
 */
export function argmaxLastAxis(x: Tensor): Tensor {
  expectF32("argmaxLastAxis", x);
  const V = x.shape.at(-1);
  if (V === undefined || V < 1) {
    throw new RangeError(
      `argmaxLastAxis: expected a tensor (..., V) with V ≥ 1, got [${x.shape.join(", ")}]`,
    );
  }
  const R = x.size / V;
  const out = empty(x.shape.slice(0, -1), "i32");
  const argmaxKernel = kernel("argmax", 1, 1);
  for (const [r0, n] of rowChunks(argmaxKernel.name, R, [V, 1], `rows of ${V}`)) {
    dispatch(argmaxKernel, [slice(x, r0 * V, n * V), slice(out, r0, n)], [1, R, V, r0, n], grid1d(n, 1));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Float64 references

const clampTarget = (t: number, V: number) => Math.min(Math.max(Math.trunc(t), 0), V - 1);

function logSumExp(x: Float64Array, base: number, V: number): number {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, x[base + v]);
  let s = 0;
  for (let v = 0; v < V; v++) s += Math.exp(x[base + v] - m);
  return m + Math.log(s);
}

/**
 * Float64 reference of `maskedCrossEntropy`.
 * @param logits (K, R, V) flat; targets, mask (K, R) flat
 * @returns (K)
 */
export function maskedCrossEntropyRef(
  logits: Float64Array,
  targets: ArrayLike<number>,
  mask: ArrayLike<number>,
  K: number,
  V: number,
): Float64Array {
  const R = logits.length / (K * V);
  const loss = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    let num = 0, den = 0;
    for (let r = 0; r < R; r++) {
      const row = k * R + r, w = mask[row];
      den += w;
      if (w !== 0) {
        num += w * (logSumExp(logits, row * V, V) - logits[row * V + clampTarget(targets[row], V)]);
      }
    }
    loss[k] = num / Math.max(den, 1e-9);
  }
  return loss;
}

/**
 * Float64 reference VJP of `maskedCrossEntropy` with respect to the logits.
 * @param g (K) cotangent
 * @returns d logits (K, R, V) flat
 */
export function maskedCrossEntropyVjpRef(
  logits: Float64Array,
  targets: ArrayLike<number>,
  mask: ArrayLike<number>,
  g: Float64Array,
  K: number,
  V: number,
): Float64Array {
  const R = logits.length / (K * V);
  const d = new Float64Array(logits.length);
  for (let k = 0; k < K; k++) {
    let den = 0;
    for (let r = 0; r < R; r++) den += mask[k * R + r];
    for (let r = 0; r < R; r++) {
      const row = k * R + r, w = mask[row];
      if (w === 0) continue;
      const lse = logSumExp(logits, row * V, V);
      const t = clampTarget(targets[row], V);
      const scale = g[k] * w / Math.max(den, 1e-9);
      for (let v = 0; v < V; v++) {
        d[row * V + v] = scale * (Math.exp(logits[row * V + v] - lse) - (v === t ? 1 : 0));
      }
    }
  }
  return d;
}

/** Float64 reference of `argmaxLastAxis` (first index of the maximum). */
export function argmaxRef(x: ArrayLike<number>, V: number): Int32Array {
  const out = new Int32Array(x.length / V);
  for (let r = 0; r < out.length; r++) {
    let best = 0;
    for (let v = 1; v < V; v++) if (x[r * V + v] > x[r * V + best]) best = v;
    out[r] = best;
  }
  return out;
}
