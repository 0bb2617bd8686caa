/**
 * The Mamba 2 mixer as pure functions: `initMamba2` and `applyMamba2`.
 *
 * Glossary: K runs, B batch, T length, D model width, E = expand·D inner width, H = E/P heads, P head dim,
 * G groups of B and C, N state size, W conv width.
 *
 * mamba_ssm's in_proj is one (D → 2E + 2GN + H) matrix split [z | x | B | C | dt] and its conv runs over the
 * concatenation xBC; here each block is its own matrix and each of x, B, C has its own depthwise conv. That is the
 * same function with the same default draws (every block of in_proj has fan-in D; a depthwise conv acts per
 * channel), and it lets the mimetic init address W_B, W_C, W_Δ and the convs by name.
 * @module
 */
import {
  constant,
  DEFAULT_INIT,
  DELTA_ONE_BIAS,
  drawParam,
  dtBias,
  type Mimetic,
  type Sampler,
  torchDefault,
  upload,
} from "./init.ts";
import { type Key, uniform } from "../core/random.ts";
import { type Tensor, tensor } from "../core/tensor.ts";
import { add, exp, mul, neg, softplus } from "../ops/elementwise.ts";
import { matmul, matmulParts } from "../ops/matmul.ts";
import { causalConv1d } from "../ops/conv1d.ts";
import { gatedRmsNorm } from "../ops/gated_norm.ts";
import { defaultSsdAlgorithm, type SsdAlgorithm, ssdScan, ssdScanBackwardScratch } from "../ops/ssd_scan.ts";
import { ssdChunkedScratch } from "../ops/ssd_chunked.ts";
import {
  accumulate,
  type BackwardStep,
  matmulPartsSchedule,
  type MemoryDims,
  type MixerMemory,
  sized,
  type TensorSize,
  weightProductStep,
} from "./memory_schedule.ts";

/** Static configuration of a Mamba 2 mixer (mamba_ssm's defaults). */
export interface Mamba2Config {
  kind: "mamba2";
  /** N, d_state (128 in mamba_ssm; the paper sweeps 8..256). */
  dState: number;
  /** P, headdim. */
  headDim: number;
  expand: number;
  /** G, ngroups. */
  nGroups: number;
  /** W, d_conv. */
  dConv: number;
  dtMin: number;
  dtMax: number;
  dtFloor: number;
  /** ε of the gated RMSNorm. */
  normEps: number;
  /**
   * Over which channels the gated RMSNorm normalises: `"group"` (the default) over each group of E/G channels, as
   * mamba_ssm's `RMSNormGated(group_size = E/G)` (and transformers' fused CUDA training path); `"all"` over all E
   * channels whatever G is, as transformers' `MambaRMSNormGated` (its torch path and its inference path). The two
   * agree when G = 1. Checkpoints loaded from the Hugging Face layout carry `"all"` (`loadPretrained`).
   */
  gatedNorm?: "group" | "all";
  /** The scan's GPU algorithm (default: `ssdScan`'s, by the sizes: `defaultSsdAlgorithm` in lib/ops/ssd_scan.ts). */
  scanAlgorithm?: SsdAlgorithm;
}

/** mamba_ssm's Mamba2 defaults. */
export const MAMBA2_DEFAULTS: Mamba2Config = {
  kind: "mamba2",
  dState: 128,
  headDim: 64,
  expand: 2,
  nGroups: 1,
  dConv: 4,
  dtMin: 0.001,
  dtMax: 0.1,
  dtFloor: 1e-4,
  normEps: 1e-5,
};

/** A depthwise causal conv: weight (K, C, W), bias (K, C). */
export interface ConvParams {
  weight: Tensor;
  bias: Tensor;
}

/** Parameters of one Mamba 2 mixer; every tensor has the leading run axis K. */
export interface Mamba2Params {
  /** (K, D, E) */ inZ: Tensor;
  /** (K, D, E) */ inX: Tensor;
  /** (K, D, G·N) */ inB: Tensor;
  /** (K, D, G·N) */ inC: Tensor;
  /** (K, D, H) */ inDt: Tensor;
  convX: ConvParams;
  convB: ConvParams;
  convC: ConvParams;
  /** (K, H) */ dtBias: Tensor;
  /** (K, H) */ aLog: Tensor;
  /** (K, H) */ D: Tensor;
  /** (K, E) */ normWeight: Tensor;
  /** (K, E, D) */ outProj: Tensor;
}

/** Non-trained per-run constants: the exponent scale s of A = −exp(s·A_log) (1 by default, −c under mimetic A). */
export interface Mamba2Consts {
  /** (K, 1) */ aScale: Tensor;
}

/** Sizes derived from a config: D, E, H, P, G, N, W. */
export interface Mamba2Dims {
  D: number;
  E: number;
  H: number;
  P: number;
  G: number;
  N: number;
  W: number;
}

/** Derived sizes of a mixer. */
export function mamba2Dims(cfg: Mamba2Config, dModel: number): Mamba2Dims {
  const E = cfg.expand * dModel;
  if (!Number.isInteger(E) || E % cfg.headDim !== 0) {
    throw new RangeError(
      `mamba2: headDim ${cfg.headDim} must divide the inner width expand·dModel = ${E}`,
    );
  }
  const H = E / cfg.headDim;
  if (H % cfg.nGroups !== 0) {
    throw new RangeError(`mamba2: nGroups ${cfg.nGroups} must divide the ${H} heads`);
  }
  for (const [name, v] of [["dState", cfg.dState], ["dConv", cfg.dConv], ["headDim", cfg.headDim]] as const) {
    if (!Number.isInteger(v) || v <= 0) {
      throw new RangeError(`mamba2: ${name} must be a positive integer, got ${v}`);
    }
  }
  if (cfg.gatedNorm !== undefined && cfg.gatedNorm !== "group" && cfg.gatedNorm !== "all") {
    throw new RangeError(`mamba2: gatedNorm must be "group" or "all", got ${JSON.stringify(cfg.gatedNorm)}`);
  }
  return { D: dModel, E, H, P: cfg.headDim, G: cfg.nGroups, N: cfg.dState, W: cfg.dConv };
}

/**
 * Initialises one Mamba 2 mixer for K runs: run k uses `runKeys[k]` and mimetic components `mimetic[k]`.
 * Defaults as mamba_ssm; `nLayers` rescales out_proj by 1/√nLayers (mamba_ssm's prenorm-residual rescale).
 */
export function initMamba2(
  runKeys: readonly Key[],
  prefix: string,
  cfg: Mamba2Config,
  dModel: number,
  nLayers: number,
  mimetic: readonly Mimetic[] = runKeys.map(() => DEFAULT_INIT),
): { params: Mamba2Params; consts: Mamba2Consts } {
  const K = runKeys.length;
  const { D, E, H, G, N, W } = mamba2Dims(cfg, dModel);
  const draw = (name: string, shape: number[], s: Sampler | Sampler[]) =>
    drawParam(runKeys, `${prefix}.${name}`, shape, s);
  const up = (data: Float32Array, shape: number[]) => upload(data, K, shape);

  const inB = draw("inB", [D, G * N], torchDefault(D));
  const inC = draw("inC", [D, G * N], torchDefault(D));
  // W_C := (W_C' + W_B)/2 for runs with the qk component: correlation 1/√2 ≈ 0.71 with W_B.
  const n = D * G * N;
  mimetic.forEach((m, k) => {
    if (!m.qk) return;
    for (let i = k * n; i < (k + 1) * n; i++) inC[i] = (inC[i] + inB[i]) / 2;
  });
  const perRun = (def: Sampler, mim: Sampler, use: (m: Mimetic) => boolean) =>
    mimetic.map((m) => (use(m) ? mim : def));
  // Identity conv: only the last tap (the current token) is 1.
  const identityConv: Sampler = (_k, count) =>
    Float64Array.from({ length: count }, (_, i) => (i % W === W - 1 ? 1 : 0));
  const conv = (name: "convX" | "convB" | "convC", C: number): ConvParams => {
    const identity = (m: Mimetic) => m.conv && (name === "convX" || (m.convScope ?? "xBC") === "xBC");
    return {
      weight: up(draw(`${name}.weight`, [C, W], perRun(torchDefault(W), identityConv, identity)), [C, W]),
      bias: up(draw(`${name}.bias`, [C], perRun(torchDefault(W), constant(0), identity)), [C]),
    };
  };
  const params: Mamba2Params = {
    inZ: up(draw("inZ", [D, E], torchDefault(D)), [D, E]),
    inX: up(draw("inX", [D, E], torchDefault(D)), [D, E]),
    inB: up(inB, [D, G * N]),
    inC: up(inC, [D, G * N]),
    // Δ ≈ 1: W_Δ = 0 (and b_Δ below).
    inDt: up(draw("inDt", [D, H], perRun(torchDefault(D), constant(0), (m) => m.delta)), [D, H]),
    convX: conv("convX", E),
    convB: conv("convB", G * N),
    convC: conv("convC", G * N),
    dtBias: up(
      draw(
        "dtBias",
        [H],
        perRun(dtBias(cfg.dtMin, cfg.dtMax, cfg.dtFloor), constant(DELTA_ONE_BIAS), (m) => m.delta),
      ),
      [H],
    ),
    // A_log = log(U(1, 16)) per head (mamba_ssm A_init_range).
    aLog: up(draw("aLog", [H], (k, count) => uniform(k, count, 1, 16).map(Math.log)), [H]),
    D: up(draw("D", [H], constant(1)), [H]),
    normWeight: up(draw("normWeight", [E], constant(1)), [E]),
    outProj: up(draw("outProj", [E, D], torchDefault(E)).map((v) => v / Math.sqrt(nLayers)), [E, D]),
  };
  const consts: Mamba2Consts = {
    aScale: tensor(mimetic.map((m) => (m.A ? -m.c : 1)), [K, 1]),
  };
  return { params, consts };
}

/** The inputs of a Mamba 2 layer's scan, before it runs (for attention maps and analysis). */
export interface Mamba2ScanInputs {
  /** (K, B, T, H, P) after conv and SiLU */ x: Tensor;
  /** (K, B, T, H), positive */ dt: Tensor;
  /** (K, H), negative */ A: Tensor;
  /** (K, B, T, G, N) */ B: Tensor;
  /** (K, B, T, G, N) */ C: Tensor;
  /** (K, B·T, E): the gate, before SiLU */ z: Tensor;
}

/** Computes the scan inputs of a Mamba 2 mixer from its input x (K, B, T, D). */
export function mamba2ScanInputs(
  p: Mamba2Params,
  c: Mamba2Consts,
  x: Tensor,
  cfg: Mamba2Config,
): Mamba2ScanInputs {
  const [K, B, T, Dm] = x.shape;
  const { E, H, P, G, N } = mamba2Dims(cfg, Dm);
  const xf = x.reshape([K, B * T, Dm]);
  const conv = (u: Tensor, cp: ConvParams, C: number) =>
    causalConv1d(u.reshape([K, B, T, C]), cp.weight, cp.bias, { silu: true });
  // The thin in-projections (B, C: G·N columns each, dt: H) as one product (see `matmulParts`).
  const [bIn, cIn, dtIn] = matmulParts(xf, [p.inB, p.inC, p.inDt]);
  const dt = softplus(add(dtIn, p.dtBias.reshape([K, 1, H])));
  return {
    x: conv(matmul(xf, p.inX), p.convX, E).reshape([K, B, T, H, P]),
    dt: dt.reshape([K, B, T, H]),
    // A = −exp(s·A_log): s = 1 is mamba_ssm's A = −exp(A_log); s = −c is the mimetic A ≈ 1.
    A: neg(exp(mul(p.aLog, c.aScale))),
    B: conv(bIn, p.convB, G * N).reshape([K, B, T, G, N]),
    C: conv(cIn, p.convC, G * N).reshape([K, B, T, G, N]),
    z: matmul(xf, p.inZ),
  };
}

/**
 * Applies a Mamba 2 mixer to x (K, B, T, D) → (K, B, T, D).
 * @example
 * ```ts ignore
 * const y = applyMamba2(params, consts, x, MAMBA2_DEFAULTS);
 * ```
 */
export function applyMamba2(p: Mamba2Params, c: Mamba2Consts, x: Tensor, cfg: Mamba2Config): Tensor {
  const [K, B, T, Dm] = x.shape;
  const { E } = mamba2Dims(cfg, Dm);
  const s = mamba2ScanInputs(p, c, x, cfg);
  const scanOptions = cfg.scanAlgorithm ? { algorithm: cfg.scanAlgorithm } : {};
  const y = ssdScan({ x: s.x, dt: s.dt, A: s.A, B: s.B, C: s.C, D: p.D }, scanOptions).reshape([K, B * T, E]);
  // Gated RMSNorm: y ⊙ silu(z), then the norm (mamba_ssm's norm_before_gate=False), fused into one kernel
  // (lib/ops/gated_norm.ts). With gatedNorm "group" (the default) over each group of E/G channels as mamba_ssm's
  // RMSNormGated(group_size = E / G); with "all" over all E channels, as transformers' MambaRMSNormGated.
  const groups = (cfg.gatedNorm ?? "group") === "all" ? 1 : cfg.nGroups;
  const gated = gatedRmsNorm(y, s.z, p.normWeight, { groups, eps: cfg.normEps });
  return matmul(gated, p.outProj).reshape([K, B, T, Dm]);
}

/**
 * What a Mamba 2 mixer allocates in a training step (the `memory` entry of its kind in lib/nn/mixers.ts), read
 * from `mamba2ScanInputs` and `applyMamba2` and the ops' VJPs. Per token (K·B·T of them) the forward keeps, for
 * the backward, 6E + 8GN + 4H + D floats (+G of norm stats): the in-projections of x, B, C, dt and z (and the
 * joint output of the B, C, dt product they are split from), each conv and SiLU output, the scan's output y, the
 * fused gated norm's output and the out-projection; the scan itself
 * keeps nothing (its backward recomputes the states). The backward's largest working set is either the two E-wide
 * cotangents of the gated norm (dy, dz), or the scan's backward
 * scratch (r_t, the saved states every 128 steps, per-head dB/dC when G < H; see `ssdScanBackwardScratch`).
 * Everything is linear in T.
 */
export function mamba2Memory(cfg: Mamba2Config, { K, B, T, D: Dm }: MemoryDims): MixerMemory {
  const { D, E, H, P, G, N, W } = mamba2Dims(cfg, Dm);
  const tok = K * B * T, BT = B * T, GN = G * N;
  const per = (name: string, width: number, whole = false) => sized(name, tok * width, whole);
  const params = [
    sized("inZ", K * D * E),
    sized("inX", K * D * E),
    sized("inB", K * D * GN),
    sized("inC", K * D * GN),
    sized("inDt", K * D * H),
    ...["convX", "convB", "convC"].flatMap((c, i) => {
      const C = i === 0 ? E : GN;
      return [sized(`${c}.weight`, K * C * W), sized(`${c}.bias`, K * C)];
    }),
    sized("dtBias", K * H),
    sized("aLog", K * H),
    sized("D", K * H),
    sized("normWeight", K * E),
    sized("outProj", K * E * D),
  ];
  // forward, in recording order
  // B, C and dt by one product (matmulParts): its three column blocks
  const thin = matmulPartsSchedule("B, C, dt in-projection", K, BT, D, [
    { name: "B in-projection", width: GN },
    { name: "C in-projection", width: GN },
    { name: "dt in-projection", width: H },
  ]);
  const [bMm, cMm] = thin.parts;
  const dtAdd = per("dt + bias", H), dt = per("dt", H, true);
  // in-projection, then the conv with its SiLU in one op (the conv's own output is never stored)
  const chain = (name: string, C: number, mm = per(`${name} in-projection`, C, true)) => ({
    mm,
    act: per(name, C, true),
  });
  const xc = chain("x", E);
  const A = [sized("s·A_log", K * H), sized("exp(s·A_log)", K * H), sized("A", K * H)];
  const bc = chain("B", GN, bMm), cc = chain("C", GN, cMm);
  const z = per("z", E), y = per("scan output y", E, true);
  // The fused gated norm (lib/ops/gated_norm.ts) keeps its output and one rstd per token and group.
  const groups = (cfg.gatedNorm ?? "group") === "all" ? 1 : G;
  const gated = per("gated norm", E), stats = per("gated norm stats", groups);
  const out = per("out-projection", D);
  const forward = [
    ...thin.forward,
    dtAdd,
    dt,
    xc.mm,
    xc.act,
    ...A,
    bc.act,
    cc.act,
  ];
  forward.push(z, y, gated, stats, out);

  // backward, in tape-reverse order
  const steps: BackwardStep[] = [];
  const gOut = sized("d out (alias)", 0);
  const outProj = weightProductStep("out-projection", K, BT, E, D, out, gOut);
  steps.push(outProj.step);
  // The gated norm's backward: dy and dz at once, and the weight's partial sums over √(B·T) row chunks.
  const gY = per("d y", E), gZ = per("d z", E);
  const normPartials = sized("gated norm dw partials", K * Math.ceil(BT / Math.ceil(Math.sqrt(BT))) * E);
  steps.push({ alloc: [gY, gZ, normPartials], free: [gated, stats, outProj.dx, normPartials] });
  // the scan: its gradients, then its scratch freed (the chunked algorithm's also while its forward runs)
  const scanDims = { K, Bt: B, T, H, P, G, N };
  const gX = per("d x", E, true),
    gDt = per("d dt", H, true),
    gB = per("d B", GN, true),
    gC = per("d C", GN, true);
  let scratch: TensorSize[], forwardScratch: MixerMemory["forwardScratch"];
  if ((cfg.scanAlgorithm ?? defaultSsdAlgorithm(scanDims)) === "chunked") {
    const c = ssdChunkedScratch(scanDims);
    const named = (sizes: Record<string, number>, pass: string) =>
      Object.entries(sizes).map(([name, n]) => sized(`chunked scan ${pass} ${name}`, n, true));
    forwardScratch = { after: y, tensors: named(c.forward, "forward") };
    scratch = named(c.backward, "backward");
  } else {
    const s = ssdScanBackwardScratch(scanDims);
    scratch = [
      sized("scan r_t", s.rr, true),
      sized("scan dA/dD partials", s.sp, true),
      sized("scan saved states", s.hs, true),
      sized("scan per-head dC", s.dch, true),
      sized("scan per-head dB", s.dbh, true),
    ].filter((t) => t.elements > 0);
  }
  const gA = sized("d A", K * H); // (dD is a parameter gradient)
  steps.push({ alloc: [gX, gDt, gA, gB, gC, ...scratch], free: [y, gY, ...scratch] });
  // z = x·W_z: the first cotangent of the mixer's input
  const zStep = weightProductStep("z", K, BT, D, E, z, gZ);
  steps.push(zStep.step);
  let gIn: TensorSize = zStep.dx;
  // conv + SiLU backward: the in-projection's cotangent, the conv output's g·silu'(u) (scratch) and the
  // parameters' partials; then (x only: B's and C's come with dt's below) the in-projection's weight product
  const convBack = (c: typeof xc, g: TensorSize, C: number, name: string) => {
    const gMm = per(`d ${name} in-projection`, C, true);
    const gConv = per(`d ${name} conv`, C, true);
    const partials = [
      sized(`${name} conv dw partials`, K * Math.ceil(Math.sqrt(BT)) * C * W),
      sized(`${name} conv db partials`, K * Math.ceil(Math.sqrt(BT)) * C),
    ];
    steps.push({ alloc: [gMm, gConv, ...partials], free: [c.act, g, gConv, ...partials] });
    return gMm;
  };
  const fold = (dx: TensorSize) => {
    const folded = accumulate(gIn, dx);
    steps.push(...folded.steps);
    gIn = folded.acc;
  };
  const gCMm = convBack(cc, gC, GN, "C");
  const gBMm = convBack(bc, gB, GN, "B");
  steps.push({ alloc: [], free: [...A, gA] });
  const xStep = weightProductStep("x in-projection", K, BT, D, E, xc.mm, convBack(xc, gX, E, "x"));
  steps.push(xStep.step);
  fold(xStep.dx);
  const gDtAdd = per("d dt + bias", H);
  steps.push({ alloc: [gDtAdd], free: [dt, gDt] });
  steps.push({ alloc: [sized("dtBias grad partials", K * H * Math.ceil(BT / 64))], free: [dtAdd] });
  steps.at(-1)!.free.push(steps.at(-1)!.alloc[0]);
  const thinBack = thin.backward([gBMm, gCMm, gDtAdd]);
  steps.push(...thinBack.steps);
  fold(thinBack.dx);
  return { params, forward, forwardScratch, backward: steps, inputGrad: gIn };
}
