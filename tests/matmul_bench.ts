/**
 * Matmul throughput: square products at 1024³, 2048³, 4096³ (128³, 256³ on a CPU adapter), the transposed forms
 * the backward uses, and the batched per-run case x (K=4, 2048, 1024) @ W (K=4, 1024, 1024).
 * Before timing, every tile configuration is checked against the float64 reference on odd sizes, so a tuning run
 * on a GPU also checks the configurations that the CPU tests skip (8×8 tiles compile for minutes on llvmpipe).
 *
 *   deno bench -A tests/matmul_bench.ts                     # table + Deno.bench
 *   MATMUL_TUNE=1 deno run -A tests/matmul_bench.ts         # also sweep every tile configuration, and tune
 *   MATMUL_TUNE=lm deno run -A tests/matmul_bench.ts        # tune only (no FMA ceiling, no square tile sweep)
 *
 * Tuning (MATMUL_TUNE=1): collects the products of one training step of the LMs that the LM step bench times
 * (their exact shapes: activations × weights, weight gradients over every token, per-run weights), times every
 * tile configuration on each, and writes the best per shape into kernels/matmul_tuning.json under this adapter's
 * description (other adapters' entries are kept; rewritten after each shape, so a run cut short keeps what it
 * measured), which `matmul` then consults (`tilesFromTable`), falling back to
 * the rule `chooseTiles`. Split-K stays chosen from each product's M, N, Kd (never the batch): tiles do not change
 * results, split-K does. On a CPU adapter it tunes a tiny model over the 4×4 tiles only (a check of the mechanism).
 */
import { H100, rampClocks, report, timeGpu } from "./bench_util.ts";
import { maxRelError, randomInputs } from "./harness.ts";
import { dispatch, flush, gpuInfo, initGpu, sync, trimPool } from "../lib/core/runtime.ts";
import {
  chooseTiles,
  matmul,
  type MatmulOptions,
  matmulRef,
  type MatmulShape,
  matmulShapesOf,
  type MatmulTiles,
  type MatmulTuningEntry,
  type MatmulTuningTable,
} from "../lib/ops/matmul.ts";
import { empty, keep, type Tensor, tensor, tidy } from "../lib/core/tensor.ts";
import { readJson, writeJsonAtomic } from "../lib/core/fs.ts";
import { valueAndGrad } from "../lib/ops/autodiff.ts";
import { MAMBA2_DEFAULTS } from "../lib/nn/mamba2.ts";
import { disposeTree } from "../lib/core/tensor.ts";
import { initLM, type LMConfig, lmLoss, type LMParams } from "../lib/nn/lm.ts";
import { MAMBA1_DEFAULTS } from "../lib/nn/mamba1.ts";
import { key, randint } from "../lib/core/random.ts";

const tuneMode = Deno.env.get("MATMUL_TUNE") ?? "";
if (!["", "0", "1", "lm"].includes(tuneMode)) {
  console.error(
    `matmul_bench: MATMUL_TUNE must be 1 (sweep and tune) or lm (tune only), got ${JSON.stringify(tuneMode)}`,
  );
  Deno.exit(2);
}
const tune = tuneMode === "1" || tuneMode === "lm";
await initGpu();
const cpu = gpuInfo().isCpu;
console.log(`device: ${gpuInfo().description}; H100 fp32 peak ${H100.flops / 1e12} TFLOP/s`);

const ALL_TILES: MatmulTiles[] = [
  { TM: 8, TN: 8, BK: 8 },
  { TM: 8, TN: 8, BK: 16 },
  { TM: 8, TN: 4, BK: 8 },
  { TM: 4, TN: 8, BK: 8 },
  { TM: 4, TN: 4, BK: 8 },
  { TM: 4, TN: 4, BK: 16 },
];
/** The configurations a tuning run times: llvmpipe compiles the 8-wide tiles for minutes, so only 4×4 there. */
const SWEPT_TILES = cpu ? ALL_TILES.filter((t) => t.TM === 4 && t.TN === 4) : ALL_TILES;
const tileName = (t?: MatmulTiles) => (t ? `${t.TM}×${t.TN}×${t.BK}` : "auto");

/** Random operands for op(A) (M, Kd) · op(B) (Kd, N), batched over `batch` (none when 0). */
function operands(M: number, Kd: number, N: number, opts: MatmulOptions = {}, batch = 0): [Tensor, Tensor] {
  const lead = batch ? [batch] : [];
  const aShape = [...lead, ...(opts.transA ? [Kd, M] : [M, Kd])];
  const bShape = [...lead, ...(opts.transB ? [N, Kd] : [Kd, N])];
  const [a, b] = randomInputs([{ shape: aShape }, { shape: bShape }]);
  return [tensor(a, aShape), tensor(b, bShape)];
}

// ---------------------------------------------------------------------------------------------------------------
// Correctness of every configuration the timings use (GPU only: llvmpipe compiles large tiles for minutes).

if (!cpu) {
  let worst = 0;
  for (const tiles of ALL_TILES) {
    for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
      for (const [M, Kd, N] of [[259, 133, 261], [260, 132, 264]]) {
        const opts = { transA, transB, tiles };
        const aShape = [2, ...(transA ? [Kd, M] : [M, Kd])], bShape = transB ? [N, Kd] : [Kd, N];
        const [a, b] = randomInputs([{ shape: aShape }, { shape: bShape }]);
        const y = tidy(() => matmul(tensor(a, aShape), tensor(b, bShape), opts));
        const err = maxRelError(await y.toArray(), matmulRef(a, aShape, b, bShape, opts).data);
        y.dispose();
        worst = Math.max(worst, err);
        if (!(err < 1e-4)) {
          throw new Error(`matmul ${tileName(tiles)} ${JSON.stringify(opts)} ${M}×${Kd}×${N}: ${err}`);
        }
      }
    }
  }
  console.log(
    `correctness: every tile configuration and transpose matches float64 (max rel error ${
      worst.toExponential(2)
    })`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Timings

/** Repetitions for the shorter of the two timed runs: the longer (4×) keeps the GPU busy for ~0.2 s. */
const repsFor = (expectedSeconds: number) =>
  cpu ? 2 : Math.min(100, Math.max(4, Math.ceil(0.05 / expectedSeconds)));

/** Seconds per repetition of `record` (timeGpu ramps the clock, then cancels the fixed cost of waiting). */
async function timePerRep(record: () => void, n: number): Promise<number> {
  return await timeGpu(record, n, 2, 0.08);
}

async function timeMatmul(
  name: string,
  M: number,
  Kd: number,
  N: number,
  opts: MatmulOptions = {},
  batch = 0,
) {
  const [a, b] = operands(M, Kd, N, opts, batch);
  const flops = 2 * M * N * Kd * Math.max(batch, 1);
  const n = repsFor(flops / (cpu ? 1e9 : 10e12));
  // Fill the buffer pool with an output buffer per repetition first, so that no allocation is timed (outputs
  // return to the pool only at a submit, and the timed loop must not submit per product).
  const spare = Array.from({ length: 4 * n + 3 }, () => empty([...(batch ? [batch] : []), M, N]));
  spare.forEach((t) => t.dispose());
  flush();
  const seconds = await timePerRep(() => matmul(a, b, opts).dispose(), n);
  a.dispose();
  b.dispose();
  trimPool();
  return { name, seconds, flops };
}

const sizes = cpu ? [128, 256] : [1024, 2048, 4096];
const big = sizes.at(-1)!;
const rows = [];
for (const n of sizes) rows.push(await timeMatmul(`${n}³ A·B`, n, n, n));
rows.push(await timeMatmul(`${big}³ Aᵀ·B`, big, big, big, { transA: true }));
rows.push(await timeMatmul(`${big}³ A·Bᵀ`, big, big, big, { transB: true }));
rows.push(await timeMatmul(`${big}³ Aᵀ·Bᵀ`, big, big, big, { transA: true, transB: true }));
// Per-run weights: x (K, B·T, D) @ W (K, D, E), and the two products of its backward.
const [K, BT, D, E] = cpu ? [4, 128, 64, 64] : [4, 2048, 1024, 1024];
rows.push(await timeMatmul(`per-run x(${K},${BT},${D})·W(${K},${D},${E})`, BT, D, E, {}, K));
rows.push(await timeMatmul(`per-run dx = g·Wᵀ`, BT, E, D, { transB: true }, K));
rows.push(await timeMatmul(`per-run dW = xᵀ·g`, D, BT, E, { transA: true }, K));
// Small weight gradients over many tokens (the fig7 quick model: K 4, B·T 7040, D 256, E 512 or G·N 64), which
// fill few workgroups: split-K (chosen automatically) against none. Each repetition is submitted on its own, so
// that the split-K scratch returns to the pool (as in a training step) rather than being allocated anew.
const [Ks, BTs, Ds] = cpu ? [2, 1024, 32] : [4, 7040, 256];
for (const Es of cpu ? [32] : [512, 64]) {
  for (const splitK of [undefined, 1]) {
    const [a, b] = operands(Ds, BTs, Es, { transA: true }, Ks);
    const seconds = await timeGpu(() => {
      matmul(a, b, { transA: true, splitK }).dispose();
      flush();
    }, repsFor(2 * Ds * Es * BTs * Ks / (cpu ? 1e9 : 5e12)));
    a.dispose();
    b.dispose();
    rows.push({
      name: `dW = xᵀ·g (${Ks},${BTs},${Ds})ᵀ·(${Ks},${BTs},${Es}), split-K ${splitK === 1 ? "off" : "auto"}`,
      seconds,
      flops: 2 * Ds * Es * BTs * Ks,
    });
  }
}
report(`matmul (${gpuInfo().description})`, rows);

if (tuneMode === "1") {
  // What this stack (WGSL → SPIR-V → driver) gets from pure register FMAs: the ceiling for any matmul kernel.
  // (a CPU adapter runs a token amount: the full kernel is ~5·10¹¹ FMAs, minutes per repetition on llvmpipe)
  const iters = cpu ? 64 : 4096, groups = cpu ? 8 : 132 * 32;
  const out = empty([groups * 256]);
  const fmaKernel = {
    name: "fma_peak",
    bindings: ["read_write"] as const,
    code: `struct Params { n: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  var x0 = vec4<f32>(f32(gid.x) * 1e-9); var x1 = x0 + 1.0; var x2 = x0 + 2.0; var x3 = x0 + 3.0;
  var x4 = x0 + 4.0; var x5 = x0 + 5.0; var x6 = x0 + 6.0; var x7 = x0 + 7.0;
  let b = vec4<f32>(0.999); let c = vec4<f32>(0.001);
  for (var i = 0u; i < p.n; i++) {
    x0 = fma(x0, b, c); x1 = fma(x1, b, c); x2 = fma(x2, b, c); x3 = fma(x3, b, c);
    x4 = fma(x4, b, c); x5 = fma(x5, b, c); x6 = fma(x6, b, c); x7 = fma(x7, b, c);
    x0 = fma(x0, b, c); x1 = fma(x1, b, c); x2 = fma(x2, b, c); x3 = fma(x3, b, c);
    x4 = fma(x4, b, c); x5 = fma(x5, b, c); x6 = fma(x6, b, c); x7 = fma(x7, b, c);
  }
  let s = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
  out[gid.x] = s.x + s.y + s.z + s.w;
}`,
  };
  const seconds = await timePerRep(() => dispatch(fmaKernel, [out.buffer], [iters], [groups]), repsFor(0.02));
  out.dispose();
  report("fp32 FMA ceiling of this stack", [{
    name: "register FMAs only",
    seconds,
    flops: groups * 256 * iters * 128,
  }]);

  const sweep = [];
  for (const tiles of SWEPT_TILES) {
    // (the largest square only: the smaller ones are latency-bound, and their tiles are tuned below by shape)
    sweep.push(await timeMatmul(`${big}³ tiles ${tileName(tiles)}`, big, big, big, { tiles }));
    sweep.push(await timeMatmul(`per-run tiles ${tileName(tiles)}`, BT, D, E, { tiles }, K));
  }
  report("matmul tile sweep", sweep);
}
if (tune) await tuneLMShapes();

/** The products of one training step (forward + backward) of a Mamba 2 LM, deduplicated. */
function lmStepShapes(K: number, B: number, T: number, cfg: LMConfig): MatmulShape[] {
  const { params, consts } = initLM(Array.from({ length: K }, (_, k) => key(k)), cfg);
  keep([params, consts]);
  const n = K * B * T;
  const ids = tensor(randint(key(99), n, 0, cfg.vocab), [K, B, T], "i32");
  const targets = tensor(randint(key(98), n, 0, cfg.vocab), [K, B, T], "i32");
  const mask = tensor(new Float32Array(n).fill(1), [K, B, T]);
  const vg = valueAndGrad((p: LMParams) => lmLoss(p, consts, { inputs: ids, targets, mask }, cfg));
  const shapes = matmulShapesOf(() => tidy(() => void vg(params)));
  disposeTree([params, consts, ids, targets, mask]);
  flush();
  const seen = new Set<string>();
  return shapes.filter((s) => {
    const k = JSON.stringify(s);
    return !seen.has(k) && seen.add(k);
  });
}

/** Times every candidate tile configuration on the LM step's products and writes the tuning table. */
async function tuneLMShapes() {
  const mamba2 = (dModel: number, N: number, vocab: number): LMConfig => ({
    vocab,
    dModel,
    normEps: 1e-5,
    layers: [0, 1].map(() => ({ ...MAMBA2_DEFAULTS, dState: N, headDim: cpu ? 16 : 64 })),
  });
  // One layer: every layer of an LM has the same products.
  const mamba1 = (dModel: number, N: number): LMConfig => ({
    vocab: 30,
    dModel,
    normEps: 1e-5,
    layers: [{ ...MAMBA1_DEFAULTS, dState: N }],
  });
  // The LM step bench's models (tests/lm_step_bench.ts: Mamba 2 and Mamba 1), the fig7 quick model at every
  // state size it sweeps, and longer sequences of the fig7 model.
  const models: [number, number, number, LMConfig][] = cpu ? [[1, 2, 16, mamba2(32, 16, 30)]] : [
    [1, 64, 128, mamba2(1024, 128, 32)],
    ...[8, 16, 32, 64, 128, 256].map((
      N,
    ): [number, number, number, LMConfig] => [4, 32, 220, mamba2(256, N, 30)]),
    [4, 8, 1024, mamba2(256, 64, 30)],
    [4, 32, 220, mamba1(128, 32)],
    [4, 32, 220, mamba1(256, 16)],
  ];
  const shapes = new Map<string, MatmulShape>();
  for (const [K, B, T, cfg] of models) {
    for (const s of lmStepShapes(K, B, T, cfg)) shapes.set(JSON.stringify(s), s);
  }
  const candidates = SWEPT_TILES;
  const path = new URL("../kernels/matmul_tuning.json", import.meta.url).pathname;
  // The table is rewritten (atomically) after every product, so a run stopped by a time limit keeps its entries.
  const save = (entries: MatmulTuningEntry[]) => {
    const table = readJson<MatmulTuningTable>(path, { adapters: {} });
    table.adapters[gpuInfo().description] = { measured: new Date().toISOString(), entries };
    writeJsonAtomic(path, table);
  };
  const entries: MatmulTuningEntry[] = [];
  const rows = [];
  {
    // Bring the clock up once; the configurations below then keep the GPU busy back to back.
    const [a, b] = operands(cpu ? 64 : 2048, cpu ? 64 : 2048, cpu ? 64 : 2048);
    await rampClocks(() => matmul(a, b).dispose(), cpu ? 0.1 : 0.5);
    a.dispose();
    b.dispose();
  }
  for (const s of shapes.values()) {
    const lead = [s.batch];
    const [a, b] = operands(s.M, s.Kd, s.N, s, s.batch);
    const flops = 2 * s.batch * s.M * s.N * s.Kd;
    const time = async (tiles: MatmulTiles) => {
      const spare = Array.from({ length: 8 }, () => empty([...lead, s.M, s.N]));
      spare.forEach((t) => t.dispose());
      flush();
      // Submitted per product, as split-K scratch must return to the pool as in a training step.
      // Short windows (the GPU is kept busy from one configuration to the next, so no ramp each time), 3 trials.
      return await timeGpu(
        () => {
          matmul(a, b, { transA: s.transA, transB: s.transB, tiles }).dispose();
          flush();
        },
        repsFor(flops / (cpu ? 1e9 : 10e12)),
        2,
        0.02,
        3,
        0,
      );
    };
    const rule = chooseTiles(s);
    const ruleSeconds = await time(rule);
    let best = { tiles: rule, seconds: ruleSeconds };
    for (const tiles of candidates) {
      if (tileName(tiles) === tileName(rule)) continue;
      const seconds = await time(tiles);
      if (seconds < best.seconds) best = { tiles, seconds };
    }
    a.dispose();
    b.dispose();
    trimPool();
    entries.push({ ...s, tiles: best.tiles, seconds: best.seconds, ruleSeconds });
    const name = `${s.batch}×(${s.M}×${s.Kd}${s.transA ? "ᵀ" : ""})·(${s.Kd}×${s.N}${s.transB ? "ᵀ" : ""})`;
    rows.push({ name: `${name}: rule ${tileName(rule)}`, seconds: ruleSeconds, flops });
    rows.push({ name: `${name}: best ${tileName(best.tiles)}`, seconds: best.seconds, flops });
    save(entries);
    console.error(`tuned ${entries.length}/${shapes.size} products`);
  }
  report(`matmul tuning at the LM step's products (${gpuInfo().description})`, rows);
  const saved = entries.reduce((a, e) => a + e.ruleSeconds! - e.seconds!, 0);
  console.log(
    `wrote ${entries.length} entries for "${gpuInfo().description}" to ${path} (per step, the best tiles save ` +
      `${(saved * 1e3).toFixed(3)} ms over the rule, counting each distinct product once)`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Deno.bench (one matmul and a wait for the GPU per iteration, so each includes the ~12 ms wait)

for (const n of sizes) {
  const [a, b] = operands(n, n, n);
  Deno.bench(`matmul ${n}³`, { group: "matmul" }, async () => {
    matmul(a, b).dispose();
    await sync();
  });
}
