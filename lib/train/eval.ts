/**
 * Evaluation: teacher-forced greedy accuracy of K runs on batches of (inputs, targets, mask), batched on the GPU.
 * The library knows no task: a task supplies rows whose mask marks the scored positions (the answer characters of
 * a copy example, the query positions of MQAR).
 *
 * One forward pass per chunk of rows, argmax at every position on the GPU, and one readback of the predicted ids
 * per chunk; scoring happens on the CPU.
 * @module
 */
import { argmaxLastAxis } from "../ops/cross_entropy.ts";
import { type Tensor, tensor, tidy } from "../core/tensor.ts";
import { gpuInfo } from "../core/runtime.ts";
import { applyLM, type LMConfig, type LMConsts, type LMParams } from "../nn/lm.ts";
import { adapterMemoryBudget, evalChunkRows } from "./memory.ts";

/** Rows to score: ids (B, T) and targets (B, T) as int32, mask (B, T) with 1 on scored positions. */
export interface EvalRows {
  inputs: Int32Array;
  targets: Int32Array;
  mask: Float32Array;
  B: number;
  T: number;
}

/** Accuracy of one run on a set of rows. */
export interface Accuracy {
  /** Fraction of rows whose every scored position is predicted exactly (string accuracy). */
  exact: number;
  /** Fraction of scored positions predicted exactly (character accuracy; MQAR accuracy). */
  token: number;
  rows: number;
}

/**
 * Scores K runs on the same rows. `logits(ids)` maps ids (K, b, T) to logits (K, b·T, V); rows are evaluated in
 * chunks of at most `chunkRows` (choose it so that K·chunkRows·T activations fit in memory: `evalChunkRows` in
 * lib/train/memory.ts, or {@link evaluateLM}, which does).
 * @example
 * ```ts ignore
 * const acc = await evaluateRows((ids) => applyLM(params, consts, ids, cfg), K, rows, 64);
 * ```
 */
export async function evaluateRows(
  logits: (ids: Tensor) => Tensor,
  K: number,
  rows: EvalRows,
  chunkRows = 64,
): Promise<Accuracy[]> {
  const { B, T } = rows;
  const exact = new Float64Array(K);
  const correct = new Float64Array(K);
  let scored = 0;
  for (let r0 = 0; r0 < B; r0 += chunkRows) {
    const b = Math.min(chunkRows, B - r0);
    const ids = new Int32Array(K * b * T);
    for (let k = 0; k < K; k++) ids.set(rows.inputs.subarray(r0 * T, (r0 + b) * T), k * b * T);
    const pred = tidy(() => argmaxLastAxis(logits(tensor(ids, [K, b, T], "i32"))));
    const p = (await pred.toArray()) as Int32Array;
    pred.dispose();
    for (let r = 0; r < b; r++) {
      let rowScored = 0;
      const off = (r0 + r) * T;
      const rowCorrect = new Float64Array(K);
      for (let t = 0; t < T; t++) {
        if (rows.mask[off + t] === 0) continue;
        rowScored++;
        for (let k = 0; k < K; k++) if (p[(k * b + r) * T + t] === rows.targets[off + t]) rowCorrect[k]++;
      }
      scored += rowScored;
      for (let k = 0; k < K; k++) {
        correct[k] += rowCorrect[k];
        if (rowScored > 0 && rowCorrect[k] === rowScored) exact[k]++;
      }
    }
  }
  return Array.from({ length: K }, (_, k) => ({
    exact: exact[k] / B,
    token: scored > 0 ? correct[k] / scored : 0,
    rows: B,
  }));
}

/** Options of {@link evaluateLM}: the memory a chunk of rows may use (default: the adapter's). */
export interface EvaluateLMOptions {
  /** Bytes of GPU memory (default `adapterMemoryBudget(gpuInfo())`). */
  budgetBytes?: number;
  /** The largest binding (default the device's `maxStorageBufferBindingSize`). */
  maxBindingBytes?: number;
  /** The largest buffer (default the device's `maxBufferSize`). */
  maxBufferBytes?: number;
}

/**
 * Scores K runs of a language model on the same rows, in chunks of as many rows as the memory estimate allows
 * (`estimateEvalMemory`: a forward pass holds one block's activations, the logits, the parameters; no tensor above
 * the device's buffer and binding limits), so that long rows (T of 8k and more) fit. Needs `initGpu()`.
 * @throws {RangeError} when not even one row fits.
 * @example
 * ```ts ignore
 * const acc = await evaluateLM(params, consts, cfg, K, makeCopyEvalBatch(key(1), { variant: "copy", batch: 64, length: 4000 }));
 * ```
 */
export async function evaluateLM(
  params: LMParams,
  consts: LMConsts,
  cfg: LMConfig,
  K: number,
  rows: EvalRows,
  options: EvaluateLMOptions = {},
): Promise<Accuracy[]> {
  const info = gpuInfo();
  const budget = options.budgetBytes ?? adapterMemoryBudget(info);
  const binding = options.maxBindingBytes ?? info.limits.maxStorageBufferBindingSize;
  const buffer = options.maxBufferBytes ?? info.limits.maxBufferSize;
  const chunk = evalChunkRows(cfg, K, rows.T, budget, binding, rows.B, buffer);
  return await evaluateRows((ids) => applyLM(params, consts, ids, cfg), K, rows, chunk);
}

/**
 * Generalisation length: the longest evaluated length whose accuracy is at least `threshold` (0 if none).
 * @example
 * ```ts
 * import { generalisationLength } from "./eval.ts";
 * console.log(generalisationLength([50, 100, 150], [1, 0.6, 0.2])); // 100
 * ```
 */
export function generalisationLength(
  lengths: readonly number[],
  accuracy: readonly number[],
  threshold = 0.5,
): number {
  let best = 0;
  lengths.forEach((L, i) => {
    if (accuracy[i] >= threshold && L > best) best = L;
  });
  return best;
}

/**
 * Area under the accuracy-vs-length curve by the trapezoid rule, in units of length (so a model perfect from the
 * first to the last length scores last − first).
 */
export function areaUnderCurve(lengths: readonly number[], accuracy: readonly number[]): number {
  const idx = lengths.map((_, i) => i).sort((a, b) => lengths[a] - lengths[b]);
  let area = 0;
  for (let j = 1; j < idx.length; j++) {
    const [a, b] = [idx[j - 1], idx[j]];
    area += ((accuracy[a] + accuracy[b]) / 2) * (lengths[b] - lengths[a]);
  }
  return area;
}
