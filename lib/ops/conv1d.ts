/**
 * Depthwise causal convolution along time with per-run parameters (Mamba's short conv): x (K, B, T, C),
 * weight (K, C, W), bias (K, C). GPU forward and backward in kernels/conv1d.wgsl, the VJP rule, float64 references.
 *
 * y[k, b, t, c] = bias[k, c] + Σ_{j=0}^{W−1} weight[k, c, j] · x[k, b, t − (W−1) + j, c], with x = 0 before t = 0.
 * weight[c, W−1] multiplies the current token (mamba_ssm's order, so the mimetic identity conv is [0, …, 0, 1]).
 * The forward saves nothing: the backward needs only x and weight, which the tape holds as inputs.
 *
 * Backward, with g the cotangent of y:
 *   dx[t, c]      = Σ_j weight[c, j] · g[t + (W−1) − j, c]      (over t + (W−1) − j < T: the anti-causal adjoint)
 *   dweight[c, j] = Σ_{b,t} g[b, t, c] · x[b, t − (W−1) + j, c]
 *   dbias[c]      = Σ_{b,t} g[b, t, c]
 * dx: one thread per element. dweight, dbias: deterministic, without atomics, in two stages over the B·T rows of a
 * run: stage 1 gives each thread one (k, chunk s, tap j or the bias, c) and sums the rows of its chunk in order into
 * partials (K, S, C, W) and (K, S, C); stage 2 (reduce.ts `sum`, a thread per output) adds the S partials in order.
 * The chunk is ⌈√(B·T)⌉ rows, so S ≈ √(B·T) and both stages loop ≈ √(B·T) times; stage 1 runs K·S·(W+1)·C threads.
 * Cost: stage 1 reads g (W+1) times and x W times per element (neighbouring taps hit the same cache lines) and
 * writes K·S·C·(W+1) partials (≈ (W+1)/√(B·T) of the size of x: 12 % for B·T = 1760, W = 4); stage 2 reads them
 * back. The order depends only on the shapes, so results are bit-identical run to run.
 *
 * With `{ silu: true }` (how the Mamba mixers call it) the kernel applies SiLU to its output, and the backward
 * first turns g into g_u = g·silu'(u), u the conv's output, recomputed from x rather than saved: a thread per 4
 * consecutive steps of a channel computes u and g_u at each step its outputs read (4 + W − 1 of them), sums dx
 * in the unfused order and writes its own steps' g_u for the dweight/dbias stages. So a training step keeps one
 * activation fewer per conv and passes over the activations once fewer each way (measured on the H200: README,
 * "Against PyTorch").
 * @module
 */
import { kernelSource } from "../core/kernels.ts";
import { dispatch, type Kernel } from "../core/runtime.ts";
import { record, type VjpRule } from "../core/tape.ts";
import { empty, type Shape, type Tensor } from "../core/tensor.ts";
import { UNARY_REF } from "./elementwise.ts";
import { sum } from "./reduce.ts";
import { expectF32, grid1d } from "./util.ts";

/** Time steps per thread of the fused SiLU backward (`backward_dx_silu`; TS in kernels/conv1d.wgsl). */
const SILU_DX_STEPS = 4;

function conv1dKernel(entry: string, outputs: number): Kernel {
  return {
    name: `conv1d_${entry}`,
    code: kernelSource("conv1d.wgsl", { TS: SILU_DX_STEPS }),
    entry,
    bindings: ["read", "read", "read", "read", ...new Array(outputs).fill("read_write")],
  };
}

/** Row chunk of the dweight/dbias stage 1: ⌈√(B·T)⌉ rows, so S ≈ √(B·T) chunks. */
function chunking(rows: number): { chunk: number; S: number } {
  const chunk = Math.ceil(Math.sqrt(rows));
  return { chunk, S: Math.ceil(rows / chunk) };
}

/** [K, B, T, C, W, chunk, S], the kernel's Params. */
function uniforms(xShape: Shape, W: number): number[] {
  const [K, B, T, C] = xShape;
  const { chunk, S } = chunking(B * T);
  return [K, B, T, C, W, chunk, S];
}

/** Options of `causalConv1d`. */
export interface Conv1dOptions {
  /**
   * Apply SiLU to the conv's output in the same kernel (Mamba's conv is always followed by it): y = silu(conv(x)).
   * The same values as `silu(causalConv1d(x, weight, bias))`, one pass over the activations fewer in each
   * direction, and the conv's output is never stored (the backward recomputes it from x).
   */
  silu?: boolean;
}

/**
 * Depthwise causal conv1d along T with a weight and bias per run and channel:
 * y[k, b, t, c] = bias[k, c] + Σ_j weight[k, c, j] · x[k, b, t − (W−1) + j, c] (zero before t = 0), so
 * weight[k, c, W−1] multiplies the current token. Any W ≥ 1; T may be smaller than W. With `{ silu: true }`,
 * silu of that.
 * @param x (K, B, T, C)
 * @param weight (K, C, W)
 * @param bias (K, C)
 * @returns y (K, B, T, C)
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { causalConv1d } from "./conv1d.ts";
 * await initGpu();
 * const x = tensor([1, 2, 3], [1, 1, 3, 1]); // K = B = C = 1, T = 3
 * const y = causalConv1d(x, tensor([10, 1], [1, 1, 2]), tensor([0.5], [1, 1])); // W = 2
 * console.log(await y.toArray()); // [1.5, 12.5, 23.5]: y[t] = 0.5 + 10·x[t−1] + x[t]
 * const z = causalConv1d(x, tensor([10, 1], [1, 1, 2]), tensor([0.5], [1, 1]), { silu: true });
 * console.log(await z.toArray()); // ≈ [1.22, 12.5, 23.5]: silu(y)
 * ```
 */
export function causalConv1d(x: Tensor, weight: Tensor, bias: Tensor, opts: Conv1dOptions = {}): Tensor {
  expectF32("causalConv1d", x);
  expectF32("causalConv1d", weight);
  expectF32("causalConv1d", bias);
  if (x.rank !== 4 || x.size === 0) {
    throw new RangeError(`causalConv1d: expected a non-empty x of shape (K, B, T, C), got ${x}`);
  }
  const [K, , , C] = x.shape;
  if (weight.rank !== 3 || weight.shape[0] !== K || weight.shape[1] !== C || weight.shape[2] < 1) {
    throw new RangeError(
      `causalConv1d: expected weight of shape [${K}, ${C}, W ≥ 1] (K, C, W) for x ${x}, got ${weight}`,
    );
  }
  if (bias.rank !== 2 || bias.shape[0] !== K || bias.shape[1] !== C) {
    throw new RangeError(`causalConv1d: expected bias of shape [${K}, ${C}] (K, C) for x ${x}, got ${bias}`);
  }
  const silu = opts.silu === true;
  const W = weight.shape[2];
  const y = empty(x.shape);
  dispatch(
    conv1dKernel(silu ? "forward_silu" : "forward", 1),
    [x.buffer, weight.buffer, bias.buffer, x.buffer, y.buffer],
    uniforms(x.shape, W),
    grid1d(x.size),
  );
  record("conv1d", [x, weight, bias], [y], { silu });
  return y;
}

/** VJP of `causalConv1d`: [dx (K, B, T, C), dweight (K, C, W), dbias (K, C)]. */
export const causalConv1dVjp: VjpRule<{ silu: boolean }> = ({ inputs: [x, weight, bias], attrs }, [g]) => {
  const [K, B, T, C] = x.shape;
  const W = weight.shape[2];
  const u = uniforms(x.shape, W);
  const S = u[6];
  const dx = empty(x.shape);
  // With SiLU, the dx kernel (a thread per SILU_DX_STEPS steps of a channel) also writes g_u = g·silu'(u), the
  // cotangent of the conv's output, for the parameters' sums.
  const gu = attrs.silu ? empty(x.shape) : g!;
  dispatch(
    conv1dKernel(attrs.silu ? "backward_dx_silu" : "backward_dx", attrs.silu ? 2 : 1),
    [x.buffer, weight.buffer, bias.buffer, g!.buffer, dx.buffer, ...(attrs.silu ? [gu.buffer] : [])],
    u,
    grid1d(attrs.silu ? K * B * Math.ceil(T / SILU_DX_STEPS) * C : x.size),
  );
  const pw = empty([K, S, C * W]);
  const pb = empty([K, S, C]);
  dispatch(
    conv1dKernel("backward_params", 2),
    [x.buffer, weight.buffer, bias.buffer, gu.buffer, pw.buffer, pb.buffer],
    u,
    grid1d(K * S * (W + 1) * C),
  );
  if (attrs.silu) gu.dispose();
  const dw = sum(pw, 1).reshape([K, C, W]);
  const db = sum(pb, 1);
  pw.dispose();
  pb.dispose();
  return [dx, dw, db];
};

// ---------------------------------------------------------------------------------------------------------------
// Float64 references (plain loops; the formulas of the module comment)

/**
 * Float64 reference of `causalConv1d`.
 * @param x (K, B, T, C), of shape `shape`
 * @param weight (K, C, W)
 * @param bias (K, C)
 * @example
 * ```ts
 * import { causalConv1dRef } from "./conv1d.ts";
 * const y = causalConv1dRef(new Float64Array([1, 2, 3]), new Float64Array([10, 1]), new Float64Array([0.5]), [1, 1, 3, 1]);
 * console.log(y); // [1.5, 12.5, 23.5]
 * ```
 */
export function causalConv1dRef(
  x: Float64Array,
  weight: Float64Array,
  bias: Float64Array,
  shape: Shape,
): Float64Array {
  const [K, B, T, C] = shape;
  const W = weight.length / (K * C);
  const y = new Float64Array(x.length);
  for (let k = 0; k < K; k++) {
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < C; c++) {
          let acc = bias[k * C + c];
          for (let j = 0; j < W; j++) {
            const tt = t - (W - 1) + j;
            if (tt >= 0) acc += weight[(k * C + c) * W + j] * x[((k * B + b) * T + tt) * C + c];
          }
          y[((k * B + b) * T + t) * C + c] = acc;
        }
      }
    }
  }
  return y;
}

/**
 * Float64 reference VJP of `causalConv1d` for the cotangent g (K, B, T, C). Written as the transpose of the
 * forward's loop: each product weight·x that fed y[t] sends g[t] back to both factors.
 * @returns [dx (K, B, T, C), dweight (K, C, W), dbias (K, C)]
 * @example
 * ```ts
 * import { causalConv1dVjpRef } from "./conv1d.ts";
 * const [dx, dw, db] = causalConv1dVjpRef(
 *   new Float64Array([1, 2, 3]), new Float64Array([10, 1]), [1, 1, 3, 1], new Float64Array([0, 0, 1]),
 * );
 * console.log(dx, dw, db); // [0, 10, 1] [2, 3] [1]
 * ```
 */
export function causalConv1dVjpRef(
  x: Float64Array,
  weight: Float64Array,
  shape: Shape,
  g: Float64Array,
): [Float64Array, Float64Array, Float64Array] {
  const [K, B, T, C] = shape;
  const W = weight.length / (K * C);
  const dx = new Float64Array(x.length), dw = new Float64Array(weight.length), db = new Float64Array(K * C);
  for (let k = 0; k < K; k++) {
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < C; c++) {
          const gy = g[((k * B + b) * T + t) * C + c];
          db[k * C + c] += gy;
          for (let j = 0; j < W; j++) {
            const tt = t - (W - 1) + j;
            if (tt < 0) continue;
            const xi = ((k * B + b) * T + tt) * C + c, wi = (k * C + c) * W + j;
            dx[xi] += weight[wi] * gy;
            dw[wi] += x[xi] * gy;
          }
        }
      }
    }
  }
  return [dx, dw, db];
}

/**
 * Float64 reference of `causalConv1d(x, weight, bias, { silu: true })`: silu of `causalConv1dRef`.
 * @example
 * ```ts
 * import { causalConv1dSiluRef } from "./conv1d.ts";
 * const y = causalConv1dSiluRef(new Float64Array([1, 2]), new Float64Array([1]), new Float64Array([0]), [1, 1, 2, 1]);
 * console.log(y); // ≈ [0.731, 1.762]
 * ```
 */
export function causalConv1dSiluRef(
  x: Float64Array,
  weight: Float64Array,
  bias: Float64Array,
  shape: Shape,
): Float64Array {
  return causalConv1dRef(x, weight, bias, shape).map(UNARY_REF.silu.f);
}

/**
 * Float64 reference VJP of `causalConv1d(x, weight, bias, { silu: true })` for the cotangent g of its output: the
 * conv's VJP at g_u = g·silu'(u), u = `causalConv1dRef(x, weight, bias)`.
 * @returns [dx (K, B, T, C), dweight (K, C, W), dbias (K, C)]
 * @example
 * ```ts
 * import { causalConv1dSiluVjpRef } from "./conv1d.ts";
 * const [dx] = causalConv1dSiluVjpRef(
 *   new Float64Array([0]), new Float64Array([2]), new Float64Array([0]), [1, 1, 1, 1], new Float64Array([1]),
 * );
 * console.log(dx); // [1]: silu'(0) = 0.5, times the weight 2
 * ```
 */
export function causalConv1dSiluVjpRef(
  x: Float64Array,
  weight: Float64Array,
  bias: Float64Array,
  shape: Shape,
  g: Float64Array,
): [Float64Array, Float64Array, Float64Array] {
  const u = causalConv1dRef(x, weight, bias, shape);
  const gu = u.map((v, i) => g[i] * UNARY_REF.silu.df(v));
  return causalConv1dVjpRef(x, weight, shape, gu);
}
