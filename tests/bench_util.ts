/**
 * Helpers for GPU benchmarks: time a recorded piece of GPU work honestly (warm up, record `reps` copies, wait for
 * the GPU to finish) and print a table of rates against the H100's limits.
 */
import { initGpu, sync } from "../lib/core/runtime.ts";

/** The H100's fp32 peak (FLOP/s) and memory bandwidth (B/s), the limits our kernels are measured against. */
export const H100 = { flops: 67e12, bandwidth: 3e12 };

/**
 * Seconds per repetition of `record` (which only records GPU work). Picks a repetition count n (at least `reps`)
 * so that a window lasts about `windowSeconds`, times n and 4n repetitions, each ended by one wait for the GPU, and
 * takes the difference, so the fixed cost of the wait (~ms, and noisy) cancels. The result includes the CPU's
 * recording of the dispatches when that, not the GPU, is the bottleneck.
 */
export async function timeGpu(
  record: () => void,
  reps = 3,
  warmup = 2,
  windowSeconds = 0.15,
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
  const estimate = (await run(2)) / 2;
  const n = Math.max(reps, Math.min(5000, Math.ceil(windowSeconds / Math.max(estimate, 1e-6))));
  const t1 = await run(n);
  const t4 = await run(4 * n);
  const diff = (t4 - t1) / (3 * n);
  // On a noisy machine the difference can come out non-positive; fall back to the plain average then.
  return diff > 0 ? diff : t4 / (4 * n);
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
