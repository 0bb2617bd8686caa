/**
 * Helpers for GPU benchmarks: time a recorded piece of GPU work honestly (warm up, record `reps` copies, wait for
 * the GPU to finish) and print a table of rates against the H100's limits.
 */
import { initGpu, sync } from "../lib/core/runtime.ts";
import { tensor } from "../lib/core/tensor.ts";
import { key, split, uniform } from "../lib/core/random.ts";
import type { SsdDims } from "../lib/ops/ssd_scan.ts";

/** The H100's fp32 peak (FLOP/s) and memory bandwidth (B/s), the limits our kernels are measured against. */
export const H100 = { flops: 67e12, bandwidth: 3e12 };

/**
 * Seconds per repetition of `record` (which only records GPU work). First keeps the GPU busy with it for
 * `rampSeconds` (the H200 idles at 345 MHz and needs a fraction of a second of load to reach its clock), then picks a
 * repetition count n (at least `reps`) so that a window lasts about `windowSeconds`, and times `trials` pairs of n
 * and 4n repetitions, each ended by one wait for the GPU. The difference of the two medians cancels the fixed cost
 * of the wait (~ms, and noisy). The difference is trusted only when it is at least half of the plain 4n average
 * (a fixed cost above half of a window means a hiccup, not a cost); otherwise the plain average is returned,
 * which can only overstate the time. (One timing of n and 4n, without the ramp or medians, gave products above the
 * GPU's peak on the H200, from windows whose clock changed in between.) The result includes the CPU's recording of
 * the dispatches when that, not the GPU, is the bottleneck.
 */
export async function timeGpu(
  record: () => void,
  reps = 3,
  warmup = 2,
  windowSeconds = 0.15,
  trials = 3,
  rampSeconds = 0.25,
): Promise<number> {
  await initGpu();
  for (let i = 0; i < warmup; i++) record();
  await sync();
  const run = async (n: number) => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) record();
    await sync();
    return (performance.now() - t0) / 1000;
  };
  let estimate = (await run(2)) / 2;
  for (let ramped = 2 * estimate; ramped < rampSeconds;) {
    const n = Math.max(1, Math.min(1000, Math.ceil(0.05 / Math.max(estimate, 1e-6))));
    const t = await run(n);
    estimate = t / n;
    ramped += t;
  }
  const n = Math.max(reps, Math.min(5000, Math.ceil(windowSeconds / Math.max(estimate, 1e-6))));
  const t1s: number[] = [], t4s: number[] = [];
  for (let i = 0; i < Math.max(1, trials); i++) {
    t1s.push(await run(n));
    t4s.push(await run(4 * n));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const t1 = median(t1s), t4 = median(t4s);
  const diff = (t4 - t1) / (3 * n), average = t4 / (4 * n);
  return diff >= 0.5 * average && diff <= average ? diff : average;
}

/**
 * Keeps the GPU busy with `record` (submitted and waited for in batches) for `seconds`. The H100 idles at 345 MHz
 * and reaches its 1980 MHz clock only under load (nvidia-smi, measured): kernels timed from a cold start ran up
 * to 3x slower, so benchmarks that time single calls (timestamp profiles) call this first.
 */
export async function rampClocks(record: () => void, seconds = 2): Promise<void> {
  await initGpu();
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    for (let i = 0; i < 4; i++) record();
    await sync();
  }
}

/** One row of a benchmark report. */
export interface BenchRow {
  name: string;
  seconds: number;
  flops?: number;
  bytes?: number;
}

/** Prints a Markdown table: time, TFLOP/s and GB/s with their fractions of the H100 limits. */
export function report(title: string, rows: BenchRow[]): void {
  const lines = [
    `\n### ${title}`,
    "| case | time | TFLOP/s | of 67 | GB/s | of 3000 |",
    "|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const tf = r.flops ? r.flops / r.seconds / 1e12 : undefined;
    const gbs = r.bytes ? r.bytes / r.seconds / 1e9 : undefined;
    lines.push(
      `| ${r.name} | ${(r.seconds * 1e3).toFixed(3)} ms | ${tf?.toFixed(2) ?? "-"} | ${
        tf ? ((tf / 67) * 100).toFixed(1) + "%" : "-"
      } | ${gbs?.toFixed(0) ?? "-"} | ${gbs ? ((gbs / 3000) * 100).toFixed(1) + "%" : "-"} |`,
    );
  }
  console.log(lines.join("\n"));
}

/**
 * Random inputs of an SSD scan of sizes `d` and a cotangent `dy` of its output (fixed key): x, B, C, D, dy uniform
 * in [-1, 1], dt in [0.01, 1], A in [-2, -0.1].
 */
export function ssdInputs(d: SsdDims) {
  const { K, Bt, T, H, P, G, N } = d;
  const ks = split(key(7), 7);
  const t = (i: number, shape: number[], lo = -1, hi = 1) =>
    tensor(Float32Array.from(uniform(ks[i], shape.reduce((a, b) => a * b), lo, hi)), shape);
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
