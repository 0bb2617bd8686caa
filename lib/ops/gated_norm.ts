/**
 * Gated RMSNorm, fused: out = rmsNorm_G(y ⊙ silu(z)) ⊙ w, the normalisation over each of G groups of E/G
 * consecutive channels (mamba_ssm's RMSNormGated with norm_before_gate = False and group_size = E/G). GPU forward
 * and backward in kernels/gated_norm.wgsl, the VJP rule, float64 references.
 *
 * Why fused: as separate ops (silu, mul, rmsNorm) the Mamba 2 output gate takes 3 dispatches and ~8 passes over
 * (K, B·T, E) activations forward and ~6 dispatches and ~14 passes backward, and the tape keeps silu(z) and y ⊙
 * silu(z) alive until the backward. Fused: 1 dispatch and 3 passes (y, z in; out) forward, 3 dispatches and 8
 * passes backward (dy, dz from y, z, g; the weight's partial sums), and only y, z and the per-group rstd saved.
 *
 * Backward. With v = y ⊙ silu(z), v̂ = v · rstd, ĝ = g · w and n = E/G, per group:
 *   dv = rstd · (ĝ − v̂ · mean(ĝ · v̂)),   dy = dv ⊙ silu(z),   dz = dv ⊙ y ⊙ silu'(z),
 *   silu'(z) = σ(z) · (1 + z · (1 − σ(z))),   dw = Σ_rows g ⊙ v̂ (per run, in two fixed-order stages as norm.ts).
 *
 * Layout: the row kernels take group rows (E/G channels) as norm.ts's take rows (`rowLayout`): TPR threads a group
 * row, 256 / TPR group rows a workgroup, each thread's elements (vec4 when E/G % 4 == 0) in registers, one barrier
 * for the sum of squares (forward) or of ĝ · v̂ (backward), added in a fixed order. E 512, G 1 → 32 threads and
 * 8 group rows a workgroup; E 2048 → 128 and 2. So y and z are read once by the forward, y, z and g once by the
 * backward's dy/dz kernel. The dw stage issues 8 rows' loads before adding them in row order.
 * @module
 */
import { dispatch, f32, type Kernel } from "../core/runtime.ts";
import { isRecording, record, type VjpRule } from "../core/tape.ts";
import { empty, type Shape, sizeOf, type Tensor } from "../core/tensor.ts";
import { sum } from "./reduce.ts";
import { rowKernelCode, rowLayout } from "./norm.ts";
import { expectF32, grid1d, sameShape } from "./util.ts";

/** Attributes of a gated norm node. */
interface GatedNormAttrs {
  groups: number;
  eps: number;
}

/** Runs K, rows per run R, width E, groups G of a y of shape (K, ..., E). */
interface Dims {
  K: number;
  R: number;
  E: number;
  G: number;
}

function checkInputs(y: Tensor, z: Tensor, weight: Tensor, groups: number, eps: number): Dims {
  const op = "gatedRmsNorm";
  for (const t of [y, z, weight]) expectF32(op, t);
  if (y.rank < 2 || y.size === 0) {
    throw new RangeError(`${op}: expected a non-empty y of shape (K, ..., E), got ${y}`);
  }
  if (!sameShape(y.shape, z.shape)) throw new RangeError(`${op}: y ${y} and z ${z} must have the same shape`);
  const K = y.shape[0], E = y.shape[y.rank - 1];
  if (weight.rank !== 2 || weight.shape[0] !== K || weight.shape[1] !== E) {
    throw new RangeError(
      `${op}: expected weight of shape [${K}, ${E}] (K, E) to match y ${y}, got ${weight}`,
    );
  }
  if (!Number.isInteger(groups) || groups < 1 || E % groups !== 0) {
    throw new RangeError(`${op}: groups must be a positive integer dividing E = ${E}, got ${groups}`);
  }
  if (!(eps >= 0)) throw new RangeError(`${op}: expected eps >= 0, got ${eps}`);
  return { K, R: y.size / (K * E), E, G: groups };
}

function gatedKernel(width: number, entry: string): Kernel {
  return {
    name: `gated_rms_norm_${entry}`,
    code: rowKernelCode("gated_norm.wgsl", width, { DG: width }, entry === "backward_dw"), // (as norm.ts)
    entry,
    bindings: ["read", "read", "read", "read", "read_write", "read_write", "read_write"],
  };
}

function uniforms({ K, R, G }: Dims, eps: number) {
  const chunk = Math.ceil(Math.sqrt(R));
  const S = Math.ceil(R / chunk);
  return { u: [K * R * G, R * G, G, f32(eps), chunk, S, R], S };
}

/**
 * Gated RMSNorm: rmsNorm(y ⊙ silu(z)) ⊙ w over groups of E/G channels, fused into one kernel.
 * @param y (K, ..., E)
 * @param z (K, ..., E) the gate, before SiLU
 * @param weight (K, E)
 * @returns (K, ..., E)
 * @throws {RangeError} on shapes that do not match, or groups not dividing E.
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { gatedRmsNorm } from "./gated_norm.ts";
 * await initGpu();
 * const out = gatedRmsNorm(tensor([3, 4], [1, 1, 2]), tensor([20, 20], [1, 1, 2]), tensor([1, 2], [1, 2]), {
 *   eps: 0,
 * });
 * console.log(await out.toArray()); // ≈ [0.8485, 2.2627]: silu(20) ≈ 20 cancels in the norm
 * ```
 */
export function gatedRmsNorm(
  y: Tensor,
  z: Tensor,
  weight: Tensor,
  opts: { groups?: number; eps?: number } = {},
): Tensor {
  const groups = opts.groups ?? 1, eps = opts.eps ?? 1e-5;
  const d = checkInputs(y, z, weight, groups, eps);
  const out = empty(y.shape);
  const stats = empty([d.K * d.R * d.G]);
  dispatch(
    gatedKernel(d.E / d.G, "forward"),
    [y.buffer, z.buffer, weight.buffer, y.buffer, stats.buffer, out.buffer, out.buffer],
    uniforms(d, eps).u,
    grid1d(d.K * d.R * d.G, rowLayout(d.E / d.G).rpw),
  );
  const inputs = [y, z, weight];
  if (isRecording(inputs)) record<GatedNormAttrs>("gatedRmsNorm", inputs, [out], { groups, eps }, [stats]);
  else stats.dispose();
  return out;
}

/** VJP of `gatedRmsNorm`: [dy, dz, dweight]. */
export const gatedRmsNormVjp: VjpRule<GatedNormAttrs> = (
  { inputs: [y, z, w], saved: [stats], attrs: { groups, eps } },
  [g],
) => {
  const d = checkInputs(y, z, w, groups, eps);
  const { u, S } = uniforms(d, eps);
  const dy = empty(y.shape), dz = empty(y.shape);
  dispatch(
    gatedKernel(d.E / d.G, "backward_dx"),
    [y.buffer, z.buffer, w.buffer, g!.buffer, stats.buffer, dy.buffer, dz.buffer],
    u,
    grid1d(d.K * d.R * d.G, rowLayout(d.E / d.G).rpw),
  );
  const partial = empty([d.K, S, d.E]);
  dispatch(
    gatedKernel(d.E / d.G, "backward_dw"),
    [y.buffer, z.buffer, w.buffer, g!.buffer, stats.buffer, partial.buffer, partial.buffer],
    u,
    grid1d(d.K * S * d.G * rowLayout(d.E / d.G, true).dv),
  );
  const dw = sum(partial, 1);
  partial.dispose();
  return [dy, dz, dw];
};

// ---------------------------------------------------------------------------------------------------------------
// Float64 references

const silu64 = (v: number) => v / (1 + Math.exp(-v));

/**
 * Float64 reference of `gatedRmsNorm`.
 * @param shape the shape of y and z, (K, ..., E)
 * @example
 * ```ts
 * import { gatedRmsNormRef } from "./gated_norm.ts";
 * const out = gatedRmsNormRef(Float64Array.of(3, 4), Float64Array.of(20, 20), Float64Array.of(1, 1), [1, 2], 1, 0);
 * console.log(out); // ≈ [0.6, 0.8] · sqrt(2)
 * ```
 */
export function gatedRmsNormRef(
  y: Float64Array,
  z: Float64Array,
  weight: Float64Array,
  shape: Shape,
  groups = 1,
  eps = 1e-5,
): Float64Array {
  const K = shape[0], E = shape[shape.length - 1], R = sizeOf(shape) / (K * E), n = E / groups;
  const out = new Float64Array(y.length);
  for (let row = 0; row < K * R; row++) {
    const k = Math.floor(row / R);
    for (let g = 0; g < groups; g++) {
      const base = row * E + g * n;
      let q = 0;
      for (let d = 0; d < n; d++) q += (y[base + d] * silu64(z[base + d])) ** 2;
      const rstd = 1 / Math.sqrt(q / n + eps);
      for (let d = 0; d < n; d++) {
        out[base + d] = y[base + d] * silu64(z[base + d]) * rstd * weight[k * E + g * n + d];
      }
    }
  }
  return out;
}

/**
 * Float64 reference VJP of `gatedRmsNorm` for the cotangent g: the module formulas, per group row.
 * @returns [dy, dz, dweight]
 * @example
 * ```ts
 * import { gatedRmsNormVjpRef } from "./gated_norm.ts";
 * const [dy, dz, dw] = gatedRmsNormVjpRef(
 *   Float64Array.of(3, 4), Float64Array.of(1, -1), Float64Array.of(1, 2), [1, 2], Float64Array.of(1, 0),
 * );
 * console.log(dy, dz, dw);
 * ```
 */
export function gatedRmsNormVjpRef(
  y: Float64Array,
  z: Float64Array,
  weight: Float64Array,
  shape: Shape,
  g: Float64Array,
  groups = 1,
  eps = 1e-5,
): [Float64Array, Float64Array, Float64Array] {
  const K = shape[0], E = shape[shape.length - 1], R = sizeOf(shape) / (K * E), n = E / groups;
  const dy = new Float64Array(y.length), dz = new Float64Array(y.length), dw = new Float64Array(K * E);
  for (let row = 0; row < K * R; row++) {
    const k = Math.floor(row / R);
    for (let gi = 0; gi < groups; gi++) {
      const base = row * E + gi * n, wb = k * E + gi * n;
      let q = 0;
      for (let d = 0; d < n; d++) q += (y[base + d] * silu64(z[base + d])) ** 2;
      const rstd = 1 / Math.sqrt(q / n + eps);
      let mgv = 0;
      for (let d = 0; d < n; d++) {
        mgv += g[base + d] * weight[wb + d] * y[base + d] * silu64(z[base + d]) * rstd;
      }
      mgv /= n;
      for (let d = 0; d < n; d++) {
        const zz = z[base + d], sg = 1 / (1 + Math.exp(-zz));
        const vh = y[base + d] * silu64(zz) * rstd;
        const dv = rstd * (g[base + d] * weight[wb + d] - vh * mgv);
        dy[base + d] = dv * silu64(zz);
        dz[base + d] = dv * y[base + d] * sg * (1 + zz * (1 - sg));
        dw[wb + d] += g[base + d] * vh;
      }
    }
  }
  return [dy, dz, dw];
}
