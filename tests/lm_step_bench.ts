/**
 * One full training step of a language model: forward + backward + AdamW, recorded with no readback, as the
 * training loop runs it. On a GPU: a 2-layer, width-1024 Mamba 2 LM (N 128, P 64) on batch 64 × T 128, plus the
 * fig7 quick-scale model; on a CPU adapter a tiny model. Reports time per step, tokens/s, and the matmul FLOP rate
 * implied (6 · matmul-params · tokens, the dominant term) against the H100's 67 TFLOP/s.
 *
 *   deno bench -A tests/lm_step_bench.ts      (or deno run -A for the table only)
 *   LM_PROFILE=1 deno run -A tests/lm_step_bench.ts   # also the GPU time per kernel of one step (profileKernels)
 */
import { valueAndGrad } from "../lib/ops/autodiff.ts";
import { MAMBA2_DEFAULTS } from "../lib/nn/mamba2.ts";
import { initLM, type LMConfig, lmLoss, type LMParams } from "../lib/nn/lm.ts";
import { adamwInit, adamwStep } from "../lib/train/optim.ts";
import { key, randint } from "../lib/core/random.ts";
import { initGpu, profileKernels, runtimeStats, sync } from "../lib/core/runtime.ts";
import { keep, leaves, type Tensor, tensor, tidy } from "../lib/core/tensor.ts";
import { rampClocks, report, timeGpu } from "./bench_util.ts";

let isCpu = true;
try {
  isCpu = (await initGpu()).isCpu;
} catch (e) {
  console.warn(`lm step bench skipped: ${(e as Error).message}`);
}

interface Case {
  name: string;
  K: number;
  B: number;
  T: number;
  cfg: LMConfig;
}
const mamba2 = (dModel: number, layers: number, N: number, P: number, vocab: number): LMConfig => ({
  vocab,
  dModel,
  normEps: 1e-5,
  layers: Array.from({ length: layers }, () => ({ ...MAMBA2_DEFAULTS, dState: N, headDim: P })),
});
const CASES: Case[] = isCpu
  ? [{ name: "tiny Mamba 2 (CPU adapter)", K: 1, B: 4, T: 32, cfg: mamba2(32, 2, 16, 16, 30) }]
  : [
    {
      name: "Mamba 2, 2 layers, D 1024, N 128, B 64 × T 128",
      K: 1,
      B: 64,
      T: 128,
      cfg: mamba2(1024, 2, 128, 64, 32),
    },
    {
      name: "fig7 quick: K 4, D 256, N 64, B 32 × T 220",
      K: 4,
      B: 32,
      T: 220,
      cfg: mamba2(256, 2, 64, 64, 30),
    },
    {
      name: "fig7 quick: K 4, D 256, N 256, B 32 × T 220",
      K: 4,
      B: 32,
      T: 220,
      cfg: mamba2(256, 2, 256, 64, 30),
    },
  ];

let lastStep: (() => void) | null = null;

async function measure(c: Case) {
  const { params, consts } = initLM(Array.from({ length: c.K }, (_, k) => key(k)), c.cfg);
  keep([params, consts]);
  const opt = adamwInit(params);
  const n = c.K * c.B * c.T;
  const ids = tensor(randint(key(99), n, 0, c.cfg.vocab), [c.K, c.B, c.T], "i32");
  const targets = tensor(randint(key(98), n, 0, c.cfg.vocab), [c.K, c.B, c.T], "i32");
  const mask = tensor(new Float32Array(n).fill(1), [c.K, c.B, c.T]);
  const vg = valueAndGrad((p: LMParams) => lmLoss(p, consts, { inputs: ids, targets, mask }, c.cfg));
  const step = () =>
    tidy(() => {
      const { grads } = vg(params);
      adamwStep(params, grads, opt, { lr: Array(c.K).fill(1e-4) });
    });
  const d0 = runtimeStats().dispatches;
  step();
  const dispatches = runtimeStats().dispatches - d0;
  const seconds = await timeGpu(step, isCpu ? 1 : 5, 1);
  lastStep = step;
  if (Deno.env.get("LM_PROFILE") === "1") await profileStep(c.name, step, seconds);
  // Matmul params per run (everything but the norms' and the scan's per-head vectors), 6 FLOP per param-token.
  const matmulParams = leaves(params).filter((t: Tensor) => t.rank === 3).reduce((s, t) => s + t.size, 0) /
    c.K;
  return { seconds, flops: 6 * matmulParams * c.B * c.T * c.K, dispatches, tokens: n };
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

const rows = [];
for (const c of CASES) {
  const r = await measure(c);
  console.log(
    `${c.name}: ${(r.seconds * 1e3).toFixed(1)} ms/step, ${r.dispatches} dispatches, ${
      (r.tokens / r.seconds / 1e3).toFixed(0)
    }k tokens/s`,
  );
  rows.push({ name: c.name, seconds: r.seconds, flops: r.flops });
}
report("LM training step (forward + backward + AdamW)", rows);

Deno.bench(
  { name: `LM step: ${CASES.at(-1)!.name}`, ignore: lastStep === null, n: 3, warmup: 1 },
  async () => {
    lastStep!();
    await sync();
  },
);
