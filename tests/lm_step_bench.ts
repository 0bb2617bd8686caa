/**
 * One full training step of a language model: forward + backward + AdamW (with the global-norm clip), recorded
 * with no readback and submitted at its end, as the training loop runs it. Reports time per step, per run and
 * step (a group of K runs trains K models at once), tokens/s, and the matmul FLOP rate implied (6 · matmul-params
 * · tokens, the dominant term) against the H100's 67 TFLOP/s.
 *
 * Case sets (LM_BENCH):
 * - `default`: a 2-layer, width-1024 Mamba 2 LM (N 128, P 64) on batch 64 × T 128, the fig7 quick model
 *   (K 4, D 256, N 64 and 256, B 32 × T 220), and two Mamba 1 LMs at K 4, B 32 × T 220: fig4 / fig5 quick's
 *   (8 layers, D 128, N 32) and a 2-layer one (D 256, N 16).
 * - `side`: the shapes of bench/side_by_side.sh: the two models above (fig7 quick at K 4 and K 1, as PyTorch
 *   trains one run), a T sweep 128..4096 of the fig7 model at 8192 tokens per run (B = 8192 / T) and K 4, and a
 *   K sweep 1, 2, 4, 8 of the fig7 quick model.
 * On a CPU adapter, or with LM_BENCH_TINY=1, every case shrinks to a tiny model of the same structure (D 32, N 16,
 * P 16, B ≤ 2, T ≤ 32), so the driver can be checked on llvmpipe; its times mean nothing there.
 *
 *   deno bench -A tests/lm_step_bench.ts                    (or deno run -A for the table only)
 *   LM_BENCH=side LM_BENCH_JSON=out.json deno run -A tests/lm_step_bench.ts   # also one JSON object per case
 *   LM_PROFILE=1 deno run -A tests/lm_step_bench.ts         # also the GPU time per kernel of one step
 *   LM_BENCH_ONLY="Mamba 1" deno run -A tests/lm_step_bench.ts   # only the cases whose name contains this
 */
import { valueAndGrad } from "../lib/ops/autodiff.ts";
import { MAMBA1_DEFAULTS } from "../lib/nn/mamba1.ts";
import { MAMBA2_DEFAULTS } from "../lib/nn/mamba2.ts";
import { initLM, type LMConfig, lmLoss, type LMParams } from "../lib/nn/lm.ts";
import { adamwInit, adamwStep, disposeAdamW } from "../lib/train/optim.ts";
import { key, randint } from "../lib/core/random.ts";
import {
  flush,
  gpuInfo,
  initGpu,
  profileKernels,
  runtimeStats,
  sync,
  trimPool,
} from "../lib/core/runtime.ts";
import { disposeTree, keep, leaves, type Tensor, tensor, tidy } from "../lib/core/tensor.ts";
import { writeJsonAtomic } from "../lib/core/fs.ts";
import { rampClocks, report, timeGpu } from "./bench_util.ts";

let available = true;
let isCpu = true;
try {
  isCpu = (await initGpu()).isCpu;
} catch (e) {
  available = false;
  console.warn(`lm step bench skipped: ${(e as Error).message}`);
}
const tiny = isCpu || Deno.env.get("LM_BENCH_TINY") === "1";
const caseSet = Deno.env.get("LM_BENCH") ?? "default";
if (!["default", "side"].includes(caseSet)) {
  console.error(`LM_BENCH must be "default" or "side", got "${caseSet}"`);
  Deno.exit(2);
}

/** One timed case: K runs of a Mamba 2 (or Mamba 1) LM (D, layers, N, P, vocab) on batch B × T each. */
interface Case {
  name: string;
  K: number;
  B: number;
  T: number;
  d: number;
  layers: number;
  N: number;
  /** Mamba 2's head dim (unused by Mamba 1). */
  P: number;
  vocab: number;
  mixer?: "mamba1" | "mamba2";
}

const configOf = (c: Case): LMConfig => ({
  vocab: c.vocab,
  dModel: c.d,
  normEps: 1e-5,
  layers: Array.from(
    { length: c.layers },
    () =>
      c.mixer === "mamba1"
        ? { ...MAMBA1_DEFAULTS, dState: c.N }
        : { ...MAMBA2_DEFAULTS, dState: c.N, headDim: c.P },
  ),
});

const D1024 = { d: 1024, layers: 2, N: 128, P: 64, vocab: 32 };
const FIG7 = { d: 256, layers: 2, N: 64, P: 64, vocab: 30 };
// The Mamba 1 models of fig4 / fig5 quick (8 layers, D 128, N 32) and a wider 2-layer one.
const M1_DEEP = { mixer: "mamba1" as const, d: 128, layers: 8, N: 32, P: 0, vocab: 30 };
const M1_WIDE = { mixer: "mamba1" as const, d: 256, layers: 2, N: 16, P: 0, vocab: 30 };

function cases(): Case[] {
  const out: Case[] = [];
  const add = (name: string, c: Omit<Case, "name">) => out.push({ name, ...c });
  if (caseSet === "default") {
    add("Mamba 2, 2 layers, D 1024, N 128, B 64 × T 128", { ...D1024, K: 1, B: 64, T: 128 });
    add("fig7 quick: K 4, D 256, N 64, B 32 × T 220", { ...FIG7, K: 4, B: 32, T: 220 });
    add("fig7 quick: K 4, D 256, N 256, B 32 × T 220", { ...FIG7, N: 256, K: 4, B: 32, T: 220 });
    add("Mamba 1, 8 layers, D 128, N 32: K 4, B 32 × T 220", { ...M1_DEEP, K: 4, B: 32, T: 220 });
    add("Mamba 1, 2 layers, D 256, N 16: K 4, B 32 × T 220", { ...M1_WIDE, K: 4, B: 32, T: 220 });
  } else {
    add("d1024", { ...D1024, K: 1, B: 64, T: 128 });
    add("fig7 K1", { ...FIG7, K: 1, B: 32, T: 220 });
    add("fig7 K4", { ...FIG7, K: 4, B: 32, T: 220 });
    for (const T of [128, 256, 512, 1024, 2048, 4096]) {
      add(`fig7 T${T} K4`, { ...FIG7, K: 4, B: 8192 / T, T });
    }
    for (const K of [1, 2, 4, 8]) add(`fig7 K${K} sweep`, { ...FIG7, K, B: 32, T: 220 });
  }
  // LM_BENCH_ONLY=text keeps the cases whose name contains it.
  const only = Deno.env.get("LM_BENCH_ONLY");
  if (only) out.splice(0, out.length, ...out.filter((c) => c.name.includes(only)));
  if (!tiny) return out;
  // Same structure, tiny sizes: D 32, N 16, P 16 (2 heads), B ≤ 2, T ≤ 32 (a T sweep keeps its order).
  return out.map((c) => ({
    ...c,
    d: 32,
    N: 16,
    P: 16,
    B: Math.min(c.B, 2),
    T: Math.min(32, Math.max(8, Math.round(c.T / 32))),
  }));
}

let lastStep: (() => void) | null = null;

async function measure(c: Case) {
  const cfg = configOf(c);
  const { params, consts } = initLM(Array.from({ length: c.K }, (_, k) => key(k)), cfg);
  keep([params, consts]);
  const opt = adamwInit(params);
  const n = c.K * c.B * c.T;
  const ids = tensor(randint(key(99), n, 0, cfg.vocab), [c.K, c.B, c.T], "i32");
  const targets = tensor(randint(key(98), n, 0, cfg.vocab), [c.K, c.B, c.T], "i32");
  const mask = tensor(new Float32Array(n).fill(1), [c.K, c.B, c.T]);
  const vg = valueAndGrad((p: LMParams) => lmLoss(p, consts, { inputs: ids, targets, mask }, cfg));
  const lr = Array(c.K).fill(1e-4);
  // As trainLM runs a step: recorded, then submitted as a whole.
  const step = () => {
    tidy(() => {
      const { grads } = vg(params);
      adamwStep(params, grads, opt, { lr });
    });
    flush();
  };
  const d0 = runtimeStats().dispatches;
  step();
  const dispatches = runtimeStats().dispatches - d0;
  await sync();
  const seconds = await timeGpu(step, isCpu ? 1 : 5, 1);
  // The CPU's share: the median of 5 recordings of a warm step (after the timed ones, so the JIT has compiled
  // the recording path; a single early recording varied by 2x), each submitted and waited for before the next.
  const recordings: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    tidy(() => {
      const { grads } = vg(params);
      adamwStep(params, grads, opt, { lr });
    });
    recordings.push((performance.now() - t0) / 1000);
    flush();
    await sync();
  }
  const recordSeconds = recordings.sort((a, b) => a - b)[2];
  lastStep = step;
  if (Deno.env.get("LM_PROFILE") === "1") await profileStep(c.name, step, seconds);
  // Matmul params per run (everything but the norms' and the scan's per-head vectors), 6 FLOP per param-token.
  const matmulParams = leaves(params).filter((t: Tensor) => t.rank === 3).reduce((s, t) => s + t.size, 0) /
    c.K;
  const result = { seconds, recordSeconds, flops: 6 * matmulParams * n, dispatches, tokens: n };
  if (caseSet === "side") {
    // Free this case's model before the next (the side set runs many).
    disposeAdamW(opt);
    disposeTree([params, consts, ids, targets, mask]);
    lastStep = null;
    trimPool();
  }
  return result;
}

/** Prints the GPU time per kernel of one step (timestamp queries), the longest first. */
async function profileStep(name: string, step: () => void, stepSeconds: number) {
  await rampClocks(step, isCpu ? 0 : 2);
  const times = await profileKernels(step);
  const total = times.reduce((a, t) => a + t.seconds, 0);
  console.log(
    `\n### ${name}: ${(total * 1e3).toFixed(2)} ms of kernel time per step (step ${
      (stepSeconds * 1e3).toFixed(1)
    } ms)`,
  );
  console.log("| kernel | dispatches | ms | share |\n|---|---|---|---|");
  for (const t of times) {
    console.log(
      `| ${t.name} | ${t.count} | ${(t.seconds * 1e3).toFixed(3)} | ${
        (t.seconds / total * 100).toFixed(1)
      }% |`,
    );
  }
}

if (available) {
  const rows = [];
  const json = [];
  for (const c of cases()) {
    const r = await measure(c);
    console.log(
      `${c.name}: ${(r.seconds * 1e3).toFixed(2)} ms/step (${
        (r.seconds / c.K * 1e3).toFixed(2)
      } ms per run), ` +
        `${r.dispatches} dispatches, recording ${(r.recordSeconds * 1e3).toFixed(2)} ms, ` +
        `${(r.tokens / r.seconds / 1e3).toFixed(0)}k tokens/s`,
    );
    rows.push({ name: `${c.name} (K ${c.K}, B ${c.B} × T ${c.T})`, seconds: r.seconds, flops: r.flops });
    json.push({
      framework: "mimetic",
      device: gpuInfo().description,
      tiny,
      ...c,
      ms_per_step: r.seconds * 1e3,
      ms_per_run_step: r.seconds / c.K * 1e3,
      record_ms: r.recordSeconds * 1e3,
      dispatches: r.dispatches,
      tokens_per_s: r.tokens / r.seconds,
    });
  }
  report("LM training step (forward + backward + AdamW)", rows);
  const out = Deno.env.get("LM_BENCH_JSON");
  if (out) writeJsonAtomic(out, json);
}

Deno.bench(
  { name: "LM step: the last case", ignore: lastStep === null, n: 3, warmup: 1 },
  async () => {
    lastStep!();
    await sync();
  },
);
