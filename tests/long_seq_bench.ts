/**
 * Step time and GPU memory against the length T: one training step (forward + backward + AdamW, recorded with no
 * readback) of the 2-layer, width-1024 Mamba 2 LM (N 128, P 64, vocab 32) at T = 1k, 2k, 4k, 8k, 16k, with the
 * same number of tokens per step at every T (B = tokens / T; 65536 by default), so that the time per token is
 * comparable: a ratio of 1 to the T = 1k step means the cost is linear in T. Memory: the measured peaks (live
 * tensors, and all pool buffers) next to the estimate of lib/train/memory.ts. A length whose batch would not fit
 * (by the estimate) is shrunk until it does.
 *
 *   deno run -A tests/long_seq_bench.ts                     (the table; or deno bench -A tests/long_seq_bench.ts)
 *   LONG_SEQ_TOKENS=131072 deno run -A tests/long_seq_bench.ts       # more tokens per step
 *   LONG_SEQ_TINY=1 deno run -A tests/long_seq_bench.ts      # tiny shapes (the default on a CPU adapter)
 */
import { valueAndGrad } from "../lib/ops/autodiff.ts";
import { MAMBA2_DEFAULTS } from "../lib/nn/mamba2.ts";
import { initLM, type LMConfig, lmLoss, type LMParams } from "../lib/nn/lm.ts";
import { adamwInit, adamwStep, disposeAdamW } from "../lib/train/optim.ts";
import { key, randint } from "../lib/core/random.ts";
import {
  formatBytes,
  initGpu,
  peakGpuBytes,
  resetPeakGpuBytes,
  sync,
  trimPool,
} from "../lib/core/runtime.ts";
import { disposeTree, keep, tensor, tidy } from "../lib/core/tensor.ts";
import { adapterMemoryBudget, estimateTrainingMemory } from "../lib/train/memory.ts";
import { timeGpu } from "./bench_util.ts";

let info: Awaited<ReturnType<typeof initGpu>> | null = null;
try {
  info = await initGpu();
} catch (e) {
  console.warn(`long-sequence bench skipped: ${(e as Error).message}`);
}
const tiny = Deno.env.get("LONG_SEQ_TINY") === "1" || (info?.isCpu ?? true);
const cfg: LMConfig = {
  vocab: 32,
  dModel: tiny ? 32 : 1024,
  normEps: 1e-5,
  layers: [0, 1].map(() => ({ ...MAMBA2_DEFAULTS, dState: tiny ? 16 : 128, headDim: tiny ? 16 : 64 })),
};
// (llvmpipe's loop limit keeps the SSD backward under ~4k steps at these shapes: see tests/long_seq_test.ts)
const LENGTHS = tiny ? [256, 512, 1024, 2048] : [1024, 2048, 4096, 8192, 16384];
const TOKENS = Number(Deno.env.get("LONG_SEQ_TOKENS") ?? (tiny ? 2048 : 65536));

interface Row {
  T: number;
  B: number;
  seconds: number;
  live: number;
  allocated: number;
  estimate: number;
}

let lastStep: (() => void) | null = null;

async function measure(T: number): Promise<Row | null> {
  const budget = adapterMemoryBudget(info!);
  const binding = info!.limits.maxStorageBufferBindingSize;
  let B = Math.max(1, Math.floor(TOKENS / T));
  const fits = (b: number) => {
    const e = estimateTrainingMemory(cfg, 1, b, T);
    return e.peakBytes <= budget && e.largestTensorBytes <= binding;
  };
  while (B > 1 && !fits(B)) B = Math.floor(B / 2);
  if (!fits(B)) {
    console.log(
      `T ${T}: even batch 1 does not fit (${formatBytes(estimateTrainingMemory(cfg, 1, 1, T).peakBytes)})`,
    );
    return null;
  }
  trimPool();
  const { params, consts } = initLM([key(0)], cfg);
  keep([params, consts]);
  const opt = adamwInit(params);
  const n = B * T;
  const ids = tensor(randint(key(99), n, 0, cfg.vocab), [1, B, T], "i32");
  const targets = tensor(randint(key(98), n, 0, cfg.vocab), [1, B, T], "i32");
  const mask = tensor(new Float32Array(n).fill(1), [1, B, T]);
  const vg = valueAndGrad((p: LMParams) => lmLoss(p, consts, { inputs: ids, targets, mask }, cfg));
  const step = () =>
    tidy(() => {
      const { grads } = vg(params);
      adamwStep(params, grads, opt, { lr: [1e-4] });
    });
  step();
  await sync();
  resetPeakGpuBytes();
  const seconds = await timeGpu(step, tiny ? 1 : 3, 1);
  const peak = peakGpuBytes();
  lastStep = step;
  const row = {
    T,
    B,
    seconds,
    live: peak.live,
    allocated: peak.allocated,
    estimate: estimateTrainingMemory(cfg, 1, B, T).peakBytes,
  };
  if (T !== LENGTHS.at(-1)) {
    disposeAdamW(opt);
    disposeTree([params, consts, ids, targets, mask]);
  }
  return row;
}

if (info) {
  console.log(
    `\n### Training step against T: 2-layer Mamba 2, D ${cfg.dModel}, N ${
      (cfg.layers[0] as { dState: number }).dState
    }, ${TOKENS} tokens per step (${info.description})\n`,
  );
  console.log(
    "| T | batch | ms / step | µs / token | per token vs T = " + LENGTHS[0] +
      " | peak live | peak allocated | estimate | estimate / live |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|");
  let base: number | null = null;
  for (const T of LENGTHS) {
    const r = await measure(T);
    if (!r) continue;
    const perToken = r.seconds / (r.B * r.T);
    base ??= perToken;
    console.log(
      `| ${r.T} | ${r.B} | ${(r.seconds * 1e3).toFixed(1)} | ${(perToken * 1e6).toFixed(3)} | ${
        (perToken / base).toFixed(2)
      } | ${formatBytes(r.live)} | ${formatBytes(r.allocated)} | ${formatBytes(r.estimate)} | ${
        (r.estimate / r.live).toFixed(3)
      } |`,
    );
  }
}

Deno.bench(
  { name: `long-sequence LM step at T ${LENGTHS.at(-1)}`, ignore: lastStep === null, n: 3, warmup: 1 },
  async () => {
    lastStep!();
    await sync();
  },
);
