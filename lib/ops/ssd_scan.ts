/**
 * The Mamba 2 scan (SSD, "state space duality"): forward, VJP, float64 references.
 *
 * ## Math (per run k, batch row b, head h; head h reads group g = h / (H/G))
 *   a_t = exp(dt_t·A)                         (dt_t > 0 and A < 0 scalars per head, so 0 < a_t < 1)
 *   h_t = a_t·h_{t−1} + dt_t·x_t·B_tᵀ          (P×N state, h_{−1} = 0)
 *   y_t = h_t·C_t + D·x_t
 *
 * ## Two GPU algorithms (option `algorithm`; the default depends on the sizes: `defaultSsdAlgorithm` below)
 * "sequential" (this file, kernels/ssd_scan_*.wgsl, described below) walks the T steps with the state in registers;
 * "chunked" (lib/ops/ssd_chunked.ts, kernels/ssd_chunk_*.wgsl) is the state space duality form: per chunk of steps
 * small products (CB ∘ decay)·x, and the states passed between chunks. They do about the same arithmetic (chunked
 * 126 GFLOP at the size below, one chunk of 8 blocks; sequential ~146), but the chunked one does it in
 * matmul-shaped loops with no per-step barrier or serial sum, and parallel over the chunk's blocks. Both are tested
 * against the same float64 references (tests/ssd_scan_test.ts, tests/ssd_chunked_test.ts).
 *
 * ## The sequential algorithm: the state in registers (GPU kernels in kernels/ssd_scan_*.wgsl)
 * One workgroup owns one (k, b, h) and walks all T steps; its P×N state is split over TP×TN threads, thread
 * (tp, tn) holding PR rows × NC4 vec4 columns in registers (P 64, N 128: 256 threads × 32 floats). x_t, B_t,
 * C_t, dt_t of a tile of S steps are staged in workgroup memory; per step each thread updates its state and
 * writes one partial y per row (summed over its columns); after the tile y is summed over the TN column threads
 * in a fixed order. Against the chunked algorithm: about the same arithmetic per step (≈ P·N multiply-adds for
 * each of: the state update, y, and each gradient), no chunk states, no decay masks, a third of the dispatches;
 * but latency-bound (the per-step sums below). The time-step body is
 * generated unrolled (`stepCode`) so the state stays in registers whatever the shader compiler does with loops.
 * Parallelism is K·Bt·H workgroups (2048 at Bt 64, H 32); T is not split.
 *
 * ## What the forward saves for the backward: nothing beyond its inputs (x, dt, A, B, C, D are held by the
 * tape anyway), 0 bytes. The backward recomputes h in a forward sweep (pass 1) instead: storing every h_t would
 * be T·P·N floats per head, and its sweep over T costs about what the forward costs. Pass 1 itself keeps, for
 * pass 2 only, h at every L-th step (L = 128 by default): HS, (K·Bt, H, ceil(T/L) − 1, P, N) f32 padded to
 * the thread layout, 201 MB at Bt 64, T 512, H 32, P 64, N 128 (0.75× the size of x).
 *
 * ## Backward derivation
 * With Γ_t = ∂L/∂h_t (through all later steps), Γ_t = dy_t·C_tᵀ + a_{t+1}·Γ_{t+1}, Γ_{T−1} = dy_{T−1}·C_{T−1}ᵀ.
 *   dC_t[n] = Σ_p dy_t[p]·h_t[p, n]                         (summed over the heads of the group)
 *   dB_t[n] = dt_t·Σ_p Γ_t[p, n]·x_t[p]                     (summed over the heads of the group)
 *   dx_t[p] = dt_t·(Γ_t·B_t)[p] + D·dy_t[p]
 *   d dt_t  = <Γ_t, x_t·B_tᵀ> + A·a_t·<Γ_t, h_{t−1}> ,   dA = Σ_t dt_t·a_t·<Γ_t, h_{t−1}> ,   dD = Σ <dy, x>
 * The decay terms need Γ_t and h_{t−1} at the same step, which a forward sweep (h) and a reverse sweep (Γ)
 * never have together. They are rewritten with s_t = a_t·<Γ_t, h_{t−1}>: since a_t·h_{t−1} = h_t − dt_t·x_t·B_tᵀ,
 *   s_t = <Γ_t, h_t> − dt_t·q_t ,  q_t = <x_t, Γ_t·B_t> ,
 *   <Γ_t, h_t> = <dy_t·C_tᵀ, h_t> + <Γ_{t+1}, a_{t+1}·h_t> = r_t + s_{t+1} ,  r_t = <dy_t, h_t·C_t> = <C_t, dCh_t>
 * so s_t = s_{t+1} + r_t − dt_t·q_t (s_T = 0) is a reverse running sum of per-step scalars, and
 *   d dt_t = q_t + A·s_t ,   dA = Σ_t dt_t·s_t .
 * dA = Σ_τ (r_τ − dt_τ·q_τ)·Σ_{t≤τ} dt_t weighs each step's rounding error by the time elapsed, so over all of T
 * the f32 error of dA grew with T (2.6e-4 relative at T = 2048). Pass 2 therefore restarts the sum at every
 * chunk start t = cL from the exact s_t = a_t·<Γ_t, h_{t−1}>, with h_{t−1} saved by pass 1 (HS above) and the
 * dot product reduced over the workgroup; with Kahan sums that leaves ~1e-5 at T = 2048.
 * Pass 1 (kernels/ssd_scan_bwd_recompute.wgsl) sweeps forward: h_t, dCh_t (per head), r_t.
 * Pass 2 (kernels/ssd_scan_bwd.wgsl) sweeps backward: Γ_t, dx_t, dBh_t (per head), q_t, s_t, d dt_t, and per
 * (k, b, h) partials of dA and dD. Reductions (kernels/ssd_scan_reduce.wgsl) sum dBh, dCh over the heads of a
 * group and the dA, dD partials over the batch, each in a fixed order: no atomics, bit-identical gradients.
 * Scratch: dBh and dCh, (rows, T, H, N) each, allocated per chunk of batch rows so each stays under a binding
 * limit (not needed when G = H: the kernels then write dB, dC directly).
 *
 * ## Speed (H100 through Vulkan, Bt 64, T 512, H 32, P 64, N 128, G 1: tests/ssd_scan_bench.ts)
 * Forward 4.2 ms (10 TFLOP/s counting 5 flops per state element and step, 15% of the fp32 peak); backward
 * 14.8 ms: pass 1 4.2 ms, pass 2 9.8 ms, head sums 0.5 ms (per kernel from tests/scan_profile_bench.ts). The
 * per-kernel profile and variants with one piece removed at a time showed where the backward's time went: not
 * in the arithmetic but in sums that ran as serial chains on a few threads while the rest of the workgroup
 * waited at the next barrier: q_t summed over the NN4 column slices on thread 0 took 4.4 ms of pass 2, r_t
 * summed the same way 2.2 ms of pass 1, and at N 8 the sums over 64 row threads ~1.8 ms of each pass. These
 * sums now run in two levels (`twoLevelSums`); that took the backward from 20.8 to 14.8 ms (N 8: 6.9 to 5.4 ms).
 * Tried and dropped: the s_t recurrence spread over the S step threads instead of thread 0 (no change), tiles
 * of 1 or 4 steps in the backward (20.4 and 18.1 ms against 14.8 at 2).
 * The op is compute-bound whatever the implementation. These kernels do ≥ 17 flops per state element and step
 * (146 GFLOP here, 2.2 ms at the 67 TFLOP/s fp32 peak). No exact algorithm does much less: the recurrent form
 * needs 4 flops per state element and step forward (update and read-out) and 8 backward (the transposes of
 * both, and dB, dC from them); the quadratic (attention) form needs T·P flops per step and head forward and 2·T·P
 * backward, the same at T = 4N = 512; chunked forms lie between. That is ≥ 100 GFLOP, ≥ 1.5 ms at the fp32
 * peak, against 1.21 ms for 40% of 3 TB/s on the 1.46 GB of compulsory traffic: out of reach on fp32 ALUs.
 * WebGPU exposes no tensor cores, and f16 arithmetic (2x the rate) would break the float64-reference tolerances.
 * @module
 */
import { kernelSource } from "../core/kernels.ts";
import { dispatch, gpu, gpuInfo, type Kernel } from "../core/runtime.ts";
import { record, type TapeNode, type VjpRule } from "../core/tape.ts";
import { empty, type Tensor } from "../core/tensor.ts";
import { expectF32, grid1d } from "./util.ts";
import { ssdChunkedForward, ssdChunkedGrads } from "./ssd_chunked.ts";

/** The inputs of the scan. Shapes in the glossary's letters; Bt is the batch. */
export interface SsdScanInputs {
  /** (K, Bt, T, H, P) */
  x: Tensor;
  /** (K, Bt, T, H), positive (the caller applies softplus(dt + dt_bias)) */
  dt: Tensor;
  /** (K, H), negative */
  A: Tensor;
  /** (K, Bt, T, G, N) */
  B: Tensor;
  /** (K, Bt, T, G, N) */
  C: Tensor;
  /** (K, H) */
  D: Tensor;
}

/** Sizes of one scan. */
export interface SsdDims {
  K: number;
  Bt: number;
  T: number;
  H: number;
  P: number;
  G: number;
  N: number;
}

/**
 * The two GPU algorithms: "sequential", the register-state sweep of this file's kernels (kernels/ssd_scan_*.wgsl),
 * and "chunked", the state space duality form of lib/ops/ssd_chunked.ts (kernels/ssd_chunk_*.wgsl). Both compute
 * the same function and its exact gradients; they differ in rounding and speed.
 */
export type SsdAlgorithm = "sequential" | "chunked";

/**
 * The algorithm `ssdScan` and `ssdScanGrads` use when the options name none, from the scan's sizes: the chunked
 * one for N ≥ 16 and T ≤ 4096, the sequential one otherwise. Measured on the H200 (forward + backward, one call,
 * 2026-12-01, after the chunked kernels' 16-byte staging; tests/ssd_algorithm_bench.ts prints the comparison): fig7 quick's scans (K 4 × Bt 32, T 220, H 8, P 64)
 * 1.33 ms chunked against 1.67 sequential at N 16, 1.95 / 2.42 at N 32, 1.43 / 3.43 at N 64, 1.79 / 8.45 at N 256;
 * D 1024's (Bt 64, T 128, H 32) 1.08 / 1.68 at N 16; fig7's model at 8192 tokens a run, N 64, 2.25 / 4.66 at
 * T 512 and 8.71 / 18.8 at T 4096. At N 8 the two tie (1.53 / 1.59), and the sequential scan needs less
 * scratch; above T 4096 (not measured) the sequential scan stays, whose memory estimate was checked against the
 * measured peak up to T 16k (the chunked one holds two P×N states per chunk of 64 steps and head).
 * Depends on T and N only, never on K or the batch: a run's bits do not depend on the runs packed with it.
 * @example
 * ```ts
 * import { defaultSsdAlgorithm } from "./ssd_scan.ts";
 * console.log(defaultSsdAlgorithm({ T: 220, N: 64 }), defaultSsdAlgorithm({ T: 220, N: 8 })); // chunked sequential
 * ```
 */
export function defaultSsdAlgorithm({ T, N }: Pick<SsdDims, "T" | "N">): SsdAlgorithm {
  return N >= 16 && T <= 4096 ? "chunked" : "sequential";
}

/** The algorithm a scan of these sizes runs with these options. */
function algorithmOf(d: SsdDims, options: SsdScanOptions): SsdAlgorithm {
  return options.algorithm ?? defaultSsdAlgorithm(d);
}

/**
 * Options: the algorithm, and tuning knobs (every value gives the same results up to rounding; the defaults are chosen for the
 * H100) and sizes that tests shrink to reach every code path.
 */
export interface SsdScanOptions {
  /** Which GPU algorithm (default by the sizes: {@link defaultSsdAlgorithm}). */
  algorithm?: SsdAlgorithm;
  /** Chunked: steps per block, the tile length along time (a multiple of 4 up to 32 or of 8 up to 64; default 64, less for short T). */
  block?: number;
  /**
   * Chunked: steps per chunk, the unit of state passing (a multiple of the block; default by a cost model: one block,
   * or the whole sequence where that costs fewer multiply-adds; see `chunkPlan` in lib/ops/ssd_chunked.ts).
   */
  chunk?: number;
  /** Chunked: outputs per thread of the register tiles, [rows, columns], 4 or 8 each (default [4, 8]). */
  threadTile?: [number, number];
  /** Chunked: inner steps per staged operand slice, 4, 8, 16 or 32 dividing the block (default 16). */
  slice?: number;
  /**
   * Chunked: heads per workgroup of the backward's block-pair products R (default 4 where a batch row has fewer
   * than 16 block pairs, else all of a group's heads; more parts mean more workgroups at once, one more pass to
   * sum their parts of W, and its scratch).
   */
  rHeads?: number;
  /** Sequential: most time steps staged in workgroup memory at once (default 4 forward, 2 backward; 2 on a CPU adapter). */
  tile?: number;
  /** Sequential: state rows (p) per thread (default 4, the forward 2 at N ≥ 64; fewer for small states). */
  rowsPerThread?: number;
  /** Sequential: state columns (n) per thread, a multiple of 4 (default 8, the forward 32 at N ≥ 64). */
  colsPerThread?: number;
  /**
   * Sequential: let the shader compiler unroll the loop over the S steps of a tile (default false: the loop bound is a
   * uniform). Unrolling lets it hoist the next steps' loads, which costs registers, hence occupancy.
   */
  unrollSteps?: boolean;
  /** Upper bound on the bytes of each scratch buffer (sequential: per-head dB, dC, saved states; chunked: all). */
  partialBytes?: number;
  /** Sequential: steps between the states that the backward saves to re-anchor s_t (rounded to a multiple of S); 128. */
  stateEvery?: number;
}

/** The gradients of the scan, one per input, each of its input's shape. */
export interface SsdScanGrads {
  dx: Tensor;
  ddt: Tensor;
  dA: Tensor;
  dB: Tensor;
  dC: Tensor;
  dD: Tensor;
}

function shapeStr(t: Tensor): string {
  return `[${t.shape.join(", ")}]`;
}

/** Checks shapes and dtypes; returns the sizes. */
export function ssdDims({ x, dt, A, B, C, D }: SsdScanInputs): SsdDims {
  for (const t of [x, dt, A, B, C, D]) expectF32("ssdScan", t);
  if (x.rank !== 5) throw new RangeError(`ssdScan: expected x of shape (K, Bt, T, H, P), got ${shapeStr(x)}`);
  const [K, Bt, T, H, P] = x.shape;
  if (B.rank !== 5) throw new RangeError(`ssdScan: expected B of shape (K, Bt, T, G, N), got ${shapeStr(B)}`);
  const [, , , G, N] = B.shape;
  const expect = (name: string, t: Tensor, shape: number[]) => {
    if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new RangeError(`ssdScan: expected ${name} of shape [${shape.join(", ")}], got ${shapeStr(t)}`);
    }
  };
  expect("dt", dt, [K, Bt, T, H]);
  expect("A", A, [K, H]);
  expect("B", B, [K, Bt, T, G, N]);
  expect("C", C, [K, Bt, T, G, N]);
  expect("D", D, [K, H]);
  if ([K, Bt, T, H, P, G, N].some((d) => d < 1)) {
    throw new RangeError(`ssdScan: every size must be ≥ 1, got x ${shapeStr(x)} and B ${shapeStr(B)}`);
  }
  if (H % G !== 0) throw new RangeError(`ssdScan: the groups G = ${G} must divide the heads H = ${H}`);
  return { K, Bt, T, H, P, G, N };
}

// ---------------------------------------------------------------------------------------------------------------
// Kernel configuration and generated code

type Pass = "forward" | "recompute" | "reverse";
type LayoutKind = "forward" | "backward";

/** The thread layout of a scan workgroup and the tile length S (steps staged in workgroup memory at once). */
interface ScanLayout {
  P: number;
  N: number;
  PR: number;
  NC4: number;
  TP: number;
  TN: number;
  S: number;
}

/**
 * Splits the P×N state over threads: the forward about 32 floats per thread (4 rows × 2 vec4 columns, or at
 * N ≥ 64 2 rows × 8 vec4 columns; at most 256 threads), the backward up to 64 (8 × 8, at most 128 threads where that suffices); small states get fewer
 * floats per thread so that a workgroup still has ≥ 64 threads where it can. Then the tile: as many steps as
 * fit in workgroup memory, at most `tile` (H100, Bt 64, T 512, P 64, N 128: forward 2.1 ms at 4 against
 * 4.5 ms at 9 and 5.1 ms at 2 or 8; backward 20.8 ms at 2 against 31.6 ms at 4: less workgroup memory, more
 * workgroups per SM).
 */
function scanLayout(pass: LayoutKind, P: number, N: number, opts: SsdScanOptions = {}): ScanLayout {
  const N4 = Math.ceil(N / 4);
  // The forward at N ≥ 64: 2 rows × 32 columns per thread (H200, P 64, tile 4: Bt 64, T 512, N 128 2.69 ms
  // against 4.16 for 4 × 8; Bt 64, T 128 0.70 against 1.03; fig7 quick's K 4 × Bt 32, T 220, H 8 at N 64 0.38
  // against 0.53 and at N 256 1.10 against 2.04): fewer column threads, so fewer partial sums of y per step.
  const wide = pass === "forward" && N >= 64;
  let NC4 = Math.min(wide ? 8 : 2, N4), TN = Math.ceil(N4 / NC4);
  let PR = Math.min(wide ? 2 : 4, P), TP = Math.ceil(P / PR);
  const fixed = opts.rowsPerThread !== undefined || opts.colsPerThread !== undefined;
  if (fixed) {
    PR = Math.min(opts.rowsPerThread ?? 4, P);
    NC4 = Math.min(Math.ceil((opts.colsPerThread ?? 8) / 4), N4);
    TP = Math.ceil(P / PR);
    TN = Math.ceil(N4 / NC4);
    if (TP * TN > gpu().limits.maxComputeInvocationsPerWorkgroup) {
      throw new RangeError(
        `ssdScan: rowsPerThread ${PR} and colsPerThread ${4 * NC4} give ${TP * TN} threads`,
      );
    }
  }
  // the backward holds two reductions per step in workgroup memory: 64 floats per thread, 128 threads
  const maxThreads = pass === "forward" ? 256 : 128;
  while (TP * TN > maxThreads && PR * NC4 * 4 < 64 && !fixed) {
    if (PR <= 4 * NC4) {
      PR *= 2;
      TP = Math.ceil(P / PR);
    } else {
      NC4 *= 2;
      TN = Math.ceil(N4 / NC4);
    }
  }
  while (TP * TN > 256 && !fixed) {
    if (PR <= 4 * NC4) {
      PR *= 2;
      TP = Math.ceil(P / PR);
    } else {
      NC4 *= 2;
      TN = Math.ceil(N4 / NC4);
    }
  }
  while (TP * TN < 64 && PR > 1 && !gpuInfo().isCpu && !fixed) {
    PR = Math.ceil(PR / 2);
    TP = Math.ceil(P / PR);
  }
  const PP = TP * PR, NN4 = TN * NC4, PS = PP + 1;
  // workgroup floats per staged step (see the var<workgroup> declarations of each kernel); the two backward
  // passes share S, because the saved states sit at multiples of a chunk length that both tile.
  const perStep = pass === "forward"
    ? PP + 8 * NN4 + 2 + TN * PS
    : Math.max(2 * PP + 8 * NN4 + 2 + 4 * TP * NN4 + 4 * NN4, 2 * PP + 9 * NN4 + 3 + TN * PS + 4 * TP * NN4);
  // the backward also holds per-thread anchors (1 float each) and the first levels of two-level sums (≤ 5)
  const budget = Math.floor(Math.min(gpu().limits.maxComputeWorkgroupStorageSize, 48 * 1024) / 4) -
    (pass === "forward" ? 0 : 6 * TP * TN);
  // CPU rasterisers get short tiles: Naga zero-initialises workgroup memory with one array literal, and Mesa's
  // llvmpipe takes seconds to compile 1000 floats of it (minutes for 4000).
  const S = Math.min(
    opts.tile ?? (gpuInfo().isCpu || pass === "backward" ? 2 : 4),
    Math.floor(budget / perStep),
  );
  if (S < 1) {
    throw new RangeError(
      `ssdScan: P = ${P}, N = ${N} need more workgroup memory than the device's ${budget * 4} bytes`,
    );
  }
  return { P, N, PR, NC4, TP, TN, S };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Declarations of the register state: one vec4 per (row i, column j) of a thread. */
function stateCode(L: ScanLayout): string {
  return range(L.PR).flatMap((i) => range(L.NC4).map((j) => `var h${i}_${j} = vec4<f32>(0.0);`)).join("\n  ");
}

/** One unrolled time step `s` of a pass (the body of the step loop in the kernel). */
function stepCode(pass: Pass, L: ScanLayout): string {
  const I = range(L.PR), J = range(L.NC4);
  const lines: string[] = [
    "let xb = s * PP + tp * PR;",
    "let nb = s * NN4 + tn;",
    ...J.map((j) => `let b${j} = sb[nb + ${j * L.TN}u];`),
  ];
  if (pass !== "recompute") lines.push(...J.map((j) => `let c${j} = sc[nb + ${j * L.TN}u];`));
  if (pass === "forward" || pass === "recompute") {
    // h = a·h + (dt·x_p)·B
    lines.push("let dv = vec4<f32>(sdec[s]);", "let dtv = sdt[s];");
    lines.push(...I.map((i) => `let u${i} = dtv * sx[xb + ${i}u];`));
    for (const i of I) for (const j of J) lines.push(`h${i}_${j} = fma(dv, h${i}_${j}, u${i} * b${j});`);
  }
  if (pass === "forward") {
    // partial y_p = Σ_n h[p, n]·C[n] over this thread's columns
    lines.push("let yb = (s * TN + tn) * PS + tp * PR;");
    for (const i of I) lines.push(`sy[yb + ${i}u] = ${J.map((j) => `dot(h${i}_${j}, c${j})`).join(" + ")};`);
  } else if (pass === "recompute") {
    // partial dCh[n] = Σ_p dy[p]·h[p, n] over this thread's rows
    lines.push(...I.map((i) => `let e${i} = sdy[xb + ${i}u];`));
    lines.push("let db = (s * TP + tp) * NN4 + tn;");
    for (const j of J) {
      lines.push(`sdc[db + ${j * L.TN}u] = ${I.map((i) => `e${i} * h${i}_${j}`).join(" + ")};`);
    }
  } else {
    // Γ = a_{t+1}·Γ + dy_p·C ; partial gB_p = Σ_n Γ[p, n]·B[n] ; partial dBh[n]/dt = Σ_p Γ[p, n]·x[p]
    lines.push("let dv = vec4<f32>(sdecn[s]);");
    lines.push(...I.map((i) => `let e${i} = sdy[xb + ${i}u];`));
    lines.push(...I.map((i) => `let x${i} = sx[xb + ${i}u];`));
    for (const i of I) for (const j of J) lines.push(`h${i}_${j} = fma(dv, h${i}_${j}, e${i} * c${j});`);
    lines.push("let gb = (s * TN + tn) * PS + tp * PR;");
    for (const i of I) lines.push(`sgp[gb + ${i}u] = ${J.map((j) => `dot(h${i}_${j}, b${j})`).join(" + ")};`);
    lines.push("let db = (s * TP + tp) * NN4 + tn;");
    for (const j of J) {
      lines.push(`sdb[db + ${j * L.TN}u] = ${I.map((i) => `x${i} * h${i}_${j}`).join(" + ")};`);
    }
  }
  return lines.join("\n      ");
}

/**
 * Pass 1 saves its state registers to HS at chunk ends ("save"); pass 2 dots its Γ registers with them
 * ("anchor", one partial of <Γ_t, h_{t−1}> per thread). `hb` indexes this thread's first vec4 in HS.
 */
function stateIoCode(kind: "save" | "anchor", L: ScanLayout): string {
  const NN4 = L.TN * L.NC4;
  const cells = range(L.PR).flatMap((i) => range(L.NC4).map((j) => [i, j, i * NN4 + j * L.TN]));
  const head = "let hb = base + tp * PR * NN4 + tn;\n      ";
  if (kind === "save") {
    return head + cells.map(([i, j, o]) => `HS[hb + ${o}u] = h${i}_${j};`).join("\n      ");
  }
  return head + `sanchor[lid] = ${cells.map(([i, j, o]) => `dot(h${i}_${j}, HS[hb + ${o}u])`).join(" + ")};`;
}

const pow2Floor = (x: number) => 2 ** Math.floor(Math.log2(Math.max(1, x)));

/**
 * Splits of the backward's per-step sums that would otherwise be long serial chains on a few threads: the sum
 * over the TP row threads (dB, dC) and the sum of q_t, r_t over the NN4 column slices. Each is summed in FB (FQ)
 * interleaved parts first, then the parts: chains of about 2·√terms instead of terms (measured on the H100: the
 * serial q_t sum alone took 4.4 of the reverse pass's 12.9 ms at N 128). The order is still fixed.
 */
function twoLevelSums(L: ScanLayout): { FB: number; FQ: number } {
  const WG = L.TP * L.TN, NN4 = L.TN * L.NC4;
  const FB = L.TP >= 16 ? Math.max(1, Math.min(pow2Floor(Math.sqrt(L.TP)), pow2Floor(WG / (L.S * NN4)))) : 1;
  const FQ = Math.max(1, Math.min(pow2Floor(Math.sqrt(NN4)), pow2Floor(WG / L.S)));
  return { FB, FQ };
}

const KERNEL_FILE = {
  forward: "ssd_scan_fwd.wgsl",
  recompute: "ssd_scan_bwd_recompute.wgsl",
  reverse: "ssd_scan_bwd.wgsl",
} as const;
const BINDINGS = {
  forward: ["read", "read", "read", "read", "read", "read", "read_write"],
  recompute: ["read", "read", "read", "read", "read", "read", "read_write", "read_write", "read_write"],
  reverse: [
    "read",
    "read",
    "read",
    "read",
    "read",
    "read",
    "read",
    "read",
    "read_write",
    "read_write",
    "read_write",
    "read_write",
    "read",
  ],
} as const;

const kernelCache = new Map<string, { kernel: Kernel; S: number }>();

/** The kernel of a pass for P, N, and its tile length S (passed as the last uniform). */
function scanKernel(pass: Pass, P: number, N: number, opts: SsdScanOptions): { kernel: Kernel; S: number } {
  const cacheKey =
    `${pass}|${P}|${N}|${opts.tile}|${opts.rowsPerThread}|${opts.colsPerThread}|${opts.unrollSteps}`;
  const hit = kernelCache.get(cacheKey);
  if (hit) return hit;
  const L = scanLayout(pass === "forward" ? "forward" : "backward", P, N, opts);
  const PP = L.TP * L.PR, NN4 = L.TN * L.NC4, PS = PP + 1, WG = L.TP * L.TN;
  const { FB, FQ } = twoLevelSums(L);
  const code = kernelSource(KERNEL_FILE[pass], {
    P,
    N,
    PR: L.PR,
    TP: L.TP,
    TN: L.TN,
    PP,
    NN4,
    PS,
    S: L.S,
    WG,
    S_PP: L.S * PP,
    S_NN4: L.S * NN4,
    S_TN_PS: L.S * L.TN * PS,
    S_TP_NN4: L.S * L.TP * NN4,
    FB,
    FQ,
    S_NN4_FB: FB > 1 ? L.S * NN4 * FB : 1,
    S_FQ: L.S * FQ,
    STATE: stateCode(L),
    STEP: stepCode(pass, L),
    STEPS: opts.unrollSteps ? "S" : "prm.S",
    SAVE: stateIoCode("save", L),
    ANCHOR: stateIoCode("anchor", L),
  });
  const entry = { kernel: { name: `ssd_scan_${pass}`, code, bindings: BINDINGS[pass] }, S: L.S };
  kernelCache.set(cacheKey, entry);
  return entry;
}

/** The thread layout and tile length chosen for a pass (for benchmarks and reports). */
export function ssdScanLayout(
  pass: LayoutKind,
  P: number,
  N: number,
  options: SsdScanOptions = {},
): Readonly<ScanLayout> {
  return scanLayout(pass, P, N, options);
}

/** A grid of `count` workgroups folded into (x, y) within 65535 per dimension. */
function grid(count: number): [number, number] {
  const x = Math.min(count, 65535);
  return [x, Math.ceil(count / x)];
}

function reduceKernel(entry: "sum_heads" | "sum_batch"): Kernel {
  return {
    name: `ssd_scan_${entry}`,
    code: kernelSource("ssd_scan_reduce.wgsl"),
    entry,
    bindings: entry === "sum_heads" ? ["read", "read_write"] : ["read", "read_write", "read_write"],
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The op

/**
 * The Mamba 2 scan: per head, h_t = exp(dt_t·A)·h_{t−1} + dt_t·x_t·B_tᵀ, y_t = h_t·C_t + D·x_t (h_{−1} = 0).
 * Saves nothing for the backward beyond its inputs (the backward recomputes the states). `options.algorithm`
 * picks the GPU algorithm ("sequential" or "chunked"; default by the sizes, {@link defaultSsdAlgorithm}); the VJP
 * uses the same.
 * @returns y, (K, Bt, T, H, P).
 * @throws {RangeError} on mismatched shapes, G not dividing H, or empty sizes.
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { full, tensor } from "../core/tensor.ts";
 * import { ssdScan } from "./ssd_scan.ts";
 * await initGpu();
 * // K 1, Bt 1, T 3, H 1, P 1, G 1, N 1: with A = 0 and dt = 1, y_t = Σ_{s≤t} x_s (B = C = 1, D = 0)
 * const y = ssdScan({
 *   x: tensor([1, 2, 3], [1, 1, 3, 1, 1]),
 *   dt: full([1, 1, 3, 1], 1),
 *   A: full([1, 1], 0),
 *   B: full([1, 1, 3, 1, 1], 1),
 *   C: full([1, 1, 3, 1, 1], 1),
 *   D: full([1, 1], 0),
 * });
 * console.log(await y.toArray()); // [1, 3, 6]
 * ```
 * @example The chunked (state space duality) algorithm: the same function
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { full, tensor } from "../core/tensor.ts";
 * import { ssdScan } from "./ssd_scan.ts";
 * await initGpu();
 * const y = ssdScan({
 *   x: tensor([1, 2, 3], [1, 1, 3, 1, 1]),
 *   dt: full([1, 1, 3, 1], 1),
 *   A: full([1, 1], 0),
 *   B: full([1, 1, 3, 1, 1], 1),
 *   C: full([1, 1, 3, 1, 1], 1),
 *   D: full([1, 1], 0),
 * }, { algorithm: "chunked" });
 * console.log(await y.toArray()); // [1, 3, 6]
 * ```
 */
export function ssdScan(inputs: SsdScanInputs, options: SsdScanOptions = {}): Tensor {
  const d = ssdDims(inputs);
  const { x, dt, A, B, C, D } = inputs;
  if (algorithmOf(d, options) === "chunked") {
    const yc = ssdChunkedForward(inputs, d, options);
    record("ssdScan", [x, dt, A, B, C, D], [yc], { options });
    return yc;
  }
  const y = empty(x.shape);
  const count = d.K * d.Bt * d.H;
  const { kernel, S } = scanKernel("forward", d.P, d.N, options);
  const params = [d.T, d.H, d.H / d.G, d.G, d.Bt, count, S];
  dispatch(kernel, [x, dt, A, B, C, D, y].map((t) => t.buffer), params, grid(count));
  record("ssdScan", [x, dt, A, B, C, D], [y], { options });
  return y;
}

/**
 * The gradients of `sum(ssdScan(inputs) ⊙ dy)` with respect to every input (what the VJP rule returns).
 * @param dy the cotangent of y, (K, Bt, T, H, P).
 */
export function ssdScanGrads(inputs: SsdScanInputs, dy: Tensor, options: SsdScanOptions = {}): SsdScanGrads {
  const d = ssdDims(inputs);
  const { x, dt, A, B, C, D } = inputs;
  if (dy.size !== x.size) {
    throw new RangeError(`ssdScan: expected dy of shape ${shapeStr(x)}, got ${shapeStr(dy)}`);
  }
  if (algorithmOf(d, options) === "chunked") {
    return ssdChunkedGrads(inputs, dy, d, options);
  }
  const { K, Bt, T, H, G, N } = d;
  const HG = H / G;
  const KB = K * Bt;
  const grads: SsdScanGrads = {
    dx: empty(x.shape),
    ddt: empty(dt.shape),
    dA: empty(A.shape),
    dB: empty(B.shape),
    dC: empty(C.shape),
    dD: empty(D.shape),
  };
  const rr = empty([KB, H, T]);
  const sp = empty([KB, H, 2]);
  const recompute = scanKernel("recompute", d.P, N, options);
  const reverse = scanKernel("reverse", d.P, N, options);
  const { S } = recompute; // = reverse.S
  // pass 1 saves h every L steps (L a multiple of S); pass 2 re-anchors its running sum s_t there
  const L = S * Math.max(1, Math.round((options.stateEvery ?? 128) / S));
  const NS = Math.ceil(T / L) - 1;
  const lay = scanLayout("backward", d.P, N, options);
  const stateBytes = H * NS * lay.TP * lay.PR * lay.TN * lay.NC4 * 16; // per batch row
  // Per-head dBh, dCh: with one head per group they are the gradients; otherwise they go through scratch
  // buffers, like the saved states at most `cap` bytes each, one chunk of batch rows at a time.
  const direct = HG === 1;
  const headBytes = direct ? 0 : T * H * N * 4;
  const cap = options.partialBytes ?? Math.min(gpu().limits.maxStorageBufferBindingSize, 1 << 30);
  const rows = Math.max(1, Math.min(KB, Math.floor(cap / Math.max(headBytes, stateBytes, 1))));
  const dch = direct ? grads.dC : empty([rows, T, H, N]);
  const dbh = direct ? grads.dB : empty([rows, T, H, N]);
  const hs = empty([Math.max(1, (rows * stateBytes) / 4)]);
  const sumHeads = reduceKernel("sum_heads");
  for (let kb0 = 0; kb0 < KB; kb0 += rows) {
    const n = Math.min(rows, KB - kb0);
    const okb = direct ? 0 : kb0;
    const params = [T, H, HG, G, Bt, n * H, kb0, okb, L, NS, S];
    const bufs = [x, dt, A, B, C, dy, dch, rr, hs].map((t) => t.buffer);
    dispatch(recompute.kernel, bufs, params, grid(n * H));
    if (!direct) {
      const outs = n * T * G * N;
      dispatch(
        sumHeads,
        [dch.buffer, grads.dC.buffer],
        [outs, G, HG, N, kb0 * T * G * N, Bt, H],
        grid1d(outs),
      );
    }
    const bufsR = [x, dt, A, B, C, D, dy, rr, grads.dx, grads.ddt, dbh, sp, hs].map((t) => t.buffer);
    dispatch(reverse.kernel, bufsR, params, grid(n * H));
    if (!direct) {
      const outs = n * T * G * N;
      dispatch(
        sumHeads,
        [dbh.buffer, grads.dB.buffer],
        [outs, G, HG, N, kb0 * T * G * N, Bt, H],
        grid1d(outs),
      );
    }
  }
  const sumBatch = reduceKernel("sum_batch");
  dispatch(
    sumBatch,
    [sp.buffer, grads.dA.buffer, grads.dD.buffer],
    [K * H, G, HG, N, 0, Bt, H],
    grid1d(K * H),
  );
  if (!direct) {
    dch.dispose();
    dbh.dispose();
  }
  hs.dispose();
  rr.dispose();
  sp.dispose();
  return grads;
}

/**
 * The scratch `ssdScanGrads` allocates besides the gradients, in 4-byte elements, for memory estimates
 * (lib/train/memory.ts; it mirrors the sizes chosen there): r_t (K·Bt, H, T), the dA/dD partials, the saved states
 * HS and, when G < H, the per-head dBh and dCh, each for one chunk of batch rows at a time.
 * @example
 * ```ts ignore
 * const s = ssdScanBackwardScratch({ K: 1, Bt: 64, T: 8003, H: 32, P: 64, G: 1, N: 128 });
 * ```
 */
export function ssdScanBackwardScratch(
  d: SsdDims,
  options: SsdScanOptions = {},
): { rr: number; sp: number; hs: number; dch: number; dbh: number } {
  const { K, Bt, T, H, G, N } = d;
  const KB = K * Bt;
  const { S } = scanKernel("recompute", d.P, N, options);
  const L = S * Math.max(1, Math.round((options.stateEvery ?? 128) / S));
  const NS = Math.ceil(T / L) - 1;
  const lay = scanLayout("backward", d.P, N, options);
  const stateBytes = H * NS * lay.TP * lay.PR * lay.TN * lay.NC4 * 16;
  const direct = H / G === 1;
  const headBytes = direct ? 0 : T * H * N * 4;
  const cap = options.partialBytes ?? Math.min(gpu().limits.maxStorageBufferBindingSize, 1 << 30);
  const rows = Math.max(1, Math.min(KB, Math.floor(cap / Math.max(headBytes, stateBytes, 1))));
  const perHead = direct ? 0 : rows * T * H * N;
  return {
    rr: KB * H * T,
    sp: KB * H * 2,
    hs: Math.max(1, (rows * stateBytes) / 4),
    dch: perHead,
    dbh: perHead,
  };
}

/** VJP of `ssdScan`: gradients for x, dt, A, B, C, D. */
export const ssdScanVjp: VjpRule<{ options: SsdScanOptions }> = (
  { inputs: [x, dt, A, B, C, D], attrs: { options } }: TapeNode<{ options: SsdScanOptions }>,
  [dy],
) => {
  const g = ssdScanGrads({ x, dt, A, B, C, D }, dy!, options);
  return [g.dx, g.ddt, g.dA, g.dB, g.dC, g.dD];
};

// ---------------------------------------------------------------------------------------------------------------
// Float64 references (plain sequential loops, the definition; the VJP stores every state and uses the textbook
// reverse recursion, not the s_t rewrite of the GPU backward)

/** Host arrays of the scan's inputs, row-major in the shapes of {@link SsdScanInputs}. */
export interface SsdScanArrays {
  x: ArrayLike<number>;
  dt: ArrayLike<number>;
  A: ArrayLike<number>;
  B: ArrayLike<number>;
  C: ArrayLike<number>;
  D: ArrayLike<number>;
}

/**
 * Float64 reference forward of {@link ssdScan}.
 * @returns y, (K, Bt, T, H, P).
 * @example
 * ```ts
 * import { ssdScanRef } from "./ssd_scan.ts";
 * const dims = { K: 1, Bt: 1, T: 2, H: 1, P: 1, G: 1, N: 1 };
 * const y = ssdScanRef({ x: [1, 1], dt: [1, 1], A: [Math.log(0.5)], B: [1, 1], C: [1, 1], D: [0] }, dims);
 * console.log(y); // [1, 1.5]
 * ```
 */
export function ssdScanRef(a: SsdScanArrays, dims: SsdDims): Float64Array {
  const { K, Bt, T, H, P, G, N } = dims;
  const HG = H / G;
  const y = new Float64Array(K * Bt * T * H * P);
  const h = new Float64Array(P * N);
  for (let k = 0; k < K; k++) {
    for (let b = 0; b < Bt; b++) {
      const kb = k * Bt + b;
      for (let hd = 0; hd < H; hd++) {
        const g = Math.floor(hd / HG);
        h.fill(0);
        for (let t = 0; t < T; t++) {
          const dtv = a.dt[(kb * T + t) * H + hd];
          const dec = Math.exp(dtv * a.A[k * H + hd]);
          const xo = ((kb * T + t) * H + hd) * P, bo = ((kb * T + t) * G + g) * N;
          for (let p = 0; p < P; p++) {
            let acc = 0;
            for (let n = 0; n < N; n++) {
              const v = dec * h[p * N + n] + dtv * a.x[xo + p] * a.B[bo + n];
              h[p * N + n] = v;
              acc += v * a.C[bo + n];
            }
            y[xo + p] = acc + a.D[k * H + hd] * a.x[xo + p];
          }
        }
      }
    }
  }
  return y;
}

/** Float64 gradients of the scan (arrays in the shapes of the inputs). */
export interface SsdScanGradArrays {
  dx: Float64Array;
  ddt: Float64Array;
  dA: Float64Array;
  dB: Float64Array;
  dC: Float64Array;
  dD: Float64Array;
}

/**
 * Float64 reference VJP of {@link ssdScan}: the gradients of sum(y ⊙ dy).
 * @example
 * ```ts
 * import { ssdScanVjpRef } from "./ssd_scan.ts";
 * const dims = { K: 1, Bt: 1, T: 1, H: 1, P: 1, G: 1, N: 1 };
 * const g = ssdScanVjpRef({ x: [2], dt: [0.5], A: [-1], B: [3], C: [4], D: [1] }, [1], dims);
 * console.log(g.dx); // [dt·B·C + D] = [7]
 * ```
 */
export function ssdScanVjpRef(a: SsdScanArrays, dy: ArrayLike<number>, dims: SsdDims): SsdScanGradArrays {
  const { K, Bt, T, H, P, G, N } = dims;
  const HG = H / G;
  const out: SsdScanGradArrays = {
    dx: new Float64Array(K * Bt * T * H * P),
    ddt: new Float64Array(K * Bt * T * H),
    dA: new Float64Array(K * H),
    dB: new Float64Array(K * Bt * T * G * N),
    dC: new Float64Array(K * Bt * T * G * N),
    dD: new Float64Array(K * H),
  };
  const hs = new Float64Array(T * P * N); // every state h_t of one head
  const gam = new Float64Array(P * N);
  for (let k = 0; k < K; k++) {
    for (let b = 0; b < Bt; b++) {
      const kb = k * Bt + b;
      for (let hd = 0; hd < H; hd++) {
        const g = Math.floor(hd / HG);
        const Av = a.A[k * H + hd], Dv = a.D[k * H + hd];
        const dec = (t: number) => Math.exp(a.dt[(kb * T + t) * H + hd] * Av);
        for (let t = 0; t < T; t++) {
          const dtv = a.dt[(kb * T + t) * H + hd], at = dec(t);
          const xo = ((kb * T + t) * H + hd) * P, bo = ((kb * T + t) * G + g) * N;
          for (let p = 0; p < P; p++) {
            for (let n = 0; n < N; n++) {
              const prev = t > 0 ? hs[((t - 1) * P + p) * N + n] : 0;
              hs[(t * P + p) * N + n] = at * prev + dtv * a.x[xo + p] * a.B[bo + n];
            }
          }
        }
        gam.fill(0);
        for (let t = T - 1; t >= 0; t--) {
          const dtv = a.dt[(kb * T + t) * H + hd], at = dec(t), anext = t + 1 < T ? dec(t + 1) : 0;
          const xo = ((kb * T + t) * H + hd) * P, bo = ((kb * T + t) * G + g) * N;
          let dDecay = 0, dU = 0; // <Γ_t, h_{t−1}>, <Γ_t, x_t·B_tᵀ>
          for (let p = 0; p < P; p++) {
            let gB = 0;
            for (let n = 0; n < N; n++) {
              const j = p * N + n;
              gam[j] = anext * gam[j] + dy[xo + p] * a.C[bo + n];
              const ht = hs[t * P * N + j], hprev = t > 0 ? hs[(t - 1) * P * N + j] : 0;
              out.dC[bo + n] += dy[xo + p] * ht;
              out.dB[bo + n] += dtv * gam[j] * a.x[xo + p];
              gB += gam[j] * a.B[bo + n];
              dDecay += gam[j] * hprev;
            }
            out.dx[xo + p] = dtv * gB + Dv * dy[xo + p];
            dU += a.x[xo + p] * gB;
            out.dD[k * H + hd] += dy[xo + p] * a.x[xo + p];
          }
          out.ddt[(kb * T + t) * H + hd] = dU + dDecay * Av * at;
          out.dA[k * H + hd] += dDecay * dtv * at;
        }
      }
    }
  }
  return out;
}
