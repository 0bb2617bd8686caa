/**
 * A language model as pure functions: embedding → pre-norm residual blocks (x + Mixer(RMSNorm(x))) → final RMSNorm
 * → head tied to the embedding. Each block chooses its mixer (Mamba 1, Mamba 2, softmax or linear attention), so
 * hybrids are a list of mixer configs.
 *
 * Glossary: K runs, B batch, T length, D model width, V vocab.
 * @module
 */
import { constant, DEFAULT_INIT, drawParam, gaussian, type Mimetic, upload } from "./init.ts";
import type { Key } from "../core/random.ts";
import { type Tensor, tidy } from "../core/tensor.ts";
import { activeTape } from "../core/tape.ts";
import { add } from "../ops/elementwise.ts";
import { matmul } from "../ops/matmul.ts";
import { embedding } from "../ops/embedding.ts";
import { rmsNorm } from "../ops/norm.ts";
import { maskedCrossEntropy } from "../ops/cross_entropy.ts";
import { sum } from "../ops/reduce.ts";
import type { AttentionMap } from "../ops/attention_map.ts";
import { type MixerConfig, mixerOf } from "./mixers.ts";

export type { MixerConfig } from "./mixers.ts";

/** Static configuration of a language model. */
export interface LMConfig {
  /** V */ vocab: number;
  /** D */ dModel: number;
  /** One mixer per block, bottom first. */
  layers: MixerConfig[];
  /** ε of the RMSNorms (mamba_ssm: 1e-5). */
  normEps: number;
}

/** Parameters of one block. */
export interface BlockParams {
  /** (K, D) */ norm: Tensor;
  /** The mixer's parameters (its kind's params type, see `mixers.ts`). */
  mixer: unknown;
}

/** Parameters of the language model (every tensor has the leading run axis K). */
export interface LMParams {
  /** (K, V, D); also the output head (tied). */
  embedding: Tensor;
  layers: BlockParams[];
  /** (K, D) */ normF: Tensor;
}

/** Non-trained per-run constants of the model. */
export interface LMConsts {
  /** Per block, its mixer's constants (its kind's consts type). */
  layers: unknown[];
}

/** Checks a config, throwing a RangeError that names the field. */
export function validateLMConfig(cfg: LMConfig): void {
  for (const [name, v] of [["vocab", cfg.vocab], ["dModel", cfg.dModel]] as const) {
    if (!Number.isInteger(v) || v <= 0) {
      throw new RangeError(`model: ${name} must be a positive integer, got ${v}`);
    }
  }
  if (cfg.layers.length === 0) throw new RangeError("model: layers must not be empty");
}

/**
 * Initialises K runs of a language model: run k from `runKeys[k]`, with `mimetic(k, layer)` choosing the mimetic
 * components of each layer (default: none).
 * @example
 * ```ts ignore
 * const { params, consts } = initLM([key(0), key(1)], config, (k) => (k === 1 ? MIMETIC_MAMBA2 : DEFAULT_INIT));
 * ```
 */
export function initLM(
  runKeys: readonly Key[],
  cfg: LMConfig,
  mimetic: (run: number, layer: number) => Mimetic = () => DEFAULT_INIT,
): { params: LMParams; consts: LMConsts } {
  validateLMConfig(cfg);
  const K = runKeys.length;
  const { vocab: V, dModel: D } = cfg;
  const nLayers = cfg.layers.length;
  const layers: BlockParams[] = [];
  const consts: LMConsts = { layers: [] };
  cfg.layers.forEach((mc, i) => {
    const m = runKeys.map((_, k) => mimetic(k, i));
    const { params, consts: c } = mixerOf(mc).init(runKeys, `layers[${i}].mixer`, mc, D, nLayers, m);
    layers.push({
      norm: upload(drawParam(runKeys, `layers[${i}].norm`, [D], constant(1)), K, [D]),
      mixer: params,
    });
    consts.layers.push(c);
  });
  return {
    params: {
      // nn.Embedding re-drawn N(0, 0.02) by mamba_ssm's _init_weights.
      embedding: upload(drawParam(runKeys, "embedding", [V, D], gaussian(0.02)), K, [V, D]),
      layers,
      normF: upload(drawParam(runKeys, "normF", [D], constant(1)), K, [D]),
    },
    consts,
  };
}

/**
 * The residual stream after the first `upTo` blocks (default: all): ids (K, B, T) → hidden (K, B, T, D), before
 * the final norm. Without an active tape (evaluation) each block's intermediates are freed when the block ends,
 * so a forward pass holds one block's activations at a time (lib/train/memory.ts `estimateEvalMemory`); with one,
 * they stay for the backward.
 */
export function applyBlocks(
  params: LMParams,
  consts: LMConsts,
  ids: Tensor,
  cfg: LMConfig,
  upTo: number = cfg.layers.length,
): Tensor {
  const taped = activeTape() !== null;
  let h = embedding(params.embedding, ids);
  cfg.layers.slice(0, upTo).forEach((mc, i) => {
    const { norm, mixer } = params.layers[i];
    const hIn = h;
    const block = () =>
      add(hIn, mixerOf(mc).apply(mixer, consts.layers[i], rmsNorm(hIn, norm, cfg.normEps), mc));
    if (taped) h = block();
    else {
      h = tidy(block);
      hIn.dispose(); // made here (the embedding or the block below), read by nothing else
    }
  });
  return h;
}

/** Logits (K, B·T, V) of ids (K, B, T). */
export function applyLM(params: LMParams, consts: LMConsts, ids: Tensor, cfg: LMConfig): Tensor {
  const [K, B, T] = ids.shape;
  const h = rmsNorm(applyBlocks(params, consts, ids, cfg), params.normF, cfg.normEps);
  return matmul(h.reshape([K, B * T, cfg.dModel]), params.embedding, { transB: true });
}

/** A batch on the GPU: ids and targets (K, B, T) i32, loss mask (K, B, T) f32. */
export interface LMBatch {
  inputs: Tensor;
  targets: Tensor;
  mask: Tensor;
}

/**
 * The training loss: per run, masked next-token cross-entropy averaged over masked tokens; `loss` is the sum over
 * runs (so each run's gradient is that of its own mean loss) and `aux` the per-run losses (K).
 */
export function lmLoss(
  params: LMParams,
  consts: LMConsts,
  batch: LMBatch,
  cfg: LMConfig,
): { loss: Tensor; aux: Tensor } {
  const [K, B, T] = batch.inputs.shape;
  const logits = applyLM(params, consts, batch.inputs, cfg);
  const perRun = maskedCrossEntropy(
    logits,
    batch.targets.reshape([K, B * T]),
    batch.mask.reshape([K, B * T]),
  );
  return { loss: sum(perRun, 0, true), aux: perRun };
}

/**
 * The attention map of block `layer` for input ids (K, B, T): the channel-averaged map (1/D) Σ_d M_d of the paper's
 * Eq. 8 and the average attention mask, each (K, T, T) for batch row `batchIndex`, computed on the GPU from the
 * layer's actual scan inputs (its input is the residual stream after the blocks below, normalised as the block
 * normalises it). Read with `toArray()` and shape with `attentionMapToRows` for a heatmap.
 * @example
 * ```ts ignore
 * const { map } = layerAttentionMap(params, consts, cfg, 0, ids);
 * const rows = attentionMapToRows((await map.toArray()).subarray(0, T * T), T);
 * ```
 */
export function layerAttentionMap(
  params: LMParams,
  consts: LMConsts,
  cfg: LMConfig,
  layer: number,
  ids: Tensor,
  batchIndex = 0,
): AttentionMap {
  if (!Number.isInteger(layer) || layer < 0 || layer >= cfg.layers.length) {
    throw new RangeError(`layerAttentionMap: layer must be in [0, ${cfg.layers.length}), got ${layer}`);
  }
  const mc = cfg.layers[layer];
  const mixer = mixerOf(mc);
  if (!mixer.attentionMap) {
    throw new RangeError(
      `layerAttentionMap: layer ${layer} is a ${mc.kind} layer, which has no attention map`,
    );
  }
  const x = rmsNorm(applyBlocks(params, consts, ids, cfg, layer), params.layers[layer].norm, cfg.normEps);
  return mixer.attentionMap(params.layers[layer].mixer, consts.layers[layer], x, mc, batchIndex);
}
