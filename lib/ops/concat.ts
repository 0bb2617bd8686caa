/**
 * Concatenation along an axis and its inverse, the split into pieces of given sizes: one copy kernel
 * (kernels/concat.wgsl) for both directions, each other's VJP, and float64 references.
 *
 * The mixers use them to compute several products of one input as one matrix product (`matmulParts` in
 * lib/ops/matmul.ts): thin products (a few dozen columns) fill the GPU badly on their own, and the backward then
 * sums one input gradient instead of adding one per product.
 * @module
 */
import { kernelSource } from "../core/kernels.ts";
import { dispatch, type Kernel } from "../core/runtime.ts";
import { record, type VjpRule } from "../core/tape.ts";
import { empty, sizeOf, type Tensor, zeros } from "../core/tensor.ts";
import { rowChunks, slice } from "./split.ts";
import { expectF32, grid1d, normAxis } from "./util.ts";

/** Pieces per dispatch (bindings of the kernel); more pieces take more dispatches. */
const MAX_PIECES = 4;

function copyKernel(direction: "gather" | "scatter", pieces: number): Kernel {
  const gather = direction === "gather";
  const bindings = Array.from(
    { length: pieces },
    (_, j) =>
      `@group(0) @binding(${j + 2}) var<storage, ${gather ? "read" : "read_write"}> X${j}: array<f32>;`,
  );
  const copy = Array.from({ length: pieces }, (_, j) => {
    const move = gather ? `W[idx] = X${j}[e];` : `X${j}[e] = W[idx];`;
    return `if (c < ends[${j}]) { let e = (o * (ends[${j}] - b) + c - b) * p.inner + i; ${move} return; }\n  b = ends[${j}];`;
  });
  return {
    name: `concat_${direction}`,
    code: kernelSource("concat.wgsl", {
      WHOLE: gather ? "read_write" : "read",
      PIECES: bindings.join("\n"),
      COPY: copy.join("\n  "),
    }),
    bindings: [gather ? "read_write" : "read", ...Array(pieces).fill(gather ? "read" : "read_write")],
  };
}

/**
 * Copies between `whole` (outer, Σ sizes, inner) and its pieces (outer, sizes[j], inner), in dispatches of up to
 * four pieces, each over chunks of the outer axis that fit one binding.
 */
function copyPieces(
  direction: "gather" | "scatter",
  whole: Tensor,
  pieces: readonly Tensor[],
  outer: number,
  sizes: readonly number[],
  inner: number,
): void {
  const n = sizes.reduce((a, b) => a + b, 0);
  if (outer * n * inner === 0) return;
  // (pieces of no columns have nothing to copy)
  const live = pieces.map((t, j) => ({ t, w: sizes[j] })).filter((q) => q.w > 0);
  let c0 = 0; // the first column of this dispatch's pieces
  for (let j0 = 0; j0 < live.length; j0 += MAX_PIECES) {
    const part = live.slice(j0, j0 + MAX_PIECES);
    const group = part.map((q) => q.t), widths = part.map((q) => q.w);
    const ends = widths.map((_, j) => widths.slice(0, j + 1).reduce((a, b) => a + b, 0));
    const span = ends.at(-1)!;
    const kernel = copyKernel(direction, group.length);
    const perRow = [n * inner, ...widths.map((w) => w * inner)];
    for (const [o0, count] of rowChunks(kernel.name, outer, perRow, `rows of ${n * inner}`)) {
      const bindings = [
        slice(whole, o0 * n * inner, count * n * inner),
        ...group.map((t, j) => slice(t, o0 * widths[j] * inner, count * widths[j] * inner)),
      ];
      const params = [count, n, inner, c0, span, ...[0, 1, 2].map((j) => ends[j] ?? span)];
      dispatch(kernel, bindings, params, grid1d(count * span * inner));
    }
    c0 += span;
  }
}

/**
 * Concatenates tensors along `axis`; every other axis must agree.
 * @param xs f32 tensors of one rank (one or more)
 * @param axis the axis to join along (negative counts from the end)
 * @returns the pieces one after another along `axis`
 * @throws {RangeError} when the shapes differ outside `axis`, or no tensor is given.
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { concat } from "./concat.ts";
 * await initGpu();
 * const a = tensor([1, 2, 3, 4], [2, 2]), b = tensor([5, 6], [2, 1]);
 * console.log(await concat([a, b], 1).toArray()); // [1, 2, 5, 3, 4, 6]
 * ```
 */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new RangeError("concat: expected at least one tensor");
  for (const x of xs) expectF32("concat", x);
  const a = normAxis("concat", axis, xs[0].rank);
  const shape = xs[0].shape;
  for (const x of xs) {
    if (x.rank !== shape.length || x.shape.some((d, i) => i !== a && d !== shape[i])) {
      throw new RangeError(
        `concat: shapes [${shape.join(", ")}] and [${x.shape.join(", ")}] differ outside axis ${a}`,
      );
    }
  }
  const sizes = xs.map((x) => x.shape[a]);
  const out = empty([...shape.slice(0, a), sizes.reduce((s, v) => s + v, 0), ...shape.slice(a + 1)]);
  copyPieces("gather", out, xs, sizeOf(shape.slice(0, a)), sizes, sizeOf(shape.slice(a + 1)));
  record("concat", xs, [out], { axis: a, sizes });
  return out;
}

/**
 * Splits a tensor along `axis` into consecutive pieces of the given sizes (which must sum to the axis' length).
 * @param x an f32 tensor
 * @param sizes each piece's length along `axis` (integers ≥ 0)
 * @param axis the axis to cut (negative counts from the end)
 * @returns one new tensor per piece
 * @throws {RangeError} when the sizes are not integers ≥ 0 summing to the axis' length.
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { splitAlong } from "./concat.ts";
 * await initGpu();
 * const [a, b] = splitAlong(tensor([1, 2, 5, 3, 4, 6], [2, 3]), [2, 1], 1);
 * console.log(await a.toArray(), await b.toArray()); // [1, 2, 3, 4] [5, 6]
 * ```
 */
export function splitAlong(x: Tensor, sizes: readonly number[], axis: number): Tensor[] {
  expectF32("splitAlong", x);
  const a = normAxis("splitAlong", axis, x.rank);
  const n = x.shape[a];
  if (sizes.length === 0 || sizes.some((s) => !Number.isInteger(s) || s < 0)) {
    throw new RangeError(`splitAlong: expected one or more integer sizes ≥ 0, got [${sizes.join(", ")}]`);
  }
  if (sizes.reduce((s, v) => s + v, 0) !== n) {
    throw new RangeError(`splitAlong: sizes [${sizes.join(", ")}] do not sum to axis ${a}'s length ${n}`);
  }
  const outs = sizes.map((s) => empty([...x.shape.slice(0, a), s, ...x.shape.slice(a + 1)]));
  copyPieces("scatter", x, outs, sizeOf(x.shape.slice(0, a)), sizes, sizeOf(x.shape.slice(a + 1)));
  record("splitAlong", [x], outs, { axis: a, sizes: [...sizes] });
  return outs;
}

/** The VJP of `concat`: the cotangent split into the pieces' sizes. */
export const concatVjp: VjpRule<{ axis: number; sizes: number[] }> = ({ attrs: { axis, sizes } }, [g]) =>
  splitAlong(g!, sizes, axis);

/** The VJP of `splitAlong`: the pieces' cotangents concatenated, zeros for a piece that got none. */
export const splitAlongVjp: VjpRule<{ axis: number; sizes: number[] }> = (
  { outputs, attrs: { axis } },
  cts,
) => [concat(cts.map((c, j) => c ?? zeros(outputs[j].shape)), axis)];

/** Float64 reference of `concat`: pieces of shape (outer, sizes[j], inner) → (outer, Σ sizes, inner). */
export function concatRef(
  xs: readonly Float64Array[],
  outer: number,
  sizes: readonly number[],
  inner: number,
): Float64Array {
  const n = sizes.reduce((s, v) => s + v, 0);
  const out = new Float64Array(outer * n * inner);
  let b = 0;
  xs.forEach((x, j) => {
    for (let o = 0; o < outer; o++) {
      out.set(x.subarray(o * sizes[j] * inner, (o + 1) * sizes[j] * inner), (o * n + b) * inner);
    }
    b += sizes[j];
  });
  return out;
}

/** Float64 reference of `splitAlong`: (outer, Σ sizes, inner) → pieces (outer, sizes[j], inner). */
export function splitRef(
  x: Float64Array,
  outer: number,
  sizes: readonly number[],
  inner: number,
): Float64Array[] {
  const n = sizes.reduce((s, v) => s + v, 0);
  let b = 0;
  return sizes.map((s) => {
    const out = new Float64Array(outer * s * inner);
    for (let o = 0; o < outer; o++) {
      out.set(x.subarray((o * n + b) * inner, (o * n + b + s) * inner), o * s * inner);
    }
    b += s;
    return out;
  });
}
