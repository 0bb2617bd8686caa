/**
 * Selective scan (Mamba 1) throughput: forward, backward and both at Bt 64, T 512, E 2048, N 32, K 1 on a GPU
 * (Bt 2, T 256, E 256, N 16 on a CPU adapter), as GB/s of the bytes the op must move against the H100's 3 TB/s.
 * Before timing, each configuration is checked against the float64 reference at a mid size, so a GPU run also
 * checks configurations the CPU tests do not reach (SCAN_SWEEP variants, large channel counts).
 *
 *   deno bench -A tests/selective_scan_bench.ts            # table + Deno.bench
 *   SCAN_SWEEP=1 deno bench -A tests/selective_scan_bench.ts  # also other tile / states / channel settings
 *
 * Minimum bytes: forward reads u, Δ, z, B, C, A, D and writes y; backward reads u, Δ, z, dout, B, C, A, D and
 * writes du, dΔ, dz, dB, dC, dA, dD. The design moves more (see lib/ops/selective_scan.ts): the backward's two
 * sweeps both read u, Δ, z, dout, and pass g·F (K, Bt, T, E) and the chunk states between them.
 */
import { H100, report, timeGpu } from "./bench_util.ts";
import { maxRelError, randomInputs } from "./harness.ts";
import { flush, gpuInfo, initGpu, liveGpuBytes, sync } from "../lib/core/runtime.ts";
import {
  profileSelectiveScanBackward,
  selectiveScan,
  selectiveScanBackward,
  selectiveScanConfig,
  type SelectiveScanDims,
  type SelectiveScanInputs,
  type SelectiveScanOptions,
  selectiveScanRef,
  selectiveScanVjpRef,
} from "../lib/ops/selective_scan.ts";
import { readTensors, type Tensor, tensor, tidy } from "../lib/core/tensor.ts";

await initGpu();
const cpu = gpuInfo().isCpu;
const sweep = Deno.env.get("SCAN_SWEEP") === "1";
console.log(`device: ${gpuInfo().description}; H100 bandwidth ${H100.bandwidth / 1e9} GB/s`);

const variants: SelectiveScanOptions[] = sweep
  ? [
    {},
    { tile: 2 },
    { tile: 8 },
    { statesPerThread: 4 },
    { channelsPerThread: 2 },
    { channelsPerThread: 4 },
  ]
  : [{}];
const vname = (o: SelectiveScanOptions) => (Object.keys(o).length ? JSON.stringify(o) : "default");

/** Random inputs in their valid ranges, as tensors (float32 fill for the big case: float64 would need GBs). */
function inputs(d: SelectiveScanDims, seed: number): { x: SelectiveScanInputs; dout: Tensor } {
  const { K, Bt, T, E, N } = d;
  let s = seed >>> 0;
  const fill = (n: number, lo: number, hi: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      a[i] = lo + (hi - lo) * (s / 2 ** 32);
    }
    return a;
  };
  const act = [K, Bt, T, E], bn = [K, Bt, T, N], n = K * Bt * T * E, m = K * Bt * T * N;
  return {
    x: {
      u: tensor(fill(n, -1, 1), act),
      delta: tensor(fill(n, 0.01, 1), act),
      A: tensor(fill(K * E * N, -2, -0.1), [K, E, N]),
      B: tensor(fill(m, -1, 1), bn),
      C: tensor(fill(m, -1, 1), bn),
      D: tensor(fill(K * E, -1, 1), [K, E]),
      z: tensor(fill(n, -3, 3), act),
    },
    dout: tensor(fill(n, -1, 1), act),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Correctness of each configuration at a mid size

const failed = new Set<SelectiveScanOptions>();

{
  const d: SelectiveScanDims = cpu
    ? { K: 2, Bt: 1, T: 70, E: 64, N: 16 }
    : { K: 2, Bt: 2, T: 300, E: 256, N: 32 };
  const { K, Bt, T, E, N } = d;
  const act = [K, Bt, T, E], bn = [K, Bt, T, N];
  const specs = [
    { shape: act },
    { shape: act, range: [0.01, 1] as [number, number] },
    { shape: [K, E, N], range: [-2, -0.1] as [number, number] },
    { shape: bn },
    { shape: bn },
    { shape: [K, E] },
    { shape: act, range: [-3, 3] as [number, number] },
    { shape: act },
  ];
  const [u, delta, A, B, C, D, z, dout] = randomInputs(specs, 4242);
  const y = selectiveScanRef({ u, delta, A, B, C, D, z }, d);
  const g = selectiveScanVjpRef({ u, delta, A, B, C, D, z }, d, dout);
  const want = [y, g.du, g.ddelta, g.dA, g.dB, g.dC, g.dD, g.dz!];
  for (const o of variants) {
    const outs = tidy(() => {
      const x = {
        u: tensor(u, act),
        delta: tensor(delta, act),
        A: tensor(A, [K, E, N]),
        B: tensor(B, bn),
        C: tensor(C, bn),
        D: tensor(D, [K, E]),
        z: tensor(z, act),
      };
      const gr = selectiveScanBackward(x, tensor(dout, act), o);
      return [selectiveScan(x, o), gr.du, gr.ddelta, gr.dA, gr.dB, gr.dC, gr.dD, gr.dz!];
    });
    const got = await readTensors(outs);
    outs.forEach((t) => t.dispose());
    const errs = want.map((w, i) => maxRelError(got[i], w));
    const names = ["y", "du", "dΔ", "dA", "dB", "dC", "dD", "dz"];
    console.log(
      `check ${vname(o)} at ${JSON.stringify(d)}: ${
        names.map((n, i) => `${n} ${errs[i].toExponential(1)}`).join(", ")
      }`,
    );
    if (!errs.every((e) => e < 1e-4)) {
      if (vname(o) === "default") throw new Error("selectiveScan does not match the reference");
      console.log(`MISMATCH: ${vname(o)} is left out of the timings`);
      failed.add(o);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Timings

const d: SelectiveScanDims = cpu
  ? { K: 1, Bt: 2, T: 256, E: 256, N: 16 }
  : { K: 1, Bt: 64, T: 512, E: 2048, N: 32 };
const { K, Bt, T, E, N } = d;
const act = 4 * K * Bt * T * E, bn = 4 * K * Bt * T * N, par = 4 * K * E * (N + 1);
const fwdBytes = 4 * act + 2 * bn + par;
const bwdBytes = 7 * act + 4 * bn + 2 * par;
const { x, dout } = inputs(d, 1);
const reps = cpu ? 3 : 10;
// Warm the GPU up (clocks, pool buffers) before any timing: in a sweep, otherwise the first variant pays for it.
for (let i = 0; i < (cpu ? 1 : 20); i++) {
  tidy(() => {
    selectiveScan(x, {});
    selectiveScanBackward(x, dout, {});
  });
  flush();
}
await sync();
const rows = [];
for (const o of variants.filter((v) => !failed.has(v))) {
  const fwd = await timeGpu(
    () => {
      tidy(() => {
        selectiveScan(x, o); // not returned, so tidy frees it
      });
      flush();
    },
    reps,
    3,
  );
  const bwd = await timeGpu(
    () => {
      tidy(() => {
        selectiveScanBackward(x, dout, o);
      });
      flush();
    },
    reps,
    3,
  );
  // the backward's stages, for the profile: the forward sweep, then both sweeps (the rest is the reductions)
  const sweep1 = await timeGpu(
    () => {
      profileSelectiveScanBackward(x, dout, o, 1);
      flush();
    },
    reps,
    3,
  );
  const sweeps = await timeGpu(
    () => {
      profileSelectiveScanBackward(x, dout, o, 2);
      flush();
    },
    reps,
    3,
  );
  console.log(
    `${vname(o)}: config ${JSON.stringify(selectiveScanConfig(d, true, o))}; backward = forward sweep ${
      (sweep1 * 1e3).toFixed(3)
    } ms + reverse sweep ${((sweeps - sweep1) * 1e3).toFixed(3)} ms + reductions ${
      ((bwd - sweeps) * 1e3).toFixed(3)
    } ms`,
  );
  const tag = `${vname(o)}, Bt ${Bt} T ${T} E ${E} N ${N}`;
  rows.push(
    { name: `forward (${tag})`, seconds: fwd, bytes: fwdBytes },
    { name: `backward (${tag})`, seconds: bwd, bytes: bwdBytes },
    { name: `forward + backward (${tag})`, seconds: fwd + bwd, bytes: fwdBytes + bwdBytes },
  );
}
report("selectiveScan (minimum bytes moved)", rows);
console.log(`live GPU memory after timing: ${(liveGpuBytes() / 2 ** 20).toFixed(0)} MiB (inputs and dout)`);

Deno.bench({ name: `selectiveScan forward Bt ${Bt} T ${T} E ${E} N ${N}`, n: reps, warmup: 1 }, async () => {
  tidy(() => {
    selectiveScan(x, {});
  });
  await sync();
});
Deno.bench({ name: `selectiveScan backward Bt ${Bt} T ${T} E ${E} N ${N}`, n: reps, warmup: 1 }, async () => {
  tidy(() => {
    selectiveScanBackward(x, dout, {});
  });
  await sync();
});
