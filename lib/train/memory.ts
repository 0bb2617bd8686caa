/**
 * GPU memory of training and evaluation, estimated before anything runs, so that a run that cannot fit is refused
 * with one line (how much it needs, what the adapter has, which flag to lower) instead of failing mid-sweep, and
 * so that a sweep can choose how many runs share the run axis K.
 *
 * ## What a training step holds (glossary: K runs, B batch, T length, D width, E inner width, V vocab)
 * - State, for the whole step: the parameters, their gradients and AdamW's two moments (4 copies of every
 *   parameter; gradients are counted from the start, a slight overestimate) and AdamW's small scratch; the batch
 *   (ids, targets, mask: 3 K·B·T).
 * - What the forward keeps for the backward. Every op's outputs stay until the backward reaches the op that made
 *   them (`valueAndGrad` frees each one then, lib/ops/autodiff.ts). Per token and layer: 6E + 6GN + 3H + G + 3D floats
 *   for Mamba 2 (the in-projections of x, B, C, dt, z, each conv and SiLU output, the scan output, the fused
 *   gated norm and its G rstds, the out-projection, and the block's norm and residual sum), 8E + R + 2N + 3D for Mamba 1 (see
 *   `mamba1Memory`, `mamba2Memory`); per head 4P + D + 4T for softmax attention (the T×T scores, quadratic). Plus
 *   the embedding output and final norm (2D), the logits (V) and one float of log-sum-exp per token. The scans
 *   keep nothing of their own: their backwards recompute the states (the Mamba 2 backward keeps the state every
 *   128 steps during its pass, the Mamba 1 backward every 64; both counted as backward scratch below).
 * - The backward's working set on top of what is still kept: at the head the logits' gradient (V per token) and
 *   the hidden state's (D); in a layer two or three E-wide cotangents, or the scan backward's scratch (Mamba 2:
 *   r_t, one float per token and head, and the saved states, E·N/128 floats per token, chunked over batch rows
 *   to at most one binding; Mamba 1: g·F, du, dΔ, dz, E each, the chunk-end states E·N/64 and the dB/dC partials of
 *   each 128-channel group).
 * Every term is linear in T except attention's T×T scores. With K·B·T tokens the whole is
 * (per-token floats)·4·K·B·T bytes plus the state; the estimate follows the actual allocation order (the mixers'
 * `memory` entries in lib/nn/mixers.ts), rounds each tensor to the buffer pool's bucket size, and takes the
 * high-water mark. tests/memory_test.ts checks it against the measured peak (`peakGpuBytes`).
 *
 * ## One tensor larger than one binding
 * A tensor that some op binds whole (the scans' inputs and outputs, the convs', the embedding table) must fit the
 * adapter's `maxStorageBufferBindingSize`; ops that split their bindings (elementwise, norms, softmax,
 * cross-entropy, matmul, embedding lookup; lib/ops/split.ts) do not need it. `largestTensorBytes` is the largest
 * tensor that must fit one binding.
 * @module
 */
import { bucketSize, type DeviceInfo, formatBytes } from "../core/runtime.ts";
import type { LMConfig } from "../nn/lm.ts";
import { type BackwardStep, mixerOf, type TensorSize } from "../nn/mixers.ts";
import { accumulate, forwardSteps, sized, weightProductStep } from "../nn/memory_schedule.ts";
import { matmulScratchElements } from "../ops/matmul.ts";
import { embeddingBackwardChunks } from "../ops/embedding.ts";

/** A memory estimate for a group of K runs; bytes as the buffer pool allocates them (bucket sizes). */
export interface MemoryEstimate {
  /** The parameters of the K runs. */
  paramBytes: number;
  /** Their gradients and AdamW's moments and scratch (0 for evaluation). */
  optimizerBytes: number;
  /** The input batch (ids, targets, mask; evaluation: ids). */
  batchBytes: number;
  /** Training: what the forward keeps for the backward (the activations, logits included). Evaluation: the most
   * one block holds at once. */
  activationBytes: number;
  /** The high-water mark of the whole step (state, batch, activations and the largest transient). */
  peakBytes: number;
  /** The largest single tensor that some op binds whole (what `maxStorageBufferBindingSize` limits). */
  largestTensorBytes: number;
  /** Its name and size in elements. */
  largestTensor: string;
  /** The largest single tensor of any kind, split bindings or not (what `maxBufferSize` limits). */
  largestBufferBytes: number;
  /** Its name and size in elements. */
  largestBuffer: string;
}

/** A timeline of allocations: running bytes, the high-water mark, the largest whole-bound and largest tensor. */
class Timeline {
  live = 0;
  peak = 0;
  largest: TensorSize | null = null;
  largestAny: TensorSize | null = null;
  add(ts: readonly TensorSize[]): void {
    for (const t of ts) {
      this.live += bytesOf(t);
      if (t.whole && (!this.largest || t.elements > this.largest.elements)) this.largest = t;
      if (!this.largestAny || t.elements > this.largestAny.elements) this.largestAny = t;
    }
    this.peak = Math.max(this.peak, this.live);
  }
  free(ts: readonly TensorSize[]): void {
    for (const t of ts) this.live -= bytesOf(t);
  }
  run(steps: readonly BackwardStep[]): void {
    for (const s of steps) {
      this.add(s.alloc);
      this.free(s.free);
    }
  }
}

const bytesOf = (t: TensorSize) => (t.elements > 0 ? bucketSize(t.elements * 4) : 0);
const total = (ts: readonly TensorSize[]) => ts.reduce((s, t) => s + bytesOf(t), 0);

function checkSizes(where: string, K: number, rows: number, T: number): void {
  for (const [name, v] of [["runs", K], ["batch", rows], ["T", T]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`${where}: ${name} must be a positive integer, got ${v}`);
    }
  }
}

/** The LM's parameter tensors (K runs), outside the mixers: embedding (tied head), block norms, final norm. */
function lmParams(cfg: LMConfig, K: number): TensorSize[] {
  return [
    sized("embedding", K * cfg.vocab * cfg.dModel, true),
    ...cfg.layers.map((_, i) => sized(`layers[${i}].norm`, K * cfg.dModel, true)),
    sized("normF", K * cfg.dModel, true),
  ];
}

function mixerMemory(cfg: LMConfig, layer: number, K: number, B: number, T: number) {
  const mc = cfg.layers[layer];
  const mixer = mixerOf(mc);
  if (!mixer.memory) {
    throw new RangeError(`memory estimate: the ${mc.kind} mixer has no memory entry (lib/nn/mixers.ts)`);
  }
  return mixer.memory(mc, { K, B, T, D: cfg.dModel });
}

/**
 * Estimates the GPU memory of one training step of K runs of `cfg` at batch B and length T, following what the
 * code allocates (see the module notes). Needs `initGpu()` (the scans' scratch depends on the device's layout).
 * @example
 * ```ts ignore
 * const est = estimateTrainingMemory(cfg, 4, 64, 8003);
 * console.log(formatBytes(est.peakBytes), est.largestTensor);
 * ```
 */
export function estimateTrainingMemory(cfg: LMConfig, K: number, batch: number, T: number): MemoryEstimate {
  checkSizes("estimateTrainingMemory", K, batch, T);
  const { dModel: D, vocab: V } = cfg;
  const tok = K * batch * T, BT = batch * T;
  const per = (name: string, width: number, whole = false) => sized(name, tok * width, whole);
  const mixers = cfg.layers.map((_, i) => mixerMemory(cfg, i, K, batch, T));
  const params = [
    ...lmParams(cfg, K),
    ...mixers.flatMap((m) => m.params.map((p) => ({ ...p, whole: true }))),
  ];
  // AdamW: gradients, m, v, and the (K, Σ ceil(n / 4096)) norm partials, gradNorm (K), the (K, 2) hyperparameters
  const adamScratch = [
    sized("AdamW norm partials", K * params.reduce((s, p) => s + Math.ceil(p.elements / K / 4096), 0)),
    sized("gradNorm", K),
    sized("AdamW hyperparameters", 2 * K),
  ];
  const optimizer = [...params, ...params, ...params, ...adamScratch]; // gradients, m, v
  const batchTensors = [per("ids", 1), per("targets", 1), per("mask", 1)];

  const line = new Timeline();
  line.add([...params, ...optimizer, ...batchTensors]);
  const base = line.live;
  // forward
  const h0 = per("embedding output", D);
  line.add([h0]);
  const blocks = mixers.map((m) => {
    const norm = per("block norm", D), stats = per("block norm stats", 2), out = per("residual sum", D);
    line.add([norm, stats]);
    line.run(forwardSteps(m));
    line.add([out]);
    return { m, norm, stats, out };
  });
  const normF = per("final norm", D), statsF = per("final norm stats", 2);
  const logits = per("logits", V);
  const headScratch = sized("head split-K", matmulScratchElements(K, BT, V, D));
  line.add([normF, statsF, headScratch]);
  line.free([headScratch]);
  line.add([logits]);
  const lse = per("log-sum-exp", 1),
    rowLoss = per("row losses", 1),
    lossK = [sized("loss", K), sized("msum", K)];
  line.add([lse, rowLoss, ...lossK, sized("summed loss", 1)]);
  line.free([rowLoss]);
  const activationBytes = line.live - base;
  // backward: the loss, cross-entropy, the tied head
  const dLogits = per("d logits", V);
  line.add([sized("seed", 1), sized("d per-run loss", K), dLogits]);
  line.free([lse, lossK[1]]);
  const head = weightProductStep("head", K, BT, D, V, logits, dLogits);
  line.run([head.step]);
  const dNormF = per("d final norm input", D);
  const pw = (width: number) => sized("norm dw partials", K * Math.ceil(Math.sqrt(BT)) * width);
  const pF = pw(D);
  line.run([{ alloc: [dNormF, pF], free: [normF, statsF, head.dx, pF] }]);
  let gH = dNormF;
  for (const { m, norm, stats, out } of [...blocks].reverse()) {
    line.free([out]);
    line.run(m.backward);
    const dx = per("d block norm input", D), p = pw(D);
    line.run([{ alloc: [dx, p], free: [norm, stats, m.inputGrad, p] }]);
    const f = accumulate(gH, dx);
    line.run(f.steps);
    gH = f.acc;
  }
  // the embedding's gradient, added to the head's (the gradient already counted with the state)
  // (the sum replaces the head's part, counted with the state)
  // (with a small vocabulary, first one partial table per chunk of positions, summed into it)
  const { chunks } = embeddingBackwardChunks(V, BT);
  const partials = sized("d embedding table chunks", chunks > 1 ? chunks * K * V * D : 0, true);
  const dTable = sized("d embedding table", K * V * D, true),
    sum = sized("embedding gradient sum", K * V * D);
  line.run([
    { alloc: [partials], free: [] },
    { alloc: [dTable], free: [partials] },
    { alloc: [sum], free: [dTable, sum] },
  ]);
  line.free([h0, gH]);
  // the embedding backward binds the gradient of its output (the residual stream's) whole, and AdamW each
  // parameter tensor
  const whole = [gH, ...params].reduce(
    (a, t) => (t.elements > a.elements ? t : a),
    line.largest ?? sized("none", 0),
  );
  return {
    paramBytes: total(params),
    optimizerBytes: total(optimizer),
    batchBytes: total(batchTensors),
    activationBytes,
    peakBytes: line.peak,
    largestTensorBytes: whole.elements * 4,
    largestTensor: `${whole.name} (${whole.elements} floats)`,
    ...largestBuffer(line, whole),
  };
}

/** The estimate's largest tensor of any kind (at least `atLeast`, a tensor counted outside the timeline). */
function largestBuffer(
  line: Timeline,
  atLeast: TensorSize,
): Pick<MemoryEstimate, "largestBufferBytes" | "largestBuffer"> {
  const t = line.largestAny && line.largestAny.elements > atLeast.elements ? line.largestAny : atLeast;
  // as the buffer pool allocates it (bucket sizes), which is what maxBufferSize limits
  return { largestBufferBytes: bytesOf(t), largestBuffer: `${t.name} (${t.elements} floats)` };
}

/**
 * Estimates the GPU memory of evaluation forward passes (no tape) of K runs on `rows` rows of length T, as
 * `applyLM` runs them without a tape: each block's intermediates are freed when the block ends, so the peak is
 * the largest block's forward (or the logits) on top of the parameters and ids. Needs `initGpu()`.
 * @example
 * ```ts ignore
 * const est = estimateEvalMemory(cfg, 4, 32, 8003);
 * ```
 */
export function estimateEvalMemory(cfg: LMConfig, K: number, rows: number, T: number): MemoryEstimate {
  checkSizes("estimateEvalMemory", K, rows, T);
  const { dModel: D, vocab: V } = cfg;
  const tok = K * rows * T;
  const per = (name: string, width: number, whole = false) => sized(name, tok * width, whole);
  const mixers = cfg.layers.map((_, i) => mixerMemory(cfg, i, K, rows, T));
  const params = [
    ...lmParams(cfg, K),
    ...mixers.flatMap((m) => m.params.map((p) => ({ ...p, whole: true }))),
  ];
  const ids = [per("ids", 1)];
  const line = new Timeline();
  line.add([...params, ...ids]);
  let h = per("embedding output", D);
  line.add([h]);
  let activationBytes = 0;
  for (const m of mixers) {
    const start = line.live;
    // (the norm's stats are made and freed at once without a tape)
    const stats = per("block norm stats", 2);
    line.add([per("block norm", D), stats]);
    line.free([stats]);
    line.run(forwardSteps({ ...m, forward: m.forward.filter((t) => !/stats$/.test(t.name)) }));
    const out = per("residual sum", D);
    line.add([out]);
    activationBytes = Math.max(activationBytes, line.live - start);
    line.live = start - bytesOf(h) + bytesOf(out);
    h = out;
  }
  const normF = per("final norm", D);
  line.add([normF, sized("head split-K", matmulScratchElements(K, rows * T, V, D))]);
  line.add([per("logits", V), per("predicted ids", 1)]);
  const largest = line.largest ?? sized("none", 0);
  return {
    paramBytes: total(params),
    optimizerBytes: 0,
    batchBytes: total(ids),
    activationBytes,
    peakBytes: line.peak,
    largestTensorBytes: largest.elements * 4,
    largestTensor: `${largest.name} (${largest.elements} floats)`,
    ...largestBuffer(line, largest),
  };
}

/** Whether an estimate fits a memory budget, a binding limit and a buffer-size limit. */
function fits(
  est: MemoryEstimate,
  budgetBytes: number,
  maxBindingBytes: number,
  maxBufferBytes: number,
): boolean {
  return est.peakBytes <= budgetBytes && est.largestTensorBytes <= maxBindingBytes &&
    est.largestBufferBytes <= maxBufferBytes;
}

/**
 * The most runs (K) of `cfg` at this batch and length whose training step fits `budgetBytes` with no tensor bound
 * whole above `maxBindingBytes` and none at all above `maxBufferBytes` (the device's `maxBufferSize`; default no
 * limit); 0 when not even one run fits. Memory grows with K, so this is a search over K
 * (up to `maxRuns`).
 * @example
 * ```ts ignore
 * const info = await initGpu();
 * const K = maxRunsThatFit(cfg, 64, 8003, adapterMemoryBudget(info), info.limits.maxStorageBufferBindingSize);
 * ```
 */
export function maxRunsThatFit(
  cfg: LMConfig,
  batch: number,
  T: number,
  budgetBytes: number,
  maxBindingBytes: number,
  maxRuns = 4096,
  maxBufferBytes = Infinity,
): number {
  const ok = (K: number) =>
    fits(estimateTrainingMemory(cfg, K, batch, T), budgetBytes, maxBindingBytes, maxBufferBytes);
  if (!ok(1)) return 0;
  let lo = 1, hi = 2;
  while (hi <= maxRuns && ok(hi)) {
    lo = hi;
    hi *= 2;
  }
  hi = Math.min(hi, maxRuns + 1);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (ok(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * The most rows per evaluation chunk (at least 1, at most `maxRows`) for K runs at length T within the budget,
 * the binding limit and the buffer-size limit (`maxBufferBytes`, the device's `maxBufferSize`: the logits of many
 * long rows over a large vocabulary outgrow one buffer long before they outgrow the memory).
 * @throws {RangeError} when not even one row fits, naming the memory it needs.
 */
export function evalChunkRows(
  cfg: LMConfig,
  K: number,
  T: number,
  budgetBytes: number,
  maxBindingBytes: number,
  maxRows = 1 << 16,
  maxBufferBytes = Infinity,
): number {
  const ok = (rows: number) =>
    fits(estimateEvalMemory(cfg, K, rows, T), budgetBytes, maxBindingBytes, maxBufferBytes);
  if (!ok(1)) {
    const est = estimateEvalMemory(cfg, K, 1, T);
    throw new RangeError(
      `evaluation needs ${formatBytes(est.peakBytes)} for ${K} run${
        K === 1 ? "" : "s"
      } at one row × T ${T} ` +
        `(largest tensor ${formatBytes(est.largestTensorBytes)}); the adapter has ~${
          formatBytes(budgetBytes)
        }` +
        ` with bindings of at most ${formatBytes(maxBindingBytes)}${
          Number.isFinite(maxBufferBytes) ? ` and buffers of at most ${formatBytes(maxBufferBytes)}` : ""
        }: evaluate fewer runs or shorter lengths`,
    );
  }
  let lo = 1, hi = 2;
  while (hi <= maxRows && ok(hi)) {
    lo = hi;
    hi *= 2;
  }
  hi = Math.min(hi, maxRows + 1);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (ok(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** What a refusal says: the run's sizes, the budget and limit it was held to, and the flag to lower. */
export interface FitQuestion {
  runs: number;
  batch: number;
  T: number;
  budgetBytes: number;
  maxBindingBytes: number;
  /** The device's `maxBufferSize` (default no limit). */
  maxBufferBytes?: number;
  /** The flag the message tells the user to lower, e.g. `--batch` (default) or `--group-size`. */
  flag?: string;
  /** The budget is the default guess for an unknown adapter (the message then says how to set it). */
  budgetGuessed?: boolean;
}

/**
 * The one-line message for an estimate that does not fit, or null when it fits.
 * @example
 * ```ts
 * import { describeMemory } from "./memory.ts";
 * const est = { paramBytes: 0, optimizerBytes: 0, batchBytes: 0, activationBytes: 40.8e9, peakBytes: 44.3e9,
 *   largestTensorBytes: 1e9, largestTensor: "scan output y", largestBufferBytes: 1e9, largestBuffer: "scan output y" };
 * console.log(describeMemory(est, { runs: 1, batch: 64, T: 8003, budgetBytes: 23.2e9, maxBindingBytes: 2 ** 31 }));
 * // needs 41.3 GiB for 1 run at batch 64 × T 8003 (activations 38.0 GiB); the adapter has ~21.6 GiB: lower --batch
 * ```
 */
export function describeMemory(est: MemoryEstimate, q: FitQuestion): string | null {
  const flag = q.flag ?? "--batch";
  const what = `${q.runs} run${q.runs === 1 ? "" : "s"} at batch ${q.batch} × T ${q.T}`;
  if (est.peakBytes > q.budgetBytes) {
    const guess = q.budgetGuessed ? " (a guess: set MIMETIC_GPU_MEMORY to its GiB)" : "";
    const act = formatBytes(est.activationBytes);
    return `needs ${formatBytes(est.peakBytes)} for ${what} (activations ${act}); ` +
      `the adapter has ~${formatBytes(q.budgetBytes)}${guess}: lower ${flag}`;
  }
  if (est.largestTensorBytes > q.maxBindingBytes) {
    return `one tensor of ${what}, ${est.largestTensor}, takes ${
      formatBytes(est.largestTensorBytes)
    }, more ` +
      `than the adapter's largest binding (maxStorageBufferBindingSize ${formatBytes(q.maxBindingBytes)}): ` +
      `lower ${flag}`;
  }
  if (q.maxBufferBytes !== undefined && est.largestBufferBytes > q.maxBufferBytes) {
    return `one tensor of ${what}, ${est.largestBuffer}, takes ${
      formatBytes(est.largestBufferBytes)
    }, more ` +
      `than the adapter's largest buffer (maxBufferSize ${formatBytes(q.maxBufferBytes)}): lower ${flag}`;
  }
  return null;
}

/**
 * The one-line refusal for a training run that would not fit, or null when it fits (call before training).
 * @example
 * ```ts ignore
 * const info = await initGpu();
 * const why = trainingFitMessage(cfg, { runs: K, batch: 64, T: 8003, budgetBytes: adapterMemoryBudget(info),
 *   maxBindingBytes: info.limits.maxStorageBufferBindingSize, flag: "--batch" });
 * if (why) throw new UsageError(why);
 * ```
 */
export function trainingFitMessage(cfg: LMConfig, q: FitQuestion): string | null {
  return describeMemory(estimateTrainingMemory(cfg, q.runs, q.batch, q.T), q);
}

const GiB = 2 ** 30;
/** Known adapters' memory (nvidia-smi's totals): what WebGPU does not report. */
const KNOWN: [RegExp, number][] = [
  [/H200/i, 143_771 * 2 ** 20],
  [/H100/i, 81_559 * 2 ** 20],
];

/** A GPU memory budget and where it came from (the env var, the system's memory, a known adapter, a default). */
export interface AdapterMemory {
  bytes: number;
  source: "MIMETIC_GPU_MEMORY" | "system memory" | "known adapter" | "adapter name" | "default";
}

/**
 * A byte budget for GPU memory, which WebGPU does not report: the env var `MIMETIC_GPU_MEMORY` (GiB) when set;
 * for a CPU adapter (llvmpipe), 3/4 of the memory the system has available now; for known GPUs (H100 80 GB, H200
 * 141 GB, or a size in the adapter's name such as "A100-SXM4-40GB") 90% of their memory (the driver, pipelines
 * and staging buffers take the rest); otherwise a conservative 8 GiB.
 * @throws {RangeError} when `MIMETIC_GPU_MEMORY` is not a positive number.
 * @example
 * ```ts
 * import { adapterMemory } from "./memory.ts";
 * console.log(adapterMemory({ description: "NVIDIA H200", isCpu: false })); // ≈ 126.4 GiB, "known adapter"
 * ```
 */
export function adapterMemory(info: Pick<DeviceInfo, "description" | "isCpu">): AdapterMemory {
  const env = Deno.env.get("MIMETIC_GPU_MEMORY");
  if (env !== undefined && env !== "") {
    const gib = Number(env);
    if (!(gib > 0) || !Number.isFinite(gib)) {
      throw new RangeError(`MIMETIC_GPU_MEMORY must be a positive number of GiB, got ${JSON.stringify(env)}`);
    }
    return { bytes: Math.floor(gib * GiB), source: "MIMETIC_GPU_MEMORY" };
  }
  if (info.isCpu) {
    return { bytes: Math.floor(0.75 * Deno.systemMemoryInfo().available), source: "system memory" };
  }
  for (const [pattern, bytes] of KNOWN) {
    if (pattern.test(info.description)) return { bytes: Math.floor(0.9 * bytes), source: "known adapter" };
  }
  const named = /(\d+)\s*GB\b/i.exec(info.description);
  if (named) return { bytes: Math.floor(0.9 * Number(named[1]) * 1e9), source: "adapter name" };
  return { bytes: 8 * GiB, source: "default" };
}

/** The byte budget of {@link adapterMemory}. */
export function adapterMemoryBudget(info: Pick<DeviceInfo, "description" | "isCpu">): number {
  return adapterMemory(info).bytes;
}
