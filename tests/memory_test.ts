/**
 * The memory estimates (lib/train/memory.ts) against what the runtime measures (`peakGpuBytes`): a few training
 * steps of small Mamba 1, Mamba 2 and hybrid (Mamba 2 + softmax attention) models, and evaluation passes; and the
 * refusals built on them (a budget too small, one tensor larger than the adapter's largest binding).
 *
 * The estimate follows the allocations in order and rounds each to the pool's bucket, so it predicts the peak of
 * live bytes closely (asserted within 0.97–1.08×; measured 1.00–1.04). The device holds somewhat more than the live
 * peak (the pool keeps freed buffers whose bucket is not asked for again): asserted within 0.75–1.10× of that.
 */
import assert from "node:assert/strict";
import { noGpu } from "./harness.ts";
import {
  formatBytes,
  gpu,
  initGpu,
  peakGpuBytes,
  resetPeakGpuBytes,
  sync,
  trimPool,
} from "../lib/core/runtime.ts";
import { MAMBA2_DEFAULTS } from "../lib/nn/mamba2.ts";
import { MAMBA1_DEFAULTS } from "../lib/nn/mamba1.ts";
import { ATTENTION_DEFAULTS } from "../lib/nn/attention.ts";
import { applyLM, initLM, type LMConfig } from "../lib/nn/lm.ts";
import { DEFAULT_INIT } from "../lib/nn/init.ts";
import { disposeModel, trainLM } from "../lib/train/train.ts";
import { evaluateLM, evaluateRows } from "../lib/train/eval.ts";
import { key, randint } from "../lib/core/random.ts";
import { keep } from "../lib/core/tensor.ts";
import {
  adapterMemory,
  describeMemory,
  estimateEvalMemory,
  estimateTrainingMemory,
  evalChunkRows,
  maxRunsThatFit,
  trainingFitMessage,
} from "../lib/train/memory.ts";

const V = 30, D = 32;
const mamba2 = { ...MAMBA2_DEFAULTS, dState: 16, headDim: 16 };
const CONFIGS: Record<string, LMConfig> = {
  "Mamba 2 (2 layers)": { vocab: V, dModel: D, normEps: 1e-5, layers: [mamba2, mamba2] },
  "Mamba 2, G = 2": { vocab: V, dModel: D, normEps: 1e-5, layers: [{ ...mamba2, nGroups: 2 }] },
  // N 64 at these lengths: the chunked scan by default (its scratch, forward and backward)
  "Mamba 2, N 64 (chunked scan)": {
    vocab: V,
    dModel: D,
    normEps: 1e-5,
    layers: [{ ...mamba2, dState: 64 }, { ...mamba2, dState: 64 }],
  },
  "Mamba 1 (2 layers)": {
    vocab: V,
    dModel: D,
    normEps: 1e-5,
    layers: [0, 1].map(() => ({ ...MAMBA1_DEFAULTS, dState: 16 })),
  },
  "hybrid (Mamba 2 + attention)": {
    vocab: V,
    dModel: D,
    normEps: 1e-5,
    layers: [mamba2, { ...ATTENTION_DEFAULTS, heads: 2, headDim: 16 }],
  },
};

function ratios(estimate: number, what: string) {
  const p = peakGpuBytes();
  const live = estimate / p.live, allocated = estimate / p.allocated;
  console.log(
    `${what}: estimate ${formatBytes(estimate)}, measured peak ${formatBytes(p.live)} live (×${
      live.toFixed(3)
    }), ${formatBytes(p.allocated)} allocated (×${allocated.toFixed(3)})`,
  );
  return { live, allocated };
}

for (const [name, cfg] of Object.entries(CONFIGS)) {
  for (const [K, B, T] of [[2, 4, 256], [1, 2, 1024]]) {
    Deno.test({
      name: `training memory of ${name}, K ${K} × B ${B} × T ${T}: the estimate matches the measured peak`,
      ignore: noGpu,
      async fn() {
        const makeBatch = (k: readonly [number, number], batch: number) => ({
          inputs: randint(k, batch * T, 0, V),
          targets: randint(key(5), batch * T, 0, V),
          mask: new Float32Array(batch * T).fill(1),
          T,
        });
        trimPool();
        resetPeakGpuBytes();
        const runs = Array.from(
          { length: K },
          (_, s) => ({ seed: s, lr: 1e-3, mimetic: () => DEFAULT_INIT }),
        );
        const result = await trainLM(cfg, runs, makeBatch, { steps: 3, batch: B, logEvery: 1 });
        await sync();
        const est = estimateTrainingMemory(cfg, K, B, T);
        const r = ratios(est.peakBytes, `${name} training`);
        disposeModel(result);
        assert.ok(r.live >= 0.97 && r.live <= 1.08, `estimate / live peak = ${r.live}`);
        assert.ok(r.allocated >= 0.75 && r.allocated <= 1.1, `estimate / allocated peak = ${r.allocated}`);
      },
    });
  }
}

for (
  const name of [
    "Mamba 2 (2 layers)",
    "Mamba 2, N 64 (chunked scan)",
    "Mamba 1 (2 layers)",
    "hybrid (Mamba 2 + attention)",
  ]
) {
  Deno.test({
    name: `evaluation memory of ${name}: the estimate matches the measured peak`,
    ignore: noGpu,
    async fn() {
      const cfg = CONFIGS[name];
      const [K, B, T] = [2, 8, 512];
      trimPool();
      resetPeakGpuBytes();
      const { params, consts } = initLM([key(1), key(2)], cfg);
      keep([params, consts]);
      const rows = {
        inputs: randint(key(3), B * T, 0, V),
        targets: randint(key(4), B * T, 0, V),
        mask: new Float32Array(B * T).fill(1),
        B,
        T,
      };
      await evaluateRows((ids) => applyLM(params, consts, ids, cfg), K, rows, B);
      await sync();
      const r = ratios(estimateEvalMemory(cfg, K, B, T).peakBytes, `${name} evaluation`);
      disposeModel({ params, consts });
      assert.ok(r.live >= 0.97 && r.live <= 1.08, `estimate / live peak = ${r.live}`);
      assert.ok(r.allocated >= 0.75 && r.allocated <= 1.1, `estimate / allocated peak = ${r.allocated}`);
    },
  });
}

Deno.test({
  name: "evaluateLM chunks rows to fit the budget and scores exactly as one big chunk does",
  ignore: noGpu,
  async fn() {
    const cfg = CONFIGS["Mamba 2 (2 layers)"];
    const [K, B, T] = [2, 12, 128];
    const { params, consts } = initLM([key(1), key(2)], cfg);
    keep([params, consts]);
    const rows = {
      inputs: randint(key(3), B * T, 0, V),
      targets: randint(key(4), B * T, 0, V),
      mask: new Float32Array(B * T).map((_, i) => (i % 3 === 0 ? 1 : 0)),
      B,
      T,
    };
    const binding = gpu().limits.maxStorageBufferBindingSize;
    // a budget for 5 rows (buckets round it up: a chunk is the most rows within it, fewer than B)
    const budget = estimateEvalMemory(cfg, K, 5, T).peakBytes;
    const chunk = evalChunkRows(cfg, K, T, budget, binding, B);
    console.log(`chunks of ${chunk} rows`);
    assert.ok(chunk >= 5 && chunk < B, `chunk ${chunk}`);
    assert.ok(estimateEvalMemory(cfg, K, chunk + 1, T).peakBytes > budget);
    assert.equal(evalChunkRows(cfg, K, T, 1e12, binding, B), B);
    assert.throws(
      () => evalChunkRows(cfg, K, T, 1000, binding, B),
      /^RangeError: evaluation needs .* for 2 runs/,
    );
    const chunked = await evaluateLM(params, consts, cfg, K, rows, { budgetBytes: budget });
    const whole = await evaluateRows((ids) => applyLM(params, consts, ids, cfg), K, rows, B);
    // The device's maxBufferSize limits every tensor, split bindings or not: with a cap at the largest tensor of 3
    // rows (the logits), chunks shrink to fit it however much memory there is.
    const largestOf = (n: number) => estimateEvalMemory(cfg, K, n, T).largestBufferBytes;
    const cap = largestOf(3);
    const capChunk = evalChunkRows(cfg, K, T, 1e12, binding, B, cap);
    assert.ok(
      capChunk >= 3 && capChunk < B && largestOf(capChunk + 1) > cap,
      `chunk ${capChunk} under a cap`,
    );
    const capped = await evaluateLM(params, consts, cfg, K, rows, { budgetBytes: 1e12, maxBufferBytes: cap });
    disposeModel({ params, consts });
    console.log(`accuracy in chunks: ${JSON.stringify(chunked)}`);
    assert.deepEqual(chunked, whole);
    assert.deepEqual(capped, whole);
  },
});

Deno.test({
  name: "memory grows linearly in T for the Mamba LMs (activations per token constant from T 1k to 16k)",
  ignore: noGpu,
  fn() {
    for (const name of ["Mamba 2 (2 layers)", "Mamba 1 (2 layers)"]) {
      const cfg = { ...CONFIGS[name], dModel: 1024 };
      const perToken = [1024, 4096, 16384].map((T) =>
        estimateTrainingMemory(cfg, 1, 8, T).activationBytes / T
      );
      console.log(
        `${name}, D 1024: activation bytes per position at T 1k, 4k, 16k: ${perToken.map(Math.round)}`,
      );
      for (const p of perToken) assert.ok(Math.abs(p / perToken[0] - 1) < 0.02, `${p} vs ${perToken[0]}`);
    }
  },
});

Deno.test({
  name: "a run that would not fit is refused before training, with one line naming the memory and the flag",
  ignore: noGpu,
  async fn() {
    const info = await initGpu();
    const cfg = CONFIGS["Mamba 2 (2 layers)"];
    const est = estimateTrainingMemory(cfg, 2, 4, 256);
    const q = { runs: 2, batch: 4, T: 256, maxBindingBytes: info.limits.maxStorageBufferBindingSize };
    const tooSmall = est.peakBytes / 2;
    const msg = trainingFitMessage(cfg, { ...q, budgetBytes: tooSmall, flag: "--batch" });
    console.log(`refused: ${msg}`);
    assert.match(
      msg ?? "",
      /^needs \d+\.\d MiB for 2 runs at batch 4 × T 256 \(activations \d+\.\d MiB\); the adapter has ~\d+\.\d MiB: lower --batch$/,
    );
    assert.equal(trainingFitMessage(cfg, { ...q, budgetBytes: est.peakBytes }), null);
    // trainLM refuses before its first step, with the same line
    const runs = [1, 2].map((seed) => ({ seed, lr: 1e-3, mimetic: () => DEFAULT_INIT }));
    const makeBatch = (k: readonly [number, number], batch: number) => ({
      inputs: randint(k, batch * 256, 0, V),
      targets: randint(k, batch * 256, 0, V),
      mask: new Float32Array(batch * 256).fill(1),
      T: 256,
    });
    await assert.rejects(
      () => trainLM(cfg, runs, makeBatch, { steps: 2, batch: 4, memoryBudget: tooSmall }),
      (e: Error) =>
        e instanceof RangeError && /^train: needs .* lower the batch or the runs per group$/.test(e.message),
    );
  },
});

Deno.test({
  name:
    "one tensor larger than the adapter's largest binding: refused up front, and maxRunsThatFit stops below it",
  ignore: noGpu,
  async fn() {
    const info = await initGpu();
    // the issue's case: K 6 × B 64 × T 102 with E 1024 (Mamba 2, D 512): 160 MB per E-wide activation
    const cfg: LMConfig = {
      vocab: V,
      dModel: 512,
      normEps: 1e-5,
      layers: [MAMBA2_DEFAULTS, MAMBA2_DEFAULTS],
    };
    const limit = 128 * 2 ** 20; // llvmpipe's
    const est = estimateTrainingMemory(cfg, 6, 64, 102);
    assert.equal(est.largestTensorBytes, 6 * 64 * 102 * 1024 * 4);
    const msg = describeMemory(est, {
      runs: 6,
      batch: 64,
      T: 102,
      budgetBytes: 1e15,
      maxBindingBytes: limit,
    });
    console.log(`refused: ${msg}`);
    assert.match(
      msg ?? "",
      /^one tensor of 6 runs at batch 64 × T 102, .* takes 153\.0 MiB, more than the adapter's/,
    );
    assert.match(msg ?? "", /maxStorageBufferBindingSize 128\.0 MiB\): lower --batch$/);
    // 5 runs keep every whole-bound tensor at 127.5 MiB
    assert.equal(maxRunsThatFit(cfg, 64, 102, 1e15, limit), 5);
    // and with a memory budget: the K that fits, and K + 1 that does not
    const budget = estimateTrainingMemory(cfg, 3, 64, 102).peakBytes;
    assert.equal(maxRunsThatFit(cfg, 64, 102, budget, limit), 3);
    assert.equal(maxRunsThatFit(cfg, 64, 102, budget - 1, limit), 2);
    void info;
  },
});

Deno.test("adapterMemory: the env var, known adapters, sizes in names, CPU adapters, the default", () => {
  const prev = Deno.env.get("MIMETIC_GPU_MEMORY");
  try {
    Deno.env.delete("MIMETIC_GPU_MEMORY");
    assert.deepEqual(
      adapterMemory({ description: "NVIDIA H100 80GB HBM3", isCpu: false }).source,
      "known adapter",
    );
    assert.ok(
      Math.abs(adapterMemory({ description: "NVIDIA H200", isCpu: false }).bytes / 2 ** 30 - 126.4) < 0.1,
    );
    assert.equal(adapterMemory({ description: "NVIDIA A100-SXM4-40GB", isCpu: false }).bytes, 36e9);
    assert.deepEqual(adapterMemory({ description: "Some GPU", isCpu: false }), {
      bytes: 8 * 2 ** 30,
      source: "default",
    });
    const cpu = adapterMemory({ description: "llvmpipe (LLVM 15.0.6, 256 bits)", isCpu: true });
    assert.equal(cpu.source, "system memory");
    assert.ok(cpu.bytes > 0 && cpu.bytes < Deno.systemMemoryInfo().total);
    Deno.env.set("MIMETIC_GPU_MEMORY", "21.5");
    assert.deepEqual(adapterMemory({ description: "NVIDIA H200", isCpu: false }), {
      bytes: Math.floor(21.5 * 2 ** 30),
      source: "MIMETIC_GPU_MEMORY",
    });
    Deno.env.set("MIMETIC_GPU_MEMORY", "lots");
    assert.throws(
      () => adapterMemory({ description: "x", isCpu: false }),
      /MIMETIC_GPU_MEMORY must be a positive/,
    );
  } finally {
    if (prev === undefined) Deno.env.delete("MIMETIC_GPU_MEMORY");
    else Deno.env.set("MIMETIC_GPU_MEMORY", prev);
  }
});
