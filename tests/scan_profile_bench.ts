/**
 * Per-kernel GPU times (timestamp queries, `profileKernels`) of the two scans, forward and backward, at the issue's
 * benchmark sizes on a GPU (tiny sizes on a CPU adapter): where the time of each pass goes.
 *
 *     deno bench -A tests/scan_profile_bench.ts
 *     SCAN_PROFILE=ssd SSD_NS=8,128 deno bench -A tests/scan_profile_bench.ts   # only the SSD scan, these N
 *     SCAN_PROFILE=ssd SSD_ALGORITHMS=chunked SSD_CHUNK=64 deno bench -A tests/scan_profile_bench.ts
 *                                          # only the chunked SSD scan, with chunks of 64 steps (default: its plan)
 */
import { flush, gpuInfo, initGpu, type KernelTime, profileKernels, trimPool } from "../lib/core/runtime.ts";
import { selectiveScan, selectiveScanBackward } from "../lib/ops/selective_scan.ts";
import {
  type SsdAlgorithm,
  type SsdDims,
  ssdScan,
  ssdScanGrads,
  type SsdScanOptions,
} from "../lib/ops/ssd_scan.ts";
import { disposeTree, tensor, tidy } from "../lib/core/tensor.ts";
import { rampClocks, ssdInputs } from "./bench_util.ts";
import { key, split, uniform } from "../lib/core/random.ts";

await initGpu();
const big = !gpuInfo().isCpu;
const reps = big ? 5 : 1;
const only = Deno.env.get("SCAN_PROFILE") ?? "all";

function rand(k: number, shape: number[], lo = -1, hi = 1) {
  const n = shape.reduce((a, b) => a * b);
  return tensor(Float32Array.from(uniform(split(key(11), 12)[k], n, lo, hi)), shape);
}

/** `reps` calls of `f`, each in its own `tidy` and submitted on its own, so its buffers return to the pool. */
const run = (f: () => void) => () => {
  for (let i = 0; i < reps; i++) {
    tidy(f);
    flush();
  }
};

function table(title: string, times: KernelTime[]): void {
  const total = times.reduce((a, t) => a + t.seconds, 0);
  console.log(`\n### ${title}: ${(total / reps * 1e3).toFixed(3)} ms per call`);
  console.log("| kernel | dispatches per call | ms per call | share |\n|---|---|---|---|");
  for (const t of times) {
    console.log(
      `| ${t.name} | ${t.count / reps} | ${(t.seconds / reps * 1e3).toFixed(3)} | ${
        (t.seconds / total * 100).toFixed(0)
      }% |`,
    );
  }
}

if (only !== "ssd") {
  const [K, Bt, T, E, N] = big ? [1, 64, 512, 2048, 32] : [1, 2, 64, 64, 16];
  const act = [K, Bt, T, E], bn = [K, Bt, T, N];
  const x = {
    u: rand(0, act),
    delta: rand(1, act, 0.01, 1),
    A: rand(2, [K, E, N], -2, -0.1),
    B: rand(3, bn),
    C: rand(4, bn),
    D: rand(5, [K, E]),
    z: rand(6, act, -3, 3),
  };
  const dout = rand(7, act);
  run(() => void selectiveScan(x))(); // compile
  await rampClocks(run(() => void selectiveScanBackward(x, dout)), big ? 2 : 0);
  const dims = `Bt ${Bt}, T ${T}, E ${E}, N ${N}`;
  table(`selectiveScan forward (${dims})`, await profileKernels(run(() => void selectiveScan(x))));
  table(
    `selectiveScan backward (${dims})`,
    await profileKernels(run(() => void selectiveScanBackward(x, dout))),
  );
  disposeTree(x);
  dout.dispose();
  trimPool();
}

const ssdBase: SsdDims = big
  ? { K: 1, Bt: 64, T: 512, H: 32, P: 64, G: 1, N: 128 }
  : { K: 1, Bt: 2, T: 64, H: 2, P: 8, G: 1, N: 16 };
const ssdNs = Deno.env.get("SSD_NS")?.split(",").map(Number) ?? (big ? [128, 8] : [16]);
const ssdAlgorithms =
  (Deno.env.get("SSD_ALGORITHMS")?.split(",") ?? ["sequential", "chunked"]) as SsdAlgorithm[];
const ssdChunk = Deno.env.get("SSD_CHUNK") ? Number(Deno.env.get("SSD_CHUNK")) : undefined;
for (const N of only === "mamba1" ? [] : ssdNs) {
  for (const algorithm of ssdAlgorithms) {
    const { Bt, T, H, P, G } = ssdBase;
    const opts: SsdScanOptions = {
      algorithm,
      ...(algorithm === "chunked" && ssdChunk ? { chunk: ssdChunk } : {}),
    };
    const { dy, ...xs } = ssdInputs({ ...ssdBase, N });
    run(() => void ssdScan(xs, opts))(); // compile
    run(() => void ssdScanGrads(xs, dy, opts))();
    await rampClocks(run(() => void ssdScanGrads(xs, dy, opts)), big ? 2 : 0);
    const dims = `Bt ${Bt}, T ${T}, H ${H}, P ${P}, G ${G}, N ${N}; ${
      JSON.stringify(opts).replace(/"/g, "")
    }`;
    table(`ssdScan forward (${dims})`, await profileKernels(run(() => void ssdScan(xs, opts))));
    table(`ssdScan backward (${dims})`, await profileKernels(run(() => void ssdScanGrads(xs, dy, opts))));
    disposeTree(xs);
    dy.dispose();
    trimPool();
  }
}
