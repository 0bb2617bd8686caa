/**
 * A run is plain data: a {@link RunSpec} says everything that decides its result (model, init, task, training,
 * seed, evaluation plan), and nothing else (not how often losses are logged or checkpoints written, which do not
 * change a bit of it). Its id ({@link runId}) is a hash of the canonical JSON of all of it, so changing any value
 * makes a new run; result files, checkpoints and CSV rows all derive from the id.
 *
 * Runs whose specs differ only in what the run axis K carries (seed, lr, weight decay, init) can train together
 * in one group ({@link packKey}).
 * @module
 */
import { createHash } from "node:crypto";
import { validateLMConfig } from "../nn/lm.ts";
import type { LMConfig } from "../nn/lm.ts";
import { mixerOf } from "../nn/mixers.ts";
import { initRule, type InitSpec } from "../nn/inits.ts";
import type { TaskConfig, TaskTable } from "../train/task.ts";

/** Training settings of a run (AdamW with warmup then linear decay, per-run global-norm clip). */
export interface TrainSpec {
  steps: number;
  /** Rows per step. */
  batch: number;
  /** Peak learning rate. */
  lr: number;
  /** Linear warmup steps, then linear decay to 0 at `steps`. */
  warmup: number;
  /** Decoupled weight decay. */
  weightDecay: number;
  /** Global gradient-norm clip (0: off). */
  clipNorm: number;
  beta1: number;
  beta2: number;
  eps: number;
}

/** The evaluation plan of a run. */
export interface EvalSpec {
  /** Lengths evaluated after training. */
  lengths: number[];
  /** Rows per length. */
  samples: number;
  /** Key of the evaluation rows (the same strings for every run, so runs are compared on the same data). */
  seed: number;
  /** Evaluation during training, for accuracy-vs-step curves: after each of `steps`, at `lengths`. */
  curve: { steps: number[]; lengths: number[]; samples: number };
  /** Attention maps (Eq. 8) of these layers after training, on one evaluation row of `length` (0: none). */
  maps: { layers: number[]; length: number };
}

/** Everything that decides a run's result, as plain JSON data. */
export interface RunSpec {
  /** The model, its mixer per layer included. */
  model: LMConfig;
  init: InitSpec;
  /** The task's kind (a key of the task table) and its config. */
  task: { kind: string } & TaskConfig;
  train: TrainSpec;
  /** The run's seed: its init key and data key derive from it. */
  seed: number;
  eval: EvalSpec;
}

/**
 * JSON with object keys sorted at every level, no whitespace, -0 written as 0: the same data always gives the same
 * text. Throws on what JSON cannot hold exactly (NaN, ±Infinity, undefined, functions, class instances).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { canonicalJson } from "./spec.ts";
 * assert.equal(canonicalJson({ b: [1, { d: 2, c: -0 }], a: "x" }), '{"a":"x","b":[1,{"c":0,"d":2}]}');
 * ```
 */
export function canonicalJson(value: unknown, path = "spec"): string {
  if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new RangeError(`${path}: ${value} is not a finite number`);
    return JSON.stringify(Object.is(value, -0) ? 0 : value);
  }
  if (Array.isArray(value)) return `[${value.map((v, i) => canonicalJson(v, `${path}[${i}]`)).join(",")}]`;
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    const o = value as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k], `${path}.${k}`)}`).join(",")}}`;
  }
  throw new RangeError(`${path}: ${String(value)} is not plain JSON data`);
}

/** SHA-256 of a text, as hex. */
export function sha256(text: string | Uint8Array): string {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * The id of a run: the first 16 hex digits of the SHA-256 of its canonical spec (all of it).
 * @example
 * ```ts ignore
 * const id = runId(spec); // "3f2a9c0d41b7e6a8"; any change to spec gives another id
 * ```
 */
export function runId(spec: RunSpec): string {
  return sha256(canonicalJson(spec)).slice(0, 16);
}

/** The fields the run axis K carries: runs that differ only in these can train in one group. */
export const RUN_AXIS_FIELDS = ["seed", "train.lr", "train.weightDecay", "init"] as const;

/** The canonical spec without the run-axis fields: runs with equal pack keys can share a group. */
export function packKey(spec: RunSpec): string {
  const { seed: _seed, init: _init, train, ...rest } = spec;
  const { lr: _lr, weightDecay: _wd, ...trainRest } = train;
  return canonicalJson({ ...rest, train: trainRest });
}

/** The id of a group of runs (checkpoint names): a hash of its sorted run ids. */
export function groupId(ids: readonly string[]): string {
  return sha256([...ids].sort().join(",")).slice(0, 16);
}

const isInt = (v: unknown, min: number) => typeof v === "number" && Number.isInteger(v) && v >= min;

/**
 * Checks a spec without touching the GPU: the model and every mixer, the init, the task and its eval lengths, the
 * training settings, the evaluation plan. Throws a RangeError naming the field, what was expected and what was
 * found.
 */
export function validateSpec(spec: RunSpec, tasks: TaskTable): void {
  const { model, train, eval: ev } = spec;
  validateLMConfig(model);
  if (!(model.normEps > 0)) throw new RangeError(`model: normEps must be positive, got ${model.normEps}`);
  model.layers.forEach((mc, i) => {
    try {
      mixerOf(mc).validate(mc, model.dModel);
    } catch (e) {
      throw new RangeError(`layer ${i}: ${(e as Error).message}`);
    }
  });
  initRule(spec.init).validate(spec.init as never, model);
  const task = tasks[spec.task.kind];
  if (!task) {
    throw new RangeError(
      `task: unknown kind ${JSON.stringify(spec.task.kind)}; expected one of ${
        Object.keys(tasks).join(", ")
      }`,
    );
  }
  const { kind: _kind, ...taskCfg } = spec.task;
  const t = task as unknown as import("../train/task.ts").Task<TaskConfig>;
  t.validate(taskCfg);
  if (t.vocabSize(taskCfg) !== model.vocab) {
    throw new RangeError(
      `model: vocab ${model.vocab} does not match the task's ${t.vocabSize(taskCfg)} tokens`,
    );
  }
  if (!isInt(spec.seed, 0) || spec.seed > 0xffffffff) {
    throw new RangeError(`seed: expected an integer in [0, 2^32), got ${spec.seed}`);
  }
  for (const [name, v] of [["steps", train.steps], ["batch", train.batch]] as const) {
    if (!isInt(v, 1)) throw new RangeError(`train: ${name} must be a positive integer, got ${v}`);
  }
  if (!isInt(train.warmup, 0)) {
    throw new RangeError(`train: warmup must be an integer ≥ 0, got ${train.warmup}`);
  }
  if (!(train.lr > 0) || !Number.isFinite(train.lr)) {
    throw new RangeError(`train: lr must be a positive number, got ${train.lr}`);
  }
  if (!(train.weightDecay >= 0)) {
    throw new RangeError(`train: weightDecay must be ≥ 0, got ${train.weightDecay}`);
  }
  if (!(train.clipNorm >= 0)) throw new RangeError(`train: clipNorm must be ≥ 0, got ${train.clipNorm}`);
  for (const [name, v] of [["beta1", train.beta1], ["beta2", train.beta2]] as const) {
    if (!(v >= 0 && v < 1)) throw new RangeError(`train: ${name} must be in [0, 1), got ${v}`);
  }
  if (!(train.eps > 0)) throw new RangeError(`train: eps must be positive, got ${train.eps}`);
  const lengths = (name: string, ls: number[], allowEmpty: boolean) => {
    if (!Array.isArray(ls) || (!allowEmpty && ls.length === 0)) {
      throw new RangeError(`eval: ${name} must be a non-empty list of lengths`);
    }
    if (new Set(ls).size !== ls.length) throw new RangeError(`eval: ${name} [${ls}] lists a length twice`);
    for (const L of ls) {
      if (!isInt(L, 1)) throw new RangeError(`eval: ${name} must be positive integers, got ${L}`);
      t.validateEvalLength(taskCfg, L);
    }
  };
  lengths("lengths", ev.lengths, false);
  if (!isInt(ev.samples, 1)) {
    throw new RangeError(`eval: samples must be a positive integer, got ${ev.samples}`);
  }
  if (!isInt(ev.seed, 0) || ev.seed > 0xffffffff) {
    throw new RangeError(`eval: seed must be an integer in [0, 2^32), got ${ev.seed}`);
  }
  const steps = ev.curve.steps;
  for (const s of steps) {
    if (!isInt(s, 1) || s > train.steps) {
      throw new RangeError(`eval: curve steps must be integers in [1, ${train.steps}], got ${s}`);
    }
  }
  if (new Set(steps).size !== steps.length || steps.some((s, i) => i > 0 && s < steps[i - 1])) {
    throw new RangeError(`eval: curve steps [${steps}] must be increasing, without repeats`);
  }
  lengths("curve lengths", ev.curve.lengths, true);
  if (steps.length > 0 && (ev.curve.lengths.length === 0 || !isInt(ev.curve.samples, 1))) {
    throw new RangeError("eval: a curve needs lengths and a positive number of samples");
  }
  for (const l of ev.maps.layers) {
    if (!isInt(l, 0) || l >= model.layers.length) {
      throw new RangeError(`eval: map layer ${l} is not a layer of this ${model.layers.length}-layer model`);
    }
    if (!mixerOf(model.layers[l]).attentionMap) {
      throw new RangeError(
        `eval: map layer ${l} is a ${model.layers[l].kind} layer, which has no attention map`,
      );
    }
  }
  if (ev.maps.layers.length > 0) lengths("maps length", [ev.maps.length], false);
}

/**
 * The spec as flat columns for CSV: dotted paths (`model.dModel`, `train.lr`); lists of numbers joined by spaces;
 * a list of equal objects (the layers of a uniform model) written once under `*` (`model.layers.*.dState`).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { flattenSpec } from "./spec.ts";
 * const flat = flattenSpec({ model: { layers: [{ N: 8 }, { N: 8 }] }, eval: { lengths: [25, 50] } });
 * assert.deepEqual(flat, { "model.layers.*.N": 8, "eval.lengths": "25 50" });
 * ```
 */
export function flattenSpec(value: unknown, prefix = ""): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  const walk = (v: unknown, path: string) => {
    if (v === null || typeof v !== "object") {
      out[path] = v as string | number | boolean;
    } else if (Array.isArray(v)) {
      if (v.every((x) => x === null || typeof x !== "object")) {
        out[path] = v.join(" ");
      } else if (v.length > 0 && v.every((x) => canonicalJson(x) === canonicalJson(v[0]))) {
        walk(v[0], `${path}.*`);
      } else {
        v.forEach((x, i) => walk(x, `${path}.${i}`));
      }
    } else {
      for (const k of Object.keys(v).sort()) {
        walk((v as Record<string, unknown>)[k], path ? `${path}.${k}` : k);
      }
    }
  };
  walk(value, prefix);
  return out;
}
