/**
 * The cost of one small dispatch when many are recorded into one compute pass: record 2000 tiny dispatches, wait
 * for the GPU, divide. Reported both as the CPU time to record one and as the end-to-end time per dispatch (which
 * carries 1/2000 of the ~12 ms wait for the GPU, ~6 µs, on the H100). Recording includes the submit every 512
 * dispatches (the runtime's chunk); on llvmpipe a submit runs the work, so there the two are close.
 *
 *   deno bench -A tests/dispatch_bench.ts
 */
import { report, timeGpu } from "./bench_util.ts";
import { gpuInfo, initGpu, sync } from "../lib/core/runtime.ts";
import { add } from "../lib/ops/elementwise.ts";
import { matmul } from "../lib/ops/matmul.ts";
import { tensor } from "../lib/core/tensor.ts";

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

Deno.bench(`${COUNT} tiny add dispatches + sync`, async () => {
  for (let i = 0; i < COUNT; i++) add(x, x).dispose();
  await sync();
});
