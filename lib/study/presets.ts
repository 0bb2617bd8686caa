/**
 * Flags and spec parts most figures share: the training pipeline of Jelassi et al. (AdamW, warmup then linear
 * decay, clip 1.0), the lr sweep and the seeds, and the evaluation samples. A figure spreads {@link TRAIN_FLAGS}
 * into its own flags and builds each run's `train` with {@link trainSpecOf}. Also the small words of figures:
 * lengths at multiples of the training length, a task's accuracy column, counts and multiples as text.
 * @module
 */
import { type FlagSpec, UsageError } from "./cli.ts";
import { checkpointDigest, PretrainedError, readPretrainedConfig } from "../nn/pretrained.ts";
import type { LMConfig } from "../nn/lm.ts";
import type { EvalSpec, TrainSpec } from "./spec.ts";
import type { Task } from "../train/task.ts";

/** Training and evaluation flags (values without a default come from the figure's scales). */
export const TRAIN_FLAGS = {
  steps: { type: "number", integer: true, min: 1, help: "training steps" },
  batch: { type: "number", integer: true, min: 1, help: "batch size (rows per step)" },
  lrs: { type: "numbers", min: 0, help: "peak learning rates (the best per configuration is reported)" },
  seeds: { type: "number", integer: true, min: 1, help: "seeds per configuration" },
  seed: {
    type: "number",
    integer: true,
    min: 0,
    default: 0,
    help: "first seed (runs use seed, seed+1, ...)",
  },
  warmup: {
    type: "number",
    integer: true,
    min: 0,
    default: 100,
    help: "linear warmup steps, then linear decay",
  },
  weightDecay: { type: "number", min: 0, default: 0.1, help: "AdamW decoupled weight decay" },
  clip: { type: "number", min: 0, default: 1, help: "global gradient-norm clip per run (0: off)" },
  beta1: { type: "number", min: 0, max: 0.999999, default: 0.9, help: "AdamW β1" },
  beta2: { type: "number", min: 0, max: 0.999999, default: 0.999, help: "AdamW β2" },
  adamEps: { type: "number", min: 0, default: 1e-8, help: "AdamW ε" },
  evalSamples: { type: "number", integer: true, min: 1, help: "evaluation rows per length" },
  evalSeed: {
    type: "number",
    integer: true,
    min: 0,
    default: 1234567,
    help: "key of the evaluation rows (the same rows for every run)",
  },
} as const satisfies Record<string, FlagSpec>;

/** The values of {@link TRAIN_FLAGS}. */
export interface TrainValues {
  steps: number;
  batch: number;
  lrs: number[];
  seeds: number;
  seed: number;
  warmup: number;
  weightDecay: number;
  clip: number;
  beta1: number;
  beta2: number;
  adamEps: number;
  evalSamples: number;
  evalSeed: number;
}

/** A run's training settings at peak learning rate `lr`. */
export function trainSpecOf(v: TrainValues, lr: number): TrainSpec {
  return {
    steps: v.steps,
    batch: v.batch,
    lr,
    warmup: v.warmup,
    weightDecay: v.weightDecay,
    clipNorm: v.clip,
    beta1: v.beta1,
    beta2: v.beta2,
    eps: v.adamEps,
  };
}

/** The seeds of each configuration: seed, seed+1, ... */
export function seedsOf(v: Pick<TrainValues, "seed" | "seeds">): number[] {
  return Array.from({ length: v.seeds }, (_, i) => v.seed + i);
}

/**
 * An evaluation plan: final lengths, plus optionally a curve (lengths evaluated at steps) and attention maps.
 */
export function evalSpecOf(
  v: Pick<TrainValues, "evalSamples" | "evalSeed">,
  lengths: readonly number[],
  extra: { curve?: EvalSpec["curve"]; maps?: EvalSpec["maps"] } = {},
): EvalSpec {
  return {
    lengths: [...lengths],
    samples: v.evalSamples,
    seed: v.evalSeed,
    curve: extra.curve ?? { steps: [], lengths: [], samples: 0 },
    maps: extra.maps ?? { layers: [], length: 0 },
  };
}

/** Steps every `every` up to `steps` (and `steps` itself): the steps of an accuracy-vs-step curve. */
export function curveSteps(steps: number, every: number): number[] {
  const out: number[] = [];
  for (let s = every; s < steps; s += every) out.push(s);
  out.push(steps);
  return out;
}

/**
 * The length evaluated at `factor` times the training length L, rounded (at least 1): the lengths of "accuracy at
 * 1×, 2×, 4× L".
 * @example
 * ```ts
 * import { lengthAt } from "./presets.ts";
 * console.log([1, 1.5, 2].map((f) => lengthAt(f, 25))); // [25, 38, 50]
 * ```
 */
export function lengthAt(factor: number, L: number): number {
  return Math.max(1, Math.round(factor * L));
}

/**
 * The runs.csv column of the accuracy a task reports ({@link Task}'s `metric`): `exact_acc` or `token_acc`.
 * @example
 * ```ts
 * import { accuracyColumn } from "./presets.ts";
 * console.log(accuracyColumn({ metric: "token" })); // "token_acc"
 * ```
 */
export function accuracyColumn(task: Pick<Task, "metric">): "exact_acc" | "token_acc" {
  return task.metric === "token" ? "token_acc" : "exact_acc";
}

/**
 * "1 seed", "2 seeds": a count and its noun, for titles and notes.
 * @example
 * ```ts
 * import { plural } from "./presets.ts";
 * console.log(plural(1, "layer"), plural(4, "layer")); // "1 layer" "4 layers"
 * ```
 */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** "2×", "1.5×": a length multiple as charts and notes write it. */
export function times(factor: number): string {
  return `${factor}×`;
}

/**
 * The checkpoint folder a flag names (`--weights DIR`): its model config for the task's `symbols` and its content
 * hash (for the run specs), read without tensors or GPU. A missing or bad folder is a UsageError naming the flag,
 * what was wrong, and `expected` (what the folder must hold), in one line.
 * @example
 * ```ts ignore
 * const { cfg, sha256 } = checkpointFromFlag("weights", v.weights, symbols, "a Hugging Face Mamba folder");
 * ```
 */
export function checkpointFromFlag(
  flag: string,
  dir: string,
  symbols: string[],
  expected: string,
): { cfg: LMConfig; sha256: string } {
  if (dir === "") throw new UsageError(`--${flag} DIR is needed: ${expected}`);
  try {
    return { cfg: readPretrainedConfig(dir, { symbols }).cfg, sha256: checkpointDigest(dir) };
  } catch (e) {
    if (e instanceof PretrainedError) throw new UsageError(`--${flag}: ${e.message} (expected ${expected})`);
    throw e;
  }
}
