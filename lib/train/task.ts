/**
 * What a task is to the library: a table entry that makes training batches and evaluation rows from a plain-data
 * config. The library knows no task; `tasks/` defines them (copy, stack, sort, MQAR) and experiments pass the table
 * (`TASKS` from `tasks/mod.ts`, re-exported by `mod.ts`) to the study layer. A run's spec holds `{ kind, ...config }`.
 * @module
 */
import type { Key } from "../core/random.ts";
import type { EvalRows } from "./eval.ts";
import type { TaskBatch } from "./train.ts";

/** A task's config: plain JSON data (numbers, strings, booleans), as it appears in a run spec. */
export type TaskConfig = Readonly<Record<string, number | string | boolean>>;

/** One task kind. `length` means what the task says (string length for copy; for MQAR the sequence length or the key–value pairs, as its `lengthUnit` says). */
export interface Task<C extends TaskConfig = TaskConfig> {
  /** One line for help texts. */
  description: string;
  /**
   * The accuracy a figure reports for the task: `exact` (a row counts when every scored token is right, e.g. a
   * whole copied string) or `token` (each scored token counts, e.g. each MQAR query). Results carry both.
   */
  metric: "exact" | "token";
  /** Checks a config, throwing a RangeError that names the field, what was expected and what was found. */
  validate(cfg: C): void;
  /** Checks an evaluation length, throwing a RangeError naming it. */
  validateEvalLength(cfg: C, length: number): void;
  /** V: the vocabulary the model needs. */
  vocabSize(cfg: C): number;
  /** T of the training rows. */
  trainContext(cfg: C): number;
  /** T of the evaluation rows at `length`. */
  evalContext(cfg: C, length: number): number;
  /** `batch` training rows from a key: a pure function of (key, cfg, batch). */
  trainBatch(key: Key, cfg: C, batch: number): TaskBatch;
  /** `samples` evaluation rows at `length`, whose mask marks the scored positions. */
  evalRows(key: Key, cfg: C, length: number, samples: number): EvalRows;
  /**
   * One printable character per token id, in id order (vocabSize of them): how the task's tokens map onto a
   * pretrained tokenizer's single-character tokens. Throws a RangeError when the config has too many tokens.
   */
  symbols?(cfg: C): string[];
}

/** A table of tasks by kind. */
export type TaskTable = Readonly<Record<string, Task<never>>>;
