/**
 * Reductions over one axis: sum, mean, max; and `sumToShape`, the adjoint of broadcasting.
 * GPU forward in kernels/reduce.wgsl, VJPs, float64 references.
 * @module
 */
import { kernelSource } from "../core/kernels.ts";
import { dispatch, type Kernel } from "../core/runtime.ts";
import { record, type VjpRule } from "../core/tape.ts";
import { empty, type Shape, sizeOf, type Tensor } from "../core/tensor.ts";
import { affine, broadcastTo } from "./elementwise.ts";
import { rowChunks, slice } from "./split.ts";
import { expectF32, grid1d, normAxis, sameShape } from "./util.ts";

type ReduceOp = "sum" | "max";
const REDUCE_OPS = {
  sum: { INIT: "0.0", COMBINE: "a + b" },
  max: { INIT: "-3.4028235e38", COMBINE: "max(a, b)" },
};

/**
 * Parts of the n axis for the `cols` kernel. One thread per output walks all of n; when the outputs are too few to
 * fill a GPU (per-channel gradients summed over B·T tokens: 2048 outputs × 7040 tokens took 0.2 ms each on the
 * H100, 3.5 ms of the fig7 quick model's step), each thread sums only a part of ≥ 64 of n, and a second pass
 * sums the parts.
 */
function colParts(n: number, inner: number): number {
  // From n and inner only, never `outer`: the outer axes hold the run axis K, and a run's bits must not depend on
  // which runs share its group.
  if (n < 256 || inner >= 65536) return 1;
  return Math.max(1, Math.min(Math.floor(n / 64), Math.ceil(65536 / inner)));
}

function reduceDispatch(
  op: ReduceOp,
  x: Tensor,
  axis: number,
  into?: Tensor,
  shape: Shape = x.shape,
): { out: Tensor; outer: number; n: number; inner: number } {
  const outer = sizeOf(shape.slice(0, axis));
  const n = shape[axis];
  const inner = sizeOf(shape.slice(axis + 1));
  const out = into ?? empty([...shape.slice(0, axis), ...shape.slice(axis + 1)]);
  const code = kernelSource("reduce.wgsl", REDUCE_OPS[op]);
  // The outer index is independent: chunks of it for tensors larger than one binding.
  const byOuter = (
    kernel: Kernel,
    src: Tensor,
    dst: Tensor,
    srcRow: number,
    dstRow: number,
    params: (count: number) => number[],
    groups: (count: number) => [number, number],
  ) => {
    for (const [o0, count] of rowChunks(kernel.name, outer, [srcRow, dstRow], "outer rows")) {
      dispatch(
        kernel,
        [slice(src, o0 * srcRow, count * srcRow), slice(dst, o0 * dstRow, count * dstRow)],
        params(count),
        groups(count),
      );
    }
  };
  if (inner === 1) {
    const kernel: Kernel = { name: `${op}_rows`, code, entry: "rows", bindings: ["read", "read_write"] };
    byOuter(kernel, x, out, n, 1, (c) => [c, n, inner, 0, 0], (c) => grid1d(c, 1));
  } else {
    const kernel: Kernel = { name: `${op}_cols`, code, entry: "cols", bindings: ["read", "read_write"] };
    const parts = colParts(n, inner);
    if (parts === 1) {
      byOuter(kernel, x, out, n * inner, inner, (c) => [c, n, inner, n, 1], (c) => grid1d(c * inner));
    } else {
      // Two passes, each in a fixed order: parts of the n axis, then the sum (max) of the parts.
      const chunk = Math.ceil(n / parts);
      const np = Math.ceil(n / chunk);
      const partial = empty([outer, np, inner]);
      byOuter(
        kernel,
        x,
        partial,
        n * inner,
        np * inner,
        (c) => [c, n, inner, chunk, np],
        (c) => grid1d(c * np * inner),
      );
      byOuter(
        kernel,
        partial,
        out,
        np * inner,
        inner,
        (c) => [c, np, inner, np, 1],
        (c) => grid1d(c * inner),
      );
      partial.dispose();
    }
  }
  return { out, outer, n, inner };
}

function withKeepDims(out: Tensor, x: Tensor, axis: number, keepDims: boolean): Tensor {
  if (!keepDims) return out;
  const shape = [...x.shape];
  shape[axis] = 1;
  return out.reshape(shape);
}

/**
 * Sum over `axis` (negative counts from the end).
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { sum } from "./reduce.ts";
 * await initGpu();
 * console.log(await sum(tensor([1, 2, 3, 4], [2, 2]), 1).toArray()); // [3, 7]
 * ```
 */
export function sum(x: Tensor, axis: number, keepDims = false): Tensor {
  expectF32("sum", x);
  const a = normAxis("sum", axis, x.rank);
  const { out } = reduceDispatch("sum", x, a);
  record("sum", [x], [out], { axis: a });
  return withKeepDims(out, x, a, keepDims);
}

/**
 * Library-internal: the sum over axis 1 of x's elements read as (outer, n, inner), written into `out` (outer·inner
 * elements, any shape), in a fixed order and not recorded on the tape: for ops that finish their own partial sums
 * (split-K matmul).
 */
export function sumInto(x: Tensor, [outer, n, inner]: [number, number, number], out: Tensor): void {
  if (outer * n * inner !== x.size || outer * inner !== out.size) {
    throw new RangeError(
      `sumInto: x (${x.size} elements) read as (${outer}, ${n}, ${inner}) into out (${out.size} elements)`,
    );
  }
  reduceDispatch("sum", x, 1, out, [outer, n, inner]);
}

/** Mean over `axis`. */
export function mean(x: Tensor, axis: number, keepDims = false): Tensor {
  const a = normAxis("mean", axis, x.rank);
  return affine(sum(x, a, keepDims), 1 / x.shape[a]);
}

/** Sum over every element, as a tensor of shape [1]. */
export function sumAll(x: Tensor): Tensor {
  return sum(x.reshape([x.size]), 0, true);
}

/** Max over `axis`. Its gradient flows to every position equal to the max. */
export function max(x: Tensor, axis: number, keepDims = false): Tensor {
  expectF32("max", x);
  const a = normAxis("max", axis, x.rank);
  if (x.shape[a] === 0) throw new RangeError("max: cannot reduce an empty axis");
  const { out } = reduceDispatch("max", x, a);
  record("max", [x], [out], { axis: a });
  return withKeepDims(out, x, a, keepDims);
}

export const sumVjp: VjpRule<{ axis: number }> = ({ inputs: [x], attrs: { axis } }, [g]) => {
  const shape = [...x.shape];
  shape[axis] = 1;
  return [broadcastTo(g!.reshape(shape), x.shape)];
};

export const maxVjp: VjpRule<{ axis: number }> = ({ inputs: [x], outputs: [y], attrs: { axis } }, [g]) => {
  const outer = sizeOf(x.shape.slice(0, axis));
  const n = x.shape[axis];
  const inner = sizeOf(x.shape.slice(axis + 1));
  const dx = empty(x.shape);
  dispatch(
    {
      name: "max_backward",
      code: kernelSource("reduce_backward.wgsl"),
      entry: "max_backward",
      bindings: ["read", "read", "read", "read_write"],
    },
    [x.buffer, y.buffer, g!.buffer, dx.buffer],
    [outer, n, inner],
    grid1d(x.size),
  );
  return [dx];
};

/** Sums `g` over the axes along which `shape` was broadcast to `g`'s shape (the adjoint of `broadcastTo`). */
export function sumToShape(g: Tensor, shape: Shape): Tensor {
  if (sameShape(g.shape, shape)) return g;
  let cur = g;
  const lead = g.rank - shape.length;
  for (let i = 0; i < lead; i++) cur = sum(cur, 0);
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === 1 && cur.shape[i] !== 1) cur = sum(cur, i, true);
  }
  if (!sameShape(cur.shape, shape)) {
    throw new RangeError(`sumToShape: [${g.shape.join(", ")}] does not reduce to [${shape.join(", ")}]`);
  }
  return cur;
}

/** Float64 reference of sum / max over an axis. */
export function reduceRef(op: ReduceOp, x: Float64Array, shape: Shape, axis: number): Float64Array {
  const outer = sizeOf(shape.slice(0, axis));
  const n = shape[axis];
  const inner = sizeOf(shape.slice(axis + 1));
  const out = new Float64Array(outer * inner).fill(op === "sum" ? 0 : -Infinity);
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < n; k++) {
      for (let i = 0; i < inner; i++) {
        const v = x[(o * n + k) * inner + i];
        const j = o * inner + i;
        out[j] = op === "sum" ? out[j] + v : Math.max(out[j], v);
      }
    }
  }
  return out;
}
