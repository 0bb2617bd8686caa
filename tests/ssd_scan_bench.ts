/**
 * Benchmark of the Mamba 2 scan (ssdScan), both GPU algorithms (sequential and chunked): forward, backward, and
 * both, at the paper's Mamba 2 block size (Bt 64, T 512, E = H·P = 2048, P 64, N 128, G 1, K 1) on a GPU; a tiny
 * size on a CPU adapter. On a GPU it then sweeps N (the figure varies the state size from 8 to 256) for both, and
 * the knobs of each, until a time budget (SSD_BENCH_SECONDS, default 240).
 *
 * "Bytes" are what the op must move at least: forward reads x, dt, B, C and writes y; backward reads x, dt, B,
 * C, dy and writes dx, d dt, dB, dC. "FLOPs" are the fp32 flop floor, the fewest any exact algorithm needs
 * (lib/ops/ssd_scan.ts): per step and head min(4·P·N, T·P) forward (the recurrent form's update and read-out, or
 * the causal half of the quadratic form) and min(8·P·N, 2·T·P) backward; so the "of 67" column is the share of the
 * floor's time at the fp32 peak, the same yardstick for both algorithms.
 *
 *     deno bench -A tests/ssd_scan_bench.ts
 *     SSD_BENCH_SECONDS=400 deno bench -A tests/ssd_scan_bench.ts   # the whole sweep
 */
import { flush, initGpu, sync, trimPool } from "../lib/core/runtime.ts";
import {
  type SsdAlgorithm,
  type SsdDims,
  ssdScan,
  ssdScanGrads,
  ssdScanLayout,
  type SsdScanOptions,
} from "../lib/ops/ssd_scan.ts";
import { ssdChunkedLayout } from "../lib/ops/ssd_chunked.ts";
import { disposeTree, tidy } from "../lib/core/tensor.ts";
import { type BenchRow, report, ssdInputs, timeGpu } from "./bench_util.ts";

const info = await initGpu();
const big = !info.isCpu;
const base: SsdDims = big
  ? { K: 1, Bt: 64, T: 512, H: 32, P: 64, G: 1, N: 128 }
  : { K: 1, Bt: 2, T: 64, H: 2, P: 8, G: 1, N: 16 };

const inputs = ssdInputs;

/** Compulsory bytes and the fp32 flop floor (see the module comment). */
function cost(d: SsdDims) {
  const X = d.K * d.Bt * d.T * d.H * d.P, DT = d.K * d.Bt * d.T * d.H, BC = d.K * d.Bt * d.T * d.G * d.N;
  const stepsHeads = d.K * d.Bt * d.T * d.H;
  return {
    fwd: { bytes: 4 * (2 * X + DT + 2 * BC), flops: stepsHeads * Math.min(4 * d.P * d.N, d.T * d.P) },
    bwd: { bytes: 4 * (3 * X + 2 * DT + 4 * BC), flops: stepsHeads * Math.min(8 * d.P * d.N, 2 * d.T * d.P) },
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
const seqLayout = (d: SsdDims, o: SsdScanOptions = {}) => {
  const f = ssdScanLayout("forward", d.P, d.N, o), b = ssdScanLayout("backward", d.P, d.N, o);
  const one = (l: typeof f) => `${l.TP}×${l.TN} threads of ${l.PR}×${4 * l.NC4} states, tile ${l.S}`;
  return `sequential: forward ${one(f)}; backward ${one(b)}`;
};
const chunkedLayout = (d: SsdDims, o: SsdScanOptions = {}) => {
  const L = ssdChunkedLayout(d, o), p = L.plan;
  const tile = (t: typeof L.out) => `${t.TY}×${t.TX} threads of ${t.RM}×${t.RN}`;
  return `chunked: blocks of ${p.QB}, ${p.NB} per chunk, ${p.nC} chunks; tiles: state ${tile(L.state)} ` +
    `(${L.NSP}×${L.NSN}), outputs ${tile(L.out)} (${L.NPT}), pairs ${tile(L.pair)}, dB/dC ${
      tile(L.dbc)
    } (${L.NNT})`;
};
const ALGORITHMS: SsdAlgorithm[] = ["sequential", "chunked"];
const layoutOf = (a: SsdAlgorithm, d: SsdDims, o: SsdScanOptions = {}) =>
  a === "chunked" ? chunkedLayout(d, o) : seqLayout(d, o);

console.log(`\nssdScan on ${info.description}; ${dimsStr(base)}`);
const rows: BenchRow[] = [];
for (const algorithm of ALGORITHMS) {
  console.log(layoutOf(algorithm, base));
  rows.push(...await measure(base, algorithm, { algorithm }));
}
report(`ssdScan, ${dimsStr(base)} (TFLOP/s of the flop floor)`, rows);
// On a GPU: the state-size sweep for both algorithms, then the knobs of each, until a time budget (the device
// time is limited).
if (big) {
  const deadline = performance.now() + Number(Deno.env.get("SSD_BENCH_SECONDS") ?? 240) * 1000;
  const sweep: BenchRow[] = [];
  for (const N of [8, 32, 64, 256]) {
    for (const algorithm of ALGORITHMS) {
      if (performance.now() > deadline) break;
      const d = { ...base, N };
      console.log(`N ${N}: ${layoutOf(algorithm, d)}`);
      sweep.push(...await measure(d, `N ${N} ${algorithm}`, { algorithm }));
    }
  }
  report(`ssdScan vs state size N (${dimsStr({ ...base, N: 0 }).replace(", N 0", "")})`, sweep);
  const knobs: BenchRow[] = [];
  for (
    const o of [
      { block: 64, chunk: 64 }, // one block per chunk: the state passes run
      { block: 32, chunk: 32 },
      { block: 32 }, // one chunk of 32-step blocks
      { block: 64, threadTile: [8, 8] },
      { block: 64, threadTile: [4, 4] },
      { block: 64, threadTile: [8, 4] },
      { block: 64, slice: 32 },
      { block: 64, slice: 8 },
      { tile: 2 },
      { tile: 4 },
      { rowsPerThread: 8, colsPerThread: 8 },
    ] as SsdScanOptions[]
  ) {
    if (performance.now() > deadline) break;
    const algorithm: SsdAlgorithm = o.block !== undefined ? "chunked" : "sequential";
    const label = `${algorithm} ${JSON.stringify(o).replace(/"/g, "")}`;
    console.log(`${label}: ${layoutOf(algorithm, base, o)}`);
    knobs.push(...await measure(base, label, { ...o, algorithm }));
  }
  // the N sweep's ends with one block per chunk, against the cost model's choice above
  for (const N of [8, 256]) {
    if (performance.now() > deadline) break;
    const d = { ...base, N };
    const o: SsdScanOptions = { algorithm: "chunked", block: 64, chunk: 64 };
    console.log(`N ${N} chunk 64: ${chunkedLayout(d, o)}`);
    knobs.push(...await measure(d, `N ${N} chunked {block:64,chunk:64}`, o));
  }
  report(`ssdScan knobs, ${dimsStr(base)}`, knobs);
}

const bench = inputs(base);
const { dy: benchDy, ...benchX } = bench;
for (const algorithm of ALGORITHMS) {
  Deno.bench(`ssdScan ${algorithm} forward (${dimsStr(base)})`, async () => {
    tidy(() => ssdScan(benchX, { algorithm })).dispose();
    await sync();
  });
  Deno.bench(`ssdScan ${algorithm} forward + backward (${dimsStr(base)})`, async () => {
    tidy(() => ssdScan(benchX, { algorithm })).dispose();
    disposeTree(tidy(() => ssdScanGrads(benchX, benchDy, { algorithm })));
    await sync();
  });
}
