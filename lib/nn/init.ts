/**
 * Parameter initialisation: the default (mamba_ssm) draws and the paper's mimetic initialisation.
 *
 * Parameters are drawn on the CPU from explicit keys (lib/random.ts), one key per run and parameter, then uploaded
 * as one (K, ...) tensor. A parameter's key is derived from its run's key and its path name, so adding a parameter
 * never changes the draws of another: the same seed gives the same model.
 * @module
 */
import { foldIn, type Key, normal, uniform } from "../core/random.ts";
import { type Tensor, tensor } from "../core/tensor.ts";

/** Which mimetic components to apply to a layer (paper section 3). All off is the default init. */
export interface Mimetic {
  /** A ≈ 1: parameterise A = −exp(−c·A_log), so exp(Δ·A) is near 1. */
  A: boolean;
  /** The c of the A component, from {2, 4, 8} in the paper (8 in Fig. 3). */
  c: number;
  /** Δ ≈ 1: W_Δ = 0 and b_Δ = softplus⁻¹(1) ≈ 0.5413. */
  delta: boolean;
  /** W_Cᵀ W_B ≈ I: W_C := (W_C' + W_B) / 2, with W_C' the default draw (correlated, deliberately not equal). */
  qk: boolean;
  /** Identity convolution: weight [0, …, 0, 1] per channel (the current token), bias 0 (the bias is our choice). */
  conv: boolean;
  /**
   * Which of Mamba 2's convolutions the identity conv covers: all three of x, B and C (`xBC`, the default: mamba_ssm
   * runs one conv over their concatenation) or x alone (`x`). The paper does not say; Mamba 1 convolves x only.
   */
  convScope?: "xBC" | "x";
}

/** No mimetic component: the default mamba_ssm initialisation. */
export const DEFAULT_INIT: Mimetic = { A: false, c: 8, delta: false, qk: false, conv: false };
/** The paper's choice for Mamba 1: A, Δ and W_CᵀW_B. */
export const MIMETIC_MAMBA1: Mimetic = { A: true, c: 8, delta: true, qk: true, conv: false };
/** The paper's choice for Mamba 2: all four components. */
export const MIMETIC_MAMBA2: Mimetic = { A: true, c: 8, delta: true, qk: true, conv: true };

/** softplus⁻¹(y) = y + log(−expm1(−y)), stable for small y (mamba_ssm's inverse for dt_bias). */
export function inverseSoftplus(y: number): number {
  return y + Math.log(-Math.expm1(-y));
}

/** b_Δ of the Δ ≈ 1 component: softplus⁻¹(1) = ln(e − 1) ≈ 0.5413. */
export const DELTA_ONE_BIAS: number = inverseSoftplus(1);

/** FNV-1a hash of a parameter path, folded into the run key to give that parameter its own key. */
function pathKey(runKey: Key, path: string): Key {
  let h = 0x811c9dc5;
  for (let i = 0; i < path.length; i++) h = Math.imul(h ^ path.charCodeAt(i), 0x01000193) >>> 0;
  return foldIn(runKey, h);
}

/** Draws one run's values of a parameter with `n` elements. */
export type Sampler = (key: Key, n: number) => ArrayLike<number>;

/** U(−a, a) */
export const uniformSym = (a: number): Sampler => (k, n) => uniform(k, n, -a, a);
/** N(0, std²) */
export const gaussian = (std: number): Sampler => (k, n) => normal(k, n, 0, std);
/** A constant. */
export const constant = (v: number): Sampler => (_k, n) => new Float64Array(n).fill(v);
/** nn.Linear / nn.Conv1d default (kaiming_uniform with a = √5): U(±1/√fan_in). */
export const torchDefault = (fanIn: number): Sampler => uniformSym(1 / Math.sqrt(fanIn));

/**
 * Draws a (K, ...shape) parameter: run k's slice from `samplers[k]` (or one sampler for all) with that run's key.
 */
export function drawParam(
  runKeys: readonly Key[],
  path: string,
  shape: readonly number[],
  samplers: Sampler | readonly Sampler[],
): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(runKeys.length * n);
  runKeys.forEach((rk, k) => {
    const s = typeof samplers === "function" ? samplers : samplers[k];
    out.set(Array.from(s(pathKey(rk, path), n)), k * n);
  });
  return out;
}

/** Uploads a drawn (K, ...shape) parameter. */
export function upload(data: Float32Array, runs: number, shape: readonly number[]): Tensor {
  return tensor(data, [runs, ...shape]);
}

/** mamba_ssm's dt initialisation: dt = exp(U(log dt_min, log dt_max)) floored at `floor`, stored as softplus⁻¹(dt). */
export const dtBias = (dtMin: number, dtMax: number, floor: number): Sampler => (k, n) =>
  uniform(k, n, Math.log(dtMin), Math.log(dtMax)).map((u) => inverseSoftplus(Math.max(Math.exp(u), floor)));

/** Pearson correlation of two equally long arrays (used to check the W_C/W_B correlation of ~0.71). */
export function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0, mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i];
    mb += b[i];
  }
  ma /= n;
  mb /= n;
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}
