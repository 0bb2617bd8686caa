/**
 * Benchmark of the Mamba 2 scan (ssdScan): forward, backward, and both, at the paper's Mamba 2 block size
 * (Bt 64, T 512, E = H·P = 2048, P 64, N 128, G 1, K 1) on a GPU; a tiny size on a CPU adapter. On a GPU it also
 * sweeps N (the figure varies the state size from 8 to 256).
 *
 * "Bytes" are what the op must move at least: forward reads x, dt, B, C and writes y; backward reads x, dt, B,
 * C, dy and writes dx, d dt, dB, dC. "FLOPs" count the algorithm's multiply-adds (2 each) on the P×N state per
 * step and head: forward 5 (update 3, y 2), backward 12 (recompute 3 + dC 2, Γ update 3 + dx 2 + dB 2).
 *
 *     deno bench -A tests/ssd_scan_bench.ts
 */
import { flush, initGpu, sync, trimPool } from "../lib/core/runtime.ts";
import {
  type SsdDims,
  ssdScan,
  ssdScanGrads,
  ssdScanLayout,
  type SsdScanOptions,
} from "../lib/ops/ssd_scan.ts";
import { disposeTree, tensor, tidy } from "../lib/core/tensor.ts";
import { key, split, uniform } from "../lib/core/random.ts";
import { type BenchRow, report, timeGpu } from "./bench_util.ts";

const info = await initGpu();
const big = !info.isCpu;
const base: SsdDims = big
  ? { K: 1, Bt: 64, T: 512, H: 32, P: 64, G: 1, N: 128 }
  : { K: 1, Bt: 2, T: 64, H: 2, P: 8, G: 1, N: 16 };

function inputs(d: SsdDims) {
  const { K, Bt, T, H, P, G, N } = d;
  const ks = split(key(7), 7);
  const f32 = (i: number, n: number, lo: number, hi: number) => Float32Array.from(uniform(ks[i], n, lo, hi));
  const t = (i: number, shape: number[], lo = -1, hi = 1) =>
    tensor(f32(i, shape.reduce((a, b) => a * b), lo, hi), shape);
  return {
    x: t(0, [K, Bt, T, H, P]),
    dt: t(1, [K, Bt, T, H], 0.01, 1),
    A: t(2, [K, H], -2, -0.1),
    B: t(3, [K, Bt, T, G, N]),
    C: t(4, [K, Bt, T, G, N]),
    D: t(5, [K, H]),
    dy: t(6, [K, Bt, T, H, P]),
  };
}

function cost(d: SsdDims) {
  const X = d.K * d.Bt * d.T * d.H * d.P, DT = d.K * d.Bt * d.T * d.H, BC = d.K * d.Bt * d.T * d.G * d.N;
  const state = d.K * d.Bt * d.T * d.H * d.P * d.N;
  return {
    fwd: { bytes: 4 * (2 * X + DT + 2 * BC), flops: 5 * state },
    bwd: { bytes: 4 * (3 * X + 2 * DT + 4 * BC), flops: 12 * state },
  };
}

// Each repetition is submitted on its own (flush) so that the buffers it frees return to the pool before the
// next one allocates: otherwise every repetition would allocate (and the driver clear) fresh buffers.
async function measure(d: SsdDims, label: string, opts: SsdScanOptions = {}): Promise<BenchRow[]> {
  const inp = inputs(d);
  const { dy, ...xs } = inp;
  const fwd = () => {
    tidy(() => ssdScan(xs, opts)).dispose();
    flush();
  };
  const bwd = () => {
    disposeTree(tidy(() => ssdScanGrads(xs, dy, opts)));
    flush();
  };
  // about 0.3 s of repetitions each (3 to 30)
  const time = async (f: () => void) => {
    const once = await timeGpu(f, 1, 1);
    const reps = big ? Math.max(3, Math.min(30, Math.round(0.3 / once))) : 2;
    return await timeGpu(f, reps, 1);
  };
  const tf = await time(fwd);
  const tb = await time(bwd);
  const tfb = await time(() => {
    fwd();
    bwd();
  });
  const c = cost(d);
  disposeTree(inp);
  trimPool();
  return [
    { name: `${label} forward`, seconds: tf, ...c.fwd },
    { name: `${label} backward`, seconds: tb, ...c.bwd },
    {
      name: `${label} fwd + bwd`,
      seconds: tfb,
      bytes: c.fwd.bytes + c.bwd.bytes,
      flops: c.fwd.flops + c.bwd.flops,
    },
  ];
}

const dimsStr = (d: SsdDims) => `Bt ${d.Bt}, T ${d.T}, H ${d.H}, P ${d.P}, G ${d.G}, N ${d.N}`;
const lay = (d: SsdDims, o: SsdScanOptions = {}) => {
  const f = ssdScanLayout("forward", d.P, d.N, o), b = ssdScanLayout("backward", d.P, d.N, o);
  const one = (l: typeof f) => `${l.TP}×${l.TN} threads of ${l.PR}×${4 * l.NC4} states, tile ${l.S}`;
  return `forward ${one(f)}; backward ${one(b)}`;
};

console.log(`\nssdScan on ${info.description}; ${dimsStr(base)}; ${lay(base)}`);
report(`ssdScan, ${dimsStr(base)}`, await measure(base, "ssdScan"));
// On a GPU: the state-size sweep, then the tuning knobs, until a time budget (the device time is limited).
if (big) {
  const deadline = performance.now() + Number(Deno.env.get("SSD_BENCH_SECONDS") ?? 120) * 1000;
  const rows: BenchRow[] = [];
  for (const N of [8, 32, 64, 256]) {
    if (performance.now() > deadline) break;
    const d = { ...base, N };
    console.log(`N ${N}: ${lay(d)}`);
    rows.push(...await measure(d, `N ${N}`));
  }
  report(`ssdScan vs state size N (${dimsStr({ ...base, N: 0 }).replace(", N 0", "")})`, rows);
  const knobs: BenchRow[] = [];
  for (
    const o of [
      { tile: 1 },
      { tile: 2 },
      { tile: 4 },
      { tile: 8 },
      { unrollSteps: true },
      { rowsPerThread: 4, colsPerThread: 8 },
      { rowsPerThread: 8, colsPerThread: 8 },
      { rowsPerThread: 4, colsPerThread: 16, tile: 8 },
    ] as SsdScanOptions[]
  ) {
    if (performance.now() > deadline) break;
    const label = JSON.stringify(o).replace(/"/g, "");
    console.log(`${label}: ${lay(base, o)}`);
    knobs.push(...await measure(base, label, o));
  }
  report(`ssdScan tuning knobs, ${dimsStr(base)}`, knobs);
}

const bench = inputs(base);
const { dy: benchDy, ...benchX } = bench;
Deno.bench(`ssdScan forward (${dimsStr(base)})`, async () => {
  tidy(() => ssdScan(benchX)).dispose();
  await sync();
});
Deno.bench(`ssdScan forward + backward (${dimsStr(base)})`, async () => {
  tidy(() => ssdScan(benchX)).dispose();
  disposeTree(tidy(() => ssdScanGrads(benchX, benchDy)));
  await sync();
});
