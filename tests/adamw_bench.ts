/**
 * AdamW update bandwidth: `deno bench -A tests/adamw_bench.ts` (or `deno run -A` for the table only).
 * ~100M parameters in all on a GPU, ~100k on a CPU adapter (llvmpipe). Bytes moved per parameter: the update reads
 * p, g, m, v and writes p, m, v (28 B); the global norm reads g once more (32 B with clipping). Times are wall
 * time per step including the CPU's recording of the dispatches (2T + 1 with clipping, T without, for T tensors),
 * so the many-tensor case shows the per-dispatch overhead.
 */
import { type AdamWHyper, adamwInit, type AdamWState, adamwStep, disposeAdamW } from "../lib/train/optim.ts";
import { type DeviceInfo, initGpu, sync, trimPool } from "../lib/core/runtime.ts";
import { disposeTree, full, type Tensor } from "../lib/core/tensor.ts";
import { type BenchRow, report, timeGpu } from "./bench_util.ts";

let info: DeviceInfo | null = null;
try {
  info = await initGpu();
} catch (e) {
  console.warn(`adamw bench skipped: ${(e as Error).message}`);
}
const onGpu = info !== null && !info.isCpu;
/** Parameters in all (over every run and tensor). */
const TOTAL = onGpu ? 100e6 : 1e5;
const K = 4;
const REPS = onGpu ? 20 : 3;

interface Case {
  name: string;
  tensors: number;
  /** Elements per run not a multiple of 4: the scalar kernel instead of vec4. */
  odd: boolean;
  clip: boolean;
}

const CASES: Case[] = [
  { name: "update only, 10 tensors, vec4", tensors: 10, odd: false, clip: false },
  { name: "norm + clip + update, 10 tensors, vec4", tensors: 10, odd: false, clip: true },
  { name: "update only, 10 tensors, odd sizes (scalar)", tensors: 10, odd: true, clip: false },
  { name: "norm + clip + update, 200 tensors, vec4", tensors: 200, odd: false, clip: true },
];

interface Setup {
  params: Tensor[];
  grads: Tensor[];
  state: AdamWState;
  hp: AdamWHyper;
  count: number;
}

function setup(c: Case): Setup {
  let n = Math.floor(TOTAL / (K * c.tensors) / 4) * 4;
  if (c.odd) n -= 1;
  const params = Array.from({ length: c.tensors }, () => full([K, n], 0.5));
  const grads = Array.from({ length: c.tensors }, () => full([K, n], 1e-3));
  const state = adamwInit(params);
  const hp: AdamWHyper = {
    lr: [1e-4, 2e-4, 5e-4, 1e-3],
    clipNorm: c.clip ? 1 : 0,
    gradNorm: c.clip,
  };
  return { params, grads, state, hp, count: K * n * c.tensors };
}

function teardown(s: Setup): void {
  disposeAdamW(s.state);
  disposeTree([s.params, s.grads]);
  trimPool();
}

if (info) {
  const rows: BenchRow[] = [];
  for (const c of CASES) {
    const s = setup(c);
    const seconds = await timeGpu(() => adamwStep(s.params, s.grads, s.state, s.hp), REPS);
    rows.push({
      name: `${c.name} (${(s.count / 1e6).toFixed(1)}M params)`,
      seconds,
      bytes: s.count * (c.clip ? 32 : 28),
    });
    teardown(s);
  }
  report(`AdamW step, K = ${K} runs, ${info.description}`, rows);
}

let benchSetup: Setup | null = null;
Deno.bench({
  name: `adamw step, norm + clip, ${(TOTAL / 1e6).toFixed(1)}M params`,
  ignore: info === null,
  async fn() {
    benchSetup ??= setup(CASES[1]);
    adamwStep(benchSetup.params, benchSetup.grads, benchSetup.state, benchSetup.hp);
    await sync();
  },
});
