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
import {
  disposeTree,
  hostLeaves,
  type HostTensor,
  isHostTensor,
  mapTree,
  stackRuns,
  Tensor,
  tidy,
} from "../core/tensor.ts";
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
 * One run's parameters and constants on the host: trees shaped like {@link LMParams} and {@link LMConsts} with
 * {@link HostTensor} leaves (no run axis), e.g. a pretrained checkpoint read by `readPretrainedHost`.
 */
export interface HostRun {
  params: unknown;
  consts: unknown;
}

/** How one run of {@link initLMRuns} starts: drawn from its key (mimetic components per layer), or given. */
export type RunInit =
  | { key: Key; mimetic?: (layer: number) => Mimetic }
  | { preset: HostRun };

/**
 * Initialises K runs of a language model, each either drawn from its key (as {@link initLM}: a run's draws depend
 * only on its own key, never on the other runs) or set to given values (`preset`, complete: every tensor). Runs
 * without a preset are drawn together; preset runs are not drawn at all. With no preset this is `initLM`.
 * @throws {RangeError} naming the run and tensor when a preset lacks a tensor the model has, has one it lacks, or
 * has one of another shape.
 * @example
 * ```ts ignore
 * const pre = await readPretrainedHost(dir, { symbols });
 * const { params, consts } = initLMRuns(pre.cfg, [{ key: key(0) }, { preset: pre }]); // run 1: the checkpoint
 * ```
 */
export function initLMRuns(cfg: LMConfig, runs: readonly RunInit[]): { params: LMParams; consts: LMConsts } {
  if (runs.length === 0) throw new RangeError("initLMRuns: at least one run is needed");
  const drawnAt: number[] = [];
  runs.forEach((r, k) => "key" in r && drawnAt.push(k));
  const drawnIndex = new Map(drawnAt.map((k, j) => [k, j]));
  const mimeticOf = (j: number, layer: number) =>
    (runs[drawnAt[j]] as { mimetic?: (layer: number) => Mimetic }).mimetic?.(layer) ?? DEFAULT_INIT;
  const keys = drawnAt.map((k) => (runs[k] as { key: Key }).key);
  if (drawnAt.length === runs.length) return initLM(keys, cfg, mimeticOf);
  validateLMConfig(cfg);
  const drawn = drawnAt.length > 0 ? initLM(keys, cfg, mimeticOf) : null;
  const presets = runs.map((r) =>
    "preset" in r ? { params: hostLeaves(r.preset.params), consts: hostLeaves(r.preset.consts) } : null
  );
  const firstPreset = runs.findIndex((r) => "preset" in r);
  const build = (part: "params" | "consts"): unknown => {
    // The structure: the drawn runs' tree, else the first preset's.
    const structure = drawn ? drawn[part] : (runs[firstPreset] as { preset: HostRun }).preset[part];
    const drawnLeaves = new Map<string, Tensor>();
    if (drawn) mapTree(drawn[part], (t, path) => drawnLeaves.set(path, t));
    const shapes = drawn
      ? new Map([...drawnLeaves].map(([p, t]) => [p, t.shape.slice(1)]))
      : new Map([...presets[firstPreset]![part]].map(([p, h]) => [p, h.shape]));
    presets.forEach((p, k) => {
      if (!p) return;
      for (const path of p[part].keys()) {
        if (!shapes.has(path)) {
          throw new RangeError(`initLMRuns: run ${k}'s preset has ${part} ${path}, which this model lacks`);
        }
      }
    });
    const leaf = (path: string) => {
      const shape = shapes.get(path)!;
      return stackRuns(
        shape,
        runs.map((_, k) => {
          const p = presets[k];
          if (!p) return { tensor: drawnLeaves.get(path)!, run: drawnIndex.get(k)! };
          const h: HostTensor | undefined = p[part].get(path);
          if (!h) throw new RangeError(`initLMRuns: run ${k}'s preset lacks ${part} ${path} [${shape}]`);
          if (h.shape.length !== shape.length || h.shape.some((d, i) => d !== shape[i])) {
            throw new RangeError(
              `initLMRuns: run ${k}'s preset has ${part} ${path} of shape [${h.shape}], the model [${shape}]`,
            );
          }
          return h.data;
        }),
      );
    };
    return mapHostOrTensorTree(structure, leaf);
  };
  try {
    return { params: build("params") as LMParams, consts: build("consts") as LMConsts };
  } finally {
    if (drawn) disposeTree([drawn.params, drawn.consts]);
  }
}

/** A tree of the same structure with each leaf (a Tensor or a HostTensor) replaced by `fn(path)`. */
function mapHostOrTensorTree(tree: unknown, fn: (path: string) => Tensor, path = ""): unknown {
  if (tree instanceof Tensor || isHostTensor(tree)) return fn(path);
  if (Array.isArray(tree)) return tree.map((x, i) => mapHostOrTensorTree(x, fn, `${path}[${i}]`));
  if (tree && typeof tree === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(tree).sort()) {
      out[k] = mapHostOrTensorTree((tree as Record<string, unknown>)[k], fn, path ? `${path}.${k}` : k);
    }
    return out;
  }
  return tree;
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
