/**
 * Elementwise ops: binary arithmetic with NumPy broadcasting, unary maps, affine maps, and broadcasting itself.
 * Each op: its GPU forward (kernels/binary.wgsl, kernels/unary.wgsl), its VJP, its float64 reference.
 * @module
 */
import { kernelSource } from "../core/kernels.ts";
import { dispatch, f32, type Kernel } from "../core/runtime.ts";
import { record, type VjpRule } from "../core/tape.ts";
import { empty, type Shape, sizeOf, type Tensor } from "../core/tensor.ts";
import { sumToShape } from "./reduce.ts";
import { rowChunks, slice } from "./split.ts";
import { expectF32, grid1d, sameShape } from "./util.ts";

// ---------------------------------------------------------------------------------------------------------------
// Broadcasting

/** The broadcast shape of two shapes (NumPy rules). */
export function broadcastShapes(a: Shape, b: Shape): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new RangeError(`shapes [${a.join(", ")}] and [${b.join(", ")}] do not broadcast`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Row-major strides of `shape` as seen from `outShape` (0 on broadcast axes). */
function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const rank = outShape.length;
  const strides = new Array(rank).fill(0);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const j = rank - shape.length + i;
    strides[j] = shape[i] === 1 ? 0 : s;
    s *= shape[i];
  }
  return strides;
}

/**
 * The output shape and both operands' strides with axes merged where no index needs them apart: size-1 axes
 * dropped, and neighbours fused where each operand either steps through both contiguously or broadcasts both.
 * A bias (K, 1, E) added to (K, M, E) stays three axes; (1, E) to (M, E) two. At least one axis.
 */
export function mergeBroadcastAxes(
  outShape: Shape,
  aStrides: readonly number[],
  bStrides: readonly number[],
): { shape: number[]; a: number[]; b: number[] } {
  const shape: number[] = [], a: number[] = [], b: number[] = [];
  for (let i = 0; i < outShape.length; i++) {
    if (outShape[i] === 1) continue;
    const j = shape.length - 1;
    // (a broadcast pair has strides 0 and 0, a contiguous pair s[j] = t·size)
    const fuses = (s: number[], t: number) => s[j] === t * outShape[i];
    if (j >= 0 && fuses(a, aStrides[i]) && fuses(b, bStrides[i])) {
      shape[j] *= outShape[i];
      a[j] = aStrides[i];
      b[j] = bStrides[i];
    } else {
      shape.push(outShape[i]);
      a.push(aStrides[i]);
      b.push(bStrides[i]);
    }
  }
  if (shape.length === 0) return { shape: [1], a: [0], b: [0] };
  return { shape, a, b };
}

/** The broadcasting kernel's index code for the last `rank` of the 6 axes (see kernels/binary.wgsl). */
function broadcastIndexCode(rank: number): string {
  const lines: string[] = [];
  for (let d = 5; d > 6 - rank; d--) {
    lines.push(`{ let k = rem % p.s${d}; rem = rem / p.s${d}; ia += k * p.a${d}; ib += k * p.b${d}; }`);
  }
  const d0 = 6 - rank;
  lines.push(`ia += rem * p.a${d0};`, `ib += rem * p.b${d0};`);
  return lines.join("\n  ");
}

// ---------------------------------------------------------------------------------------------------------------
// Binary ops

/** The binary primitives and their WGSL expressions. */
const BINARY_OPS = { add: "a + b", sub: "a - b", mul: "a * b", div: "a / b" } as const;
type BinaryOp = keyof typeof BINARY_OPS;

/** The binary kernel of `op`: same-shape, or broadcasting over `rank` merged axes. */
function binaryKernel(op: BinaryOp, broadcast: boolean, rank = 1): Kernel {
  return {
    name: `${op}${broadcast ? "_broadcast" : ""}`,
    code: kernelSource("binary.wgsl", { OP: BINARY_OPS[op], INDEX: broadcastIndexCode(rank) }),
    entry: broadcast ? "broadcast" : "same_shape",
    bindings: ["read", "read", "read_write"],
  };
}

function binaryForward(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  expectF32(op, a);
  expectF32(op, b);
  const outShape = broadcastShapes(a.shape, b.shape);
  if (outShape.length > 6) throw new RangeError(`${op}: rank ${outShape.length} > 6 is not supported`);
  const out = empty(outShape);
  if (sameShape(a.shape, b.shape)) {
    for (const [i0, n] of rowChunks(op, out.size, [1], "elements")) {
      dispatch(
        binaryKernel(op, false),
        [slice(a, i0, n), slice(b, i0, n), slice(out, i0, n)],
        [n],
        grid1d(n),
      );
    }
  } else {
    broadcastDispatch((rank) => binaryKernel(op, true, rank), a, b, out);
  }
  record(op, [a, b], [out], {});
  return out;
}

/**
 * The broadcasting kernel over chunks of the output: an operand of the output's size is sliced with the chunk
 * (its index is the output's), a broadcast one is bound whole; `base` is the chunk's first output index.
 */
function broadcastDispatch(kernelOf: (rank: number) => Kernel, a: Tensor, b: Tensor, out: Tensor): void {
  const n = out.size;
  const fullA = a.size === n, fullB = b.size === n;
  const m = mergeBroadcastAxes(
    out.shape,
    broadcastStrides(a.shape, out.shape),
    broadcastStrides(b.shape, out.shape),
  );
  const rank = m.shape.length;
  const pad = (xs: number[], v: number) => [...new Array(6 - rank).fill(v), ...xs];
  const strides = [...pad(m.shape, 1), ...pad(m.a, 0), ...pad(m.b, 0)];
  const kernel = kernelOf(rank);
  for (const [i0, count] of rowChunks(kernel.name, n, [1], "elements")) {
    dispatch(
      kernel,
      [fullA ? slice(a, i0, count) : a.buffer, fullB ? slice(b, i0, count) : b.buffer, slice(out, i0, count)],
      [count, ...strides, i0, fullA ? i0 : 0, fullB ? i0 : 0],
      grid1d(count),
    );
  }
}

/** a + b, broadcasting. */
export const add = (a: Tensor, b: Tensor): Tensor => binaryForward("add", a, b);
/** a - b, broadcasting. */
export const sub = (a: Tensor, b: Tensor): Tensor => binaryForward("sub", a, b);
/**
 * a · b elementwise, broadcasting.
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { mul } from "./elementwise.ts";
 * await initGpu();
 * console.log(await mul(tensor([1, 2, 3, 4], [2, 2]), tensor([10, 100], [1, 2])).toArray()); // 10 200 30 400
 * ```
 */
export const mul = (a: Tensor, b: Tensor): Tensor => binaryForward("mul", a, b);
/** a / b, broadcasting. */
export const div = (a: Tensor, b: Tensor): Tensor => binaryForward("div", a, b);

export const addVjp: VjpRule = (
  { inputs: [a, b] },
  [g],
) => [sumToShape(g!, a.shape), sumToShape(g!, b.shape)];
export const subVjp: VjpRule = ({ inputs: [a, b] }, [g]) => [
  sumToShape(g!, a.shape),
  sumToShape(neg(g!), b.shape),
];
export const mulVjp: VjpRule = ({ inputs: [a, b] }, [g]) => [
  sumToShape(mul(g!, b), a.shape),
  sumToShape(mul(g!, a), b.shape),
];
// d(a/b)/db = -a/b² = -(a/b)/b
export const divVjp: VjpRule = ({ inputs: [a, b], outputs: [c] }, [g]) => [
  sumToShape(div(g!, b), a.shape),
  sumToShape(neg(div(mul(g!, c), b)), b.shape),
];

// ---------------------------------------------------------------------------------------------------------------
// Unary ops

/** Each unary op: its forward expression of x, and f'(x) as an expression of x and y = f(x). */
export const UNARY_OPS = {
  neg: { f: "-x", df: "-1.0" },
  exp: { f: "exp(x)", df: "y" },
  log: { f: "log(x)", df: "1.0 / x" },
  sqrt: { f: "sqrt(x)", df: "0.5 / y" },
  square: { f: "x * x", df: "2.0 * x" },
  sigmoid: { f: "sigmoid_(x)", df: "y * (1.0 - y)" },
  // silu(x) = x σ(x); silu'(x) = σ(x) (1 + x (1 - σ(x)))
  silu: { f: "x * sigmoid_(x)", df: "sigmoid_(x) * (1.0 + x * (1.0 - sigmoid_(x)))" },
  softplus: { f: "softplus_(x)", df: "sigmoid_(x)" },
  tanh: { f: "tanh(x)", df: "1.0 - y * y" },
  relu: { f: "max(x, 0.0)", df: "select(0.0, 1.0, x > 0.0)" },
  // the affine map y = αx + β (α, β from Params)
  affine: { f: "x * p.alpha + p.beta", df: "p.alpha" },
} as const;
/** The name of a unary op. */
export type UnaryOp = keyof typeof UNARY_OPS;

function unaryKernel(op: UnaryOp, entry: "forward" | "backward"): Kernel {
  const { f, df } = UNARY_OPS[op];
  return {
    name: `${op}_${entry}`,
    code: kernelSource("unary.wgsl", { FORWARD: f, DERIVATIVE: df }),
    entry,
    bindings: ["read", "read", "read_write"],
  };
}

function unaryDispatch(
  op: UnaryOp,
  entry: "forward" | "backward",
  x: Tensor,
  g: Tensor,
  alpha = 1,
  beta = 0,
) {
  const out = empty(x.shape);
  for (const [i0, n] of rowChunks(`${op}`, x.size, [1], "elements")) {
    dispatch(
      unaryKernel(op, entry),
      [slice(x, i0, n), slice(g, i0, n), slice(out, i0, n)],
      [n, f32(alpha), f32(beta)],
      grid1d(n),
    );
  }
  return out;
}

/** Applies a unary op elementwise. */
export function unary(op: UnaryOp, x: Tensor): Tensor {
  expectF32(op, x);
  const out = unaryDispatch(op, "forward", x, x);
  record("unary", [x], [out], { op });
  return out;
}

export const unaryVjp: VjpRule<{ op: UnaryOp }> = ({ inputs: [x], attrs: { op } }, [g]) => [
  unaryDispatch(op, "backward", x, g!),
];

/** -x */
export const neg = (x: Tensor): Tensor => unary("neg", x);
/** e^x */
export const exp = (x: Tensor): Tensor => unary("exp", x);
/** ln x */
export const log = (x: Tensor): Tensor => unary("log", x);
/** √x */
export const sqrt = (x: Tensor): Tensor => unary("sqrt", x);
/** x² */
export const square = (x: Tensor): Tensor => unary("square", x);
/** σ(x) = 1 / (1 + e^-x) */
export const sigmoid = (x: Tensor): Tensor => unary("sigmoid", x);
/** x σ(x) */
export const silu = (x: Tensor): Tensor => unary("silu", x);
/** ln(1 + e^x), computed stably */
export const softplus = (x: Tensor): Tensor => unary("softplus", x);
/** tanh x */
export const tanh = (x: Tensor): Tensor => unary("tanh", x);
/** max(x, 0) */
export const relu = (x: Tensor): Tensor => unary("relu", x);

/** y = α x + β, with constants α and β. */
export function affine(x: Tensor, alpha: number, beta = 0): Tensor {
  expectF32("affine", x);
  const out = unaryDispatch("affine", "forward", x, x, alpha, beta);
  record("affine", [x], [out], { alpha, beta });
  return out;
}
/** α x */
export const scale = (x: Tensor, alpha: number): Tensor => affine(x, alpha, 0);

export const affineVjp: VjpRule<{ alpha: number }> = ({ attrs: { alpha } }, [g]) => [
  unaryDispatch("affine", "forward", g!, g!, alpha, 0),
];

// ---------------------------------------------------------------------------------------------------------------
// Broadcast

/** Broadcasts `x` to `shape` (materialised). */
export function broadcastTo(x: Tensor, shape: Shape): Tensor {
  expectF32("broadcastTo", x);
  const target = broadcastShapes(x.shape, shape);
  if (!sameShape(target, shape)) {
    throw new RangeError(`broadcastTo: [${x.shape.join(", ")}] does not broadcast to [${shape.join(", ")}]`);
  }
  const out = empty(shape);
  // c = a with b = a: the broadcasting binary kernel with op "a".
  broadcastDispatch(
    (rank) => ({
      name: "broadcast",
      code: kernelSource("binary.wgsl", { OP: "a", INDEX: broadcastIndexCode(rank) }),
      entry: "broadcast",
      bindings: ["read", "read", "read_write"],
    }),
    x,
    x,
    out,
  );
  record("broadcast", [x], [out], {});
  return out;
}

export const broadcastVjp: VjpRule = ({ inputs: [x] }, [g]) => [sumToShape(g!, x.shape)];

// ---------------------------------------------------------------------------------------------------------------
// Float64 references

/** Float64 reference of the binary ops with broadcasting. */
export function binaryRef(
  op: BinaryOp,
  a: Float64Array,
  aShape: Shape,
  b: Float64Array,
  bShape: Shape,
): { data: Float64Array; shape: number[] } {
  const shape = broadcastShapes(aShape, bShape);
  const n = sizeOf(shape);
  const sa = broadcastStrides(aShape, shape);
  const sb = broadcastStrides(bShape, shape);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let rem = i, ia = 0, ib = 0;
    for (let d = shape.length - 1; d >= 0; d--) {
      const k = rem % shape[d];
      rem = Math.floor(rem / shape[d]);
      ia += k * sa[d];
      ib += k * sb[d];
    }
    const x = a[ia], y = b[ib];
    out[i] = op === "add" ? x + y : op === "sub" ? x - y : op === "mul" ? x * y : x / y;
  }
  return { data: out, shape };
}

const sig = (x: number) => 1 / (1 + Math.exp(-x));
/** Float64 references of the unary ops: value and derivative. */
export const UNARY_REF: Record<
  Exclude<UnaryOp, "affine">,
  { f: (x: number) => number; df: (x: number) => number }
> = {
  neg: { f: (x) => -x, df: () => -1 },
  exp: { f: Math.exp, df: Math.exp },
  log: { f: Math.log, df: (x) => 1 / x },
  sqrt: { f: Math.sqrt, df: (x) => 0.5 / Math.sqrt(x) },
  square: { f: (x) => x * x, df: (x) => 2 * x },
  sigmoid: { f: sig, df: (x) => sig(x) * (1 - sig(x)) },
  silu: { f: (x) => x * sig(x), df: (x) => sig(x) * (1 + x * (1 - sig(x))) },
  softplus: { f: (x) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x))), df: sig },
  tanh: { f: Math.tanh, df: (x) => 1 - Math.tanh(x) ** 2 },
  relu: { f: (x) => Math.max(x, 0), df: (x) => (x > 0 ? 1 : 0) },
};
