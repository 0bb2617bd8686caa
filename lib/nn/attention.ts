/**
 * Attention mixers as pure functions, for hybrids (the paper's Fig. 2 and 4 put one softmax-attention layer at
 * layer 4 of 8; Fig. 5 swaps a layer for simple causal linear attention):
 * - `softmax`: causal multi-head softmax attention, scale 1/√P, no positional encoding (mamba_ssm's MHA default);
 * - `linear`: simple (unnormalised, non-kernelised) causal linear attention, y_i = Σ_{j ≤ i} (q_i·k_j) v_j, the form
 *   a Mamba layer takes when Ā = 1 and Δ = 1 (paper Eq. 12).
 *
 * Glossary: K runs, B batch, T length, D model width, H heads, P head dim. Each head has its own (D → P)
 * projections; heads are computed one after another with batched matmuls over K·B, which keeps every op on the
 * existing kernels (no transpose op needed). The T×T scores are materialised: fine for the paper's lengths.
 * @module
 */
import { drawParam, torchDefault, upload } from "./init.ts";
import type { Key } from "../core/random.ts";
import { copyBuffer } from "../core/runtime.ts";
import { empty, type Tensor, tensor, tidy } from "../core/tensor.ts";
import type { AttentionMap } from "../ops/attention_map.ts";
import { add, mul, scale } from "../ops/elementwise.ts";
import { matmul } from "../ops/matmul.ts";
import { softmax } from "../ops/softmax.ts";
import { matmulScratchElements } from "../ops/matmul.ts";
import {
  accumulate,
  type BackwardStep,
  type MemoryDims,
  type MixerMemory,
  sized,
  type TensorSize,
  weightProductStep,
} from "./memory_schedule.ts";

/** Static configuration of an attention mixer. */
export interface AttentionConfig {
  kind: "attention";
  /** `softmax` attention or simple causal `linear` attention. */
  variant: "softmax" | "linear";
  /** H */ heads: number;
  /** P, the head dim. */
  headDim: number;
}

/** Defaults: single-head softmax attention (the paper's hybrid) with head dim 64. */
export const ATTENTION_DEFAULTS: AttentionConfig = {
  kind: "attention",
  variant: "softmax",
  heads: 1,
  headDim: 64,
};

/** Parameters of one head: projections (K, D, P) and the head's slice of the output projection (K, P, D). */
export interface AttentionHead {
  wq: Tensor;
  wk: Tensor;
  wv: Tensor;
  wo: Tensor;
}

/** Parameters of an attention mixer (every tensor has the leading run axis K). */
export interface AttentionParams {
  heads: AttentionHead[];
}

/** Checks an attention config, throwing a RangeError naming the field. */
export function validateAttention(cfg: AttentionConfig): void {
  if (cfg.variant !== "softmax" && cfg.variant !== "linear") {
    throw new RangeError(
      `attention: variant must be "softmax" or "linear", got ${JSON.stringify(cfg.variant)}`,
    );
  }
  for (const [name, v] of [["heads", cfg.heads], ["headDim", cfg.headDim]] as const) {
    if (!Number.isInteger(v) || v <= 0) {
      throw new RangeError(`attention: ${name} must be a positive integer, got ${v}`);
    }
  }
}

/**
 * Initialises an attention mixer for K runs (nn.Linear's default U(±1/√fan_in); the output projection is rescaled
 * by 1/√nLayers like every mixer's out_proj).
 */
export function initAttention(
  runKeys: readonly Key[],
  prefix: string,
  cfg: AttentionConfig,
  dModel: number,
  nLayers: number,
): AttentionParams {
  validateAttention(cfg);
  const K = runKeys.length, D = dModel, P = cfg.headDim, HP = cfg.heads * P;
  const draw = (name: string, shape: number[], fanIn: number, rescale = 1) =>
    upload(
      drawParam(runKeys, `${prefix}.${name}`, shape, torchDefault(fanIn)).map((v) => v * rescale),
      K,
      shape,
    );
  return {
    heads: Array.from({ length: cfg.heads }, (_, h) => ({
      wq: draw(`heads[${h}].wq`, [D, P], D),
      wk: draw(`heads[${h}].wk`, [D, P], D),
      wv: draw(`heads[${h}].wv`, [D, P], D),
      wo: draw(`heads[${h}].wo`, [P, D], HP, 1 / Math.sqrt(nLayers)),
    })),
  };
}

const masks = new Map<string, Float32Array>();
/** The (T, T) causal mask: additive (0 / −1e30) for softmax, multiplicative (1 / 0) for linear attention. */
function causalMask(T: number, additive: boolean): Tensor {
  const id = `${T}|${additive}`;
  let m = masks.get(id);
  if (!m) {
    m = new Float32Array(T * T);
    for (let i = 0; i < T; i++) {
      for (let j = 0; j < T; j++) m[i * T + j] = j <= i ? (additive ? 0 : 1) : (additive ? -1e30 : 0);
    }
    masks.set(id, m);
  }
  return tensor(m, [T, T]);
}

/** Applies an attention mixer to x (K, B, T, D) → (K, B, T, D). */
export function applyAttention(p: AttentionParams, x: Tensor, cfg: AttentionConfig): Tensor {
  validateAttention(cfg);
  const [K, B, T, D] = x.shape;
  const P = cfg.headDim;
  const xf = x.reshape([K, B * T, D]);
  const mask = causalMask(T, cfg.variant === "softmax");
  let out: Tensor | null = null;
  for (const head of p.heads) {
    const proj = (w: Tensor) => matmul(xf, w).reshape([K * B, T, P]);
    const q = proj(head.wq), k = proj(head.wk), v = proj(head.wv);
    const scores = matmul(q, k, { transB: true }); // (K·B, T, T)
    const weights = cfg.variant === "softmax"
      ? softmax(add(scale(scores, 1 / Math.sqrt(P)), mask))
      : mul(scores, mask);
    const y = matmul(matmul(weights, v).reshape([K, B * T, P]), head.wo); // (K, B·T, D)
    out = out ? add(out, y) : y;
  }
  return out!.reshape([K, B, T, D]);
}

/**
 * The attention weights of an attention mixer for input x (K, B, T, D), averaged over heads, for batch row
 * `batchIndex`: (K, T, T), row i = query i. Softmax attention gives its softmax weights; linear attention its
 * causally masked scores q_i·k_j (what multiplies v_j, the analogue of a Mamba layer's Eq. 8 map). The mask is
 * the causal mask (1 on and below the diagonal): an attention layer's receptive field is the whole past.
 */
export function attentionWeights(
  p: AttentionParams,
  x: Tensor,
  cfg: AttentionConfig,
  batchIndex = 0,
): AttentionMap {
  validateAttention(cfg);
  const [K, B, T, D] = x.shape;
  if (!Number.isInteger(batchIndex) || batchIndex < 0 || batchIndex >= B) {
    throw new RangeError(`attentionWeights: batchIndex must be in [0, ${B}), got ${batchIndex}`);
  }
  const P = cfg.headDim;
  const all = tidy(() => {
    const xf = x.reshape([K, B * T, D]);
    const mask = causalMask(T, cfg.variant === "softmax");
    let sum: Tensor | null = null;
    for (const head of p.heads) {
      const proj = (w: Tensor) => matmul(xf, w).reshape([K * B, T, P]);
      const scores = matmul(proj(head.wq), proj(head.wk), { transB: true });
      const w = cfg.variant === "softmax"
        ? softmax(add(scale(scores, 1 / Math.sqrt(P)), mask))
        : mul(scores, mask);
      sum = sum ? add(sum, w) : w;
    }
    return scale(sum!, 1 / p.heads.length); // (K·B, T, T)
  });
  const map = empty([K, T, T]);
  for (let k = 0; k < K; k++) {
    copyBuffer(all.buffer, map.buffer, 4 * T * T, 4 * (k * B + batchIndex) * T * T, 4 * k * T * T);
  }
  all.dispose();
  const causal = new Float32Array(K * T * T);
  for (let k = 0; k < K; k++) {
    for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) causal[(k * T + i) * T + j] = 1;
  }
  return { map, mask: tensor(causal, [K, T, T]) };
}

/**
 * What an attention mixer allocates in a training step (the `memory` entry of its kind in lib/nn/mixers.ts), read
 * from `applyAttention` and the ops' VJPs. Per head and token the forward keeps 4P floats (q, k, v, the weighted
 * values) and the head's D-wide output, and the T×T scores per batch row: T floats per token for each of the
 * scores, the scaled and masked scores and the softmax (2 for linear attention): quadratic in T, unlike the scans.
 * The causal mask (T, T) is made outside the tape and lives until the step's scope ends.
 */
export function attentionMemory(cfg: AttentionConfig, { K, B, T, D }: MemoryDims): MixerMemory {
  validateAttention(cfg);
  const P = cfg.headDim, tok = K * B * T, BT = B * T, KB = K * B;
  const per = (name: string, width: number, whole = false) => sized(name, tok * width, whole);
  const params = Array.from(
    { length: cfg.heads },
    (_, h) => ["wq", "wk", "wv", "wo"].map((w) => sized(`heads[${h}].${w}`, K * D * P)),
  ).flat();
  const forward = [sized("causal mask", T * T)];
  const heads = Array.from({ length: cfg.heads }, (_, h) => {
    const q = per(`q${h}`, P), k = per(`k${h}`, P), v = per(`v${h}`, P);
    const scores = per(`scores${h}`, T);
    const masked = cfg.variant === "softmax"
      ? [per(`scaled scores${h}`, T), per(`masked scores${h}`, T), per(`softmax${h}`, T)]
      : [per(`masked scores${h}`, T)];
    const av = per(`weighted values${h}`, P), y = per(`head output${h}`, D);
    const sum = h > 0 ? per(`head sum${h}`, D) : null;
    forward.push(q, k, v, scores, ...masked, av, y, ...(sum ? [sum] : []));
    return { q, k, v, scores, masked, av, y, sum };
  });
  const steps: BackwardStep[] = [];
  const product = (name: string, M: number, N: number, Kd: number) =>
    sized(`${name} split-K`, matmulScratchElements(KB, M, N, Kd));
  let gIn: TensorSize | null = null;
  for (const hd of [...heads].reverse()) {
    if (hd.sum) steps.push({ alloc: [], free: [hd.sum] });
    const wo = weightProductStep("wo", K, BT, P, D, hd.y, sized("d head output (alias)", 0));
    steps.push(wo.step);
    // weights·v: d weights (T per token) and d v
    const gWeights = per("d weights", T), gV = per("d v", P);
    const s1 = [product("weights·v dA", T, T, P), product("weights·v dB", T, P, T)];
    steps.push({ alloc: [gWeights, gV, ...s1], free: [hd.av, wo.dx, ...s1] });
    let gScores: TensorSize;
    const maskGrad = sized("mask gradient (unused)", T * T);
    if (cfg.variant === "softmax") {
      const [scaled, masked, soft] = hd.masked;
      const gMasked = per("d masked scores", T);
      steps.push({ alloc: [gMasked], free: [soft, gWeights] });
      steps.push({ alloc: [maskGrad], free: [masked, maskGrad] });
      gScores = per("d scores", T);
      steps.push({ alloc: [gScores], free: [scaled, gMasked] });
    } else {
      const [masked] = hd.masked;
      gScores = per("d scores", T);
      const tmp = per("d mask product", T);
      steps.push({ alloc: [gScores, tmp, maskGrad], free: [masked, gWeights, tmp, maskGrad] });
    }
    const gQ = per("d q", P), gK = per("d k", P);
    const s2 = [product("q·kᵀ dA", T, P, T), product("q·kᵀ dB", T, P, T)];
    steps.push({ alloc: [gQ, gK, ...s2], free: [hd.scores, gScores, ...s2] });
    for (const [name, t, g] of [["wv", hd.v, gV], ["wk", hd.k, gK], ["wq", hd.q, gQ]] as const) {
      const mm = weightProductStep(name, K, BT, D, P, t, g);
      steps.push(mm.step);
      const f = accumulate(gIn, mm.dx);
      steps.push(...f.steps);
      gIn = f.acc;
    }
  }
  return { params, forward, backward: steps, inputGrad: gIn! };
}
