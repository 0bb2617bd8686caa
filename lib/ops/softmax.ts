/**
 * Softmax over the last axis, numerically stable (the row max is subtracted before exp).
 * GPU forward and backward in kernels/softmax.wgsl (one workgroup per row, shared-memory tree reductions in a fixed
 * order), the VJP, float64 references.
 *
 * Backward: y = softmax(x), dy_i/dx_j = y_i (δ_ij - y_j), so dx_j = Σ_i g_i y_i (δ_ij - y_j) = y_j (g_j - Σ_i g_i y_i).
 * @module
 */
import { kernelSource } from "../core/kernels.ts";
import { dispatch, type Kernel } from "../core/runtime.ts";
import { record, type VjpRule } from "../core/tape.ts";
import { empty, type Tensor } from "../core/tensor.ts";
import { rowChunks, slice } from "./split.ts";
import { expectF32, grid1d } from "./util.ts";

/**
 * Softmax over the last axis. Saves its output y for the backward (dx needs only y and g).
 * @param x (..., V) f32, V ≥ 1
 * @returns (..., V), each row summing to 1
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { softmax } from "./softmax.ts";
 * await initGpu();
 * console.log(await softmax(tensor([0, Math.log(3), 1000, 1000], [2, 2])).toArray()); // [0.25, 0.75, 0.5, 0.5]
 * ```
 */
export function softmax(x: Tensor): Tensor {
  expectF32("softmax", x);
  const V = x.shape.at(-1);
  if (V === undefined || V < 1) {
    throw new RangeError(`softmax: expected a tensor (..., V) with V ≥ 1, got [${x.shape.join(", ")}]`);
  }
  const R = x.size / V;
  const y = empty(x.shape);
  const kernel: Kernel = {
    name: "softmax_forward",
    code: kernelSource("softmax.wgsl"),
    entry: "forward",
    bindings: ["read", "read_write"],
  };
  // rows are independent: chunks of rows for tensors larger than one binding
  for (const [r0, n] of rowChunks(kernel.name, R, [V], `rows of ${V}`)) {
    dispatch(kernel, [slice(x, r0 * V, n * V), slice(y, r0 * V, n * V)], [n, V], grid1d(n, 1));
  }
  record("softmax", [x], [y], {});
  return y;
}

export const softmaxVjp: VjpRule = ({ outputs: [y] }, [g]) => {
  const V = y.shape.at(-1)!;
  const R = y.size / V;
  const dx = empty(y.shape);
  const kernel: Kernel = {
    name: "softmax_backward",
    code: kernelSource("softmax.wgsl"),
    entry: "backward",
    bindings: ["read", "read", "read_write"],
  };
  for (const [r0, n] of rowChunks(kernel.name, R, [V], `rows of ${V}`)) {
    const rows = (t: Tensor) => slice(t, r0 * V, n * V);
    dispatch(kernel, [rows(y), rows(g!), rows(dx)], [n, V], grid1d(n, 1));
  }
  return [dx];
};

/**
 * Float64 reference of `softmax` over rows of length V.
 * @param x (R, V) flat
 */
export function softmaxRef(x: Float64Array, V: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let base = 0; base < x.length; base += V) {
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, x[base + v]);
    let s = 0;
    for (let v = 0; v < V; v++) s += y[base + v] = Math.exp(x[base + v] - m);
    for (let v = 0; v < V; v++) y[base + v] /= s;
  }
  return y;
}

/**
 * Float64 reference VJP of `softmax`: dx = y ⊙ (g - Σ g ⊙ y) per row.
 * @param x (R, V) flat input; g (R, V) flat cotangent
 */
export function softmaxVjpRef(x: Float64Array, g: Float64Array, V: number): Float64Array {
  const y = softmaxRef(x, V);
  const dx = new Float64Array(x.length);
  for (let base = 0; base < x.length; base += V) {
    let gy = 0;
    for (let v = 0; v < V; v++) gy += g[base + v] * y[base + v];
    for (let v = 0; v < V; v++) dx[base + v] = y[base + v] * (g[base + v] - gy);
  }
  return dx;
}
