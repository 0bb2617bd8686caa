/**
 * The synthetic recall tasks: copy, stack-order copy and sort ({@link makeCopyTrainBatch},
 * {@link makeCopyEvalBatch}) and multi-query associative recall ({@link makeMqarBatch}). Data only; every
 * generator takes an explicit random key.
 * @module
 */

export {
  type CopyBatch,
  type CopyEvalBatch,
  type CopyEvalConfig,
  type CopyTrainConfig,
  type CopyVariant,
  type CopyVocab,
  copyVocab,
  decodeCopyTokens,
  makeCopyEvalBatch,
  makeCopyTrainBatch,
} from "./copy.ts";
export { makeMqarBatch, type MqarBatch, type MqarConfig } from "./mqar.ts";
export {
  COPY_TASK,
  type CopyTaskConfig,
  MQAR_TASK,
  mqarContext,
  mqarPairs,
  type MqarTaskConfig,
  SYMBOL_ALPHABET,
  TASKS,
} from "./registry.ts";
