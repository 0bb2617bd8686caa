/**
 * Training K runs of a language model together on the run axis: the whole step (forward, backward, AdamW with
 * warmup-then-linear-decay and per-run global-norm clipping) is recorded on the GPU with no readback; per-run
 * losses and gradient norms are read every `logEvery` steps; a run whose loss turns NaN or infinite is recorded as
 * diverged (with the step it was detected), its learning rate set to 0, and the others go on; checkpoints
 * (params, optimiser state, step, history) let an interrupted run resume with bit-identical results.
 * @module
 */
import { valueAndGrad } from "../ops/autodiff.ts";
import { CheckpointError, loadCheckpoint, restoreCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import type { Mimetic } from "../nn/init.ts";
import { type HostRun, initLMRuns, type LMConfig, type LMConsts, lmLoss, type LMParams } from "../nn/lm.ts";
import { adamwInit, type AdamWState, adamwStep, disposeAdamW, lrSchedule } from "./optim.ts";
import { foldIn, type Key, key, split } from "../core/random.ts";
import { disposeTree, keep, readTensors, type Tensor, tensor, tidy } from "../core/tensor.ts";
import { flush, gpuInfo } from "../core/runtime.ts";
import { adapterMemory, trainingFitMessage } from "./memory.ts";

/** One run: its seed, peak learning rate, weight decay, and its init (mimetic components per layer, or weights). */
export interface TrainRun {
  seed: number;
  lr: number;
  /** This run's decoupled weight decay (default: the options' `weightDecay`). */
  weightDecay?: number;
  /** Mimetic components of layer i (DEFAULT_INIT for the default init). */
  mimetic: (layer: number) => Mimetic;
  /**
   * The run's initial parameters and constants instead of its seed's draws (e.g. a pretrained checkpoint, read on
   * the host); the seed still keys the run's data. What they are is not in the checkpoint fingerprint: say it in
   * the options' `fingerprint` (the study layer passes run ids, which cover the init).
   */
  initial?: () => Promise<HostRun>;
}

/** A batch from a task: (B, T) row-major int32 ids and targets, f32 loss mask. */
export interface TaskBatch {
  inputs: Int32Array;
  targets: Int32Array;
  mask: Float32Array;
  T: number;
}

/** Makes one run's training batch of `batch` rows from a key. */
export type BatchMaker = (key: Key, batch: number) => TaskBatch;

/** Training options (defaults: Jelassi et al.'s pipeline as in setup.md). */
export interface TrainOptions {
  steps: number;
  batch: number;
  /** Linear warmup steps (100), then linear decay to 0 at `steps`. */
  warmup: number;
  /** Decoupled weight decay on every tensor not tagged by `noDecay` (0.1). */
  weightDecay: number;
  /** Per-run global gradient-norm clip (1.0). */
  clipNorm: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Read losses every this many steps (and at the last step). */
  logEvery: number;
  /** Save a checkpoint every this many steps (0: never). Needs `checkpointPath`. */
  checkpointEvery: number;
  checkpointPath?: string;
  noDecay?: (path: string) => boolean;
  /** Called after every log read. */
  onLog?: (entry: { step: number; loss: number[]; gradNorm: number[] }) => void;
  /** Stop (as if interrupted) after this step, having saved a checkpoint; for tests of resuming. */
  haltAfterStep?: number;
  /**
   * Identifies what is being trained beyond the model config, seeds, lrs, steps and batch (the data, the init,
   * the schedule...): a checkpoint resumes only when it matches. The study layer passes the run ids.
   */
  fingerprint?: string;
  /** Steps after which `onEval` is called (for accuracy-vs-step curves); its results are kept in checkpoints. */
  evalSteps?: readonly number[];
  /** Evaluates the models after step `step`; what it returns is collected in {@link TrainResult.evals}. */
  onEval?: (step: number, model: { params: LMParams; consts: LMConsts }) => Promise<unknown>;
  /** Called after every step, synchronously (cheap work only, e.g. a heartbeat). */
  onStep?: (step: number) => void;
  /**
   * Called when the checkpoint at `checkpointPath` is damaged; training then starts from step 0. Without it, a
   * damaged checkpoint throws {@link CheckpointError}.
   */
  onDamagedCheckpoint?: (error: CheckpointError) => void;
  /**
   * GPU memory a step may use, in bytes: before the first step the estimate (lib/train/memory.ts) is checked
   * against it and against the device's largest binding, and a run that would not fit is refused with a one-line
   * RangeError. Default: `adapterMemoryBudget` of the device; `false` skips the check.
   */
  memoryBudget?: number | false;
}

/** Defaults of {@link TrainOptions} (steps and batch must be given). */
export const TRAIN_DEFAULTS = {
  warmup: 100,
  weightDecay: 0.1,
  clipNorm: 1.0,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  logEvery: 50,
  checkpointEvery: 0,
};

/** One logged step of one run. */
export interface HistoryRow {
  step: number;
  run: number;
  loss: number;
  gradNorm: number;
}

/** The trained models and what happened. */
export interface TrainResult {
  params: LMParams;
  consts: LMConsts;
  history: HistoryRow[];
  /** Per run: the step at which a non-finite loss was first seen, or null. */
  diverged: (number | null)[];
  /** Last logged loss of each run. */
  finalLoss: number[];
  /** Steps completed (less than `steps` when halted). */
  stepsDone: number;
  /** Seconds spent training, summed over every segment of the run (before and after resumes), evals excluded. */
  seconds: number;
  /** What `onEval` returned, by step, in step order (including evals from before a resume). */
  evals: { step: number; value: unknown }[];
  /** Whether the run resumed from a checkpoint. */
  resumed: boolean;
}

interface CheckpointMeta {
  step: number;
  history: HistoryRow[];
  diverged: (number | null)[];
  fingerprint: string;
  seconds: number;
  evals: { step: number; value: unknown }[];
}

/** Init key and data key of a run, from its seed. */
export function runKeys(seed: number): { init: Key; data: Key } {
  const [init, data] = split(key(seed), 2);
  return { init, data };
}

function validate(opts: TrainOptions, runs: readonly TrainRun[]): void {
  const ints: [string, number][] = [["steps", opts.steps], ["batch", opts.batch], [
    "logEvery",
    opts.logEvery,
  ]];
  for (const [name, v] of ints) {
    if (!Number.isInteger(v) || v <= 0) {
      throw new RangeError(`train: ${name} must be a positive integer, got ${v}`);
    }
  }
  if (runs.length === 0) throw new RangeError("train: at least one run is needed");
  for (const r of runs) {
    if (!(r.lr > 0) || !Number.isFinite(r.lr)) {
      throw new RangeError(`train: lr must be positive, got ${r.lr}`);
    }
  }
  if (opts.checkpointEvery > 0 && !opts.checkpointPath) {
    throw new RangeError("train: checkpointEvery > 0 needs a checkpointPath");
  }
}

/**
 * Trains K = runs.length models of one config together; run k draws its init from its seed and its data from
 * `makeBatch(foldIn(dataKey_k, step), batch)`.
 * @example
 * ```ts ignore
 * const result = await trainLM(config, [{ seed: 0, lr: 1e-3, mimetic: () => MIMETIC_MAMBA2 }], makeBatch,
 *   { ...TRAIN_DEFAULTS, steps: 1000, batch: 32 });
 * ```
 */
export async function trainLM(
  cfg: LMConfig,
  runs: readonly TrainRun[],
  makeBatch: BatchMaker,
  options: Partial<TrainOptions> & { steps: number; batch: number },
): Promise<TrainResult> {
  const opts: TrainOptions = { ...TRAIN_DEFAULTS, ...options };
  validate(opts, runs);
  const K = runs.length;
  const keys = runs.map((r) => runKeys(r.seed));
  const presets = await Promise.all(runs.map((r) => r.initial?.() ?? null));
  const { params, consts } = initLMRuns(
    cfg,
    runs.map((r, k) => presets[k] ? { preset: presets[k]! } : { key: keys[k].init, mimetic: r.mimetic }),
  );
  keep([params, consts]);
  const opt: AdamWState = adamwInit(params, { noDecay: opts.noDecay });
  const schedules = runs.map((r) => lrSchedule({ peak: r.lr, warmup: opts.warmup, total: opts.steps }));
  const weightDecay = runs.map((r) => r.weightDecay ?? opts.weightDecay);
  const fingerprint = JSON.stringify({
    cfg,
    runs: runs.map((r, k) => [r.seed, r.lr, weightDecay[k]]),
    steps: opts.steps,
    batch: opts.batch,
    warmup: opts.warmup,
    clipNorm: opts.clipNorm,
    betas: [opts.beta1, opts.beta2, opts.eps],
    extra: opts.fingerprint ?? null,
  });
  const evalSteps = new Set(opts.evalSteps ?? []);

  let history: HistoryRow[] = [];
  let diverged: (number | null)[] = runs.map(() => null);
  let start = 0;
  let resumed = false;
  let earlierSeconds = 0;
  let evals: { step: number; value: unknown }[] = [];
  if (opts.checkpointPath) {
    let ckpt = null;
    try {
      ckpt = await loadCheckpoint<CheckpointMeta>(opts.checkpointPath);
    } catch (e) {
      if (!(e instanceof CheckpointError) || !opts.onDamagedCheckpoint) throw e;
      opts.onDamagedCheckpoint(e);
    }
    if (ckpt && ckpt.meta.fingerprint === fingerprint) {
      restoreCheckpoint({ params, m: opt.m, v: opt.v }, ckpt);
      opt.step = ckpt.meta.step;
      start = ckpt.meta.step;
      history = ckpt.meta.history;
      diverged = ckpt.meta.diverged;
      earlierSeconds = ckpt.meta.seconds;
      evals = ckpt.meta.evals;
      resumed = true;
    }
  }

  const lossAndGrad = valueAndGrad((p: LMParams, batch: { inputs: Tensor; targets: Tensor; mask: Tensor }) =>
    lmLoss(p, consts, batch, cfg)
  );
  let t0 = performance.now();
  /** Training seconds so far, evals excluded. */
  const elapsed = () => earlierSeconds + (performance.now() - t0) / 1000;
  let finalLoss: number[] = history.length ? lastLosses(history, K) : runs.map(() => NaN);
  let step = start;
  const save = async (s: number) => {
    if (!opts.checkpointPath) return;
    await saveCheckpoint(
      opts.checkpointPath,
      { params, m: opt.m, v: opt.v },
      {
        step: s,
        history,
        diverged,
        fingerprint,
        seconds: elapsed(),
        evals,
      } satisfies CheckpointMeta,
    );
  };
  while (step < opts.steps) {
    const s = step + 1; // 1-based step number of this update
    const rows = runs.map((_, k) => makeBatch(foldIn(keys[k].data, s), opts.batch));
    const T = rows[0].T;
    if (step === start && opts.memoryBudget !== false) {
      const info = gpuInfo();
      const adapter = adapterMemory(info);
      const why = trainingFitMessage(cfg, {
        runs: K,
        batch: opts.batch,
        T,
        budgetBytes: opts.memoryBudget ?? adapter.bytes,
        budgetGuessed: opts.memoryBudget === undefined && adapter.source === "default",
        maxBindingBytes: info.limits.maxStorageBufferBindingSize,
        maxBufferBytes: info.limits.maxBufferSize,
        flag: "the batch or the runs per group",
      });
      if (why) {
        disposeAdamW(opt);
        disposeModel({ params, consts });
        throw new RangeError(`train: ${why}`);
      }
    }
    const cat = <A extends Int32Array | Float32Array>(
      ctor: new (n: number) => A,
      pick: (b: TaskBatch) => A,
    ) => {
      const out = new ctor(K * opts.batch * T);
      rows.forEach((b, k) => out.set(pick(b), k * opts.batch * T));
      return out;
    };
    const log = s % opts.logEvery === 0 || s === opts.steps;
    const lr = runs.map((_, k) => (diverged[k] === null ? schedules[k](s - 1) : 0));
    const perRun = tidy(() => {
      const batch = {
        inputs: tensor(cat(Int32Array, (b) => b.inputs), [K, opts.batch, T], "i32"),
        targets: tensor(cat(Int32Array, (b) => b.targets), [K, opts.batch, T], "i32"),
        mask: tensor(cat(Float32Array, (b) => b.mask), [K, opts.batch, T]),
      };
      const { aux, grads } = lossAndGrad(params, batch);
      adamwStep(params, grads, opt, {
        lr,
        beta1: opts.beta1,
        beta2: opts.beta2,
        eps: opts.eps,
        weightDecay,
        clipNorm: opts.clipNorm,
      });
      return log ? (aux as Tensor) : null;
    });
    // Submit the step as a whole: the GPU starts on it while the CPU records the next, and its freed buffers
    // return to the pool at the same point of every step, so the next step gets the same buffers (and reuses its
    // bind groups; lib/core/runtime.ts).
    flush();
    step = s;
    if (perRun) {
      const [loss, gn] = await readTensors([perRun, opt.gradNorm]);
      perRun.dispose();
      const l = Array.from(loss), g = Array.from(gn);
      for (let k = 0; k < K; k++) {
        if (diverged[k] === null && !Number.isFinite(l[k])) diverged[k] = s;
        history.push({ step: s, run: k, loss: l[k], gradNorm: g[k] });
      }
      finalLoss = l;
      opts.onLog?.({ step: s, loss: l, gradNorm: g });
    }
    opts.onStep?.(s);
    if (opts.onEval && evalSteps.has(s) && !evals.some((e) => e.step === s)) {
      const paused = performance.now();
      evals.push({ step: s, value: await opts.onEval(s, { params, consts }) });
      t0 += performance.now() - paused; // evaluation time is not training time
    }
    if ((opts.checkpointEvery > 0 && s % opts.checkpointEvery === 0) || s === opts.haltAfterStep) {
      await save(s);
    }
    if (s === opts.haltAfterStep) break;
  }
  disposeAdamW(opt);
  return {
    params,
    consts,
    history,
    diverged,
    finalLoss,
    stepsDone: step,
    seconds: elapsed(),
    resumed,
    evals,
  };
}

function lastLosses(history: HistoryRow[], K: number): number[] {
  const out = new Array(K).fill(NaN);
  for (const h of history) out[h.run] = h.loss;
  return out;
}

/** Frees a trained model's tensors. */
export function disposeModel(result: { params: LMParams; consts: LMConsts }): void {
  disposeTree([result.params, result.consts]);
}
