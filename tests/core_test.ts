/**
 * The core end to end: a tiny model trained for a few hundred steps on the GPU learns (its loss falls below a
 * stated bound); live GPU bytes stay constant over 50 training steps; the same seed gives bit-identical results;
 * tidy frees what it should; the pipeline cache compiles each kernel once.
 */
import assert from "node:assert/strict";
import { noGpu } from "./harness.ts";
import { valueAndGrad } from "../lib/ops/autodiff.ts";
import { add, mul, silu } from "../lib/ops/elementwise.ts";
import { matmul } from "../lib/ops/matmul.ts";
import { embedding } from "../lib/ops/embedding.ts";
import { rmsNorm } from "../lib/ops/norm.ts";
import { maskedCrossEntropy } from "../lib/ops/cross_entropy.ts";
import { sum } from "../lib/ops/reduce.ts";
import { adamwInit, adamwStep, disposeAdamW, lrSchedule } from "../lib/train/optim.ts";
import { constant, drawParam, gaussian, torchDefault } from "../lib/nn/init.ts";
import { foldIn, key, randint, split } from "../lib/core/random.ts";
import {
  dispatch,
  GpuUnavailableError,
  liveGpuBytes,
  pipelineCount,
  profileKernels,
  runtimeStats,
  sync,
} from "../lib/core/runtime.ts";
import { disposeTree, keep, readTensors, type Tensor, tensor, tidy } from "../lib/core/tensor.ts";

// A tiny next-token model: embedding → RMSNorm → MLP (silu) → head. The task: predict (3·x + 1) mod V from x.
const V = 16, D = 32, F = 64, B = 64;
interface Tiny {
  emb: Tensor;
  norm: Tensor;
  w1: Tensor;
  w2: Tensor;
}
function initTiny(seeds: number[]): Tiny {
  const keys = seeds.map(key);
  const K = seeds.length;
  return {
    emb: tensor(drawParam(keys, "emb", [V, D], gaussian(0.5)), [K, V, D]),
    norm: tensor(drawParam(keys, "norm", [D], constant(1)), [K, D]),
    w1: tensor(drawParam(keys, "w1", [D, F], torchDefault(D)), [K, D, F]),
    w2: tensor(drawParam(keys, "w2", [F, D], torchDefault(F)), [K, F, D]),
  };
}
function loss(p: Tiny, ids: Tensor, targets: Tensor, mask: Tensor) {
  const K = ids.shape[0];
  const h = rmsNorm(embedding(p.emb, ids), p.norm).reshape([K, B, D]);
  const y = add(h, matmul(silu(matmul(h, p.w1)), p.w2));
  const logits = matmul(y, p.emb, { transB: true });
  const perRun = maskedCrossEntropy(logits, targets, mask);
  return { loss: sum(perRun, 0, true), aux: perRun };
}
function batch(k: number, K: number, step: number) {
  const ids = new Int32Array(K * B), tg = new Int32Array(K * B);
  for (let r = 0; r < K; r++) {
    const x = randint(foldIn(split(key(k))[r % 2], step * K + r), B, 0, V);
    x.forEach((v, i) => {
      ids[r * B + i] = v;
      tg[r * B + i] = (3 * v + 1) % V;
    });
  }
  return {
    ids: tensor(ids, [K, B], "i32"),
    tg: tensor(tg, [K, B], "i32"),
    mask: tensor(new Float32Array(K * B).fill(1), [K, B]),
  };
}

async function train(seeds: number[], steps: number, onStep?: (s: number) => void) {
  const params = keep(initTiny(seeds));
  const opt = adamwInit(params);
  const sched = lrSchedule({ peak: 1e-2, warmup: 10, total: steps });
  const vg = valueAndGrad((p: Tiny, b: ReturnType<typeof batch>) => loss(p, b.ids, b.tg, b.mask));
  let last: Tensor | null = null;
  for (let s = 0; s < steps; s++) {
    const out = tidy(() => {
      const b = batch(7, seeds.length, s);
      const { aux, grads } = vg(params, b);
      adamwStep(params, grads, opt, { lr: seeds.map(() => sched(s)), weightDecay: 0.01 });
      return aux as Tensor;
    });
    last?.dispose();
    last = out;
    onStep?.(s);
  }
  const [finalLoss] = await readTensors([last!]);
  last!.dispose();
  const flat = await readTensors([params.emb, params.w1, params.w2]);
  disposeAdamW(opt);
  disposeTree(params);
  return { finalLoss: Array.from(finalLoss), flat };
}

Deno.test({
  name: "a tiny model trained for 300 steps learns its task (loss < 0.05; chance is ln 16 ≈ 2.77)",
  ignore: noGpu,
  async fn() {
    const { finalLoss } = await train([1, 2], 300);
    console.log(
      `final per-run losses: ${finalLoss.map((l) => l.toFixed(4)).join(", ")} (ln 16 = 2.77 at chance)`,
    );
    for (const l of finalLoss) assert.ok(l < 0.05, `loss ${l} did not fall below 0.05`);
  },
});

Deno.test({
  name: "live GPU bytes are constant over 50 training steps",
  ignore: noGpu,
  async fn() {
    const samples: number[] = [];
    const before = liveGpuBytes();
    await train([3], 50, () => samples.push(liveGpuBytes()));
    await sync();
    console.log(
      `live bytes: before ${before}, during ${samples[0]}..${samples.at(-1)}, after ${liveGpuBytes()}`,
    );
    assert.ok(samples.slice(1).every((b) => b === samples[1]), `live bytes changed: ${samples.slice(0, 10)}`);
    assert.equal(liveGpuBytes(), before, "training leaked GPU memory");
  },
});

Deno.test({
  name: "the same seed gives bit-identical params and losses twice; another seed differs",
  ignore: noGpu,
  async fn() {
    const a = await train([5], 20), b = await train([5], 20), c = await train([6], 20);
    assert.deepEqual(a.finalLoss, b.finalLoss);
    a.flat.forEach((x, i) => assert.deepEqual(x, b.flat[i]));
    assert.notDeepEqual(a.flat[0], c.flat[0]);
  },
});

Deno.test({
  name: "tidy frees intermediates and keeps its result; the pipeline cache compiles a kernel once",
  ignore: noGpu,
  async fn() {
    const before = liveGpuBytes();
    const x = tensor([1, 2, 3, 4]);
    const y = tidy(() => mul(add(x, x), x));
    assert.deepEqual(Array.from(await y.toArray()), [2, 8, 18, 32]);
    y.dispose();
    x.dispose();
    assert.equal(liveGpuBytes(), before);
    const n0 = pipelineCount();
    tidy(() => add(tensor([1]), tensor([2])));
    tidy(() => add(tensor([3]), tensor([4])));
    assert.equal(pipelineCount(), n0);
    assert.throws(() => y.buffer, /after dispose/);
  },
});

Deno.test({
  name: "runtimeStats counts the time spent compiling a new pipeline, and none for a cached one",
  ignore: noGpu,
  async fn() {
    const kernel = {
      name: "stats_probe",
      bindings: ["read_write"] as const,
      code: `struct Params { n: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < p.n) { out[gid.x] = f32(gid.x) * 0.5; }
}`,
    };
    const out = tensor(new Float32Array(64));
    const s0 = runtimeStats();
    dispatch(kernel, [out.buffer], [64], [1]);
    const s1 = runtimeStats();
    dispatch(kernel, [out.buffer], [64], [1]);
    const s2 = runtimeStats();
    assert.equal(s1.pipelines, s0.pipelines + 1);
    assert.ok(s1.pipelineSeconds > s0.pipelineSeconds, "the first dispatch compiled, in some time");
    assert.equal(s2.pipelines, s1.pipelines);
    assert.equal(s2.pipelineSeconds, s1.pipelineSeconds, "the second took the cached pipeline");
    assert.equal((await out.toArray())[63], 31.5);
    out.dispose();
  },
});

Deno.test({
  name: "tidy frees what a failing function made, and rethrows",
  ignore: noGpu,
  fn() {
    const before = liveGpuBytes();
    assert.throws(() =>
      tidy(() => {
        add(tensor([1, 2]), tensor([3, 4]));
        throw new Error("boom");
      }), /boom/);
    assert.equal(liveGpuBytes(), before);
  },
});

Deno.test({
  name: "profileKernels: GPU time per kernel name, dispatch counts, results unchanged",
  ignore: noGpu,
  fn: async () => {
    const a = tensor(Float32Array.from({ length: 64 * 64 }, (_, i) => Math.sin(i)), [64, 64]);
    let out: Tensor[] = [];
    let times;
    try {
      times = await profileKernels(() => {
        out = [matmul(a, a), add(a, a), add(a, a), matmul(a, a)];
      });
    } catch (e) {
      if (e instanceof GpuUnavailableError) return; // no timestamp-query on this device: nothing to check
      throw e;
    }
    const [mm, sum2] = await readTensors([out[0], out[1]]);
    let want = 0;
    for (let k = 0; k < 64; k++) want += Math.fround(Math.sin(k)) * Math.fround(Math.sin(k * 64));
    assert.ok(Math.abs(mm[0] - want) < 1e-4, `matmul under profiling: ${mm[0]} vs ${want}`);
    out.forEach((t) => t.dispose());
    assert.equal(sum2[5], 2 * Math.fround(Math.sin(5)));
    const names = times.map((t) => t.name);
    assert.ok(names.includes("add"), `kernels: ${names.join(", ")}`);
    assert.equal(times.find((t) => t.name === "add")!.count, 2);
    assert.equal(times.reduce((s, t) => s + t.count, 0), 4);
    assert.ok(times.every((t) => t.seconds >= 0 && t.seconds < 10));
    assert.ok(times.some((t) => t.seconds > 0), "some kernel took measurable time");
    for (let i = 1; i < times.length; i++) {
      assert.ok(times[i - 1].seconds >= times[i].seconds, "longest first");
    }
    await assert.rejects(
      profileKernels(async () => void await profileKernels(() => {})),
      /already profiling/,
    );
    a.dispose();
  },
});
