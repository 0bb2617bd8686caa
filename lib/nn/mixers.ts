/**
 * The table of mixers, keyed by kind. A block of the LM looks its mixer up here; adding a mixer (GLA, RetNet) is
 * one new file with its config, init and apply, one member of {@link MixerConfig} and one entry of {@link MIXERS}
 * (the table is typed by kind, so a kind without an entry fails `deno check`).
 *
 * Glossary: K runs, B batch, T length, D model width.
 * @module
 */
import type { Key } from "../core/random.ts";
import type { Tensor } from "../core/tensor.ts";
import { type AttentionMap, mamba1AttentionMap, mamba2AttentionMap } from "../ops/attention_map.ts";
import {
  applyAttention,
  type AttentionConfig,
  attentionMemory,
  type AttentionParams,
  attentionWeights,
  initAttention,
  validateAttention,
} from "./attention.ts";
import type { Mimetic } from "./init.ts";
import type { MemoryDims, MixerMemory } from "./memory_schedule.ts";
import {
  applyMamba1,
  initMamba1,
  MAMBA1_DEFAULTS,
  type Mamba1Config,
  type Mamba1Consts,
  mamba1Dims,
  mamba1Memory,
  type Mamba1Params,
  mamba1ScanInputs,
} from "./mamba1.ts";
import {
  applyMamba2,
  initMamba2,
  MAMBA2_DEFAULTS,
  type Mamba2Config,
  type Mamba2Consts,
  mamba2Dims,
  mamba2Memory,
  type Mamba2Params,
  mamba2ScanInputs,
} from "./mamba2.ts";

/** The mixer of one block: one of the configs in {@link MIXERS}. */
export type MixerConfig = Mamba1Config | Mamba2Config | AttentionConfig;

/** A mixer kind: `mamba1`, `mamba2`, `attention`. */
export type MixerKind = MixerConfig["kind"];

export type { BackwardStep, MemoryDims, MixerMemory, TensorSize } from "./memory_schedule.ts";

/** What a mixer kind provides. Params and consts are trees of (K, ...) tensors. */
export interface Mixer<C extends MixerConfig> {
  /**
   * Initialises the mixer of K runs: run k from `runKeys[k]` with mimetic components `mimetic[k]` (a mixer
   * without mimetic components ignores them). `prefix` names the parameters (their random keys derive from it).
   */
  init(
    runKeys: readonly Key[],
    prefix: string,
    cfg: C,
    dModel: number,
    nLayers: number,
    mimetic: readonly Mimetic[],
  ): { params: unknown; consts: unknown };
  /** x (K, B, T, D) → (K, B, T, D). */
  apply(params: unknown, consts: unknown, x: Tensor, cfg: C): Tensor;
  /**
   * The attention map for input x (K, B, T, D): the Eq. 8 map of a Mamba mixer's scan (channel-averaged), or an
   * attention mixer's weights (head-averaged); with the average attention mask.
   */
  attentionMap?(params: unknown, consts: unknown, x: Tensor, cfg: C, batchIndex: number): AttentionMap;
  /** Whether the mimetic components apply to this kind (they do to the Mamba mixers). */
  mimetic: boolean;
  /** Checks a config for a model of width `dModel` without touching the GPU, throwing a RangeError naming the field. */
  validate(cfg: C, dModel: number): void;
  /** What the mixer allocates in a training step and in a forward pass (for lib/train/memory.ts). */
  memory?(cfg: C, dims: MemoryDims): MixerMemory;
}

/** Every mixer, by kind. */
export const MIXERS: { readonly [K in MixerKind]: Mixer<Extract<MixerConfig, { kind: K }>> } = {
  mamba1: {
    init: (keys, prefix, cfg, D, nLayers, m) => initMamba1(keys, prefix, cfg, D, nLayers, m),
    apply: (p, c, x, cfg) => applyMamba1(p as Mamba1Params, c as Mamba1Consts, x, cfg),
    attentionMap: (p, c, x, cfg, batchIndex) => {
      const s = mamba1ScanInputs(p as Mamba1Params, c as Mamba1Consts, x, cfg);
      return mamba1AttentionMap({ delta: s.delta, A: s.A, B: s.B, C: s.C }, { batchIndex });
    },
    mimetic: true,
    validate: (cfg, D) => void mamba1Dims(cfg, D),
    memory: (cfg, dims) => mamba1Memory(cfg, dims),
  },
  mamba2: {
    init: (keys, prefix, cfg, D, nLayers, m) => initMamba2(keys, prefix, cfg, D, nLayers, m),
    apply: (p, c, x, cfg) => applyMamba2(p as Mamba2Params, c as Mamba2Consts, x, cfg),
    attentionMap: (p, c, x, cfg, batchIndex) => {
      const s = mamba2ScanInputs(p as Mamba2Params, c as Mamba2Consts, x, cfg);
      return mamba2AttentionMap({ dt: s.dt, A: s.A, B: s.B, C: s.C }, { batchIndex });
    },
    mimetic: true,
    validate: (cfg, D) => void mamba2Dims(cfg, D),
    memory: (cfg, dims) => mamba2Memory(cfg, dims),
  },
  attention: {
    init: (keys, prefix, cfg, D, nLayers) => ({
      params: initAttention(keys, prefix, cfg, D, nLayers),
      consts: {},
    }),
    apply: (p, _c, x, cfg) => applyAttention(p as AttentionParams, x, cfg),
    attentionMap: (p, _c, x, cfg, batchIndex) => attentionWeights(p as AttentionParams, x, cfg, batchIndex),
    mimetic: false,
    validate: (cfg) => validateAttention(cfg),
    memory: (cfg, dims) => attentionMemory(cfg, dims),
  },
};

/** The table entry of a config's kind; a RangeError naming the kinds when there is none. */
export function mixerOf<C extends MixerConfig>(cfg: C): Mixer<C> {
  const m = (MIXERS as Record<string, Mixer<MixerConfig> | undefined>)[(cfg as { kind: string }).kind];
  if (!m) {
    throw new RangeError(
      `model: unknown mixer kind ${JSON.stringify((cfg as { kind: unknown }).kind)}; expected one of ${
        Object.keys(MIXERS).join(", ")
      }`,
    );
  }
  return m as unknown as Mixer<C>;
}

/**
 * A Mamba mixer's config from the sizes a figure varies: mamba_ssm's defaults with state size N, inner width
 * expand·D and (Mamba 2) head dim P.
 */
export function mambaMixer(
  kind: "mamba1" | "mamba2",
  o: { dState: number; headDim: number; expand: number },
): Mamba1Config | Mamba2Config {
  return kind === "mamba1"
    ? { ...MAMBA1_DEFAULTS, dState: o.dState, expand: o.expand }
    : { ...MAMBA2_DEFAULTS, dState: o.dState, headDim: o.headDim, expand: o.expand };
}
