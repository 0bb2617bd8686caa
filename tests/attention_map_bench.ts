/**
 * Attention-map throughput at T = 1000: Mamba 2 (H 32, G 1, N 128) and Mamba 1 (E 2048, N 32), the sizes of a
 * width-1024 layer; tiny sizes on a CPU adapter (llvmpipe). FLOPs count 4 per (i, j, channel, state) term of
 * Mamba 1 (exp, A·s, the Δ multiply-add, the mask add; the exp unit is the bound) and, for Mamba 2, 2·G·N for
 * C_i·B_j plus 4 per head, over the T(T+1)/2 causal pairs. Bytes: the two (T, T) outputs plus the inputs.
 *
 *   deno bench -A tests/attention_map_bench.ts
 */
import { report, timeGpu } from "./bench_util.ts";
import { randomInputs } from "./harness.ts";
import { gpuInfo, initGpu } from "../lib/core/runtime.ts";
import { mamba1AttentionMap, mamba2AttentionMap } from "../lib/ops/attention_map.ts";
import { disposeTree, type Tensor, tensor } from "../lib/core/tensor.ts";

await initGpu();
const cpu = gpuInfo().isCpu;
console.log(`device: ${gpuInfo().description}${cpu ? " (CPU adapter: tiny sizes)" : ""}`);

const T = cpu ? 64 : 1000;
const m2 = cpu ? { H: 4, G: 1, N: 16 } : { H: 32, G: 1, N: 128 };
const m1 = cpu ? { E: 16, N: 8 } : { E: 2048, N: 32 };
const pairs = (T * (T + 1)) / 2;

function inputs(shapes: number[][], positive: number, negative: number): Tensor[] {
  const specs = shapes.map((shape, i) => ({
    shape,
    range: (i === positive ? [0.001, 0.1] : i === negative ? [-16, -1] : [-1, 1]) as [number, number],
  }));
  return randomInputs(specs).map((v, i) => tensor(v, shapes[i]));
}

const [dt, A2, B2, C2] = inputs(
  [[1, 1, T, m2.H], [1, m2.H], [1, 1, T, m2.G, m2.N], [1, 1, T, m2.G, m2.N]],
  0,
  1,
);
const [delta, A1, B1, C1] = inputs(
  [[1, 1, T, m1.E], [1, m1.E, m1.N], [1, 1, T, m1.N], [1, 1, T, m1.N]],
  0,
  1,
);

const run2 = () => disposeTree(mamba2AttentionMap({ dt, A: A2, B: B2, C: C2 }));
const run1 = () => disposeTree(mamba1AttentionMap({ delta, A: A1, B: B1, C: C1 }));

const out = 2 * T * T * 4;
const t2 = await timeGpu(run2, cpu ? 3 : 20, 1);
const t1 = await timeGpu(run1, cpu ? 3 : 10, 1);
report(`Attention maps, T = ${T}`, [
  {
    name: `Mamba 2 (H ${m2.H}, G ${m2.G}, N ${m2.N})`,
    seconds: t2,
    flops: pairs * (2 * m2.G * m2.N + 4 * m2.H),
    bytes: out + 4 * T * (m2.H + 2 * m2.G * m2.N),
  },
  {
    name: `Mamba 1 (E ${m1.E}, N ${m1.N}): ${((pairs * m1.E * m1.N) / t1 / 1e9).toPrecision(3)} G exp/s`,
    seconds: t1,
    flops: 4 * pairs * m1.E * m1.N,
    bytes: out + 4 * T * (m1.E + 2 * m1.N),
  },
]);

Deno.bench(`mamba2AttentionMap T ${T} H ${m2.H} N ${m2.N}`, async () => {
  await timeGpu(run2, 1, 0);
});
Deno.bench(`mamba1AttentionMap T ${T} E ${m1.E} N ${m1.N}`, async () => {
  await timeGpu(run1, 1, 0);
});
