/**
 * The cost of one small dispatch when many are recorded into one compute pass: record 2000 tiny dispatches, wait
 * for the GPU, divide. Reported both as the CPU time to record one and as the end-to-end time per dispatch (which
 * carries 1/2000 of the ~12 ms wait for the GPU, ~6 µs, on the H100). Recording includes the submit every 512
 * dispatches (the runtime's chunk); on llvmpipe a submit runs the work, so there the two are close.
 *
 * Also the CPU time to record one training step of a tiny Mamba 2 LM (240 dispatches), which is what bounds a
 * step when the CPU cannot keep ahead of the GPU, with its bind group cache misses per step (0 once warm: the
 * runtime caches bind groups by buffer identity, and the step gets the same pooled buffers each time).
 *
 *   deno bench -A tests/dispatch_bench.ts
 */
import { report, timeGpu } from "./bench_util.ts";
import { flush, gpuInfo, initGpu, runtimeStats, sync } from "../lib/core/runtime.ts";
import { add } from "../lib/ops/elementwise.ts";
import { matmul } from "../lib/ops/matmul.ts";
import { keep, tensor, tidy } from "../lib/core/tensor.ts";
import { valueAndGrad } from "../lib/ops/autodiff.ts";
import { MAMBA2_DEFAULTS } from "../lib/nn/mamba2.ts";
import { initLM, type LMConfig, lmLoss, type LMParams } from "../lib/nn/lm.ts";
import { adamwInit, adamwStep } from "../lib/train/optim.ts";
import { key, randint } from "../lib/core/random.ts";

await initGpu();
const COUNT = 2000;
const x = tensor([1, 2, 3, 4], [4]);
const a = tensor(Float32Array.from({ length: 16 }, (_, i) => i / 16), [4, 4]);

const ops = {
  "add (4 elements)": () => add(x, x).dispose(),
  "matmul 4×4·4×4": () => matmul(a, a).dispose(),
};

const rows = [];
for (const [name, op] of Object.entries(ops)) {
  const record = () => {
    for (let i = 0; i < COUNT; i++) op();
  };
  const total = (await timeGpu(record, 5, 1)) / COUNT;
  // CPU side alone: the time to record them (the GPU may still be running when this stops the clock).
  const t0 = performance.now();
  record();
  const recordOnly = (performance.now() - t0) / 1000 / COUNT;
  await sync();
  rows.push({ name: `${name}: record + run, per dispatch`, seconds: total });
  rows.push({ name: `${name}: record only, per dispatch`, seconds: recordOnly });
}
report(`one small dispatch, ${COUNT} per sync (${gpuInfo().description})`, rows);

// Recording one training step of a tiny LM (the shapes do not matter to the CPU side: same dispatches).
{
  const [K, B, T] = [1, 2, 16];
  const cfg: LMConfig = {
    vocab: 30,
    dModel: 32,
    normEps: 1e-5,
    layers: [0, 1].map(() => ({ ...MAMBA2_DEFAULTS, dState: 16, headDim: 16 })),
  };
  const { params, consts } = initLM([key(0)], cfg);
  keep([params, consts]);
  const opt = adamwInit(params);
  const ids = tensor(randint(key(99), K * B * T, 0, 30), [K, B, T], "i32");
  const targets = tensor(randint(key(98), K * B * T, 0, 30), [K, B, T], "i32");
  const mask = tensor(new Float32Array(K * B * T).fill(1), [K, B, T]);
  const vg = valueAndGrad((p: LMParams) => lmLoss(p, consts, { inputs: ids, targets, mask }, cfg));
  const step = () =>
    tidy(() => {
      const { grads } = vg(params);
      adamwStep(params, grads, opt, { lr: [1e-4] });
    });
  for (let i = 0; i < 3; i++) {
    step();
    flush();
  }
  await sync();
  const times: number[] = [];
  const s0 = runtimeStats();
  const STEPS = 10;
  for (let i = 0; i < STEPS; i++) {
    const t0 = performance.now();
    step(); // records only: a step's dispatches fit in one chunk, so nothing is submitted inside
    times.push((performance.now() - t0) / 1000);
    flush();
    await sync();
  }
  const s1 = runtimeStats();
  times.sort((a, b) => a - b);
  const dispatches = (s1.dispatches - s0.dispatches) / STEPS;
  const misses = (s1.bindGroupsCreated - s0.bindGroupsCreated) / STEPS;
  report(
    `recording one training step of a tiny Mamba 2 LM: ${dispatches} dispatches, ${misses} new bind groups per step`,
    [
      { name: "record one step (median of 10)", seconds: times[STEPS >> 1] },
      { name: "per dispatch", seconds: times[STEPS >> 1] / dispatches },
    ],
  );
}

Deno.bench(`${COUNT} tiny add dispatches + sync`, async () => {
  for (let i = 0; i < COUNT; i++) add(x, x).dispose();
  await sync();
});
