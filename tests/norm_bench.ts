/**
 * Row-norm bandwidth: `deno run -A tests/norm_bench.ts` prints the tables (`deno bench -A tests/norm_bench.ts`
 * also times one case with Deno.bench). rmsNorm forward and backward (dx and the two dw stages) and the gated
 * RMSNorm forward and backward (dy, dz and the dw stages), at the rows of training steps (rows = K·B·T):
 *   fig7 quick: rmsNorm K 4 × 7040 rows of D 256, gated norm E 512 (G 1)
 *   D-1024 model: rmsNorm 8192 rows of D 1024, gated norm E 2048
 *   Mamba 1: rmsNorm K 4 × 7040 rows of D 128
 * On a CPU adapter (llvmpipe, ~1000× slower) the rows shrink 64× so that it runs in seconds.
 *
 * GB/s is of the minimum bytes a piece must move (each input read once, each output written once; for the dw
 * stage 1, its partials written once; for stage 2, read once), against the H200's ~4.3 TB/s copy bandwidth.
 * The first table times each op end to end (timeGpu: wall time per repetition, so with the CPU's recording where
 * that is the bottleneck); the second gives each kernel's GPU time from timestamp queries (`profileKernels`), when
 * the device has them: the backward's dx kernel and dw stages separately.
 */
import {
  type DeviceInfo,
  GpuUnavailableError,
  initGpu,
  profileKernels,
  sync,
  trimPool,
} from "../lib/core/runtime.ts";
import { disposeTree, type Tensor, tensor } from "../lib/core/tensor.ts";
import { key, uniform } from "../lib/core/random.ts";
import { rmsNorm, rmsNormVjp } from "../lib/ops/norm.ts";
import { gatedRmsNorm, gatedRmsNormVjp } from "../lib/ops/gated_norm.ts";
import { rampClocks, timeGpu } from "./bench_util.ts";

let info: DeviceInfo | null = null;
try {
  info = await initGpu();
} catch (e) {
  console.warn(`norm bench skipped: ${(e as Error).message}`);
}
const onGpu = info !== null && !info.isCpu;
/** Rows are divided by this on a CPU adapter. */
const SHRINK = onGpu ? 1 : 64;
const REPS = onGpu ? 20 : 2;
/** The H200's copy bandwidth (B/s), the limit these kernels are measured against. */
const BANDWIDTH = 4.3e12;
const EPS = 1e-5;

interface Case {
  name: string;
  op: "rms" | "gated";
  K: number;
  /** Rows per run (before shrinking). */
  R: number;
  /** D for rmsNorm, E for the gated norm. */
  width: number;
  groups?: number;
}

const CASES: Case[] = [
  { name: "fig7 quick rmsNorm", op: "rms", K: 4, R: 7040, width: 256 },
  { name: "fig7 quick gated norm", op: "gated", K: 4, R: 7040, width: 512, groups: 1 },
  { name: "D-1024 rmsNorm", op: "rms", K: 1, R: 8192, width: 1024 },
  { name: "D-1024 gated norm", op: "gated", K: 1, R: 8192, width: 2048, groups: 1 },
  { name: "Mamba 1 rmsNorm", op: "rms", K: 4, R: 7040, width: 128 },
];

/** Seeded uniform values in [lo, hi) as f32. */
function values(seed: number, n: number, lo = -1, hi = 1): Float32Array {
  return Float32Array.from(uniform(key(seed), n, lo, hi));
}

/** The per-row stats an op's forward would save, from the host copy of its input (rstd of each row or group). */
function rstdOf(v: Float32Array, rows: number, width: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let q = 0;
    for (let d = 0; d < width; d++) q += v[r * width + d] ** 2;
    out[r] = 1 / Math.sqrt(q / width + EPS);
  }
  return out;
}

interface Setup {
  forward: () => void;
  backward: () => void;
  /** Minimum bytes of the forward and the whole backward. */
  fwdBytes: number;
  bwdBytes: number;
  /** Minimum bytes of each kernel per repetition, by kernel name. */
  kernelBytes: Record<string, number>;
  tensors: Tensor[];
  rows: number;
}

function setup(c: Case): Setup {
  const { K, width: W } = c;
  const R = Math.max(1, Math.round(c.R / SHRINK)), N = K * R;
  const shape = [K, R, W];
  const chunk = Math.ceil(Math.sqrt(R)), S = Math.ceil(R / chunk);
  if (c.op === "rms") {
    const xs = values(1, N * W);
    const rstd = rstdOf(xs, N, W);
    const x = tensor(xs, shape), w = tensor(values(2, K * W, 0.5, 1.5), [K, W]);
    const g = tensor(values(3, N * W), shape);
    const stats = tensor(Float32Array.from({ length: 2 * N }, (_, i) => (i % 2 ? rstd[i >> 1] : 0)), [
      K,
      R,
      2,
    ]);
    const node = {
      prim: "rmsNorm" as const,
      inputs: [x, w],
      outputs: [],
      attrs: { eps: EPS },
      saved: [stats],
    };
    return {
      forward: () => rmsNorm(x, w, EPS).dispose(),
      backward: () => disposeTree(rmsNormVjp(node, [g]) as Tensor[]),
      fwdBytes: 4 * (2 * N * W + 2 * N + K * W),
      bwdBytes: 4 * (3 * N * W + 2 * N + 2 * K * W),
      kernelBytes: {
        rms_norm_forward: 4 * (2 * N * W + 2 * N + K * W),
        rms_norm_backward_dx: 4 * (3 * N * W + 2 * N + K * W),
        rms_norm_backward_dw: 4 * (2 * N * W + 2 * N + K * S * W),
        sum_cols: 4 * (K * S * W + K * W),
      },
      tensors: [x, w, g, stats],
      rows: N,
    };
  }
  const G = c.groups ?? 1;
  const ys = values(4, N * W), zs = values(5, N * W, -3, 3);
  // the rstd of v = y ⊙ silu(z) per group row
  const v = ys.map((yi, i) => yi * zs[i] / (1 + Math.exp(-zs[i])));
  const stats = tensor(Float32Array.from(rstdOf(v, N * G, W / G)), [N * G]);
  const y = tensor(ys, shape), z = tensor(zs, shape);
  const w = tensor(values(6, K * W, 0.5, 1.5), [K, W]), g = tensor(values(7, N * W), shape);
  const node = {
    prim: "gatedRmsNorm" as const,
    inputs: [y, z, w],
    outputs: [],
    attrs: { groups: G, eps: EPS },
    saved: [stats],
  };
  return {
    forward: () => gatedRmsNorm(y, z, w, { groups: G, eps: EPS }).dispose(),
    backward: () => disposeTree(gatedRmsNormVjp(node, [g]) as Tensor[]),
    fwdBytes: 4 * (3 * N * W + N * G + K * W),
    bwdBytes: 4 * (5 * N * W + N * G + 2 * K * W),
    kernelBytes: {
      gated_rms_norm_forward: 4 * (3 * N * W + N * G + K * W),
      gated_rms_norm_backward_dx: 4 * (5 * N * W + N * G + K * W),
      gated_rms_norm_backward_dw: 4 * (3 * N * W + N * G + K * S * W),
      sum_cols: 4 * (K * S * W + K * W),
    },
    tensors: [y, z, w, g, stats],
    rows: N,
  };
}

interface Row {
  name: string;
  seconds: number;
  bytes?: number;
}

function table(title: string, rows: Row[]): void {
  const lines = [`\n### ${title}`, "| case | time | GB/s | of 4300 |", "|---|---|---|---|"];
  for (const r of rows) {
    const gbs = r.bytes ? r.bytes / r.seconds / 1e9 : undefined;
    lines.push(
      `| ${r.name} | ${(r.seconds * 1e6).toFixed(1)} µs | ${
        gbs === undefined ? "-" : gbs.toFixed(gbs < 100 ? 1 : 0)
      } | ${gbs ? ((gbs * 1e9 / BANDWIDTH) * 100).toFixed(1) + "%" : "-"} |`,
    );
  }
  console.log(lines.join("\n"));
}

if (info) {
  const ends: Row[] = [], kernels: Row[] = [];
  let profiling = true;
  for (const c of CASES) {
    const s = setup(c);
    const label = `${c.name} (${s.rows} rows of ${c.width}${c.op === "gated" ? `, G ${c.groups}` : ""})`;
    const window = onGpu ? 0.15 : 0.02, ramp = onGpu ? 0.25 : 0;
    ends.push({
      name: `${label}: forward`,
      seconds: await timeGpu(s.forward, REPS, 2, window, 3, ramp),
      bytes: s.fwdBytes,
    });
    ends.push({
      name: `${label}: backward (dx, dw)`,
      seconds: await timeGpu(s.backward, REPS, 2, window, 3, ramp),
      bytes: s.bwdBytes,
    });
    if (profiling) {
      try {
        const both = () => {
          for (let i = 0; i < REPS; i++) {
            s.forward();
            s.backward();
          }
        };
        await rampClocks(both, onGpu ? 1 : 0);
        for (const t of await profileKernels(both)) {
          kernels.push({
            name: `${c.name}: ${t.name}`,
            seconds: t.seconds / REPS,
            bytes: s.kernelBytes[t.name],
          });
        }
      } catch (e) {
        if (!(e instanceof GpuUnavailableError)) throw e;
        console.warn(`no per-kernel times: ${e.message}`);
        profiling = false;
      }
    }
    disposeTree(s.tensors);
    trimPool();
  }
  const shrunk = SHRINK > 1 ? `, rows shrunk ${SHRINK}× (CPU adapter)` : "";
  table(`row norms end to end, ${info.description}${shrunk}`, ends);
  if (kernels.length) {
    table(`row norm kernels (GPU time per repetition, timestamp queries)${shrunk}`, kernels);
  }
}

let benchSetup: Setup | null = null;
Deno.bench({
  name: "rmsNorm forward + backward, fig7 quick rows (D 256)",
  ignore: info === null,
  async fn() {
    benchSetup ??= setup(CASES[0]);
    benchSetup.forward();
    benchSetup.backward();
    await sync();
  },
});
