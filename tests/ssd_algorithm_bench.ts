/**
 * Where each of the Mamba 2 scan's GPU algorithms is faster: forward + backward of the sequential and the chunked
 * scan (`timeGpu`, one table row per size) at the LMs' own scans, the sizes `defaultSsdAlgorithm` is chosen from:
 * the fig7 quick model's (K 4 × Bt 32, T 220, H 8, P 64) over N 8..256, the D 1024 model's (Bt 64, T 128, H 32)
 * at N 16..64, and fig7's model at 8192 tokens a run over T 512..4096 at N 64 and 128; then the chunked
 * backward with its R products in parts of 4 heads against all heads per workgroup (option `rHeads`). Tiny sizes
 * on a CPU adapter (the driver check only; its times mean nothing).
 *
 *     deno run -A tests/ssd_algorithm_bench.ts     (or deno bench -A)
 */
import { gpuInfo, initGpu, sync, trimPool } from "../lib/core/runtime.ts";
import { defaultSsdAlgorithm, type SsdDims, ssdScan, ssdScanGrads } from "../lib/ops/ssd_scan.ts";
import { disposeTree, tidy } from "../lib/core/tensor.ts";
import { ssdChunkedLayout } from "../lib/ops/ssd_chunked.ts";
import { ssdInputs, timeGpu } from "./bench_util.ts";

let available = true;
try {
  await initGpu();
} catch (e) {
  available = false;
  console.warn(`ssd algorithm bench skipped: ${(e as Error).message}`);
}
const big = available && !gpuInfo().isCpu;

function sizes(): [string, SsdDims][] {
  if (!big) return [["tiny", { K: 1, Bt: 2, T: 40, H: 2, P: 8, G: 1, N: 16 }]];
  const out: [string, SsdDims][] = [];
  for (const N of [8, 16, 32, 64, 128, 256]) {
    out.push([`fig7 quick, N ${N}`, { K: 4, Bt: 32, T: 220, H: 8, P: 64, G: 1, N }]);
  }
  for (const N of [16, 32, 64]) out.push([`D 1024, N ${N}`, { K: 1, Bt: 64, T: 128, H: 32, P: 64, G: 1, N }]);
  for (const N of [64, 128]) {
    for (const T of [512, 1024, 2048, 4096]) {
      out.push([`fig7, 8192 tokens a run, N ${N}, T ${T}`, { K: 4, Bt: 8192 / T, T, H: 8, P: 64, G: 1, N }]);
    }
  }
  return out;
}

function inputs(d: SsdDims) {
  const { dy, ...xs } = ssdInputs(d);
  return { xs, dy };
}

if (available) {
  console.log(`\n### ssdScan forward + backward, sequential against chunked (${gpuInfo().description})\n`);
  console.log("| scan | K × Bt, T, H, P, N | sequential ms | chunked ms | sequential / chunked | default |");
  console.log("|---|---|---|---|---|---|");
  for (const [name, d] of sizes()) {
    const { xs, dy } = inputs(d);
    const ms: number[] = [];
    for (const algorithm of ["sequential", "chunked"] as const) {
      ms.push(
        1e3 * await timeGpu(
          () => {
            tidy(() => ssdScan(xs, { algorithm })).dispose();
            disposeTree(tidy(() => ssdScanGrads(xs, dy, { algorithm })));
          },
          3,
          2,
          0.2,
          3,
          0.5,
        ),
      );
    }
    console.log(
      `| ${name} | ${d.K} × ${d.Bt}, ${d.T}, ${d.H}, ${d.P}, ${d.N} | ${ms[0].toFixed(3)} | ${
        ms[1].toFixed(3)
      } | ${(ms[0] / ms[1]).toFixed(2)} | ${defaultSsdAlgorithm(d)} |`,
    );
    disposeTree([xs, dy]);
    await sync();
    trimPool();
  }
}

// The chunked backward's R products in parts of 4 heads against all of a group's heads per workgroup (the
// default takes parts where a batch row has fewer than 16 block pairs; see `layoutFor` in lib/ops/ssd_chunked.ts).
if (available) {
  console.log(`\n### chunked ssdScan backward: R products in parts of 4 heads or all heads per workgroup\n`);
  console.log("| scan | K × Bt, T, H, N | block pairs a row | parts of 4 ms | all heads ms | default |");
  console.log("|---|---|---|---|---|---|");
  const cases: [string, SsdDims][] = big
    ? [
      ["D 1024, N 128", { K: 1, Bt: 64, T: 128, H: 32, P: 64, G: 1, N: 128 }],
      ["fig7 quick, N 64", { K: 4, Bt: 32, T: 220, H: 8, P: 64, G: 1, N: 64 }],
      ["Bt 64, T 512, N 128", { K: 1, Bt: 64, T: 512, H: 32, P: 64, G: 1, N: 128 }],
    ]
    : [["tiny", { K: 1, Bt: 2, T: 40, H: 8, P: 8, G: 1, N: 16 }]];
  for (const [name, d] of cases) {
    const { xs, dy } = inputs(d);
    const time = async (rHeads: number) =>
      1e3 * await timeGpu(
        () => disposeTree(tidy(() => ssdScanGrads(xs, dy, { algorithm: "chunked", rHeads }))),
        3,
        2,
        0.2,
        3,
        0.5,
      );
    const parts = await time(4), whole = await time(d.H / d.G);
    const L = ssdChunkedLayout(d);
    console.log(
      `| ${name} | ${d.K} × ${d.Bt}, ${d.T}, ${d.H}, ${d.N} | ${d.G * L.plan.nC * L.plan.NP} | ${
        parts.toFixed(3)
      } | ${whole.toFixed(3)} | ${L.rHeads === d.H / d.G ? "all heads" : `parts of ${L.rHeads}`} |`,
    );
    disposeTree([xs, dy]);
    await sync();
    trimPool();
  }
}

// deno bench: the default algorithm at the first size (fig7 quick's scan at N 8 on a GPU)
const [benchName, benchDims] = sizes()[0];
const bench = available ? inputs(benchDims) : null;
Deno.bench(
  { name: `ssdScan default algorithm, forward + backward (${benchName})`, ignore: !bench },
  async () => {
    tidy(() => ssdScan(bench!.xs)).dispose();
    disposeTree(tidy(() => ssdScanGrads(bench!.xs, bench!.dy)));
    await sync();
  },
);
