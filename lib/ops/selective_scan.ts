/**
 * The Mamba 1 selective scan: forward, VJP, and float64 references.
 *
 * Glossary (setup.md, Mamba 1): K runs, Bt batch, T length, E inner width (channels), N state size.
 * Per run k, batch b, channel e and state n, with Δ > 0 and A < 0 given (the caller applies softplus and
 * A = -exp(A_log)):
 *
 *     a_t = exp(Δ_t·A)      x_t = Δ_t·B_t·u_t      h_t = a_t·h_{t-1} + x_t   (h_{-1} = 0)
 *     y_t = Σ_n C_t·h_t + D·u_t          out_t = y_t·silu(z_t)   (or y_t without z)
 *
 * ## Backward (derivation)
 * With the cotangent `dout` of `out`: g_t = dout_t·silu(z_t) is the cotangent of y_t, and
 * dz_t = dout_t·y_t·silu'(z_t), silu'(z) = σ(z)·(1 + z·(1 - σ(z))). The state cotangent runs backwards:
 *
 *     dh_t = C_t·g_t + a_{t+1}·dh_{t+1},   dh_{T-1} = C_{T-1}·g_{T-1}
 *
 * and, writing R_t = a_t·h_{t-1}·dh_t (the cotangent of log a_t = Δ_t·A):
 *
 *     dC_t[n] = Σ_e g_t·h_t          dB_t[n] = Σ_e Δ_t·u_t·dh_t          dD = Σ_{b,t} g_t·u_t
 *     du_t    = D·g_t + Δ_t·Σ_n B_t·dh_t
 *     dΔ_t    = u_t·Σ_n B_t·dh_t + Σ_n A·R_t
 *     dA      = Σ_{b,t} Δ_t·R_t
 *
 * R_t couples h (forward in time) with dh (backward in time), so a plain reverse sweep would need every h_t of
 * a chunk at once. An identity removes that: with h_t = a_t·h_{t-1} + x_t and dh_t = C_t·g_t + a_{t+1}·dh_{t+1},
 *
 *     R_t = ρ_t + R_{t+1},    ρ_t = g_t·C_t·(a_t·h_{t-1}) - x_t·(a_{t+1}·dh_{t+1}),
 *
 * so for t in a chunk c whose successor starts at s: R_t = Σ_{t <= t' < s} ρ_{t'} + R_s. The first half of ρ
 * needs only h (the forward sweep has a_t·h_{t-1} before it adds x_t), the second only dh (the reverse sweep
 * carries a_{t+1}·dh_{t+1}). Hence
 *
 *     Σ_n A·R_t = Σ_{t <= t' < s} (g_{t'}·F_{t'} - Δ_{t'}·u_{t'}·G_{t'}) + Σ_n A·R_s,
 *         F_t = Σ_n A·C_t·a_t·h_{t-1},   G_t = Σ_n A·B_t·a_{t+1}·dh_{t+1},
 *     Σ_{t in c} Δ_t·R_t = Σ_{t in c} cΔ_t·ρ_t + (Σ_{t in c} Δ_t)·R_s,
 *         cΔ_t = Σ_{t' in c, t' <= t} Δ_{t'},
 *
 * and R_s = a_s·h_{s-1}·dh_s needs h only at chunk boundaries. Restarting at every chunk start from the exact
 * R_s keeps the cancellation inside these sums to L steps (summing ρ over all of T would lose about log10(T)
 * digits of dA and dΔ).
 *
 * Precision. The same ρ can be written g_t·C_t·h_t - x_t·dh_t (the two differ by g_t·C_t·x_t in each half), but
 * for fast-decaying states (A ≈ -32 in S4D-real init at N = 32, a_t ≈ e^-3) each half is then about 1/a_t times ρ,
 * and dA lost 1e-2 in those columns against a float64 autograd of an LM; with the decayed terms above each half
 * is at most about ρ's size. What remains is the cΔ weighting (terms up to L/2 times the answer): the dA sums
 * are Kahan-compensated (tests/selective_scan_precision_test.ts: 3e-5 of the fast columns' scale at L = 64,
 * against 9e-4 before; 5e-7 at L = 1).
 *
 * ## Kernels
 * 1. `selective_scan_fwd.wgsl`: the forward. It **saves nothing** for the backward: the backward has to sweep
 *    forward in time anyway to rebuild h inside each chunk, so it rebuilds h from h_{-1} = 0 in one sweep
 *    instead, at the same cost; chunk states saved by the forward would only add a write to every training step.
 * 2. `selective_scan_bwd_fwd.wgsl` (backward, forward sweep): h; writes g·F, dz, dC partials, dD partials, the
 *    cΔ-weighted g·C·h part of dA, and, transiently, h at the end of each chunk, HS: (K, Bt, E, ceil(T/L), N)
 *    f32 (N/L of the size of u: 1/2 for N = 32, L = 64) and Σ Δ per chunk, CTOT: (K, Bt, ceil(T/L), E).
 * 3. `selective_scan_bwd.wgsl` (backward, reverse sweep): dh; writes du, dΔ, dB partials, adds the rest of dA.
 * 4. Fixed-order sums (lib/ops/reduce.ts): dB, dC over channel groups, dA, dD over the batch.
 * No float atomics anywhere; every sum has a fixed order, so results are bit-identical run to run.
 *
 * ## Work layout (all three scan kernels)
 * A workgroup owns one row (k, b) and WC·RE consecutive channels. Thread (j, s) owns RE consecutive channels
 * (one vec4 when E % 4 = 0: coalesced 16-byte loads of u, Δ, z, dout) and NR states of each (slice s of SN), all
 * in registers: its h (or dh), A·log2(e) and dA accumulators. It walks T sequentially (the reverse sweep
 * backwards) in tiles of TT steps; for each tile the workgroup stages B_t, C_t (shared by all channels, read
 * back as broadcast vec4s) and u, Δ, g in workgroup memory. Sums over n are split into SN slices and finished in
 * workgroup memory (per (t, e): cheap, NR states already summed in registers); sums over e for dB, dC are
 * summed over a thread's RE channels in registers, then over the WC lanes in workgroup memory, then over the
 * ceil(E / (WC·RE)) workgroups by a reduce kernel. The loads of the next tile are issued into registers before
 * the current tile is computed, and the staging buffers alternate between tiles (two barriers per tile).
 *
 * ## Cost and measured speed
 * Per (t, e, n) the forward costs one exp2 and 4 FMA-class instructions, each backward sweep one exp2 and ~8; the
 * floor on an H100 is the exp2 rate (16 per SM per clock): 0.58 ms per sweep at Bt 64, T 512, E 2048, N 32,
 * against 0.36 ms to move the forward's minimum 1.08 GB at 3 TB/s. Measured there (tests/selective_scan_bench.ts,
 * after the clocks ramped up): forward 1.17 ms (926 GB/s of the minimum bytes, 31% of 3 TB/s), backward 8.29 ms
 * (4.06 ms forward sweep + 4.00 ms reverse sweep + 0.24 ms of sums), 315 GB/s together (10.5%), far below the
 * 40% aimed at. What bounds the sweeps (tests/scan_profile_bench.ts and variants of the kernels with one piece
 * removed, at 128 threads and tiles of 2):
 * - **One workgroup's worth of work per SM.** Timing the sweeps at Bt 1..128 shows that a batch of 8 rows (128
 *   workgroups, one per SM) takes as long as one row, and every doubling beyond it doubles the time: each SM
 *   runs only about 128 threads of a sweep at a time, whatever the workgroup shape (64, 128 or 256 threads,
 *   1..4 channels and 4..16 states per thread all gave the same per-SM rate). With 4 warps an SM hides little
 *   latency. The forward, with fewer registers, runs twice as many.
 * - **Per-tile phases, not the recurrence.** Removing the whole step computation saved only 1.6 of 5.6 ms; the
 *   rest is staging, global-load latency (1.0 ms), the per-(t, e) slice sums and their stores (1.3 ms) and the
 *   dB/dC sums over channel lanes (1.4 ms). The exp2 costs 0.2 ms. Longer tiles amortise these phases, but
 *   only while a workgroup needs less than about 24 KB of workgroup memory: past that the SM runs one
 *   workgroup instead of two (a forward padded with 24 KB of unused workgroup memory ran at half its rate). The
 *   defaults (`scanConfig`) are the best measured balance. Two-level lane sums (an extra barrier) were slower.
 * Per-kernel times taken straight after start-up are up to 3x too long: the H100 idles at 345 MHz and reaches
 * 1980 MHz only under load. Next steps: output buffers alternating between tiles, so that the per-tile sums need
 * no second barrier and overlap the next tile; a parallel scan over time inside a chunk.
 * @module
 */
import { kernelSource } from "../core/kernels.ts";
import { dispatch, gpuInfo, type Kernel } from "../core/runtime.ts";
import { record, type VjpRule } from "../core/tape.ts";
import { empty, type Tensor } from "../core/tensor.ts";
import { sum } from "./reduce.ts";
import { expectF32, repeatBlocks } from "./util.ts";

/** The inputs of `selectiveScan` (shapes in the module glossary). */
export interface SelectiveScanInputs {
  /** (K, Bt, T, E) input. */
  u: Tensor;
  /** (K, Bt, T, E) step sizes, positive (softplus already applied). */
  delta: Tensor;
  /** (K, E, N) negative decay rates (A = -exp(A_log)). */
  A: Tensor;
  /** (K, Bt, T, N) input projections, shared by all channels. */
  B: Tensor;
  /** (K, Bt, T, N) output projections, shared by all channels. */
  C: Tensor;
  /** (K, E) skip connection. */
  D: Tensor;
  /** (K, Bt, T, E) optional gate: out = y ⊙ silu(z). */
  z?: Tensor;
}

/** Tuning knobs (defaults are chosen for the H100; every value gives the same results up to rounding). */
export interface SelectiveScanOptions {
  /** Chunk length L of the backward's boundary terms (default 64; dA loses about log10(L) digits). */
  chunk?: number;
  /** States per thread NR: 4, 8 or 16 (default 8; 4 for the backward on a GPU at 8 < N ≤ 16). */
  statesPerThread?: number;
  /**
   * Most channels per thread RE: 1, 2 or 4 (default 4, and 2 for the forward on a GPU; the largest of these
   * dividing E is used).
   */
  channelsPerThread?: number;
  /**
   * Time steps per tile TT (default on a GPU 4 for the forward and 3 for the backward, 2 for the backward at
   * 8 < N ≤ 16 and on a CPU adapter; less when workgroup memory is short).
   */
  tile?: number;
  /**
   * Most threads per workgroup: 32, 64, 128 or 256 (default on a GPU 128 for the forward and 64 for the
   * backward, 256 for the backward at 8 < N ≤ 16 and on a CPU adapter; never fewer than the state slices).
   */
  threads?: number;
}

/** Gradients of `selectiveScan`, each of its input's shape. */
export interface SelectiveScanGrads {
  du: Tensor;
  ddelta: Tensor;
  dA: Tensor;
  dB: Tensor;
  dC: Tensor;
  dD: Tensor;
  dz?: Tensor;
}

/** Sizes of a selective scan. */
export interface SelectiveScanDims {
  K: number;
  Bt: number;
  T: number;
  E: number;
  N: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration and kernels

interface ScanConfig {
  re: number; // channels per thread
  nr: number; // states per thread
  sn: number; // state slices
  wc: number; // channel groups per workgroup
  ttFwd: number;
  ttBf: number;
  ttBr: number;
  chunk: number;
  groups: number; // workgroups along E
}

const floorPow2 = (x: number) => 2 ** Math.floor(Math.log2(x));
const ceilPow2 = (x: number) => 2 ** Math.ceil(Math.log2(x));

/**
 * The launch configuration of one pass. Defaults differ by pass on a GPU (measured on the H100 at Bt 64, T 512,
 * E 2048, N 32, each kernel timed alone after the clocks had ramped up):
 * - the forward: 2 channels per thread, workgroups of 128 threads, tiles of 4 steps: 1.13 ms (1.39 with 4
 *   channels, 128 threads and tiles of 2; 1.18 with 256 threads);
 * - the backward sweeps: 4 channels per thread, workgroups of 64 threads, tiles of 3 steps: 4.0 + 4.0 ms + 0.2 ms
 *   of sums (5.6 + 6.1 + 0.15 with 128 threads and tiles of 2; 4.4 + 4.4 + 0.15 with 128 threads and tiles of 3;
 *   64 threads with tiles of 4 took 6.6 + 6.8: with workgroup memory past ~24 KB fewer workgroups share an SM).
 * On a CPU adapter tiles stay at 2 (llvmpipe unrolls long tiles into minutes of compiling) and workgroups at up
 * to 256 threads.
 *
 * One exception, for the backward at 8 < N ≤ 16 (`smallStates`): with 8 states a thread such an N has only two
 * state slices, so a workgroup of 64 threads holds 32 channels' worth of short sweeps. There it takes 4 states a
 * thread (four slices), workgroups of up to 256 threads (128 at 4 channels a thread) and tiles of 2: measured on
 * the H200 in the whole training step of a 2-layer Mamba 1 LM (D 256, N 16, K 4 × B 32, T 220, `LM_BENCH_ONLY="Mamba
 * 1" deno run -A tests/lm_step_bench.ts`), 14.60 → 11.97 ms. At N 32, which has four slices already, the same
 * change made the 8-layer D 128 LM slower (25.43 → 27.13 ms), as did three other configurations tried there
 * (26.3–26.6), so the defaults above stay for N > 16.
 */
function scanConfig(
  d: SelectiveScanDims,
  hasZ: boolean,
  o: SelectiveScanOptions,
  pass: "forward" | "backward",
): ScanConfig {
  const onGpu = !gpuInfo().isCpu;
  const smallStates = onGpu && pass === "backward" && d.N > 8 && d.N <= 16;
  const reMax = o.channelsPerThread ?? (onGpu && pass === "forward" ? 2 : 4);
  if (![1, 2, 4].includes(reMax)) {
    throw new RangeError(`selectiveScan: channelsPerThread must be 1, 2 or 4, got ${reMax}`);
  }
  const re = [4, 2, 1].find((r) => r <= reMax && d.E % r === 0)!;
  const nrWanted = o.statesPerThread ?? (smallStates ? 4 : 8);
  if (![4, 8, 16].includes(nrWanted)) {
    throw new RangeError(`selectiveScan: statesPerThread must be 4, 8 or 16, got ${nrWanted}`);
  }
  const nr = Math.min(nrWanted, Math.ceil(d.N / 4) * 4);
  const sn = Math.ceil(d.N / nr);
  const limits = gpuInfo().limits;
  // Small workgroups on a GPU (see above); never fewer threads than state slices.
  if (o.threads !== undefined && ![32, 64, 128, 256].includes(o.threads)) {
    throw new RangeError(`selectiveScan: threads must be 32, 64, 128 or 256, got ${o.threads}`);
  }
  const threadCap = Math.max(
    o.threads ?? (onGpu && !smallStates ? (pass === "forward" ? 128 : 64) : 256),
    ceilPow2(sn),
  );
  const maxThreads = Math.min(threadCap, 256, limits.maxComputeInvocationsPerWorkgroup);
  if (sn > maxThreads) {
    throw new RangeError(`selectiveScan: N = ${d.N} is too large (at most ${maxThreads * nr})`);
  }
  const ev = d.E / re;
  // At most 128 channels per workgroup (fewer where the thread cap binds): the dB, dC partials are
  // (E / (WC·RE), K, Bt, T, N).
  const wc = Math.min(128 / re, ceilPow2(ev), floorPow2(maxThreads / sn));
  const chunk = o.chunk ?? 64;
  if (!Number.isInteger(chunk) || chunk < 1) {
    throw new RangeError(`selectiveScan: chunk must be a positive integer, got ${chunk}`);
  }
  const np = sn * nr;
  const smem = limits.maxComputeWorkgroupStorageSize;
  const pstr = (tt: number) => (tt * np / 4) | 1;
  // Workgroup bytes of each kernel for a tile of tt steps (the var<workgroup> declarations of the .wgsl files).
  const zn = (tt: number) => (hasZ ? tt * wc * re : re); // sSZ / sDZF
  // (staging buffers are doubled: consecutive tiles alternate between them)
  const fwdBytes = (tt: number) => 4 * (2 * tt * (2 * np + 2 * wc * re) + tt * wc * sn * re + 2 * zn(tt));
  const bfBytes = (tt: number) =>
    4 *
      (2 * tt * (2 * np + 3 * wc * re) + tt * wc * sn * re * (hasZ ? 2 : 1) + (hasZ ? 0 : re) + 2 * zn(tt)) +
    16 * wc * pstr(tt);
  const brBytes = (tt: number) =>
    4 * (2 * tt * (2 * np + 4 * wc * re) + 2 * tt * wc * sn * re) + 16 * wc * pstr(tt);
  const pick = (bytes: (tt: number) => number, cap: number) => {
    if (o.tile !== undefined && !(Number.isInteger(o.tile) && o.tile >= 1)) {
      throw new RangeError(`selectiveScan: tile must be a positive integer, got ${o.tile}`);
    }
    let tt = o.tile ?? cap;
    while (tt > 1 && bytes(tt) > smem) tt--;
    if (bytes(tt) > smem) {
      throw new RangeError(
        `selectiveScan: N = ${d.N} needs ${bytes(tt)} bytes of workgroup memory, the device has ${smem}`,
      );
    }
    return tt;
  };
  return {
    re,
    nr,
    sn,
    wc,
    ttFwd: pick(fwdBytes, onGpu ? 4 : 2),
    ttBf: pick(bfBytes, onGpu && !smallStates ? 3 : 2),
    ttBr: pick(brBytes, onGpu && !smallStates ? 3 : 2),
    chunk,
    groups: Math.ceil(ev / wc),
  };
}

/**
 * Expands the repeat markers of the scan kernels (see the .wgsl headers): `//@unroll_n` and `//@unroll_q` blocks
 * repeat for n = 0..NR-1 and q = 0..NR/4-1 ($n, $q = n / 4, $c = x|y|z|w for n % 4); `//@repeat COUNT` blocks
 * repeat COUNT times with $m = 0, 1, ... Constant indices keep per-thread arrays in registers on every driver.
 */
function unroll(src: string, nr: number): string {
  const rep = (body: string, count: number, sub: (i: number) => Record<string, string>) => {
    let out = "";
    for (let i = 0; i < count; i++) {
      let b = body;
      for (const [k, v] of Object.entries(sub(i))) b = b.replaceAll(k, v);
      out += b;
    }
    return out;
  };
  return repeatBlocks(src, {}, "$m")
    .replace(
      /^[ \t]*\/\/@unroll_([nq])\n([\s\S]*?)^[ \t]*\/\/@end\n/gm,
      (_, kind: string, body: string) =>
        kind === "n"
          ? rep(body, nr, (i) => ({ $n: String(i), $q: String(i >> 2), $c: "xyzw"[i % 4] }))
          : rep(body, nr / 4, (i) => ({ $q: String(i) })),
    );
}

/** WGSL helpers that load / store the RE channels of a group from a (..., E, stride) layout. */
function stridedHelpers(re: number, loads: string[], stores: string[]): string {
  const ve = re === 1 ? "f32" : `vec${re}<f32>`;
  const idx = (k: number) => (k === 0 ? "i" : k === 1 ? "i + stride" : `i + ${k}u * stride`);
  const lines: string[] = [];
  for (const b of loads) {
    const parts = Array.from({ length: re }, (_, k) => `${b}[${idx(k)}]`);
    lines.push(
      `fn load_${b}(i: u32, stride: u32) -> ${ve} { return ${
        re === 1 ? parts[0] : `${ve}(${parts.join(", ")})`
      }; }`,
    );
  }
  for (const b of stores) {
    const parts = Array.from(
      { length: re },
      (_, k) => `${b}[${idx(k)}] = v${re === 1 ? "" : "[" + k + "]"};`,
    );
    lines.push(`fn store_${b}(i: u32, stride: u32, v: ${ve}) { ${parts.join(" ")} }`);
  }
  return lines.join("\n");
}

type ScanKernel = "fwd" | "bwd_fwd" | "bwd";
const kernelCache = new Map<string, Kernel>();

function scanKernel(which: ScanKernel, cfg: ScanConfig, hasZ: boolean): Kernel {
  const key = `${which}|${JSON.stringify(cfg)}|${hasZ}`;
  let kernel = kernelCache.get(key);
  if (kernel) return kernel;
  const tt = which === "fwd" ? cfg.ttFwd : which === "bwd_fwd" ? cfg.ttBf : cfg.ttBr;
  const np4 = (cfg.sn * cfg.nr) / 4;
  const subst: Record<string, string | number> = {
    VE: cfg.re === 1 ? "f32" : `vec${cfg.re}<f32>`,
    VU: cfg.re === 1 ? "u32" : `vec${cfg.re}<u32>`,
    RE: cfg.re,
    NR: cfg.nr,
    SN: cfg.sn,
    WC: cfg.wc,
    TT: tt,
    HAS_Z: String(hasZ),
    PSTR: (tt * np4) | 1,
    YN: hasZ ? tt * cfg.wc * cfg.sn : 1,
    ZN: hasZ ? tt * cfg.wc : 1,
    PB: Math.ceil((tt * np4 * 4) / (cfg.wc * cfg.sn)),
    PC: Math.ceil((tt * cfg.wc) / (cfg.wc * cfg.sn)),
    HDOT: cfg.re === 1 ? "a * b" : "dot(a, b)",
    STRIDED: which === "fwd"
      ? stridedHelpers(cfg.re, ["A"], [])
      : which === "bwd_fwd"
      ? stridedHelpers(cfg.re, ["A"], ["HS", "DA"])
      : stridedHelpers(cfg.re, ["A", "HS", "DA"], ["DA"]),
  };
  const file = which === "fwd"
    ? "selective_scan_fwd.wgsl" as const
    : which === "bwd_fwd"
    ? "selective_scan_bwd_fwd.wgsl" as const
    : "selective_scan_bwd.wgsl" as const;
  const r = "read" as const, w = "read_write" as const;
  const bindings = which === "fwd"
    ? [r, r, r, r, r, r, r, w]
    : which === "bwd_fwd"
    ? [r, r, r, r, r, r, r, r, w, w, w, w, w, w, w]
    : [r, r, r, r, r, r, r, r, r, r, r, w, w, w, w];
  kernel = { name: `selective_scan_${which}`, code: unroll(kernelSource(file, subst), cfg.nr), bindings };
  kernelCache.set(key, kernel);
  return kernel;
}

function scanDims(op: string, x: SelectiveScanInputs): SelectiveScanDims {
  const { u, delta, A, B, C, D, z } = x;
  for (const [name, t] of Object.entries(x)) if (t) expectF32(`${op}: ${name}`, t as Tensor);
  if (u.rank !== 4) throw new RangeError(`${op}: u must be (K, Bt, T, E), got [${u.shape.join(", ")}]`);
  const [K, Bt, T, E] = u.shape;
  if (A.rank !== 3 || A.shape[0] !== K || A.shape[1] !== E) {
    throw new RangeError(`${op}: A must be (K, E, N) = (${K}, ${E}, N), got [${A.shape.join(", ")}]`);
  }
  const N = A.shape[2];
  const want: [string, Tensor | undefined, number[]][] = [
    ["delta", delta, [K, Bt, T, E]],
    ["B", B, [K, Bt, T, N]],
    ["C", C, [K, Bt, T, N]],
    ["D", D, [K, E]],
    ["z", z, [K, Bt, T, E]],
  ];
  for (const [name, t, shape] of want) {
    if (t && (t.rank !== shape.length || t.shape.some((s, i) => s !== shape[i]))) {
      throw new RangeError(
        `${op}: ${name} must have shape [${shape.join(", ")}], got [${t.shape.join(", ")}]`,
      );
    }
  }
  if ([K, Bt, T, E, N].some((s) => s < 1)) {
    throw new RangeError(
      `${op}: every size must be at least 1, got K ${K}, Bt ${Bt}, T ${T}, E ${E}, N ${N}`,
    );
  }
  return { K, Bt, T, E, N };
}

function grid(cfg: ScanConfig, d: SelectiveScanDims): [number, number, number] {
  const kb = d.K * d.Bt;
  return [cfg.groups, Math.min(kb, 65535), Math.ceil(kb / 65535)];
}

// ---------------------------------------------------------------------------------------------------------------
// Forward and VJP

/**
 * The selective scan: y_t = Σ_n C_t·h_t + D·u_t with h_t = exp(Δ_t·A)·h_{t-1} + Δ_t·B_t·u_t, times silu(z) if z
 * is given. Shapes: u, delta, z (K, Bt, T, E); A (K, E, N); B, C (K, Bt, T, N); D (K, E). Returns (K, Bt, T, E).
 * Differentiable in every input. Saves nothing for the backward (see the module notes).
 * @throws {RangeError} on shapes that do not match.
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { full } from "../core/tensor.ts";
 * import { selectiveScan } from "./selective_scan.ts";
 * await initGpu();
 * const [K, Bt, T, E, N] = [1, 2, 8, 4, 16];
 * const y = selectiveScan({
 *   u: full([K, Bt, T, E], 1), delta: full([K, Bt, T, E], 0.5), A: full([K, E, N], -1),
 *   B: full([K, Bt, T, N], 0.1), C: full([K, Bt, T, N], 0.1), D: full([K, E], 1),
 * });
 * console.log(y.shape); // [1, 2, 8, 4]
 * ```
 */
export function selectiveScan(x: SelectiveScanInputs, options: SelectiveScanOptions = {}): Tensor {
  const d = scanDims("selectiveScan", x);
  const hasZ = x.z !== undefined;
  const cfg = scanConfig(d, hasZ, options, "forward");
  const y = empty(x.u.shape);
  dispatch(
    scanKernel("fwd", cfg, hasZ),
    [x.u, x.delta, x.A, x.B, x.C, x.D, x.z ?? x.u, y].map((t) => t.buffer),
    [d.T, d.E, d.N, d.E / cfg.re, d.K * d.Bt, d.Bt],
    grid(cfg, d),
  );
  const inputs = [x.u, x.delta, x.A, x.B, x.C, x.D, ...(x.z ? [x.z] : [])];
  record("selectiveScan", inputs, [y], { options }); // saves nothing: the backward recomputes h
  return y;
}

/**
 * The backward of `selectiveScan` for the output cotangent `dout` (K, Bt, T, E): two sweeps over T and four
 * fixed-order reductions (see the module notes). Exposed for benchmarks; autodiff calls it through the VJP rule.
 */
export function selectiveScanBackward(
  x: SelectiveScanInputs,
  dout: Tensor,
  options: SelectiveScanOptions = {},
): SelectiveScanGrads {
  return backward(x, dout, options, 3)!;
}

/**
 * Benchmarks only: records the first `stages` stages of the backward (1: the forward sweep, 2: both sweeps) and
 * frees their results, so that a profile can split the backward's time.
 */
export function profileSelectiveScanBackward(
  x: SelectiveScanInputs,
  dout: Tensor,
  options: SelectiveScanOptions,
  stages: 1 | 2,
): void {
  backward(x, dout, options, stages);
}

/** The launch configurations `selectiveScan` and its backward pick on this device (for benchmark reports). */
export function selectiveScanConfig(
  d: SelectiveScanDims,
  hasZ: boolean,
  options: SelectiveScanOptions = {},
): { forward: Readonly<Record<string, number>>; backward: Readonly<Record<string, number>> } {
  const pick = (c: ScanConfig, keys: (keyof ScanConfig)[]) => Object.fromEntries(keys.map((k) => [k, c[k]]));
  const common: (keyof ScanConfig)[] = ["re", "nr", "sn", "wc", "groups"];
  return {
    forward: pick(scanConfig(d, hasZ, options, "forward"), [...common, "ttFwd"]),
    backward: pick(scanConfig(d, hasZ, options, "backward"), [...common, "ttBf", "ttBr", "chunk"]),
  };
}

function backward(
  x: SelectiveScanInputs,
  dout: Tensor,
  options: SelectiveScanOptions,
  stages: number,
): SelectiveScanGrads | null {
  const d = scanDims("selectiveScan backward", x);
  if (dout.size !== x.u.size) throw new RangeError(`selectiveScan backward: dout must match u, got ${dout}`);
  const hasZ = x.z !== undefined;
  const cfg = scanConfig(d, hasZ, options, "backward");
  const { K, Bt, T, E, N } = d;
  const nc = Math.ceil(T / cfg.chunk);
  const g = cfg.groups;
  const params = [T, E, N, E / cfg.re, K * Bt, Bt, cfg.chunk, nc];
  const dummy = empty([4]);
  const gf = empty(x.u.shape);
  const dz = hasZ ? empty(x.u.shape) : undefined;
  const hs = empty([K, Bt, E, nc, N]); // h at chunk ends: N/L of the size of u
  const ctot = empty([K, Bt, nc, E]);
  const dCp = empty([g, K, Bt, T, N]);
  const dAp = empty([K, Bt, E, N]);
  const dDp = empty([K, Bt, E]);
  const z = x.z ?? x.u;
  dispatch(
    scanKernel("bwd_fwd", cfg, hasZ),
    [x.u, x.delta, x.A, x.B, x.C, x.D, z, dout, gf, dz ?? dummy, hs, ctot, dCp, dAp, dDp].map((t) =>
      t.buffer
    ),
    params,
    grid(cfg, d),
  );
  const scratch = [dummy, gf, hs, ctot, dCp, dAp, dDp];
  if (stages === 1) {
    for (const t of [...scratch, dz]) t?.dispose();
    return null;
  }
  const du = empty(x.u.shape);
  const ddelta = empty(x.u.shape);
  const dBp = empty([g, K, Bt, T, N]);
  dispatch(
    scanKernel("bwd", cfg, hasZ),
    [x.u, x.delta, x.A, x.B, x.C, x.D, z, dout, gf, hs, ctot, dAp, du, ddelta, dBp].map((t) => t.buffer),
    params,
    grid(cfg, d),
  );
  if (stages === 2) {
    for (const t of [...scratch, dz, du, ddelta, dBp]) t?.dispose();
    return null;
  }
  const overGroups = (t: Tensor) => (g > 1 ? sum(t, 0) : t.reshape([K, Bt, T, N]));
  const grads: SelectiveScanGrads = {
    du,
    ddelta,
    dA: sum(dAp, 1),
    dB: overGroups(dBp),
    dC: overGroups(dCp),
    dD: sum(dDp, 1),
    dz,
  };
  for (const t of [...scratch, dBp]) t.dispose();
  return grads;
}

/**
 * What the backward of `selectiveScan` allocates, in 4-byte elements, for memory estimates (lib/train/memory.ts;
 * it mirrors `backward` above): `scratch`, freed when the backward returns (g·F, h at chunk ends, Σ Δ per chunk,
 * the dB/dC/dA/dD partials), and `grads`, the gradients it returns (du, dΔ, dz; dB, dC; dA, dD).
 */
export function selectiveScanBackwardSizes(
  d: SelectiveScanDims,
  hasZ: boolean,
  options: SelectiveScanOptions = {},
): { scratch: number[]; grads: number[] } {
  const cfg = scanConfig(d, hasZ, options, "backward");
  const { K, Bt, T, E, N } = d;
  const nc = Math.ceil(T / cfg.chunk);
  const act = K * Bt * T * E, bt = K * Bt * T * N;
  // with one channel group the dB, dC partials are the gradients (reshaped), not scratch
  const partials = cfg.groups > 1 ? [cfg.groups * bt, cfg.groups * bt] : [];
  return {
    // dummy, gf, hs, ctot, dAp, dDp, and the dB, dC partials
    scratch: [4, act, K * Bt * E * nc * N, K * Bt * nc * E, K * Bt * E * N, K * Bt * E, ...partials],
    // du, ddelta, dz, dB, dC, dA, dD
    grads: [act, act, ...(hasZ ? [act] : []), bt, bt, K * E * N, K * E],
  };
}

/** VJP of `selectiveScan`: gradients for u, delta, A, B, C, D (and z). */
export const selectiveScanVjp: VjpRule<{ options: SelectiveScanOptions }> = ({ inputs, attrs }, [dy]) => {
  const [u, delta, A, B, C, D, z] = inputs;
  const gr = selectiveScanBackward({ u, delta, A, B, C, D, z }, dy!, attrs.options);
  return [gr.du, gr.ddelta, gr.dA, gr.dB, gr.dC, gr.dD, ...(gr.dz ? [gr.dz] : [])];
};

// ---------------------------------------------------------------------------------------------------------------
// Float64 references

/** Row-major float64 inputs of the references (shapes as in `SelectiveScanInputs`). */
export interface SelectiveScanRefInputs {
  u: Float64Array;
  delta: Float64Array;
  A: Float64Array;
  B: Float64Array;
  C: Float64Array;
  D: Float64Array;
  z?: Float64Array;
}

/** Float64 gradients of the reference VJP. */
export interface SelectiveScanRefGrads {
  du: Float64Array;
  ddelta: Float64Array;
  dA: Float64Array;
  dB: Float64Array;
  dC: Float64Array;
  dD: Float64Array;
  dz?: Float64Array;
}

const sigmoid64 = (v: number) => 1 / (1 + Math.exp(-v));

/**
 * Float64 sequential reference of `selectiveScan`: returns out (K, Bt, T, E).
 * @example
 * ```ts
 * import { selectiveScanRef } from "./selective_scan.ts";
 * const dims = { K: 1, Bt: 1, T: 2, E: 1, N: 1 };
 * const out = selectiveScanRef({
 *   u: Float64Array.of(1, 1), delta: Float64Array.of(1, 1), A: Float64Array.of(-1),
 *   B: Float64Array.of(1, 1), C: Float64Array.of(1, 1), D: Float64Array.of(0),
 * }, dims);
 * console.log(out); // [1, 1 + e^-1]
 * ```
 */
export function selectiveScanRef(x: SelectiveScanRefInputs, d: SelectiveScanDims): Float64Array {
  const { K, Bt, T, E, N } = d;
  const out = new Float64Array(K * Bt * T * E);
  const h = new Float64Array(N);
  for (let k = 0; k < K; k++) {
    for (let b = 0; b < Bt; b++) {
      const row = k * Bt + b;
      for (let e = 0; e < E; e++) {
        h.fill(0);
        for (let t = 0; t < T; t++) {
          const i = (row * T + t) * E + e, bn = (row * T + t) * N;
          const dl = x.delta[i], uu = x.u[i];
          let y = x.D[k * E + e] * uu;
          for (let n = 0; n < N; n++) {
            h[n] = Math.exp(dl * x.A[(k * E + e) * N + n]) * h[n] + dl * x.B[bn + n] * uu;
            y += x.C[bn + n] * h[n];
          }
          out[i] = x.z ? y * x.z[i] * sigmoid64(x.z[i]) : y;
        }
      }
    }
  }
  return out;
}

/**
 * Float64 reference VJP of `selectiveScan`: stores every h_t, then runs dh backwards (the textbook formulas of
 * the module notes, without the chunked identity the kernels use).
 * @example
 * ```ts
 * import { selectiveScanVjpRef } from "./selective_scan.ts";
 * const dims = { K: 1, Bt: 1, T: 1, E: 1, N: 1 };
 * const x = {
 *   u: Float64Array.of(2), delta: Float64Array.of(0.5), A: Float64Array.of(-1),
 *   B: Float64Array.of(1), C: Float64Array.of(3), D: Float64Array.of(1),
 * };
 * console.log(selectiveScanVjpRef(x, dims, Float64Array.of(1)).dC); // [1] = h_0 = Δ·B·u
 * ```
 */
export function selectiveScanVjpRef(
  x: SelectiveScanRefInputs,
  d: SelectiveScanDims,
  dout: Float64Array,
): SelectiveScanRefGrads {
  const { K, Bt, T, E, N } = d;
  const act = K * Bt * T * E, bt = K * Bt * T * N;
  const gr: SelectiveScanRefGrads = {
    du: new Float64Array(act),
    ddelta: new Float64Array(act),
    dA: new Float64Array(K * E * N),
    dB: new Float64Array(bt),
    dC: new Float64Array(bt),
    dD: new Float64Array(K * E),
    dz: x.z ? new Float64Array(act) : undefined,
  };
  const hs = new Float64Array((T + 1) * N); // hs[(t + 1)·N + n] = h_t, hs[0..N) = h_{-1} = 0
  const dh = new Float64Array(N); // a_{t+1}·dh_{t+1} on entry to step t
  for (let k = 0; k < K; k++) {
    for (let b = 0; b < Bt; b++) {
      const row = k * Bt + b;
      for (let e = 0; e < E; e++) {
        const ai = (k * E + e) * N, D = x.D[k * E + e];
        for (let t = 0; t < T; t++) {
          const i = (row * T + t) * E + e, bn = (row * T + t) * N;
          for (let n = 0; n < N; n++) {
            hs[(t + 1) * N + n] = Math.exp(x.delta[i] * x.A[ai + n]) * hs[t * N + n] +
              x.delta[i] * x.B[bn + n] * x.u[i];
          }
        }
        dh.fill(0);
        for (let t = T - 1; t >= 0; t--) {
          const i = (row * T + t) * E + e, bn = (row * T + t) * N;
          const dl = x.delta[i], uu = x.u[i];
          let g = dout[i];
          if (x.z) {
            const zz = x.z[i], sg = sigmoid64(zz);
            let y = D * uu;
            for (let n = 0; n < N; n++) y += x.C[bn + n] * hs[(t + 1) * N + n];
            gr.dz![i] = dout[i] * y * sg * (1 + zz * (1 - sg));
            g = dout[i] * zz * sg;
          }
          let du = D * g, ddl = 0;
          for (let n = 0; n < N; n++) {
            const a = Math.exp(dl * x.A[ai + n]), hPrev = hs[t * N + n];
            const dht = x.C[bn + n] * g + dh[n];
            gr.dC[bn + n] += g * hs[(t + 1) * N + n];
            gr.dB[bn + n] += dht * dl * uu;
            du += dht * dl * x.B[bn + n];
            ddl += dht * (x.B[bn + n] * uu + x.A[ai + n] * a * hPrev);
            gr.dA[ai + n] += dht * dl * a * hPrev;
            dh[n] = a * dht;
          }
          gr.du[i] = du;
          gr.ddelta[i] = ddl;
          gr.dD[k * E + e] += g * uu;
        }
      }
    }
  }
  return gr;
}
