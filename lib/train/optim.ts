/**
 * AdamW with decoupled weight decay, per-tensor no-decay tags, per-run learning rates and per-run global-norm
 * clipping, fused into one GPU pass over the parameters; the linear warmup / linear decay schedule; and a float64
 * reference of one step.
 *
 * The optimiser is the ONE place in mimetic that mutates tensors: `adamwStep` updates the parameter tensors and the
 * moments in place (kernels/adamw.wgsl binds them read_write), so the model keeps using the same `Tensor` objects
 * from step to step. Call it after the backward of a step has been recorded, never between a forward and its
 * backward (the backward may read the parameters).
 *
 * Every parameter carries the leading run axis K: run k's hyperparameters (lr, weight decay) and its gradient norm
 * apply to slice k of every tensor. Glossary: K runs, n elements per run of one tensor, t the step (1-based).
 *
 * Dispatches per step, for T parameter tensors: ⌈T / 8⌉ (global-norm stage 1, kernels/grad_norm.wgsl `sumsq`, up
 * to 8 tensors each) + 1 (stage 2, `finish`) + about ⌈T / 4⌉ (the update, up to 4 consecutive tensors of one
 * element width each); fewer tensors per dispatch where the device binds fewer storage buffers per stage. A model
 * has dozens of small tensors, and a dispatch each cost more than their traffic. Nothing is read back: the clip
 * factor of run k is computed on the GPU from the norm the update kernel reads; per-run lr and decay travel in a
 * (K, 2) buffer uploaded with `writeBuffer`.
 * @module
 */
import { kernelSource } from "../core/kernels.ts";
import { dispatch, f32, gpu, type Kernel } from "../core/runtime.ts";
import { empty, keep, leaves, mapTree, type Shape, type Tensor, tensor, zeros } from "../core/tensor.ts";
import { grid1d } from "../ops/util.ts";

/** Elements of one run's slice of a gradient summed by one workgroup of the norm's first stage. */
const CHUNK = 4096;

/** Options of {@link adamwInit}. */
export interface AdamWOptions {
  /**
   * True for tensors that take no weight decay, given the tensor's path in the tree as `mapTree` writes it
   * (e.g. `"layers[0].mixer.A_log"`; `""` when the tree is a single tensor). Default: every tensor decays
   * (Jelassi et al. decay everything; mamba_ssm tags A_log, D and the dt bias).
   */
  noDecay?: (path: string) => boolean;
}

/** The optimiser state. Its tensors live until {@link disposeAdamW} (they are exempt from `tidy`). */
export interface AdamWState<P = unknown> {
  /** First moments: a tree of the params' structure and shapes. */
  readonly m: P;
  /** Second moments: a tree of the params' structure and shapes. */
  readonly v: P;
  /** Updates done so far; the next update uses t = step + 1 in the bias corrections. */
  step: number;
  /** K, the leading run axis of every parameter. */
  readonly runs: number;
  /** The path of each parameter tensor, in `leaves` order. */
  readonly paths: readonly string[];
  /** Whether each parameter tensor (in `leaves` order) takes weight decay. */
  readonly decay: readonly boolean[];
  /** The shape of each parameter tensor, checked at every step. */
  readonly shapes: readonly Shape[];
  /**
   * (K): the pre-clip global gradient norm of each run at the latest step that computed it, overwritten in place
   * by every step (read it with `toArray()` when logging, or `clone` it to keep a history without readbacks).
   */
  readonly gradNorm: Tensor;
  /** (K, max(1, P)) scratch: run k's partial sums of squares, P = Σ over tensors of ceil(n / 4096). */
  readonly partials: Tensor;
  /** First column in `partials` of each tensor's chunks, in `leaves` order. */
  readonly offsets: readonly number[];
}

/** Hyperparameters of one AdamW step. Per-run values are arrays of length K. */
export interface AdamWHyper {
  /** (K) learning rate of each run, already scheduled for this step (see {@link lrSchedule}). */
  lr: Float32Array | Float64Array | readonly number[];
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Added to sqrt(v̂), as torch does. Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay, one value or (K) per run; 0 on no-decay tensors. Default 0.1. */
  weightDecay?: number | Float32Array | Float64Array | readonly number[];
  /**
   * Global gradient-norm clip of each run (torch.nn.utils.clip_grad_norm_): run k's gradients are scaled by
   * min(1, clipNorm / (norm_k + 1e-6)). Default 1.0 (the setup's value) when absent; 0 or Infinity turn it off.
   */
  clipNorm?: number;
  /**
   * Compute `state.gradNorm` even when clipping is off (costs one extra read of the gradients). Default true.
   * With clipping on the norm is always computed.
   */
  gradNorm?: boolean;
}

interface Resolved {
  lr: Float64Array;
  wd: Float64Array;
  beta1: number;
  beta2: number;
  eps: number;
  /** 0 = off. */
  clip: number;
  computeNorm: boolean;
}

function resolveHyper(op: string, hp: AdamWHyper, K: number): Resolved {
  const perRun = (name: string, x: number | ArrayLike<number>): Float64Array => {
    const a = typeof x === "number" ? new Float64Array(K).fill(x) : Float64Array.from(x);
    if (a.length !== K) {
      throw new RangeError(`${op}: expected hp.${name} of length K = ${K}, found ${a.length}`);
    }
    for (const v of a) {
      if (!Number.isFinite(v) || v < 0) {
        throw new RangeError(`${op}: expected hp.${name} finite and >= 0, found ${v}`);
      }
    }
    return a;
  };
  const unit = (name: string, x: number) => {
    if (!(x >= 0 && x < 1)) throw new RangeError(`${op}: expected hp.${name} in [0, 1), found ${x}`);
    return x;
  };
  const eps = hp.eps ?? 1e-8;
  if (!(eps > 0 && Number.isFinite(eps))) throw new RangeError(`${op}: expected hp.eps > 0, found ${eps}`);
  const clipNorm = hp.clipNorm ?? 1.0;
  if (!(clipNorm >= 0)) throw new RangeError(`${op}: expected hp.clipNorm >= 0, found ${clipNorm}`);
  const clip = Number.isFinite(clipNorm) ? clipNorm : 0;
  return {
    lr: perRun("lr", hp.lr),
    wd: perRun("weightDecay", hp.weightDecay ?? 0.1),
    beta1: unit("beta1", hp.beta1 ?? 0.9),
    beta2: unit("beta2", hp.beta2 ?? 0.999),
    eps,
    clip,
    computeNorm: clip > 0 || (hp.gradNorm ?? true),
  };
}

/** The path of each tensor of a tree, in `leaves` order (mapTree visits leaves in that order). */
function pathsOf(tree: unknown): string[] {
  const out: string[] = [];
  mapTree(tree, (_, path) => out.push(path));
  return out;
}

/**
 * Creates the AdamW state for a tree of parameters: zero moments of the same shapes, step 0, the per-tensor decay
 * flags, and the scratch of the gradient norm. Every parameter must be f32 with the same leading run axis K ≥ 1,
 * and no two may share storage (a shared buffer would be updated twice).
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { adamwInit, disposeAdamW } from "./optim.ts";
 * await initGpu();
 * const params = { w: tensor([1, 2, 3, 4], [2, 2]), A_log: tensor([0, 0], [2, 1]) };
 * const state = adamwInit(params, { noDecay: (path) => path.endsWith("A_log") });
 * console.log(state.paths, state.decay); // ["A_log", "w"] [false, true]
 * disposeAdamW(state);
 * ```
 */
export function adamwInit<P extends object>(params: P, opts: AdamWOptions = {}): AdamWState<P> {
  const ps = leaves(params);
  if (ps.length === 0) {
    throw new RangeError("adamwInit: expected a params tree with at least one tensor, found none");
  }
  const K = ps[0].shape[0];
  const seen = new Set<GPUBuffer>();
  for (const p of ps) {
    if (p.dtype !== "f32") throw new RangeError(`adamwInit: expected f32 parameters, found ${p}`);
    if (p.rank < 1 || p.shape[0] !== K || K < 1) {
      throw new RangeError(
        `adamwInit: expected every parameter to have leading run axis K = ${K} >= 1, found ${p}`,
      );
    }
    if (seen.has(p.buffer)) {
      throw new RangeError(
        `adamwInit: expected distinct parameter tensors, found two sharing storage (${p})`,
      );
    }
    seen.add(p.buffer);
  }
  const paths = pathsOf(params);
  const decay = paths.map((path) => !(opts.noDecay?.(path) ?? false));
  const offsets: number[] = [];
  let stride = 0;
  for (const p of ps) {
    offsets.push(stride);
    stride += Math.ceil(p.size / K / CHUNK);
  }
  const state: AdamWState<P> = {
    m: mapTree(params, (p) => zeros(p.shape)) as P,
    v: mapTree(params, (p) => zeros(p.shape)) as P,
    step: 0,
    runs: K,
    paths,
    decay,
    shapes: ps.map((p) => [...p.shape]),
    gradNorm: zeros([K]),
    partials: empty([K, Math.max(stride, 1)]),
    offsets,
  };
  keep([state.m, state.v, state.gradNorm, state.partials]);
  return state;
}

/** Frees the optimiser state's tensors. */
export function disposeAdamW(state: AdamWState): void {
  for (const t of [...leaves(state.m), ...leaves(state.v), state.gradNorm, state.partials]) t.dispose();
}

const kernels = new Map<string, Kernel>();
function kernel(name: string, make: () => Kernel): Kernel {
  let k = kernels.get(name);
  if (!k) kernels.set(name, k = make());
  return k;
}

/**
 * Most tensors per grad-norm dispatch: 8 (bindings G_j besides two shared ones; kernels/grad_norm.wgsl), within
 * the device's storage buffers per shader stage.
 */
const sumsqTensors = () => Math.max(1, Math.min(8, gpu().limits.maxStorageBuffersPerShaderStage - 2));

/** The partial-sums-of-squares kernel over `tensors` gradient tensors (kernels/grad_norm.wgsl `sumsq`). */
const sumsqKernel = (tensors: number) =>
  kernel(`grad_sumsq${tensors}`, () => ({
    name: "grad_sumsq",
    code: gradNormSource(tensors),
    entry: "sumsq",
    bindings: ["read_write", "read_write", ...Array(tensors).fill("read")],
  }));
const finishKernel = () =>
  kernel("grad_norm_finish", () => ({
    name: "grad_norm_finish",
    code: gradNormSource(1),
    entry: "finish",
    bindings: ["read_write", "read_write"],
  }));
const gradNormSource = (tensors: number) =>
  kernelSource("grad_norm.wgsl", {
    TENSORS: tensors,
    GRADS: range(tensors).map((j) => `@group(0) @binding(${3 + j}) var<storage, read> G${j}: array<f32>;`)
      .join("\n"),
    LOAD_CASES: range(tensors).map((j) => `case ${j}u: { return G${j}[i]; }`).join("\n    "),
  });

/**
 * Most tensors per AdamW dispatch: four bindings each (params, gradient, moments) besides two shared ones, within
 * the device's storage buffers per shader stage (8 by WebGPU's default, 32 on llvmpipe).
 */
const adamwTensors = () =>
  Math.max(1, Math.min(4, Math.floor((gpu().limits.maxStorageBuffersPerShaderStage - 2) / 4)));

/** The fused update of `tensors` parameter tensors, f32 or vec4 elements (kernels/adamw.wgsl). */
const updateKernel = (w: 1 | 4, tensors: number) =>
  kernel(`adamw${w}x${tensors}`, () => ({
    name: `adamw_update${w === 4 ? "_vec4" : ""}`,
    code: kernelSource("adamw.wgsl", {
      T: w === 4 ? "vec4<f32>" : "f32",
      TENSORS: tensors,
      BINDINGS: range(tensors).flatMap((j) =>
        (["P", "G", "M", "V"] as const).map((b, i) =>
          `@group(0) @binding(${3 + 4 * j + i}) var<storage, ${
            b === "G" ? "read" : "read_write"
          }> ${b}${j}: array<T>;`
        )
      ).join("\n"),
      UPDATES: range(tensors).map((j) =>
        `fn update${j}(e: u32, k: u32, decay: u32) {\n` +
        `  let r = adamw(k, decay, G${j}[e], M${j}[e], V${j}[e], P${j}[e]);\n` +
        `  P${j}[e] = r.p;\n  M${j}[e] = r.m;\n  V${j}[e] = r.v;\n}`
      ).join("\n"),
      CASES: range(tensors).map((j) => `case ${j}u: { update${j}(e, k, t.decay); }`).join("\n    "),
    }),
    bindings: [
      "read",
      "read",
      ...range(tensors).flatMap(() => ["read_write", "read", "read_write", "read_write"] as const),
    ],
  }));

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Consecutive runs of `items` of at most `size`, each of one `key` (the tensors of one dispatch). */
function groupsOf<T>(items: T[], size: number, key: (t: T) => unknown): T[][] {
  const out: T[][] = [];
  for (const it of items) {
    const last = out.at(-1);
    if (last && last.length < size && key(last[0]) === key(it)) last.push(it);
    else out.push([it]);
  }
  return out;
}

/**
 * Records one AdamW step: optionally the per-run global gradient norm and clip, then the fused update of every
 * parameter tensor, IN PLACE on `params` and on `state.m`, `state.v`; increments `state.step`. Nothing is read
 * back and nothing waits for the GPU.
 *
 * Per run k, with t = state.step + 1 (torch.optim.AdamW after torch.nn.utils.clip_grad_norm_):
 *   norm_k = sqrt(Σ over tensors, Σ over run k's slice of g²);  g ← g · min(1, clip / (norm_k + 1e-6))
 *   p ← p·(1 − lr_k·wd_k) (wd_k = 0 on no-decay tensors);  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²
 *   p ← p − lr_k / (1 − β1^t) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
 *
 * @param params the tree given to {@link adamwInit} (same structure, same tensors, shapes (K, ...)).
 * @param grads gradients: a tree of the same structure and shapes.
 * @returns `state.gradNorm`, (K): the pre-clip norms of this step (not updated when clipping is off and
 *   `hp.gradNorm` is false).
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { adamwInit, adamwStep, disposeAdamW, lrSchedule } from "./optim.ts";
 * await initGpu();
 * const params = { w: tensor([1, 2, 3, 4], [2, 2]) }; // K = 2 runs of 2 elements
 * const grads = { w: tensor([0.5, -0.5, 3, 4], [2, 2]) };
 * const state = adamwInit(params);
 * const schedules = [1e-3, 5e-4].map((peak) => lrSchedule({ peak, warmup: 0, total: 10 }));
 * const norms = adamwStep(params, grads, state, { lr: schedules.map((s) => s(state.step)) });
 * console.log(await norms.toArray(), await params.w.toArray()); // norms ≈ [0.707, 5]
 * disposeAdamW(state);
 * ```
 */
export function adamwStep(params: object, grads: object, state: AdamWState, hp: AdamWHyper): Tensor {
  const ps = leaves(params), gs = leaves(grads);
  const ms = leaves(state.m), vs = leaves(state.v);
  const K = state.runs;
  if (ps.length !== state.shapes.length || gs.length !== ps.length) {
    throw new RangeError(
      `adamwStep: expected params and grads of ${state.shapes.length} tensors (as at adamwInit), found ${ps.length} and ${gs.length}`,
    );
  }
  for (let i = 0; i < ps.length; i++) {
    const want = state.shapes[i].join(", ");
    for (const [what, t] of [["params", ps[i]], ["grads", gs[i]]] as const) {
      if (t.dtype !== "f32" || t.shape.join(", ") !== want) {
        throw new RangeError(
          `adamwStep: expected ${what} at ${state.paths[i] || "(root)"} f32 [${want}], found ${t}`,
        );
      }
    }
  }
  const h = resolveHyper("adamwStep", hp, K);
  const t = state.step + 1;
  const bc1 = 1 - h.beta1 ** t;
  const bc2 = 1 - h.beta2 ** t;

  if (h.computeNorm) {
    // P partials per run; 0 when every tensor is empty (then finish sums nothing and writes norms of 0).
    const stride = state.offsets.at(-1)! + Math.ceil(gs.at(-1)!.size / K / CHUNK);
    const items = gs.map((g, i) => ({ g, i, n: g.size / K })).filter((t) => t.n > 0);
    for (const group of groupsOf(items, sumsqTensors(), () => 0)) {
      let wbeg = 0;
      const table = group.flatMap(({ n, i }) => {
        const chunks = Math.ceil(n / CHUNK), row = [n, chunks, state.offsets[i], wbeg];
        wbeg += K * chunks;
        return row;
      });
      dispatch(
        sumsqKernel(group.length),
        [state.partials.buffer, state.gradNorm.buffer, ...group.map((t) => t.g.buffer)],
        [K, stride, CHUNK, group.length, ...table],
        grid1d(wbeg, 1),
      );
    }
    dispatch(
      finishKernel(),
      [state.partials.buffer, state.gradNorm.buffer],
      [K, stride, CHUNK, 0, 0, 0, 0, 0],
      [K],
    );
  }

  // A fresh (K, 2) buffer every step: a pooled buffer is never one that unsubmitted work still reads, so this
  // upload cannot change the hyperparameters of an earlier step that is recorded but not yet submitted.
  const perRun = new Float32Array(2 * K);
  for (let k = 0; k < K; k++) {
    perRun[2 * k] = h.lr[k];
    perRun[2 * k + 1] = h.wd[k];
  }
  const hpBuf = tensor(perRun, [K, 2]);
  const items = ps.map((p, i) => ({ i, n: p.size / K, w: (p.size / K) % 4 === 0 ? 4 as const : 1 as const }))
    .filter((t) => t.n > 0);
  for (const group of groupsOf(items, adamwTensors(), (t) => t.w)) {
    const w = group[0].w;
    let beg = 0;
    const table = group.flatMap(({ i, n }) => {
      const count = ps[i].size / w, row = [count, n / w, state.decay[i] ? 1 : 0, beg];
      beg += count;
      return row;
    });
    dispatch(
      updateKernel(w, group.length),
      [
        hpBuf.buffer,
        state.gradNorm.buffer,
        ...group.flatMap(({ i }) => [ps[i], gs[i], ms[i], vs[i]].map((t) => t.buffer)),
      ],
      [
        beg,
        group.length,
        f32(h.beta1),
        f32(1 - h.beta1),
        f32(h.beta2),
        f32(1 - h.beta2),
        f32(h.eps),
        f32(bc1),
        f32(Math.sqrt(bc2)),
        f32(h.clip),
        0,
        0,
        ...table,
      ],
      grid1d(beg),
    );
  }
  hpBuf.dispose();
  state.step = t;
  return state.gradNorm;
}

// ---------------------------------------------------------------------------------------------------------------
// Float64 reference

/** The state of the float64 reference: one array per parameter tensor (leaves order), each (K, n) row-major. */
export interface AdamWRefState {
  params: Float64Array[];
  m: Float64Array[];
  v: Float64Array[];
  /** Updates done so far. */
  step: number;
}

/**
 * One AdamW step in float64 with plain loops, including the per-run global-norm clip: the definition that
 * {@link adamwStep} is tested against. Pure: returns new arrays.
 * @param decay whether each tensor takes weight decay.
 * @param K the run axis: tensor i is (K, params[i].length / K).
 * @returns the next state and the pre-clip norm of each run, (K).
 * @example
 * ```ts
 * import { adamwRef } from "./optim.ts";
 * const s = { params: [new Float64Array([1, 2])], m: [new Float64Array(2)], v: [new Float64Array(2)], step: 0 };
 * const next = adamwRef(s, [new Float64Array([3, 4])], [true], 2, { lr: [0.1, 0.1] });
 * console.log(next.gradNorm, next.params); // [3, 4]; each p moves by about -0.1 (and decays by 1%)
 * ```
 */
export function adamwRef(
  state: AdamWRefState,
  grads: readonly Float64Array[],
  decay: readonly boolean[],
  K: number,
  hp: AdamWHyper,
): AdamWRefState & { gradNorm: Float64Array } {
  const h = resolveHyper("adamwRef", hp, K);
  const sq = new Float64Array(K);
  grads.forEach((g) => {
    const n = g.length / K;
    for (let k = 0; k < K; k++) for (let j = 0; j < n; j++) sq[k] += g[k * n + j] ** 2;
  });
  const gradNorm = sq.map(Math.sqrt);
  const scale = gradNorm.map((nk) => (h.clip > 0 ? Math.min(1, h.clip / (nk + 1e-6)) : 1));
  const t = state.step + 1;
  const bc1 = 1 - h.beta1 ** t;
  const bc2 = 1 - h.beta2 ** t;
  const params = state.params.map((p) => p.slice());
  const m = state.m.map((x) => x.slice());
  const v = state.v.map((x) => x.slice());
  grads.forEach((g, i) => {
    const n = g.length / K;
    for (let k = 0; k < K; k++) {
      const lr = h.lr[k], wd = decay[i] ? h.wd[k] : 0;
      for (let j = 0; j < n; j++) {
        const e = k * n + j;
        const gk = g[e] * scale[k];
        params[i][e] *= 1 - lr * wd;
        m[i][e] = h.beta1 * m[i][e] + (1 - h.beta1) * gk;
        v[i][e] = h.beta2 * v[i][e] + (1 - h.beta2) * gk * gk;
        params[i][e] -= (lr / bc1) * m[i][e] / (Math.sqrt(v[i][e]) / Math.sqrt(bc2) + h.eps);
      }
    }
  });
  return { params, m, v, step: t, gradNorm };
}

// ---------------------------------------------------------------------------------------------------------------
// Learning-rate schedule

/** Options of {@link lrSchedule}. */
export interface LrScheduleOptions {
  /** The learning rate at the end of warmup. */
  peak: number;
  /** Steps of linear warmup from 0. Default 100. */
  warmup?: number;
  /** Total number of updates; the rate reaches 0 here. */
  total: number;
}

/**
 * Linear warmup from 0 then linear decay to 0: transformers' `get_linear_schedule_with_warmup`, the schedule of
 * Jelassi et al. `step` is the 0-based index of the update (the number of updates done before it), so the very
 * first update runs with lr 0, exactly as with the torch scheduler stepped after each optimiser step:
 *
 *   lr(s) = peak · s / warmup                                    for s < warmup
 *   lr(s) = peak · max(0, (total − s) / max(1, total − warmup))  otherwise
 *
 * Pure. For K runs with different peaks, make one schedule per run.
 * @example
 * ```ts
 * import { lrSchedule } from "./optim.ts";
 * const lr = lrSchedule({ peak: 1e-3, warmup: 100, total: 5000 });
 * console.log(lr(0), lr(50), lr(100), lr(2550), lr(5000)); // 0 5e-4 1e-3 5e-4 0
 * ```
 */
export function lrSchedule({ peak, warmup = 100, total }: LrScheduleOptions): (step: number) => number {
  if (!(Number.isFinite(peak) && peak >= 0)) {
    throw new RangeError(`lrSchedule: expected peak >= 0, found ${peak}`);
  }
  if (!(Number.isInteger(warmup) && warmup >= 0)) {
    throw new RangeError(`lrSchedule: expected warmup an integer >= 0, found ${warmup}`);
  }
  if (!(Number.isInteger(total) && total >= 1)) {
    throw new RangeError(`lrSchedule: expected total an integer >= 1, found ${total}`);
  }
  return (step: number) => {
    if (!(Number.isInteger(step) && step >= 0)) {
      throw new RangeError(`lrSchedule: expected step an integer >= 0, found ${step}`);
    }
    if (step < warmup) return (peak * step) / warmup;
    return peak * Math.max(0, (total - step) / Math.max(1, total - warmup));
  };
}
