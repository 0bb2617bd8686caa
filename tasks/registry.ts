/**
 * The task table: each task kind as the library sees it ({@link Task}), built on the generators of this folder.
 * Configs are plain data, as they appear in a run spec (`{ kind: "copy", variant: "copy", vocab: 26, ... }`).
 * @module
 */
import type { Task } from "../lib/train/task.ts";
import { type CopyVariant, copyVocab, makeCopyEvalBatch, makeCopyTrainBatch } from "./copy.ts";
import { makeMqarBatch } from "./mqar.ts";

/**
 * The printable ASCII characters (94, no space) in the order tokens take them as symbols: letters a..z, A..Z,
 * digits, then punctuation. Each is one byte, so every byte-level BPE vocabulary (GPT-2, GPT-NeoX: the Mamba
 * checkpoints) has it as a token of its own.
 */
export const SYMBOL_ALPHABET: string = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" +
  "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/** The copy task's markers as characters, in id order after the letters: BOS, delimiter, EOS, pad. */
const COPY_MARKS = ["$", "|", ".", "*"];
const COPY_LETTERS = SYMBOL_ALPHABET.slice(0, 62).split("");

/** Copy-task config: the variant (copy, stack-order copy, sort), letters V, training context T, string lengths. */
export interface CopyTaskConfig {
  [key: string]: number | string | boolean;
  variant: CopyVariant;
  vocab: number;
  context: number;
  minLen: number;
  maxLen: number;
}

/** The copy family (Jelassi et al.): `$ s | s' .` rows, packed for training, one example per row for evaluation. */
export const COPY_TASK: Task<CopyTaskConfig> = {
  description: "copy (or stack-order copy, or sort) strings: $ s | s' .",
  metric: "exact", // a string counts when all of it is copied right
  validate(cfg) {
    // The generators check every field; one tiny draw runs their checks without a separate copy of the rules.
    makeCopyTrainBatch([0, 0], { ...cfg, batch: 1, minLen: cfg.minLen, maxLen: cfg.maxLen });
    if (cfg.minLen > cfg.maxLen) {
      throw new RangeError(`copy task: minLen ${cfg.minLen} must be ≤ maxLen ${cfg.maxLen}`);
    }
  },
  validateEvalLength(cfg, length) {
    makeCopyEvalBatch([0, 0], { variant: cfg.variant, batch: 1, length, vocab: cfg.vocab });
  },
  vocabSize: (cfg) => copyVocab(cfg.vocab).size,
  trainContext: (cfg) => cfg.context,
  evalContext: (_cfg, length) => 2 * length + 2,
  trainBatch: (key, cfg, batch) => makeCopyTrainBatch(key, { ...cfg, batch }),
  evalRows: (key, cfg, length, samples) =>
    makeCopyEvalBatch(key, { variant: cfg.variant, batch: samples, length, vocab: cfg.vocab }),
  // Letters a..z (then A..Z, 0..9), then `$ | . *`: the strings read as text (`$abc|abc.`).
  symbols(cfg) {
    if (cfg.vocab > COPY_LETTERS.length) {
      throw new RangeError(
        `copy task: symbols exist for vocab ≤ ${COPY_LETTERS.length} letters (a..z, A..Z, 0..9), got ${cfg.vocab}`,
      );
    }
    return [...COPY_LETTERS.slice(0, cfg.vocab), ...COPY_MARKS];
  },
};

/**
 * MQAR config: vocabulary V, the training length, the density of key–value pairs, and what a length counts.
 *
 * - `lengthUnit: "tokens"`: a length is the sequence length T, holding ⌊T / tokensPerPair⌋ pairs (zoology's
 *   default, 8 pairs in 64 tokens, is tokensPerPair 8).
 * - `lengthUnit: "pairs"`: a length is the number of key–value pairs K, in a sequence of K · tokensPerPair tokens
 *   (as a copy length counts the tokens to recall, this counts the associations to recall).
 *
 * Either way, evaluating at a longer length asks for more pairs in a longer sequence.
 */
export interface MqarTaskConfig {
  [key: string]: number | string | boolean;
  vocab: number;
  /** The training length, in `lengthUnit`. */
  length: number;
  tokensPerPair: number;
  alpha: number;
  lengthUnit: "tokens" | "pairs";
}

/** Key–value pairs of a sequence of `length` (in the config's unit). */
export function mqarPairs(cfg: MqarTaskConfig, length: number): number {
  return cfg.lengthUnit === "pairs" ? length : Math.floor(length / cfg.tokensPerPair);
}

/** Tokens T of a sequence of `length` (in the config's unit). */
export function mqarContext(cfg: MqarTaskConfig, length: number): number {
  return cfg.lengthUnit === "pairs" ? length * cfg.tokensPerPair : length;
}

/** Multi-query associative recall (zoology); `length` is the sequence length or the pairs (`lengthUnit`). */
export const MQAR_TASK: Task<MqarTaskConfig> = {
  description: "multi-query associative recall: k1 v1 k2 v2 ... then queries of the keys",
  metric: "token", // each query counts: accuracy per recalled value
  validate(cfg) {
    if (cfg.lengthUnit !== "tokens" && cfg.lengthUnit !== "pairs") {
      throw new RangeError(
        `mqar: lengthUnit must be "tokens" or "pairs", got ${JSON.stringify(cfg.lengthUnit)}`,
      );
    }
    if (!Number.isInteger(cfg.tokensPerPair) || cfg.tokensPerPair < 4) {
      throw new RangeError(`mqar: tokensPerPair must be an integer ≥ 4, got ${cfg.tokensPerPair}`);
    }
    MQAR_TASK.validateEvalLength(cfg, cfg.length);
  },
  validateEvalLength(cfg, length) {
    if (!Number.isInteger(length) || mqarPairs(cfg, length) < 1) {
      throw new RangeError(
        cfg.lengthUnit === "pairs"
          ? `mqar: length (key–value pairs) must be an integer ≥ 1, got ${length}`
          : `mqar: length must be an integer ≥ tokensPerPair = ${cfg.tokensPerPair}, got ${length}`,
      );
    }
    makeMqarBatch([0, 0], {
      batch: 1,
      vocab: cfg.vocab,
      context: mqarContext(cfg, length),
      numPairs: mqarPairs(cfg, length),
      alpha: cfg.alpha,
    });
  },
  vocabSize: (cfg) => cfg.vocab,
  trainContext: (cfg) => mqarContext(cfg, cfg.length),
  evalContext: (cfg, length) => mqarContext(cfg, length),
  trainBatch: (key, cfg, batch) =>
    makeMqarBatch(key, {
      batch,
      vocab: cfg.vocab,
      context: mqarContext(cfg, cfg.length),
      numPairs: mqarPairs(cfg, cfg.length),
      alpha: cfg.alpha,
    }),
  evalRows: (key, cfg, length, samples) =>
    makeMqarBatch(key, {
      batch: samples,
      vocab: cfg.vocab,
      context: mqarContext(cfg, length),
      numPairs: mqarPairs(cfg, length),
      alpha: cfg.alpha,
    }),
  // Token id i is the i-th character of SYMBOL_ALPHABET: keys are lower-case letters first, values later ones.
  symbols(cfg) {
    if (cfg.vocab > SYMBOL_ALPHABET.length) {
      throw new RangeError(
        `mqar: symbols exist for vocab ≤ ${SYMBOL_ALPHABET.length} (printable ASCII), got ${cfg.vocab}`,
      );
    }
    return SYMBOL_ALPHABET.slice(0, cfg.vocab).split("");
  },
};

/** Every task, by kind: `copy` (with its variants) and `mqar`. */
export const TASKS = { copy: COPY_TASK, mqar: MQAR_TASK } as const;
