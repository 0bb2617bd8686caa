/**
 * AdamW on the GPU against the float64 reference over several steps (K = 2 runs with different learning rates,
 * clipping active in one run only, a no-decay tag, nested arrays in the params tree, tensors spanning several
 * norm chunks, odd sizes, size 1 and size 0 per run), the learning-rate schedule, determinism, dispatch counts,
 * lifetimes and argument checks.
 */
import assert from "node:assert/strict";
import { noGpu } from "./harness.ts";
import {
  type AdamWHyper,
  adamwInit,
  adamwRef,
  type AdamWRefState,
  adamwStep,
  disposeAdamW,
  lrSchedule,
} from "../lib/train/optim.ts";
import { gpu, liveGpuBytes, runtimeStats } from "../lib/core/runtime.ts";
import {
  disposeTree,
  leaves,
  readTensors,
  type Shape,
  type Tensor,
  tensor,
  type Tree,
} from "../lib/core/tensor.ts";
import { foldIn, type Key, key, uniform } from "../lib/core/random.ts";

const K = 2;

/** A params tree with nested arrays; `make` builds each leaf from its shape. */
function makeTree(make: (shape: Shape) => Tensor): Tree {
  return {
    embed: make([K, 7, 3]), // 21 per run: the scalar kernel
    layers: [
      // in_proj: 4100 per run spans two norm chunks of 4096 and takes the vec4 kernel
      { mixer: { A_log: make([K, 4, 2]), in_proj: make([K, 4100]) }, norm: make([K, 5]) },
      { mixer: { A_log: make([K, 4, 2]), in_proj: make([K, 3, 5]), bias: make([K, 0]) }, norm: make([K, 1]) },
    ],
  };
}

const PATHS = [
  "embed",
  "layers[0].mixer.A_log",
  "layers[0].mixer.in_proj",
  "layers[0].norm",
  "layers[1].mixer.A_log",
  "layers[1].mixer.bias",
  "layers[1].mixer.in_proj",
  "layers[1].norm",
];
const noDecay = (path: string) => path.endsWith("A_log");

/** Random f64 data per leaf (leaves order) and the GPU tree holding the same values; run k scaled by runScale[k]. */
function randomTree(k: Key, lo = -1, hi = 1, runScale = [1, 1]): { tree: Tree; data: Float64Array[] } {
  const byTensor = new Map<Tensor, Float64Array>();
  let i = 0;
  const tree = makeTree((shape) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const d = uniform(foldIn(k, i++), n, lo, hi).map((x, j) => x * runScale[Math.floor(j / (n / K))]);
    const t = tensor(d, shape);
    byTensor.set(t, d);
    return t;
  });
  return { tree, data: leaves(tree).map((t) => byTensor.get(t)!) };
}

/** max |a − b| / max |b| (relative to the array's scale; 0 for empty arrays). */
function scaledError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let err = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return scale === 0 ? err : err / scale;
}

function maxOver(as: ArrayLike<number>[], bs: ArrayLike<number>[]): number {
  return Math.max(...as.map((a, i) => scaledError(a, bs[i])));
}

async function compare(
  label: string,
  params: Tree,
  state: ReturnType<typeof adamwInit>,
  ref: AdamWRefState & { gradNorm: Float64Array },
  tol = 2e-6,
): Promise<void> {
  const ps = leaves(params), ms = leaves(state.m), vs = leaves(state.v);
  const got = await readTensors([...ps, ...ms, ...vs, state.gradNorm]);
  const T = ps.length;
  const errP = maxOver(got.slice(0, T), ref.params);
  const errM = maxOver(got.slice(T, 2 * T), ref.m);
  const errV = maxOver(got.slice(2 * T, 3 * T), ref.v);
  const errN = scaledError(got[3 * T], ref.gradNorm);
  console.log(
    `${label}: max scaled error params ${errP.toExponential(2)}, m ${errM.toExponential(2)}, v ${
      errV.toExponential(2)
    }, grad norm ${errN.toExponential(2)}`,
  );
  assert.ok(errP <= tol && errM <= tol && errV <= tol && errN <= tol, `${label}: error above ${tol}`);
}

Deno.test({
  name:
    "adamwStep matches the float64 reference over 6 steps: K = 2, per-run lr, clip in run 0 only, no-decay tag",
  ignore: noGpu,
  fn: async () => {
    const live0 = liveGpuBytes();
    const root = key(7);
    const { tree: params, data } = randomTree(foldIn(root, 0));
    const state = adamwInit(params, { noDecay });
    assert.deepEqual(state.paths, PATHS);
    assert.deepEqual(state.decay, PATHS.map((p) => !p.endsWith("A_log")));
    assert.equal(state.step, 0);
    let ref: AdamWRefState & { gradNorm: Float64Array } = {
      params: data,
      m: data.map((d) => new Float64Array(d.length)),
      v: data.map((d) => new Float64Array(d.length)),
      step: 0,
      gradNorm: new Float64Array(K),
    };
    const schedules = [1e-2, 3e-3].map((peak) => lrSchedule({ peak, warmup: 2, total: 10 }));
    for (let s = 0; s < 6; s++) {
      // Run 0's gradients are large (norm ≈ 110 > clip 1), run 1's small (norm ≈ 0.7 < 1).
      const { tree: grads, data: g } = randomTree(foldIn(root, 100 + s), -1, 1, [3, 0.02]);
      const hp: AdamWHyper = { lr: schedules.map((f) => f(s)), clipNorm: 1 };
      const norms = adamwStep(params, grads, state, hp);
      assert.equal(norms, state.gradNorm);
      ref = adamwRef(ref, g, state.decay, K, hp);
      assert.ok(
        ref.gradNorm[0] > 1 && ref.gradNorm[1] < 1,
        `clip active in run 0 only: norms ${ref.gradNorm}`,
      );
      assert.equal(state.step, s + 1);
      await compare(`step ${s + 1} (lr ${[...hp.lr].map((x) => x.toExponential(1))})`, params, state, ref);
      disposeTree(grads);
    }
    disposeAdamW(state);
    disposeTree(params);
    assert.equal(liveGpuBytes(), live0, "every tensor of the optimiser is freed");
  },
});

Deno.test({
  name:
    "adamwStep without clipping, per-run weight decay, other betas/eps; gradNorm: false leaves the norms alone",
  ignore: noGpu,
  fn: async () => {
    const root = key(11);
    const { tree: params, data } = randomTree(foldIn(root, 0));
    const state = adamwInit(params); // every tensor decays
    let ref: AdamWRefState & { gradNorm: Float64Array } = {
      params: data,
      m: data.map((d) => new Float64Array(d.length)),
      v: data.map((d) => new Float64Array(d.length)),
      step: 0,
      gradNorm: new Float64Array(K), // state.gradNorm starts at 0 and must stay there
    };
    for (let s = 0; s < 3; s++) {
      const { tree: grads, data: g } = randomTree(foldIn(root, 100 + s), -1, 1, [3, 0.02]);
      const hp: AdamWHyper = {
        lr: new Float32Array([0.05, 0.02]),
        weightDecay: [0.5, 0],
        beta1: 0.8,
        beta2: 0.99,
        eps: 1e-6,
        clipNorm: 0,
        gradNorm: false,
      };
      adamwStep(params, grads, state, hp);
      const next = adamwRef(ref, g, state.decay, K, hp);
      ref = { ...next, gradNorm: ref.gradNorm };
      await compare(`no clip, step ${s + 1}`, params, state, ref);
      disposeTree(grads);
    }
    // Infinity also turns clipping off; with the default gradNorm the norms are computed.
    const { tree: grads, data: g } = randomTree(foldIn(root, 200), -1, 1, [3, 0.02]);
    const hp: AdamWHyper = { lr: [0.05, 0.02], clipNorm: Infinity };
    adamwStep(params, grads, state, hp);
    await compare("clipNorm Infinity, norms computed", params, state, adamwRef(ref, g, state.decay, K, hp));
    disposeTree(grads);
    disposeAdamW(state);
    disposeTree(params);
  },
});

Deno.test({
  name: "adamwStep is deterministic (bit-identical) and shares dispatches between tensors",
  ignore: noGpu,
  fn: async () => {
    const root = key(3);
    const run = async (clipNorm: number) => {
      const { tree: params } = randomTree(foldIn(root, 0));
      const state = adamwInit(params, { noDecay });
      const before = runtimeStats().dispatches;
      for (let s = 0; s < 2; s++) {
        const { tree: grads } = randomTree(foldIn(root, 1 + s), -1, 1, [3, 0.02]);
        adamwStep(params, grads, state, { lr: [1e-2, 1e-3], clipNorm, gradNorm: clipNorm > 0 });
        disposeTree(grads);
      }
      const dispatches = (runtimeStats().dispatches - before) / 2;
      const out = await readTensors([...leaves(params), state.gradNorm]);
      disposeAdamW(state);
      disposeTree(params);
      return { dispatches, bits: out.map((a) => [...new Uint32Array(a.buffer)]) };
    };
    const a = await run(1), b = await run(1);
    assert.deepEqual(a.bits, b.bits, "two identical runs give bit-identical params and norms");
    // The 7 tensors with elements share dispatches: one for the norm's partials (up to 8 tensors each) and its
    // finish; one update per run of consecutive tensors of one element width, f32 | vec4 | f32 | vec4 | f32
    // (embed | A_log, in_proj | norm | A_log | in_proj, norm), where a dispatch binds two or more tensors (four
    // bindings each within the device's storage buffers per stage), else one per tensor.
    const perUpdate = Math.floor((gpu().limits.maxStorageBuffersPerShaderStage - 2) / 4);
    const updates = perUpdate >= 2 ? 5 : 7;
    assert.equal(a.dispatches, 2 + updates);
    assert.equal((await run(0)).dispatches, updates);
  },
});

Deno.test({
  name: "adamw arguments are checked with RangeErrors that name what was expected",
  ignore: noGpu,
  fn: () => {
    const p = tensor([1, 2, 3, 4], [2, 2]);
    const g = tensor([1, 2, 3, 4], [2, 2]);
    const state = adamwInit({ p });
    assert.throws(
      () => adamwStep({ p }, { p: g.reshape([4]) }, state, { lr: [1, 1] }),
      /grads at p f32 \[2, 2\]/,
    );
    assert.throws(() => adamwStep({ p }, { p: g, q: g }, state, { lr: [1, 1] }), /of 1 tensors/);
    assert.throws(() => adamwStep({ p }, { p: g }, state, { lr: [1] }), /hp.lr of length K = 2, found 1/);
    assert.throws(() => adamwStep({ p }, { p: g }, state, { lr: [1, 1], weightDecay: [0.1] }), /weightDecay/);
    assert.throws(() => adamwStep({ p }, { p: g }, state, { lr: [1, 1], beta2: 1 }), /beta2 in \[0, 1\)/);
    assert.throws(() => adamwStep({ p }, { p: g }, state, { lr: [1, -1] }), /lr finite and >= 0/);
    assert.throws(() => adamwStep({ p }, { p: g }, state, { lr: [1, 1], clipNorm: -1 }), /clipNorm >= 0/);
    assert.equal(state.step, 0, "a rejected step does not count");
    assert.throws(() => adamwInit({ p, q: tensor([1, 2, 3], [3, 1]) }), /leading run axis K = 2/);
    assert.throws(() => adamwInit({ p, q: p.reshape([2, 1, 2]) }), /sharing storage/);
    assert.throws(() => adamwInit({}), /at least one tensor/);
    assert.throws(() => adamwInit({ ids: tensor(new Int32Array([1, 2]), [2, 1]) }), /f32/);
    disposeAdamW(state);
    p.dispose();
    g.dispose();
  },
});

Deno.test("adamwRef: the first step moves each weight by about lr against its gradient's sign, plus decay", () => {
  // At t = 1, m̂ = g and v̂ = g², so the update is lr · sign(g) up to eps (torch gives the same).
  const s = {
    params: [new Float64Array([1, -2, 0.5, 0])],
    m: [new Float64Array(4)],
    v: [new Float64Array(4)],
    step: 0,
  };
  const next = adamwRef(s, [new Float64Array([3, -4, 0.1, -0.1])], [true], 2, {
    lr: [0.1, 0.01],
    weightDecay: 0.5,
    clipNorm: 0,
  });
  const want = [1 * (1 - 0.05) - 0.1, -2 * (1 - 0.05) + 0.1, 0.5 * (1 - 0.005) - 0.01, 0 + 0.01];
  next.params[0].forEach((x, i) => assert.ok(Math.abs(x - want[i]) < 1e-6, `${x} vs ${want[i]}`));
  assert.ok(Math.abs(next.gradNorm[0] - 5) < 1e-15 && Math.abs(next.gradNorm[1] - Math.sqrt(0.02)) < 1e-15);
  assert.equal(next.step, 1);
  // Clip 1 scales run 0's gradient by 1/(5 + 1e-6): m = (1 − β1)·g·scale.
  const clipped = adamwRef(s, [new Float64Array([3, -4, 0.1, -0.1])], [true], 2, { lr: [0.1, 0.01] });
  assert.ok(Math.abs(clipped.m[0][0] - 0.1 * 3 / (5 + 1e-6)) < 1e-15);
  assert.ok(Math.abs(clipped.m[0][2] - 0.1 * 0.1) < 1e-15, "run 1 (norm 0.14 < 1) is not clipped");
});

Deno.test("lrSchedule: linear warmup from 0 over `warmup` updates, then linear decay to 0 at `total`", () => {
  const lr = lrSchedule({ peak: 1e-3, total: 5000 }); // warmup defaults to 100
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) <= 1e-18, `${a} vs ${b}`);
  close(lr(0), 0);
  close(lr(1), 1e-5);
  close(lr(50), 5e-4);
  close(lr(99), 9.9e-4);
  close(lr(100), 1e-3);
  close(lr(2550), 5e-4);
  close(lr(4999), 1e-3 / 4900);
  close(lr(5000), 0);
  close(lr(7000), 0);
  const flat = lrSchedule({ peak: 2, warmup: 0, total: 4 });
  assert.deepEqual([0, 1, 2, 3, 4].map(flat), [2, 1.5, 1, 0.5, 0]);
  const short = lrSchedule({ peak: 1, warmup: 4, total: 4 }); // warmup = total: decay over max(1, 0) steps
  assert.deepEqual([0, 2, 4, 5].map(short), [0, 0.5, 0, 0]);
  assert.throws(() => lr(-1), /step an integer >= 0/);
  assert.throws(() => lr(1.5), /step an integer >= 0/);
  assert.throws(() => lrSchedule({ peak: -1, total: 10 }), /peak >= 0/);
  assert.throws(() => lrSchedule({ peak: 1, warmup: 2.5, total: 10 }), /warmup an integer/);
  assert.throws(() => lrSchedule({ peak: 1, total: 0 }), /total an integer >= 1/);
});
