/**
 * The chunked (state space duality) form of the Mamba 2 scan: the GPU forward and backward behind
 * `ssdScan(inputs, { algorithm: "chunked" })` (lib/ops/ssd_scan.ts has the op, its recurrence, the sequential
 * algorithm and the float64 references that test both).
 *
 * ## Math (per run k, batch row b, head h; a_t = dt_t·A ≤ 0, X̃_t = dt_t·x_t)
 * The sequence is cut into chunks of Q steps, each into NB blocks of QB steps (Q = NB·QB; padded steps t ≥ T have
 * dt = 0: no decay, no input). With seg(s, t) = Σ_{s<r≤t} a_r, L[t, s] = exp(seg(s, t)) for s ≤ t (0 above),
 * CB[t, s] = C_t·B_s, and within chunk c: fdec_t = exp(decay from the chunk's start through t), bdec_s =
 * exp(decay after s to the chunk's end), Hout_c the state at the chunk's end:
 *   y_t = Σ_{s ≤ t in c} CB[t, s]·L[t, s]·X̃_s  +  fdec_t·Hout_{c−1}·C_t  +  D·x_t
 *   Hout_c = exp(Σ_c a)·Hout_{c−1} + Σ_{s in c} bdec_s·X̃_s·B_sᵀ
 * The first sum is Q×Q "attention" (small products), the second the state passed between chunks (a short
 * recurrence over nC = ⌈T/Q⌉ chunks, each step a product over Q steps with no per-step decay in its inner loop).
 *
 * ## Decay sums (numerics)
 * A long cumulative sum of a in fp32 loses the small differences between nearby steps (at |Σa| = 1000 an ulp is
 * 6e-5). So no decay is a difference of long running sums: per block, loc_t (sum from the block's start through t)
 * and rem_t (sum after t to the block's end) are each summed over one block (≤ 64 terms of one sign); per chunk a
 * table TAB holds the sums of whole blocks between any two blocks. Then seg(s, t) = loc_t − loc_s within a block
 * (a difference of sums of ≤ 64 terms, as in a chunk of 64) and rem_s + TAB[bs][bt] + loc_t across blocks (a sum of
 * same-signed pieces, exact to a few ulps of itself); every exponent is ≤ 0, so no exp overflows. Blocks are also
 * the tiles of the time axis, so a chunk may be long (one chunk for the whole sequence) at the precision of short
 * blocks.
 *
 * ## Backward
 * Γ_c = ∂L/∂Hout_c runs backwards: Γ_{c−1} = exp(Σ_c a)·Γ_c + Σ_{t in c} fdec_t·dy_t·C_tᵀ (Γ_{nC−1} = 0). Then
 *   dX̃_s = Σ_{t ≥ s in c} CB[t, s]·L[t, s]·dy_t + bdec_s·Γ_c·B_s ,   dx = dt·dX̃ + D·dy ,   dD = Σ <dy, x>
 *   dC_t = Σ_h [ Σ_{s ≤ t} W_h[t, s]·B_s + fdec_t·Hout_{c−1}ᵀ·dy_t ]
 *   dB_s = Σ_h [ Σ_{t ≥ s} W_h[t, s]·C_t + bdec_s·Γ_cᵀ·X̃_s ]
 * with W_h = R_h ∘ L_h, R_h[t, s] = <dy_t, X̃_s> (the heads of a group share B, C, so W is summed over them first).
 * The decays: with d a_s = ∂L/∂a_s (= <∂L/∂h_s, exp(a_s)·h_{s−1}> of the recurrence), d dt_s = <dX̃_s, x_s> + A·d a_s
 * and dA = Σ_s dt_s·d a_s, and a_s enters every L[t, r] with r < s ≤ t, every fdec_t (t ≥ s), every bdec_r (r < s)
 * and the chunk's decay, so, within chunk c,
 *   d a_s = Σ_{t ≥ s} (z_t + v_t) + Σ_{t < s} u_t + e_c ,
 *   z_t = Σ_{r<t} Z[t, r] − Σ_{t'>t} Z[t', t] ,  Z = W ∘ CB  (so Σ_{t ≥ s} z_t sums Z over the pairs r < s ≤ t),
 *   v_t = fdec_t·<dy_t, Hout_{c−1}·C_t> ,  u_t = bdec_t·<X̃_t, Γ_c·B_t> ,  e_c = exp(Σ_c a)·<Γ_c, Hout_{c−1}> .
 * (mamba_ssm's backward sums the same pieces: ddA_cumsum_prev, ddA_next and the chunk-state term.)
 *
 * ## Kernels (kernels/ssd_chunk_*.wgsl; register tiles generated here, as kernels/matmul.wgsl's: each thread a
 * 4×8 block of outputs, operand slices of 16 inner steps staged k-major in workgroup memory, named vec4 registers)
 *   prep      per (row, head, chunk): loc, rem, fdec, bdec of each step and the block table       (both passes)
 *   cb        per (row, group, chunk, block pair bs ≤ bt): CB, QB×QB over N                        (both passes)
 *   state     per (row, head, P×N tile): Hout_c for c < nC − 1, walking the chunks                 (both, nC > 1)
 *   out       per (row, head, chunk, block, P tile): y over [the causal block pairs | the N states]   (forward)
 *   stateReverse  as state, backwards: Γ_c, and each tile's part of e_c                           (backward, nC > 1)
 *   outBackward   as out, transposed: dX̃ → dx, and <dX̃_s, x_s>, Σ dy·x                           (backward)
 *   r         per (row, group, chunk, pair, part of `rHeads` heads): R_h per head in order → W summed over the
 *             part's heads, Z's row and column sums per head; then the parts' W summed in order (backward)
 *   dC, dB    per (row, group, chunk, block, N tile): the heads' state parts (in order, inside) + the W part,
 *             and v, u per head                                                                   (backward)
 *   decay     per (row, head): d a_s by suffix and prefix sums in two levels, d dt, the dA, dD parts   (backward)
 *   then the sequential scan's sum_batch (kernels/ssd_scan_reduce.wgsl): dA, dD over the batch.
 * Where P % 4 = 0 and N % 4 = 0 (every model's shapes), out and outBackward (ssd_chunk_out4.wgsl), dC and dB
 * (ssd_chunk_dbc4.wgsl), and r and cb (at any P, N) read their operands as 16-byte loads into registers, one
 * slice ahead of the slice being multiplied, in one loop over all of a workgroup's slices; ssd_chunk_out.wgsl and
 * ssd_chunk_dbc.wgsl are the general forms. On a cross block pair (bs < bt) the decay exp(seg(s, t)) is a row
 * factor times a column factor, each ≤ 1, so CB is staged as it is and the factors scale a staged operand and the
 * summed rows; only the diagonal pair needs an exp per element. Measured on the H200 (one call, Bt 64, T 512,
 * H 32, P 64, N 128, fwd + bwd, against the kernels that staged scalar loads with the decay per element): r 7.9 →
 * 3.4 ms, outBackward 4.1 → 2.0, out 4.0 → 1.8, cb 0.57 → 0.23, dC 0.44 → 0.16, dB 0.39 → 0.16; in ablations of
 * the old r kernel, its operand loads were 4.2 of its 8.1 ms.
 * Every sum runs in a fixed order (no atomics): gradients are bit-identical run to run, and a run's bits do not
 * depend on the runs packed with it on K (tests/ssd_chunked_test.ts checks both).
 *
 * ## Block and chunk lengths
 * Blocks of 64 steps. The chunk is one block, or the whole sequence (at most 32 blocks), whichever `chunkCost`
 * counts fewer multiply-adds for: per step and head, the three block-pair products (out, outBackward, r) cost
 * (NB + 1)/2·QB·P each, and more than one chunk adds seven P×N products (state, out's and outBackward's state
 * terms, stateReverse, the backward's recomputed state, dC's and dB's state parts). At the size (Bt 64,
 * T 512, H 32, P 64, N 128, G 1) one chunk of 8 blocks: 60k multiply-adds per step and head against 71k for chunks
 * of 64, 126 GFLOP forward + backward; N ≤ 64, or T > 640 at N 128, take chunks of one block. (The sequential scan:
 * ~146 GFLOP.) The options `block` and `chunk` override both.
 *
 * ## Memory
 * The forward saves nothing for the backward (the tape holds the inputs); both recompute prep and cb, and the
 * backward recomputes the chunk states (mamba_ssm does the same) rather than keeping them. Scratch, per batch row
 * (Tp = nC·Q padded steps, NP = NB(NB + 1)/2 pairs; bytes at the size for all 64 rows, one chunk of 8
 * blocks / chunks of one block):
 *   DEC (H, Tp, 4), TAB (H, nC, NB+2, NB+2)                                          17 MB / 17 MB
 *   CB, WS (G, nC, NP, QB, QB) each                                                    38 MB / 8 MB each
 *   WSP (parts, G, nC, NP, QB, QB): W per part of the heads (fewer than 16 pairs a row)  0 / 0
 *   HS, GS (H, nC − 1, P, N) each: the states at the chunk ends and their gradients     0 / 470 MB each
 *   ZR, ZC (H, Tp, NB) each; V, U (H, Tp, ⌈N/64⌉); QS (H, Tp, ⌈P/64⌉); small parts    88 MB / 29 MB
 * In all 181 MB / 1.00 GB (x is 268 MB); the forward alone needs DEC, TAB, CB and HS. Linear in T: a chunk holds
 * at most 32 blocks, so CB and WS are at most T·(32·64)/2·G floats. The dispatches run over groups of batch rows
 * that keep each scratch buffer within the binding limit (option `partialBytes`).
 * @module
 */
import { kernelSource } from "../core/kernels.ts";
import { dispatch, gpu, type Kernel } from "../core/runtime.ts";
import { empty, type Tensor } from "../core/tensor.ts";
import { grid1d } from "./util.ts";
import type { SsdDims, SsdScanGrads, SsdScanInputs, SsdScanOptions } from "./ssd_scan.ts";

// ---------------------------------------------------------------------------------------------------------------
// The plan: block and chunk lengths

/** Blocks and chunks of one scan: chunks of Q = QB·NB steps, nC of them, each of NB blocks of QB steps. */
export interface ChunkPlan {
  /** Steps per block (the tile length along time), a multiple of 4, at most 64. */
  QB: number;
  /** Blocks per chunk. */
  NB: number;
  /** Steps per chunk, QB·NB. */
  Q: number;
  /** Chunks, ceil(T / Q). */
  nC: number;
  /** Block pairs (bt, bs ≤ bt) per chunk, NB·(NB + 1)/2. */
  NP: number;
}

const roundUp = (x: number, m: number) => Math.ceil(x / m) * m;

/** Most blocks per chunk (the prep kernel holds a chunk's decay sums in workgroup memory: 8 floats a step). */
const MAX_BLOCKS = 32;

/**
 * Multiply-adds per step and head of the chunked kernels for a plan (the cost model that picks the chunk length):
 * the three block-pair products (forward outputs, backward dX̃, the backward's R) cost (NB + 1)/2·QB·P each, the
 * group products (CB twice, the WS parts of dB and dC) (NB + 1)/2·QB·N/(H/G) each, and with more than one chunk
 * seven P·N products (the two state passes, the forward's and the backward's state terms, the backward's
 * recomputed states, and the state parts of dB and dC).
 */
export function chunkCost(d: SsdDims, QB: number, NB: number): number {
  const nC = Math.ceil(d.T / (QB * NB));
  const pairs = (NB + 1) / 2;
  return 3 * pairs * QB * d.P + 4 * pairs * QB * d.N / (d.H / d.G) + (nC > 1 ? 7 * d.P * d.N : 0);
}

/**
 * The block length (option `block`, default 64, shorter for short sequences) and the chunk length (option
 * `chunk`, a multiple of the block; by default whichever of one block per chunk or one chunk for the whole
 * sequence costs fewer multiply-adds by `chunkCost`: at P 64, N 128, H/G 32 one chunk up to T ≈ 640). Depends on
 * T, H, G, P, N only, never on K or the batch, so a run's bits do not depend on the runs packed with it.
 */
export function chunkPlan(d: SsdDims, opts: SsdScanOptions = {}): ChunkPlan {
  // Blocks above 32 steps must be multiples of 8: 36, 44, 52 and 60 gave wrong outputs (relative errors 0.1–0.5
  // against the float64 reference, found when fig7 evaluated at T 52), every other multiple of 4 is exact. So a
  // short sequence's single block is rounded up to a multiple of 8 (the padded steps change nothing).
  const QB = opts.block ?? Math.min(64, roundUp(d.T, d.T > 32 ? 8 : 4));
  if (!Number.isInteger(QB) || QB < 4 || QB > 64 || QB % 4 !== 0 || (QB > 32 && QB % 8 !== 0)) {
    throw new RangeError(
      `ssdScan: block must be a multiple of 4 up to 32 or of 8 up to 64, got ${opts.block}`,
    );
  }
  const whole = Math.ceil(d.T / QB); // blocks in the sequence; no chunk is longer
  let NB: number;
  if (opts.chunk !== undefined) {
    if (!Number.isInteger(opts.chunk) || opts.chunk < QB || opts.chunk % QB !== 0) {
      throw new RangeError(
        `ssdScan: chunk must be a positive multiple of the block ${QB}, got ${opts.chunk}`,
      );
    }
    NB = Math.min(opts.chunk / QB, whole);
    if (NB > MAX_BLOCKS) {
      throw new RangeError(
        `ssdScan: chunk ${opts.chunk} holds more than ${MAX_BLOCKS} blocks of ${QB} steps`,
      );
    }
  } else {
    NB = whole <= MAX_BLOCKS && chunkCost(d, QB, whole) <= chunkCost(d, QB, 1) ? whole : 1;
  }
  const Q = QB * NB;
  return { QB, NB, Q, nC: Math.ceil(d.T / Q), NP: (NB * (NB + 1)) / 2 };
}

// ---------------------------------------------------------------------------------------------------------------
// Register tiles and the code generated for them

/**
 * A register tile: TY×TX threads, thread (ty, tx) holding RM rows × RN columns (RN a multiple of 4, as RN/4 vec4s)
 * of an MT×NT block of outputs, MT = TY·RM, NT = TX·RN; rows 4·(ty + TY·g) + r (g < RM/4, r < 4) and vec4 columns
 * tx + TX·j (j < RN/4), so the TX threads of a warp read consecutive vec4s of the staged B slice (no bank
 * conflicts) and broadcast vec4s of the A slice. BK: inner steps per staged slice.
 */
export interface ChunkTile {
  RM: number;
  RN: number;
  TY: number;
  TX: number;
  BK: number;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const nextPow2 = (x: number) => 2 ** Math.ceil(Math.log2(Math.max(1, x)));

/**
 * A tile of `rows` (a multiple of 4) × at most `cols` columns, at most 256 threads: RM × RN outputs per thread
 * (option `threadTile`, default 4 × 8; RN 4 where the columns are fewer than 32, RM 4 where RM does not divide
 * `rows`), columns cut to `maxCols` and to what 256 threads hold (the rest go to more tiles in the grid).
 */
function makeTile(rows: number, cols: number, maxCols: number, BK: number, opts: SsdScanOptions): ChunkTile {
  const [rm, rn] = opts.threadTile ?? [4, 8];
  const RM = rows % rm === 0 ? rm : 4, RN = cols >= 32 ? rn : 4;
  const TY = rows / RM;
  const TX = Math.max(1, Math.min(Math.ceil(cols / RN), Math.floor(maxCols / RN), Math.floor(256 / TY)));
  return { RM, RN, TY, TX, BK };
}

const MT = (t: ChunkTile) => t.TY * t.RM;
const NT = (t: ChunkTile) => t.TX * t.RN;
const WGOf = (t: ChunkTile) => t.TY * t.TX;

function tileSubst(t: ChunkTile): Record<string, number> {
  const AS4 = MT(t) / 4 + 1, BS4 = NT(t) / 4 + 1;
  return {
    TY: t.TY,
    TX: t.TX,
    WG: WGOf(t),
    WGP: nextPow2(WGOf(t)),
    MT: MT(t),
    NT: NT(t),
    BK: t.BK,
    AS4,
    BS4,
    AS_LEN: t.BK * AS4,
    BS_LEN: t.BK * BS4,
  };
}

const cellName = (p: string, i: number, j: number) => `${p}${i}_${j}`;
const cellsOf = (t: ChunkTile) => range(t.RM).flatMap((i) => range(t.RN / 4).map((j) => [i, j] as const));
const rowExpr = (t: ChunkTile, i: number) => `(4u * (ty + ${(i >> 2) * t.TY}u) + ${i & 3}u)`;
const col4Expr = (t: ChunkTile, j: number) => `(tx + ${j * t.TX}u)`;
const join = (lines: string[]) => lines.join("\n  ");

const declCode = (t: ChunkTile, p: string) =>
  join(cellsOf(t).map(([i, j]) => `var ${cellName(p, i, j)} = vec4<f32>(0.0);`));
const zeroCode = (t: ChunkTile, p: string) =>
  join(cellsOf(t).map(([i, j]) => `${cellName(p, i, j)} = vec4<f32>(0.0);`));
const scaleCode = (t: ChunkTile, p: string, e: string) =>
  join(cellsOf(t).map(([i, j]) => `${cellName(p, i, j)} *= ${e};`));
const addCode = (t: ChunkTile, dst: string, src: string) =>
  join(cellsOf(t).map(([i, j]) => `${cellName(dst, i, j)} += ${cellName(src, i, j)};`));
/** One `f(cell, row, col4)` statement per cell, rows in order. */
const eachCell = (t: ChunkTile, p: string, f: (v: string, row: string, col4: string) => string) =>
  join(cellsOf(t).map(([i, j]) => f(cellName(p, i, j), rowExpr(t, i), col4Expr(t, j))));

/** One inner step of the product: acc += As[k][rows] ⊗ Bs[k][cols] (ai, bi: this thread's vec4 indices at k). */
function kstepCode(t: ChunkTile, p: string): string {
  const lines = [
    ...range(t.RM / 4).map((g) => `let a${g} = As[ai + ${g * t.TY}u];`),
    ...range(t.RN / 4).map((j) => `let b${j} = Bs[bi + ${j * t.TX}u];`),
  ];
  for (const [i, j] of cellsOf(t)) {
    const v = cellName(p, i, j);
    lines.push(`${v} = fma(vec4<f32>(a${i >> 2}.${"xyzw"[i & 3]}), b${j}, ${v});`);
  }
  return `{\n          ${lines.join("\n          ")}\n        }`;
}

/**
 * Per row of the tile: `acc` (0 at the start of the row) updated by `cell(cell, row, col4)` for each of the row's
 * cells in order, then `sink(row)`.
 */
function rowCode(
  t: ChunkTile,
  p: string,
  cell: (v: string, row: string, col4: string) => string,
  sink: (row: string) => string,
): string {
  return join(
    range(t.RM).map((i) => {
      const row = rowExpr(t, i);
      const cells = range(t.RN / 4).map((j) => cell(cellName(p, i, j), row, col4Expr(t, j)));
      return `{\n    var acc = 0.0;\n    ${cells.join("\n    ")}\n    ${sink(row)}\n  }`;
    }),
  );
}

/** One operand of a product over a contiguous inner axis (p of (K, Bt, T, H, P), n of (K, Bt, T, G, N)). */
interface Staged {
  /** Register name prefix of the loads in flight. */
  reg: string;
  /** The binding it reads, as `array<PV>`. */
  src: string;
  /** The expression of its first step (row m reads step first + m). */
  first: string;
  /** Rows staged: the tile's MT or NT. */
  rows: number;
  /** The workgroup array it is staged into, k-major, and that array's vec4s per k-row. */
  stage: string;
  stride: string;
  /** The float offset of a step's row, from the step's expression. */
  rowStart: (step: string) => string;
  /** A binding index (from the step's expression) whose value multiplies the row (dt for X̃ = dt·x). */
  scale?: (step: string) => string;
}

const block = (lines: string[]) => `{\n    ${lines.join("\n    ")}\n  }`;

/**
 * Loads of operand slices along a contiguous inner axis of `size` floats named `inner` (`P` or `N`), generated
 * one register each (`LOAD`, `STORE`, `DECL_LOADS`, with `PV`, `PW`): 16-byte loads where size % 4 = 0, each
 * thread's share of a slice of BK steps at offset lk0 loaded into registers (`LOAD`) and later written k-major
 * into workgroup memory (`STORE`), so that a slice's loads can be in flight while the previous slice is
 * multiplied. Needs `lid`, `lk0` and what the operands' expressions name in scope.
 */
function operandStaging(
  t: ChunkTile,
  inner: "P" | "N",
  size: number,
  operands: Staged[],
): Record<string, string | number> {
  const PW = size % 4 === 0 ? 4 : 1;
  const SL = t.BK / PW, WG = WGOf(t);
  const comps = PW === 4 ? [".x", ".y", ".z", ".w"] : [""];
  const decl: string[] = [], load: string[] = [], store: string[] = [];
  for (const o of operands) {
    const n = Math.ceil((SL * o.rows) / WG);
    for (let u = 0; u < n; u++) {
      const r = `${o.reg}${u}`, sc = `${o.reg}s${u}`;
      decl.push(`var ${r} = PV(0.0);`);
      if (o.scale) decl.push(`var ${sc} = 0.0;`);
      const idx = [`let i = lid + ${u * WG}u;`, "let q = i % SL;", "let m = i / SL;"];
      const guard = `i < ${SL * o.rows}u && m < QB && ${o.first} + m < prm.T && lk0 + q * PW < ${inner}`;
      const step = `${o.first} + m`;
      load.push(block([
        ...idx,
        `${r} = PV(0.0);`,
        `if (${guard}) {`,
        `  ${r} = ${o.src}[(${o.rowStart(step)} + lk0) / PW + q];`,
        ...(o.scale ? [`  ${sc} = ${o.scale(step)};`] : []),
        "}",
      ]));
      const value = (c: string) => (o.scale ? `${sc} * ${r}${c}` : `${r}${c}`);
      store.push(block([
        ...idx,
        `if (i < ${SL * o.rows}u) {`,
        ...comps.map((c, k) =>
          `  ${o.stage}[(q * PW + ${k}u) * ${o.stride} + m / 4u][m % 4u] = ${value(c)};`
        ),
        "}",
      ]));
    }
  }
  return {
    PV: PW === 4 ? "vec4<f32>" : "f32",
    PW,
    DECL_LOADS: join(decl),
    LOAD: join(load),
    STORE: join(store),
  };
}

/** `n` blocks of generated code, block u for thread element `i = lid + u·WG`. */
const eachLoad = (n: number, WG: number, f: (u: number) => string[]) =>
  range(n).map((u) => block([`let i = lid + ${u * WG}u;`, ...f(u)]));

/**
 * Loads into `pb<u>` of a block pair's Bs slice: row kk is step lstep0 + kk, its vec4s n4 the 4 columns from
 * `col0` + 4·n4 of `src`'s row (`rowStart`, in floats), zero past T and past `width` columns.
 */
function stepRowLoads(
  LB: number,
  nB: number,
  WG: number,
  src: string,
  rowStart: string,
  col0: string,
  width: string,
) {
  return eachLoad(LB, WG, (u) => [
    "let kk = i / NT4;",
    "let n4 = i % NT4;",
    "let step = lstep0 + kk;",
    `pb${u} = vec4<f32>(0.0);`,
    `if (i < ${nB}u && step < prm.T && ${col0} + 4u * n4 < ${width}) {`,
    `  pb${u} = ${src}[(${rowStart} + ${col0}) / 4u + n4];`,
    "}",
  ]);
}

/**
 * The operand loads of kernels/ssd_chunk_out4.wgsl (`DECL_LOADS`, `LOAD` of slice `li`, `STORE` of slice `it`,
 * `SCALE_ROWS`), one vec4 register each: a block pair's slices stage CB (As) and x or dy rows (Bs), the state
 * term's stage C or B rows (As) and the state's rows (Bs), all read along a contiguous axis.
 */
function outStaging(t: ChunkTile, bwd: boolean): Record<string, string> {
  const WG = WGOf(t), nA = (t.BK * MT(t)) / 4, nB = (t.BK * NT(t)) / 4;
  const LA = Math.ceil(nA / WG), LB = Math.ceil(nB / WG);
  const xyzw = ["x", "y", "z", "w"];
  const each = (n: number, f: (u: number) => string[]) => eachLoad(n, WG, f);
  // a vec4 of 4 consecutive k (q-th of the slice) of row m, scattered into the k-major stage
  const scatter = (stage: string, stride: string, v: string) =>
    xyzw.map((c, e) => `  ${stage}[(4u * q + ${e}u) * ${stride} + m / 4u][m % 4u] = ${v}.${c};`);
  const decl = [
    ...range(LA).map((u) => `var pa${u} = vec4<f32>(0.0);`),
    ...range(LB).map((u) => `var pb${u} = vec4<f32>(0.0);`),
  ];
  const pairA = each(
    LA,
    (u) =>
      bwd
        ? [
          `pa${u} = vec4<f32>(0.0);`,
          `if (i < ${nA}u) {`,
          "  let kk = i / QB4;",
          "  let m4 = i % QB4;",
          `  pa${u} = CB[lcb4 + (lk0 + kk) * QB4 + m4];`,
          "}",
        ]
        : [
          `pa${u} = vec4<f32>(0.0);`,
          `if (i < ${nA}u) {`,
          "  let q = i % (BK / 4u);",
          "  let m = i / (BK / 4u);",
          `  pa${u} = CB[lcb4 + m * QB4 + lk0 / 4u + q];`,
          "}",
        ],
  );
  const pairB = stepRowLoads(LB, nB, WG, "U", "((kb * prm.T + step) * prm.H + h) * P", "p0", "P");
  const stateA = each(LA, (u) => [
    "let q = i % (BK / 4u);",
    "let m = i / (BK / 4u);",
    `pa${u} = vec4<f32>(0.0);`,
    `if (i < ${nA}u && t0 + m < prm.T && lk0 + 4u * q < N) {`,
    `  pa${u} = V[(((kb * prm.T + t0 + m) * prm.G + g) * N + lk0) / 4u + q];`,
    "}",
  ]);
  const stateB = each(LB, (u) => [
    "let q = i % (BK / 4u);",
    "let m = i / (BK / 4u);",
    `pb${u} = vec4<f32>(0.0);`,
    `if (i < ${nB}u && p0 + m < P && lk0 + 4u * q < N) {`,
    `  pb${u} = S[(sb + (p0 + m) * N + lk0) / 4u + q];`,
    "}",
  ]);
  const load = [
    "if (li < npsl) {",
    "  let ljj = li / NSL;",
    "  let lk0 = (li % NSL) * BK;",
    "  let lbb = pair_blocks(blk, npairs, ljj);",
    "  let lcb4 = ((kg * prm.nC + c) * NP + lbb.x * (lbb.x + 1u) / 2u + lbb.y) * (QB * QB4);",
    "  let lstep0 = c * Q + select(lbb.y, lbb.x, BWD) * QB + lk0;",
    `  ${join([...pairA, ...pairB])}`,
    "} else {",
    "  let lk0 = (li - npsl) * BK;",
    `  ${join([...stateA, ...stateB])}`,
    "}",
  ];
  // the diagonal pair's decay per element (s ≤ t), times dt_s in the forward
  const diag = bwd
    ? [
      "let t = sk0 + kk;",
      "for (var e = 0u; e < 4u; e++) {",
      "  let s = 4u * m4 + e;",
      "  f[e] = select(0.0, exp(locb[t] - locb[s]), s <= t);",
      "}",
    ]
    : [
      "for (var e = 0u; e < 4u; e++) {",
      "  let s = sk0 + 4u * q + e;",
      "  f[e] = select(0.0, exp(locb[m] - locb[s]) * dtb[s], s <= m);",
      "}",
    ];
  const storePairA = each(LA, (u) => [
    `if (i < ${nA}u) {`,
    ...(bwd
      ? ["  let kk = i / QB4;", "  let m4 = i % QB4;"]
      : ["  let q = i % (BK / 4u);", "  let m = i / (BK / 4u);"]),
    "  var f = vec4<f32>(1.0);",
    "  if (!scross) {",
    ...diag.map((l) => `    ${l}`),
    "  }",
    ...(bwd
      ? [`  As[kk * AS4 + m4] = pa${u} * f;`]
      : [`  let v = pa${u} * f;`, ...scatter("As", "AS4", "v")]),
    "}",
  ]);
  const storePairB = each(LB, (u) => [
    `if (i < ${nB}u) {`,
    "  let kk = i / NT4;",
    "  var f = 1.0;",
    "  if (scross) { f = pf[spf + kk]; }",
    `  Bs[kk * BS4 + i % NT4] = pb${u} * f;`,
    "}",
  ]);
  const storeStateA = each(LA, (u) => [
    `if (i < ${nA}u) {`,
    "  let q = i % (BK / 4u);",
    "  let m = i / (BK / 4u);",
    `  let v = pa${u} * sdec[m];`,
    ...scatter("As", "AS4", "v"),
    "}",
  ]);
  const storeStateB = each(LB, (u) => [
    `if (i < ${nB}u) {`,
    "  let q = i % (BK / 4u);",
    "  let m = i / (BK / 4u);",
    ...scatter("Bs", "BS4", `pb${u}`),
    "}",
  ]);
  const store = [
    "if (it < npsl) {",
    "  let sjj = it / NSL;",
    "  let sk0 = (it % NSL) * BK;",
    "  let sbb = pair_blocks(blk, npairs, sjj);",
    "  let scross = sbb.y < sbb.x;",
    "  let spf = (sjj % 2u) * QB + sk0;",
    `  ${join([...storePairA, ...storePairB])}`,
    "} else {",
    `  ${join([...storeStateA, ...storeStateB])}`,
    "}",
  ];
  return {
    DECL_LOADS: join(decl),
    LOAD: join(load),
    STORE: join(store),
    SCALE_ROWS: eachCell(t, "y", (v, row) => `${v} *= rowf[${row}];`),
  };
}

/**
 * The operand loads of kernels/ssd_chunk_dbc4.wgsl (`DECL_LOADS`, `LOAD` of slice `li`, `STORE` of slice `it`),
 * one vec4 register each: a head's state-part slices stage the weighted dy or x rows (As) and the state's rows
 * (Bs), a block pair's slices WS (As) and B or C rows (Bs), all read along a contiguous axis.
 */
function dbcStaging(t: ChunkTile, db: boolean): Record<string, string> {
  const WG = WGOf(t), nA = (t.BK * MT(t)) / 4, nB = (t.BK * NT(t)) / 4;
  const LA = Math.ceil(nA / WG), LB = Math.ceil(nB / WG);
  const xyzw = ["x", "y", "z", "w"];
  const each = (n: number, f: (u: number) => string[]) => eachLoad(n, WG, f);
  const scatter = (v: string) =>
    xyzw.map((c, e) => `  As[(4u * q + ${e}u) * AS4 + m / 4u][m % 4u] = ${v}.${c};`);
  const decl = [
    ...range(LA).flatMap((u) => [`var pa${u} = vec4<f32>(0.0);`, `var pw${u} = 0.0;`]),
    ...range(LB).map((u) => `var pb${u} = vec4<f32>(0.0);`),
  ];
  const weight = db ? "d.w * DT[(kb * prm.T + t) * prm.H + lh]" : "d.z";
  const stateA = each(LA, (u) => [
    "let q = i % (BK / 4u);",
    "let m = i / (BK / 4u);",
    "let t = t0 + m;",
    `pa${u} = vec4<f32>(0.0);`,
    `pw${u} = 0.0;`,
    `if (i < ${nA}u && t < prm.T && lk0 + 4u * q < P) {`,
    `  pa${u} = U[(((kb * prm.T + t) * prm.H + lh) * P + lk0) / 4u + q];`,
    "  let d = DEC[(kbl * prm.H + lh) * Tp + t];",
    `  pw${u} = ${weight};`,
    "}",
  ]);
  const stateB = each(LB, (u) => [
    "let kk = i / NT4;",
    "let n4 = i % NT4;",
    `pb${u} = vec4<f32>(0.0);`,
    `if (i < ${nB}u && lk0 + kk < P && n0 + 4u * n4 < N) {`,
    `  pb${u} = S[(lsb + (lk0 + kk) * N + n0) / 4u + n4];`,
    "}",
  ]);
  const pairA = each(
    LA,
    (u) =>
      db
        ? [
          `pa${u} = vec4<f32>(0.0);`,
          `if (i < ${nA}u) {`,
          `  pa${u} = WS[lws4 + (lk0 + i / QB4) * QB4 + i % QB4];`,
          "}",
        ]
        : [
          "let q = i % (BK / 4u);",
          "let m = i / (BK / 4u);",
          `pa${u} = vec4<f32>(0.0);`,
          `if (i < ${nA}u) {`,
          `  pa${u} = WS[lws4 + m * QB4 + lk0 / 4u + q];`,
          "}",
        ],
  );
  const pairB = stepRowLoads(LB, nB, WG, "R", "((kb * prm.T + step) * prm.G + g) * N", "n0", "N");
  const load = [
    "if (li < nstate) {",
    "  let lh = g * prm.HG + li / NSLP;",
    "  let lk0 = (li % NSLP) * BK;",
    "  let lsb = ((kbl * prm.H + lh) * (prm.nC - 1u) + sj) * P * N;",
    `  ${join([...stateA, ...stateB])}`,
    "} else {",
    "  let ljj = (li - nstate) / NSL;",
    "  let lk0 = ((li - nstate) % NSL) * BK;",
    "  var lbt = blk;",
    "  var lbs = ljj;",
    "  if (DB) {",
    "    lbt = blk + ljj;",
    "    lbs = blk;",
    "  }",
    "  let lws4 = ((kg * prm.nC + c) * NP + lbt * (lbt + 1u) / 2u + lbs) * (QB * QB4);",
    "  let lstep0 = c * Q + select(lbs, lbt, DB) * QB + lk0;",
    `  ${join([...pairA, ...pairB])}`,
    "}",
  ];
  const storeB = each(LB, (u) => [`if (i < ${nB}u) { Bs[(i / NT4) * BS4 + i % NT4] = pb${u}; }`]);
  const storeStateA = each(LA, (u) => [
    `if (i < ${nA}u) {`,
    "  let q = i % (BK / 4u);",
    "  let m = i / (BK / 4u);",
    `  let v = pa${u} * pw${u};`,
    ...scatter("v"),
    "}",
  ]);
  const storePairA = each(
    LA,
    (u) =>
      db ? [`if (i < ${nA}u) { As[(i / QB4) * AS4 + i % QB4] = pa${u}; }`] : [
        `if (i < ${nA}u) {`,
        "  let q = i % (BK / 4u);",
        "  let m = i / (BK / 4u);",
        ...scatter(`pa${u}`),
        "}",
      ],
  );
  const store = [
    "if (it < nstate) {",
    `  ${join([...storeStateA, ...storeB])}`,
    "} else {",
    `  ${join([...storePairA, ...storeB])}`,
    "}",
  ];
  return { DECL_LOADS: join(decl), LOAD: join(load), STORE: join(store) };
}

// ---------------------------------------------------------------------------------------------------------------
// The kernels

/** Inner steps per staged slice: option `slice`, else 16 where the block allows (slices along time never straddle
 * two blocks). */
function sliceLength(QB: number, opts: SsdScanOptions): number {
  const BK = opts.slice ?? (QB % 16 === 0 ? 16 : QB % 8 === 0 ? 8 : 4);
  if (![4, 8, 16, 32].includes(BK) || QB % BK !== 0) {
    throw new RangeError(
      `ssdScan: slice must be 4, 8, 16 or 32 and divide the block ${QB}, got ${opts.slice}`,
    );
  }
  return BK;
}

/** The tiles and tile counts of every kernel for a plan. */
export interface ChunkLayout {
  plan: ChunkPlan;
  /** P×N state tiles (state passes), NSP×NSN of them. */
  state: ChunkTile;
  NSP: number;
  NSN: number;
  /** QB × P-tile outputs (forward outputs, backward dX̃), NPT tiles along P. */
  out: ChunkTile;
  NPT: number;
  /** QB × QB block pairs (CB, R). */
  pair: ChunkTile;
  /** QB × N-tile (dB, dC), NNT tiles along N. */
  dbc: ChunkTile;
  NNT: number;
  /** Heads per part of the backward's R products (each part of a group's heads is its own workgroup). */
  rHeads: number;
}

/** Block pairs per batch row (G·nC·NP) below which the backward's R products split the heads into parts. */
const R_PARTS_BELOW = 16;

/** Parts of each group's heads in the backward's R products: ceil((H / G) / rHeads). */
const rParts = (d: SsdDims, L: ChunkLayout) => Math.ceil(d.H / d.G / L.rHeads);

function layoutFor(d: SsdDims, plan: ChunkPlan, opts: SsdScanOptions): ChunkLayout {
  const tt = opts.threadTile;
  if (tt && (tt.length !== 2 || tt.some((v) => v !== 4 && v !== 8))) {
    throw new RangeError(
      `ssdScan: threadTile must be [rows, columns] of 4 or 8 each, got ${JSON.stringify(tt)}`,
    );
  }
  const BK = sliceLength(plan.QB, opts);
  const state = makeTile(Math.min(roundUp(d.P, 4), 64), d.N, 128, BK, opts);
  const out = makeTile(plan.QB, d.P, 64, BK, opts);
  const dbc = makeTile(plan.QB, d.N, 64, BK, opts);
  const pair = makeTile(plan.QB, plan.QB, plan.QB, BK, opts);
  // Parts of the heads pay where a batch row has few block pairs (the D 1024 model's 3, fig7 quick's 4: the SSD
  // backward 0.94 → 0.68 and 1.12 → 1.07 ms on the H200); at 36 (Bt 64, T 512, H 32) they cost 1% and 300 MB of
  // scratch. A rule on the row's own sizes, never on K or the batch, so that a run's bits do not depend on them.
  const rowPairs = d.G * plan.nC * plan.NP;
  const rHeads = opts.rHeads ?? (rowPairs < R_PARTS_BELOW ? 4 : d.H / d.G);
  if (!Number.isInteger(rHeads) || rHeads < 1) {
    throw new RangeError(`ssdScan: rHeads must be a positive integer, got ${opts.rHeads}`);
  }
  return {
    plan,
    state,
    NSP: Math.ceil(d.P / MT(state)),
    NSN: Math.ceil(d.N / NT(state)),
    out,
    NPT: Math.ceil(d.P / NT(out)),
    pair,
    dbc,
    NNT: Math.ceil(d.N / NT(dbc)),
    rHeads: Math.min(rHeads, d.H / d.G),
  };
}

type ChunkKernel =
  | "prep"
  | "cb"
  | "state"
  | "stateReverse"
  | "out"
  | "outBackward"
  | "r"
  | "dC"
  | "dB"
  | "decay";

const R = "read", W = "read_write";
const BINDINGS: Record<ChunkKernel, readonly ("read" | "read_write")[]> = {
  prep: [R, R, W, W],
  cb: [R, R, W],
  state: [R, R, R, R, R, W, R, W],
  stateReverse: [R, R, R, R, R, W, R, W],
  out: [R, R, R, R, R, R, R, R, W, R, W, W],
  outBackward: [R, R, R, R, R, R, R, R, W, R, W, W],
  r: [R, R, R, R, R, R, W, W, W],
  dC: [R, R, R, R, R, R, R, W, W],
  dB: [R, R, R, R, R, R, R, W, W],
  decay: [R, R, R, R, R, R, R, R, R, W, W],
};

const DECAY_THREADS = 64;
const kernelCache = new Map<string, Kernel>();

function chunkKernel(which: ChunkKernel, d: SsdDims, L: ChunkLayout): Kernel {
  const { plan } = L;
  const key = `${which}|${d.P}|${d.N}|${JSON.stringify(L)}`;
  const hit = kernelCache.get(key);
  if (hit) return hit;
  const base = { P: d.P, N: d.N, QB: plan.QB, NB: plan.NB };
  let code: string;
  switch (which) {
    case "prep": {
      // the chunk's decay sums in workgroup memory: 2 floats a step, 3 a block (the other kernels need ≤ 15 KB)
      const bytes = 8 * plan.Q + 12 * plan.NB, limit = gpu().limits.maxComputeWorkgroupStorageSize;
      if (bytes > limit) {
        throw new RangeError(
          `ssdScan: a chunk of ${plan.Q} steps needs ${bytes} bytes of workgroup memory, more than the device's ` +
            `${limit}: choose a shorter chunk`,
        );
      }
      code = kernelSource("ssd_chunk_prep.wgsl", base);
      break;
    }
    case "cb": {
      const t = L.pair;
      const groupRow = (step: string) => `((kb * prm.T + ${step}) * prm.G + g) * N`;
      code = kernelSource("ssd_chunk_cb.wgsl", {
        ...base,
        ...tileSubst(t),
        ...operandStaging(t, "N", d.N, [
          { reg: "pa", src: "Cm", first: "tb0", rows: MT(t), stage: "As", stride: "AS4", rowStart: groupRow },
          { reg: "pb", src: "Bm", first: "sb0", rows: NT(t), stage: "Bs", stride: "BS4", rowStart: groupRow },
        ]),
        DECL: declCode(t, "c"),
        KSTEP: kstepCode(t, "c"),
        STORE_CB: eachCell(t, "c", (v, row, col4) => `store_cb(ob4, ${row}, ${col4}, ${v});`),
      });
      break;
    }
    case "state":
    case "stateReverse": {
      const t = L.state;
      code = kernelSource("ssd_chunk_state.wgsl", {
        ...base,
        ...tileSubst(t),
        REVERSE: String(which === "stateReverse"),
        NNT: L.NSN,
        NTILES: L.NSP * L.NSN,
        DECL: declCode(t, "h"),
        SCALE: scaleCode(t, "h", "cdec"),
        KSTEP: kstepCode(t, "h"),
        STORE: eachCell(t, "h", (v, row, col4) => `store_state(ob, p0 + ${row}, n0 + 4u * ${col4}, ${v});`),
        DOT_HS: eachCell(
          t,
          "h",
          (v, row, col4) => `part += dot_state(hb, p0 + ${row}, n0 + 4u * ${col4}, ${v});`,
        ),
      });
      break;
    }
    case "out":
    case "outBackward": {
      const t = L.out, bwd = which === "outBackward";
      // backward: dx written per cell; <dX̃_t, x_t> summed per row into red (then over TX), Σ dy·x into ddp
      const epilogue = bwd
        ? rowCode(
          t,
          "y",
          (v, row, col4) =>
            `{ let q = out_bwd(kb, h, t0, p0, dskip, ${row}, ${col4}, ${v}); acc += q.x; ddp += q.y; }`,
          (row) => `red[tx * QB + ${row}] = acc;`,
        )
        : eachCell(t, "y", (v, row, col4) => `out_fwd(kb, h, t0, p0, dskip, ${row}, ${col4}, ${v});`);
      // P % 4 = 0 and N % 4 = 0 (every model's shapes): 16-byte loads in flight across slices
      const vec4 = d.P % 4 === 0 && d.N % 4 === 0;
      code = kernelSource(vec4 ? "ssd_chunk_out4.wgsl" : "ssd_chunk_out.wgsl", {
        ...base,
        ...tileSubst(t),
        ...(vec4 ? outStaging(t, bwd) : {}),
        BWD: String(bwd),
        NPT: L.NPT,
        RED_LEN: Math.max(t.TX * plan.QB, nextPow2(WGOf(t))),
        DECL: declCode(t, "y"),
        KSTEP: kstepCode(t, "y"),
        EPILOGUE: epilogue,
      });
      break;
    }
    case "r": {
      const t = L.pair;
      const weigh = [
        ...range(t.RM).map((i) => `var zrow${i} = 0.0;`),
        ...range(t.RN / 4).map((j) => `var zcol${j} = vec4<f32>(0.0);`),
        ...cellsOf(t).map(([i, j]) =>
          `{ let q = weigh(${rowExpr(t, i)}, ${col4Expr(t, j)}, cross, ${cellName("cbv", i, j)}, ${
            cellName("r", i, j)
          }); ${cellName("w", i, j)} += q.w; zrow${i} += q.z.x + q.z.y + q.z.z + q.z.w; zcol${j} += q.z; }`
        ),
        ...range(t.RM).map((i) => `zr[tx * QB + ${rowExpr(t, i)}] = zrow${i};`),
        ...range(t.RN / 4).map((j) => `store_zc(ty, ${col4Expr(t, j)}, zcol${j});`),
      ];
      const headRow = (step: string) => `((kb * prm.T + ${step}) * prm.H + lh) * P`;
      const staging = operandStaging(t, "P", d.P, [
        { reg: "pa", src: "DY", first: "tg0", rows: MT(t), stage: "As", stride: "AS4", rowStart: headRow },
        {
          reg: "pb",
          src: "X",
          first: "sg0",
          rows: NT(t),
          stage: "Bs",
          stride: "BS4",
          rowStart: headRow,
          scale: (step) => `DT[(kb * prm.T + ${step}) * prm.H + lh]`,
        },
      ]);
      code = kernelSource("ssd_chunk_r.wgsl", {
        ...base,
        ...tileSubst(t),
        ...staging,
        ZR_LEN: t.TX * plan.QB,
        ZC_LEN: t.TY * plan.QB,
        DECL_W: declCode(t, "w"),
        DECL_R: declCode(t, "r"),
        DECL_CB: eachCell(t, "cbv", (v, row, col4) => `let ${v} = load_cb(cbb4, ${row}, ${col4});`),
        ZERO_R: zeroCode(t, "r"),
        KSTEP_R: kstepCode(t, "r"),
        WEIGH: join(weigh),
        STORE_W: eachCell(t, "w", (v, row, col4) => `store_w(wsb4, ${row}, ${col4}, ${v});`),
        RP: L.rHeads,
        NRP: rParts(d, L),
      });
      break;
    }
    case "dC":
    case "dB": {
      const t = L.dbc, db = which === "dB";
      // P % 4 = 0 and N % 4 = 0 (every model's shapes): 16-byte loads in flight across slices
      const vec4 = d.P % 4 === 0 && d.N % 4 === 0;
      code = kernelSource(vec4 ? "ssd_chunk_dbc4.wgsl" : "ssd_chunk_dbc.wgsl", {
        ...base,
        ...tileSubst(t),
        ...(vec4 ? dbcStaging(t, db) : {}),
        DB: String(db),
        NNT: L.NNT,
        RED_LEN: t.TX * plan.QB,
        DECL_O: declCode(t, "o"),
        DECL_E: declCode(t, "e"),
        ZERO_E: zeroCode(t, "e"),
        KSTEP_E: kstepCode(t, "e"),
        KSTEP_O: kstepCode(t, "o"),
        ADD_E: addCode(t, "o", "e"),
        VDOT: rowCode(
          t,
          "e",
          (v, row, col4) => `acc += edot(kb, g, t0, n0, ${row}, ${col4}, ${v});`,
          (row) => `red[tx * QB + ${row}] = acc;`,
        ),
        [vec4 ? "STORE_OUT" : "STORE"]: eachCell(
          t,
          "o",
          (v, row, col4) => `store_out(kb, g, t0, n0, ${row}, ${col4}, ${v});`,
        ),
      });
      break;
    }
    case "decay":
      code = kernelSource("ssd_chunk_decay.wgsl", {
        ...base,
        NNT: L.NNT,
        NPT: L.NPT,
        NST: L.NSP * L.NSN,
        WGD: DECAY_THREADS,
        SEG: Math.ceil(plan.Q / DECAY_THREADS),
      });
      break;
  }
  const kernel: Kernel = { name: `ssd_chunk_${which}`, code, bindings: BINDINGS[which] };
  kernelCache.set(key, kernel);
  return kernel;
}

/** The batch-sum kernel of the sequential scan's backward (kernels/ssd_scan_reduce.wgsl), reused for dA, dD. */
function sumBatchKernel(): Kernel {
  return {
    name: "ssd_scan_sum_batch",
    code: kernelSource("ssd_scan_reduce.wgsl"),
    entry: "sum_batch",
    bindings: ["read", "read_write", "read_write"],
  };
}

/**
 * WS = Σ over the parts of WSP (parts, n) in part order: the sequential scan's sum over a group's heads
 * (kernels/ssd_scan_reduce.wgsl `sum_heads`) with one group of `parts` "heads" of n elements.
 */
function sumPartsKernel(): Kernel {
  return {
    name: "ssd_scan_sum_heads",
    code: kernelSource("ssd_scan_reduce.wgsl"),
    entry: "sum_heads",
    bindings: ["read", "read_write"],
  };
}

/** A grid of `count` workgroups folded into (x, y) within 65535 per dimension. */
function grid(count: number): [number, number] {
  const x = Math.min(count, 65535);
  return [x, Math.ceil(count / x)];
}

// ---------------------------------------------------------------------------------------------------------------
// Scratch

/** Bytes per batch row of every scratch buffer (the rows of a dispatch group share one buffer each). */
function scratchBytes(d: SsdDims, L: ChunkLayout) {
  const { QB, NB, nC, NP } = L.plan;
  const Tp = nC * QB * NB, TABW = NB + 2;
  const parts = rParts(d, L);
  return {
    dec: d.H * Tp * 16,
    tab: d.H * nC * TABW * TABW * 4,
    pairs: d.G * nC * NP * QB * QB * 4, // CB, WS
    wsParts: parts > 1 ? parts * d.G * nC * NP * QB * QB * 4 : 0, // WS per part of the heads (WSP)
    states: d.H * (nC - 1) * d.P * d.N * 4, // HS, GS
    et: d.H * nC * L.NSP * L.NSN * 4,
    z: d.H * Tp * NB * 4, // ZR, ZC
    vu: d.H * Tp * L.NNT * 4, // V, U
    qs: d.H * Tp * L.NPT * 4,
    ddp: d.H * nC * NB * L.NPT * 4,
  };
}

/** Batch rows per dispatch group: as many as keep every scratch buffer within `cap` bytes (at least one). */
function rowsPerGroup(KB: number, perRow: number[], opts: SsdScanOptions): number {
  const cap = opts.partialBytes ?? Math.min(gpu().limits.maxStorageBufferBindingSize, 1 << 30);
  return Math.max(1, Math.min(KB, Math.floor(cap / Math.max(1, ...perRow))));
}

/** A scratch size in bytes as allocated: whole 4-byte elements, at least 4 of them. */
const elements = (bytes: number) => Math.max(4, Math.ceil(bytes / 4));

/**
 * The scratch buffers of the chunked algorithm, in 4-byte elements each: what `ssdChunkedForward` and
 * `ssdChunkedGrads` allocate (from these sizes) and what memory estimates count. `forward`: DEC, TAB, CB, HS and
 * three placeholders; `backward`: every buffer of the module notes' table and the dA/dD partials. Each is for one
 * group of `rows` batch rows (`forwardRows`, `backwardRows`), within the binding limit.
 */
export function ssdChunkedScratch(d: SsdDims, opts: SsdScanOptions = {}) {
  const L = layoutFor(d, chunkPlan(d, opts), opts);
  const KB = d.K * d.Bt;
  const sb = scratchBytes(d, L);
  const multi = L.plan.nC > 1;
  const f = rowsPerGroup(KB, [sb.dec, sb.tab, sb.pairs, sb.states], opts);
  const r = rowsPerGroup(KB, Object.values(sb), opts);
  return {
    forwardRows: f,
    forward: {
      dec: elements(f * sb.dec),
      tab: elements(f * sb.tab),
      cb: elements(f * sb.pairs),
      hs: elements(multi ? f * sb.states : 4),
      dummy0: 4,
      dummy1: 4,
      dummy2: 4,
    },
    backwardRows: r,
    backward: {
      dec: elements(r * sb.dec),
      tab: elements(r * sb.tab),
      cb: elements(r * sb.pairs),
      ws: elements(r * sb.pairs),
      wsp: elements(r * sb.wsParts),
      hs: elements(multi ? r * sb.states : 4),
      gs: elements(multi ? r * sb.states : 4),
      et: elements(multi ? r * sb.et : 4),
      zr: elements(r * sb.z),
      zc: elements(r * sb.z),
      v: elements(r * sb.vu),
      u: elements(r * sb.vu),
      qs: elements(r * sb.qs),
      ddp: elements(r * sb.ddp),
      sp: elements(KB * d.H * 8),
      dummy: 4,
    },
  };
}

/** One fresh buffer per entry of a scratch size table. */
function allocate<S extends Record<string, number>>(sizes: S): { [k in keyof S]: Tensor } {
  return Object.fromEntries(Object.entries(sizes).map(([k, n]) => [k, empty([n])])) as {
    [k in keyof S]: Tensor;
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Forward and backward

function params(d: SsdDims, plan: ChunkPlan, kb0: number, count: number): number[] {
  return [d.T, d.H, d.H / d.G, d.G, d.Bt, plan.nC, kb0, count];
}

/** The plan and tiles chosen for a scan (for benchmarks and reports). */
export function ssdChunkedLayout(d: SsdDims, opts: SsdScanOptions = {}): Readonly<ChunkLayout> {
  return layoutFor(d, chunkPlan(d, opts), opts);
}

/**
 * y of `ssdScan` by the chunked algorithm: prep (decay sums), CB, the forward state pass (with more than one
 * chunk), the block outputs. Saves nothing for the backward.
 */
export function ssdChunkedForward(inputs: SsdScanInputs, d: SsdDims, opts: SsdScanOptions = {}): Tensor {
  const { x, dt, A, B, C, D } = inputs;
  const plan = chunkPlan(d, opts);
  const L = layoutFor(d, plan, opts);
  const KB = d.K * d.Bt;
  const sizes = ssdChunkedScratch(d, opts);
  const rows = sizes.forwardRows;
  const y = empty(x.shape);
  const s = allocate(sizes.forward);
  const { dec, tab, cb, hs } = s;
  const dummies = [s.dummy0, s.dummy1, s.dummy2];
  const multi = plan.nC > 1;
  const NST = L.NSP * L.NSN;
  for (let kb0 = 0; kb0 < KB; kb0 += rows) {
    const n = Math.min(rows, KB - kb0);
    let count = n * d.H * plan.nC;
    dispatch(
      chunkKernel("prep", d, L),
      [dt, A, dec, tab].map((t) => t.buffer),
      params(d, plan, kb0, count),
      grid(count),
    );
    count = n * d.G * plan.nC * plan.NP;
    dispatch(
      chunkKernel("cb", d, L),
      [B, C, cb].map((t) => t.buffer),
      params(d, plan, kb0, count),
      grid(count),
    );
    if (multi) {
      count = n * d.H * NST;
      const bufs = [x, B, dt, dec, tab, hs, x, dummies[0]];
      dispatch(
        chunkKernel("state", d, L),
        bufs.map((t) => t.buffer),
        params(d, plan, kb0, count),
        grid(count),
      );
    }
    count = n * d.H * plan.nC * plan.NB * L.NPT;
    const bufs = [cb, dec, tab, dt, x, C, hs, D, y, x, dummies[1], dummies[2]];
    dispatch(chunkKernel("out", d, L), bufs.map((t) => t.buffer), params(d, plan, kb0, count), grid(count));
  }
  for (const t of Object.values(s)) t.dispose();
  return y;
}

/** The gradients of `sum(ssdScan(inputs) ⊙ dy)` by the chunked algorithm (see the module notes). */
export function ssdChunkedGrads(
  inputs: SsdScanInputs,
  dy: Tensor,
  d: SsdDims,
  opts: SsdScanOptions = {},
): SsdScanGrads {
  const { x, dt, A, B, C, D } = inputs;
  const plan = chunkPlan(d, opts);
  const L = layoutFor(d, plan, opts);
  const KB = d.K * d.Bt;
  const sizes = ssdChunkedScratch(d, opts);
  const rows = sizes.backwardRows;
  const grads: SsdScanGrads = {
    dx: empty(x.shape),
    ddt: empty(dt.shape),
    dA: empty(A.shape),
    dB: empty(B.shape),
    dC: empty(C.shape),
    dD: empty(D.shape),
  };
  const multi = plan.nC > 1;
  const s = allocate(sizes.backward);
  const NST = L.NSP * L.NSN;
  const run = (k: ChunkKernel, bufs: Tensor[], kb0: number, count: number) =>
    dispatch(chunkKernel(k, d, L), bufs.map((t) => t.buffer), params(d, plan, kb0, count), grid(count));
  for (let kb0 = 0; kb0 < KB; kb0 += rows) {
    const n = Math.min(rows, KB - kb0);
    let count = n * d.H * plan.nC;
    dispatch(
      chunkKernel("prep", d, L),
      [dt, A, s.dec, s.tab].map((t) => t.buffer),
      params(d, plan, kb0, count),
      grid(count),
    );
    run("cb", [B, C, s.cb], kb0, n * d.G * plan.nC * plan.NP);
    if (multi) {
      run("state", [x, B, dt, s.dec, s.tab, s.hs, x, s.dummy], kb0, n * d.H * NST);
      run("stateReverse", [dy, C, dt, s.dec, s.tab, s.gs, s.hs, s.et], kb0, n * d.H * NST);
    }
    run(
      "outBackward",
      [s.cb, s.dec, s.tab, dt, dy, B, s.gs, D, grads.dx, x, s.qs, s.ddp],
      kb0,
      n * d.H * plan.nC * plan.NB * L.NPT,
    );
    // R per part of each group's heads; with more than one part, each part's W into WSP, then WS = their sum
    const parts = rParts(d, L), pairs = n * d.G * plan.nC * plan.NP;
    run("r", [dy, x, dt, s.dec, s.tab, s.cb, parts > 1 ? s.wsp : s.ws, s.zr, s.zc], kb0, pairs * parts);
    if (parts > 1) {
      const floats = pairs * plan.QB * plan.QB;
      dispatch(
        sumPartsKernel(),
        [s.wsp.buffer, s.ws.buffer],
        [floats, 1, parts, floats, 0, 0, 0],
        grid1d(floats),
      );
    }
    count = n * d.G * plan.nC * plan.NB * L.NNT;
    run("dC", [dy, dt, s.dec, s.hs, s.ws, B, C, grads.dC, s.v], kb0, count);
    run("dB", [x, dt, s.dec, s.gs, s.ws, C, B, grads.dB, s.u], kb0, count);
    run("decay", [dt, A, s.zr, s.zc, s.v, s.u, s.qs, s.et, s.ddp, grads.ddt, s.sp], kb0, n * d.H);
  }
  dispatch(
    sumBatchKernel(),
    [s.sp.buffer, grads.dA.buffer, grads.dD.buffer],
    [d.K * d.H, d.G, d.H / d.G, d.N, 0, d.Bt, d.H],
    grid1d(d.K * d.H),
  );
  for (const t of Object.values(s)) t.dispose();
  return grads;
}

/** Every kernel of a scan's plan (tests validate their WGSL at real sizes without compiling pipelines). */
export function ssdChunkedKernels(d: SsdDims, opts: SsdScanOptions = {}): Kernel[] {
  const L = layoutFor(d, chunkPlan(d, opts), opts);
  const all: ChunkKernel[] = [
    "prep",
    "cb",
    "state",
    "stateReverse",
    "out",
    "outBackward",
    "r",
    "dC",
    "dB",
    "decay",
  ];
  return all.map((k) => chunkKernel(k, d, L));
}
