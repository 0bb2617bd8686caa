/**
 * Initialisation (lib/nn/init.ts, lib/nn/mamba1.ts, lib/nn/mamba2.ts, lib/nn/lm.ts), read back from the
 * GPU:
 * 1. Default init statistics against mamba_ssm's constants (setup.md): S4D-real A_log, A_log per head ∈ log[1, 16),
 *    D = 1, log-uniform dt in [1e-3, 1e-1], U(±1/√fan_in) linears, U(±R^−½) dt_proj, U(±1/√W) convs, out_proj
 *    rescaled by 1/√n_layer, embedding N(0, 0.02).
 * 2. Mimetic init: Δ = 1 for any input, exp(Δ·A) = exp(−a^−c) on average, corr(W_C, W_B) ≈ 1/√2, identity convs.
 * 3. Keys and runs: per-layer switching, same key same params, mixed runs on the run axis = separate K = 1 inits.
 */
import assert from "node:assert/strict";
import { noGpu } from "./harness.ts";
import {
  correlation,
  DEFAULT_INIT,
  DELTA_ONE_BIAS,
  type Mimetic,
  MIMETIC_MAMBA1,
  MIMETIC_MAMBA2,
} from "../lib/nn/init.ts";
import { initMamba1, MAMBA1_DEFAULTS, mamba1Dims, mamba1ScanInputs } from "../lib/nn/mamba1.ts";
import { initMamba2, MAMBA2_DEFAULTS, mamba2Dims, mamba2ScanInputs } from "../lib/nn/mamba2.ts";
import { initLM, type LMConfig } from "../lib/nn/lm.ts";
import { causalConv1d } from "../lib/ops/conv1d.ts";
import { matmul } from "../lib/ops/matmul.ts";
import { silu } from "../lib/ops/elementwise.ts";
import { disposeTree, mapTree, readTensors, type Tensor, tensor, tidy } from "../lib/core/tensor.ts";
import { key, normal, split } from "../lib/core/random.ts";

/** Every tensor of a tree, read back, by path ("inX", "conv.weight", "layers[1].mixer.inB", ...). */
async function readTree(tree: unknown): Promise<Map<string, Float32Array>> {
  const entries: [string, Tensor][] = [];
  mapTree(tree, (t, path) => entries.push([path, t]));
  const data = await readTensors(entries.map(([, t]) => t));
  return new Map(entries.map(([path], i) => [path, data[i] as Float32Array]));
}

/** Reads tensors back and disposes them. */
async function readAndDispose(ts: Tensor[]): Promise<Float32Array[]> {
  const out = await readTensors(ts);
  ts.forEach((t) => t.dispose());
  return out as Float32Array[];
}

function stats(a: ArrayLike<number>) {
  let s = 0, min = Infinity, max = -Infinity;
  for (let i = 0; i < a.length; i++) {
    s += a[i];
    min = Math.min(min, a[i]);
    max = Math.max(max, a[i]);
  }
  const mean = s / a.length;
  let v = 0;
  for (let i = 0; i < a.length; i++) v += (a[i] - mean) ** 2;
  return { mean, std: Math.sqrt(v / a.length), min, max, absMax: Math.max(-min, max), n: a.length };
}

const softplus = (x: number) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));

/** U(±bound): |w| ≤ bound, max |w| close to it, std ≈ bound/√3 within `tol` (relative), mean ≈ 0. */
function assertUniformSym(name: string, a: ArrayLike<number>, bound: number, tol = 0.04): void {
  const s = stats(a);
  console.log(
    `${name}: n ${s.n}, std ${s.std.toPrecision(4)} (expected ${(bound / Math.sqrt(3)).toPrecision(4)}), ` +
      `max |w| ${s.absMax.toPrecision(4)} (bound ${bound.toPrecision(4)})`,
  );
  assert.ok(s.absMax <= Math.fround(bound) * (1 + 1e-6), `${name}: max |w| ${s.absMax} > bound ${bound}`);
  assert.ok(s.absMax > 0.95 * bound, `${name}: max |w| ${s.absMax} far below the bound ${bound}`);
  assert.ok(
    Math.abs(s.std / (bound / Math.sqrt(3)) - 1) < tol,
    `${name}: std ${s.std} vs ${bound / Math.sqrt(3)}`,
  );
  assert.ok(Math.abs(s.mean) < 4 * s.std / Math.sqrt(s.n), `${name}: mean ${s.mean}`);
}

/** dt = softplus(dt_bias) is log-uniform on [1e-3, 1e-1]: range, mean and quartiles of log10 dt. */
function assertDtInit(name: string, bias: ArrayLike<number>): void {
  const l = Array.from(bias, (b) => Math.log10(softplus(b))).sort((a, b) => a - b);
  const q = (p: number) => l[Math.floor(p * (l.length - 1))];
  const mean = l.reduce((a, b) => a + b, 0) / l.length;
  console.log(
    `${name}: n ${l.length}, dt in [${(10 ** l[0]).toExponential(3)}, ${
      (10 ** l.at(-1)!).toExponential(3)
    }], ` +
      `log10 dt mean ${mean.toFixed(3)}, quartiles ${[q(0.25), q(0.5), q(0.75)].map((v) => v.toFixed(3))}`,
  );
  assert.ok(l[0] >= -3 - 1e-5 && l.at(-1)! <= -1 + 1e-5, `${name}: dt outside [1e-4 floor, 1e-1]`);
  const sd = 2 / Math.sqrt(12 * l.length); // of the mean of U(−3, −1)
  assert.ok(Math.abs(mean + 2) < 4 * sd, `${name}: mean log10 dt ${mean}`);
  for (const [p, want] of [[0.25, -2.5], [0.5, -2], [0.75, -1.5]]) {
    assert.ok(
      Math.abs(q(p) - want) < 0.2,
      `${name}: quantile ${p} of log10 dt is ${q(p)}, expected ≈ ${want}`,
    );
  }
}

/** The slice of run k of a (K, ...) parameter. */
const run = (a: Float32Array, K: number, k: number) =>
  a.subarray((k * a.length) / K, ((k + 1) * a.length) / K);

// ---------------------------------------------------------------------------------------------------------------
// 1. Default init

Deno.test({
  name: "default Mamba 1 init matches mamba_ssm's constants",
  ignore: noGpu,
  fn: async () => {
    const K = 2, Dm = 64, nLayers = 4;
    const cfg = MAMBA1_DEFAULTS;
    const { E, N, R, W } = mamba1Dims(cfg, Dm);
    const { params, consts } = initMamba1(split(key(1), K), "mixer", cfg, Dm, nLayers);
    const p = await readTree(params);
    const [aScale] = await readTensors([consts.aScale]);
    disposeTree([params, consts]);

    // S4D-real: A_log[e, n] = log(n + 1) for every channel, exactly (as f32)
    const aLog = p.get("aLog")!;
    for (let i = 0; i < aLog.length; i++) {
      assert.equal(aLog[i], Math.fround(Math.log((i % N) + 1)), `A_log[${i}]`);
    }
    assert.ok(p.get("D")!.every((v) => v === 1), "D = 1");
    assert.deepEqual(Array.from(aScale), [1, 1], "A = −exp(A_log)");
    assertDtInit("dt_proj.bias", p.get("dtProjBias")!);
    assertUniformSym("in_proj x", p.get("inX")!, 1 / Math.sqrt(Dm));
    assertUniformSym("in_proj z", p.get("inZ")!, 1 / Math.sqrt(Dm));
    assertUniformSym("x_proj dt", p.get("xProjDt")!, 1 / Math.sqrt(E), 0.06);
    assertUniformSym("x_proj B", p.get("xProjB")!, 1 / Math.sqrt(E));
    assertUniformSym("x_proj C", p.get("xProjC")!, 1 / Math.sqrt(E));
    assertUniformSym(`dt_proj.weight (R ${R})`, p.get("dtProjWeight")!, R ** -0.5, 0.06);
    assertUniformSym(`conv.weight (W ${W})`, p.get("conv.weight")!, 1 / Math.sqrt(W), 0.06);
    assertUniformSym("conv.bias", p.get("conv.bias")!, 1 / Math.sqrt(W), 0.1);
    assertUniformSym(
      `out_proj (n_layer ${nLayers})`,
      p.get("outProj")!,
      1 / Math.sqrt(E) / Math.sqrt(nLayers),
    );
    // default W_B and W_C are independent
    const c = correlation(p.get("xProjB")!, p.get("xProjC")!);
    assert.ok(Math.abs(c) < 0.1, `default corr(W_C, W_B) = ${c}`);
  },
});

Deno.test({
  name: "default Mamba 2 init matches mamba_ssm's constants",
  ignore: noGpu,
  fn: async () => {
    const K = 4, Dm = 64, nLayers = 2;
    const cfg = { ...MAMBA2_DEFAULTS, dState: 16, headDim: 4 };
    const { E, H, G, N, W } = mamba2Dims(cfg, Dm);
    const { params, consts } = initMamba2(split(key(2), K), "mixer", cfg, Dm, nLayers);
    const p = await readTree(params);
    const [aScale] = await readTensors([consts.aScale]);
    disposeTree([params, consts]);

    // A_log = log(U(1, 16)) per head: exp(A_log) in [1, 16), spread evenly (each quarter of the range ≈ 25 %)
    const a = Array.from(p.get("aLog")!, Math.exp);
    const sa = stats(a);
    const quarters = [0, 1, 2, 3].map((qi) =>
      a.filter((v) => v >= 1 + 3.75 * qi && v < 1 + 3.75 * (qi + 1)).length / a.length
    );
    console.log(
      `exp(A_log): n ${a.length}, range [${sa.min.toFixed(3)}, ${sa.max.toFixed(3)}], mean ${
        sa.mean.toFixed(3)
      }, quarters ${quarters.map((v) => v.toFixed(2))}`,
    );
    assert.ok(sa.min >= 1 - 1e-6 && sa.max < 16 + 1e-5, "exp(A_log) in [1, 16)");
    assert.ok(Math.abs(sa.mean - 8.5) < 4 * 15 / Math.sqrt(12 * a.length), `mean exp(A_log) ${sa.mean}`);
    for (const f of quarters) assert.ok(Math.abs(f - 0.25) < 0.12, `quarters ${quarters}`);
    assert.ok(p.get("D")!.every((v) => v === 1), "D = 1");
    assert.ok(p.get("normWeight")!.every((v) => v === 1), "norm weight = 1");
    assert.deepEqual(Array.from(aScale), [1, 1, 1, 1], "A = −exp(A_log)");
    assertDtInit("dt_bias", p.get("dtBias")!);
    for (const name of ["inZ", "inX", "inB", "inC", "inDt"]) {
      assertUniformSym(`in_proj ${name}`, p.get(name)!, 1 / Math.sqrt(Dm));
    }
    for (const conv of ["convX", "convB", "convC"]) {
      assertUniformSym(`${conv}.weight (W ${W})`, p.get(`${conv}.weight`)!, 1 / Math.sqrt(W), 0.06);
      assertUniformSym(
        `${conv}.bias`,
        p.get(`${conv}.bias`)!,
        1 / Math.sqrt(W),
        conv === "convX" ? 0.06 : 0.1,
      );
    }
    assertUniformSym(
      `out_proj (n_layer ${nLayers})`,
      p.get("outProj")!,
      1 / Math.sqrt(E) / Math.sqrt(nLayers),
    );
    assert.equal(p.get("inB")!.length, K * Dm * G * N);
    assert.equal(p.get("dtBias")!.length, K * H);
  },
});

/** A small three-layer hybrid of both mixers. */
const LM_CFG: LMConfig = {
  vocab: 64,
  dModel: 64,
  layers: [
    { ...MAMBA2_DEFAULTS, dState: 16, headDim: 8 },
    { ...MAMBA2_DEFAULTS, dState: 16, headDim: 8 },
    { ...MAMBA1_DEFAULTS, dState: 8 },
  ],
  normEps: 1e-5,
};

Deno.test({
  name: "LM init: embedding N(0, 0.02), norms 1, every out_proj rescaled by 1/√n_layer",
  ignore: noGpu,
  fn: async () => {
    const { params, consts } = initLM([key(3)], LM_CFG);
    const p = await readTree(params);
    disposeTree([params, consts]);
    const emb = stats(p.get("embedding")!);
    console.log(
      `embedding: n ${emb.n}, mean ${emb.mean.toExponential(2)}, std ${
        emb.std.toPrecision(4)
      } (expected 0.02)`,
    );
    assert.ok(Math.abs(emb.std / 0.02 - 1) < 0.04, `embedding std ${emb.std}`);
    assert.ok(Math.abs(emb.mean) < 4 * 0.02 / Math.sqrt(emb.n), `embedding mean ${emb.mean}`);
    assert.ok(p.get("normF")!.every((v) => v === 1));
    const E = 2 * LM_CFG.dModel, L = LM_CFG.layers.length;
    for (let i = 0; i < L; i++) {
      assert.ok(p.get(`layers[${i}].norm`)!.every((v) => v === 1));
      assertUniformSym(
        `layers[${i}] out_proj`,
        p.get(`layers[${i}].mixer.outProj`)!,
        1 / Math.sqrt(E) / Math.sqrt(L),
      );
    }
  },
});

// ---------------------------------------------------------------------------------------------------------------
// 2. Mimetic init

/** Mean over (t, channel, state) of exp(Δ·A) from host arrays: Δ (rows, C), A (C, S) per run. */
function meanDecay(
  delta: ArrayLike<number>,
  A: ArrayLike<number>,
  rows: number,
  C: number,
  S: number,
): number {
  let s = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < C; c++) for (let n = 0; n < S; n++) s += Math.exp(delta[r * C + c] * A[c * S + n]);
  }
  return s / (rows * C * S);
}

Deno.test({
  name:
    "mimetic Mamba 2 init: Δ = 1 for any input, exp(Δ·A) = exp(−a^−8), corr(W_C, W_B) ≈ 0.71, identity convs",
  ignore: noGpu,
  fn: async () => {
    const K = 2, Dm = 64, Bt = 2, T = 8;
    const cfg = { ...MAMBA2_DEFAULTS, dState: 32, headDim: 8 };
    const { H, G, N, W } = mamba2Dims(cfg, Dm);
    // run 0 mimetic, run 1 default
    const { params, consts } = initMamba2(split(key(4), K), "mixer", cfg, Dm, 1, [
      MIMETIC_MAMBA2,
      DEFAULT_INIT,
    ]);
    const p = await readTree(params);
    const x = normal(key(5), K * Bt * T * Dm);
    const [dt, A, Bs, Bdirect, convOut, convIn] = await readAndDispose(tidy(() => {
      const xt = tensor(x, [K, Bt, T, Dm]);
      const s = mamba2ScanInputs(params, consts, xt, cfg);
      // with the identity conv, B = silu(x W_B): compare with the projection without the conv
      const direct = silu(matmul(xt.reshape([K, Bt * T, Dm]), params.inB));
      const probe = tensor(normal(key(6), K * Bt * T * G * N), [K, Bt, T, G * N]);
      return [s.dt, s.A, s.B, direct, causalConv1d(probe, params.convB.weight, params.convB.bias), probe];
    }));
    disposeTree([params, consts]);

    const dt0 = run(dt, K, 0), st = stats(dt0);
    console.log(
      `mimetic Δ over ${st.n} (t, h): mean ${st.mean.toPrecision(8)}, range [${st.min}, ${st.max}]`,
    );
    assert.ok(Math.abs(st.mean - 1) < 1e-5 && st.absMax - 1 < 1e-5 && 1 - st.min < 1e-5, "Δ = 1");
    assert.ok(run(p.get("inDt")!, K, 0).every((v) => v === 0), "W_Δ = 0");
    assert.ok(
      run(p.get("dtBias")!, K, 0).every((v) => v === Math.fround(DELTA_ONE_BIAS)),
      "b_Δ = softplus⁻¹(1)",
    );
    // the default run's Δ is input-dependent and small
    assert.ok(stats(run(dt, K, 1)).max < 0.5, "default Δ");

    // exp(Δ·A) with A = −exp(−8·A_log) = −a^−8: measured mean against mean_h exp(−a_h^−8)
    const a = Array.from(run(p.get("aLog")!, K, 0), Math.exp);
    const predicted = a.reduce((s, v) => s + Math.exp(-(v ** -8)), 0) / H;
    const measured = meanDecay(dt0, run(A, K, 0), Bt * T, H, 1);
    console.log(
      `mimetic mean exp(Δ·A): measured ${measured.toPrecision(8)}, exp(−a^−8) predicts ${
        predicted.toPrecision(8)
      }`,
    );
    assert.ok(Math.abs(measured - predicted) < 1e-5);
    assert.ok(measured > 0.95, "A ≈ 1: exp(Δ·A) near 1 for most heads");

    const corr = [0, 1].map((k) => correlation(run(p.get("inC")!, K, k), run(p.get("inB")!, K, k)));
    console.log(
      `corr(W_C, W_B): mimetic ${corr[0].toFixed(4)}, default ${corr[1].toFixed(4)} (1/√2 = 0.7071)`,
    );
    assert.ok(Math.abs(corr[0] - Math.SQRT1_2) < 0.03, `mimetic corr ${corr[0]}`);
    assert.ok(Math.abs(corr[1]) < 0.1, `default corr ${corr[1]}`);

    for (const conv of ["convX", "convB", "convC"]) {
      const w = run(p.get(`${conv}.weight`)!, K, 0);
      for (let i = 0; i < w.length; i++) assert.equal(w[i], i % W === W - 1 ? 1 : 0, `${conv}.weight[${i}]`);
      assert.ok(run(p.get(`${conv}.bias`)!, K, 0).every((v) => v === 0), `${conv}.bias = 0`);
    }
    const half = convIn.length / K;
    let convErr = 0, bErr = 0;
    for (let i = 0; i < half; i++) convErr = Math.max(convErr, Math.abs(convOut[i] - convIn[i]));
    for (let i = 0; i < Bs.length / K; i++) bErr = Math.max(bErr, Math.abs(Bs[i] - Bdirect[i]));
    console.log(`identity conv: max |conv(x) − x| ${convErr}, max |B − silu(x W_B)| ${bErr}`);
    assert.ok(convErr === 0 && bErr === 0, "the identity conv's output equals its input");
    assert.ok(
      run(convOut, K, 1).some((v, i) => v !== run(convIn, K, 1)[i]),
      "the default conv is not the identity",
    );
  },
});

Deno.test({
  name: "mimetic Mamba 1 init: Δ = 1 for any input, exp(Δ·A) = exp(−a^−c) (c 8 and 4), corr(W_C, W_B) ≈ 0.71",
  ignore: noGpu,
  fn: async () => {
    const K = 3, Dm = 64, Bt = 2, T = 8;
    const cfg = { ...MAMBA1_DEFAULTS, dState: 32 };
    const { E, N, W } = mamba1Dims(cfg, Dm);
    const mimetic: Mimetic[] = [MIMETIC_MAMBA1, DEFAULT_INIT, { ...MIMETIC_MAMBA1, c: 4, conv: true }];
    const { params, consts } = initMamba1(split(key(7), K), "mixer", cfg, Dm, 1, mimetic);
    const p = await readTree(params);
    const x = normal(key(8), K * Bt * T * Dm);
    const [delta, A] = await readAndDispose(tidy(() => {
      const s = mamba1ScanInputs(params, consts, tensor(x, [K, Bt, T, Dm]), cfg);
      return [s.delta, s.A];
    }));
    disposeTree([params, consts]);

    for (const k of [0, 2]) {
      const d = stats(run(delta, K, k));
      console.log(
        `run ${k} mimetic Δ over ${d.n} (t, e): mean ${d.mean.toPrecision(8)}, range [${d.min}, ${d.max}]`,
      );
      assert.ok(Math.abs(d.mean - 1) < 1e-5 && d.max - 1 < 1e-5 && 1 - d.min < 1e-5, "Δ = 1");
      assert.ok(run(p.get("dtProjWeight")!, K, k).every((v) => v === 0), "W_Δ = 0");
      assert.ok(run(p.get("dtProjBias")!, K, k).every((v) => v === Math.fround(DELTA_ONE_BIAS)), "b_Δ");
      // A_log = log(n + 1) (S4D-real) and A = −exp(−c·A_log) = −(n + 1)^−c
      const c = mimetic[k].c;
      const predicted = Array.from({ length: N }, (_, n) =>
        Math.exp(-((n + 1) ** -c))).reduce((s, v) => s + v) / N;
      const measured = meanDecay(run(delta, K, k), run(A, K, k), Bt * T, E, N);
      console.log(
        `run ${k} (c ${c}) mean exp(Δ·A): measured ${measured.toPrecision(8)}, exp(−a^−${c}) predicts ${
          predicted.toPrecision(8)
        }`,
      );
      assert.ok(Math.abs(measured - predicted) < 1e-5);
      const corr = correlation(run(p.get("xProjC")!, K, k), run(p.get("xProjB")!, K, k));
      console.log(`run ${k} corr(W_C, W_B) ${corr.toFixed(4)}`);
      assert.ok(Math.abs(corr - Math.SQRT1_2) < 0.03, `corr ${corr}`);
    }
    // the paper's Mamba 1 choice keeps the default conv; the conv component makes it the identity
    const w0 = run(p.get("conv.weight")!, K, 0), w2 = run(p.get("conv.weight")!, K, 2);
    assert.ok(
      w0.some((v, i) => v !== (i % W === W - 1 ? 1 : 0)),
      "MIMETIC_MAMBA1 leaves the conv at default",
    );
    for (let i = 0; i < w2.length; i++) assert.equal(w2[i], i % W === W - 1 ? 1 : 0);
    assert.ok(run(p.get("conv.bias")!, K, 2).every((v) => v === 0));
    // the default run: small input-dependent Δ, A = −(n + 1), so exp(Δ·A) well below 1 on average
    const d1 = stats(run(delta, K, 1));
    assert.ok(d1.max < 0.5 && d1.std > 0, `default Δ ${JSON.stringify(d1)}`);
    assert.ok(meanDecay(run(delta, K, 1), run(A, K, 1), Bt * T, E, N) < 0.9);
  },
});

// ---------------------------------------------------------------------------------------------------------------
// 3. Keys, layers and runs

/** Asserts two read-back trees are (or are not) bit-identical leaf by leaf, for the listed paths or all. */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length &&
    new Uint32Array(a.buffer, a.byteOffset, a.length).every((v, i) =>
      v === new Uint32Array(b.buffer, b.byteOffset, b.length)[i]
    );
}

Deno.test({
  name: "mimetic init switches per layer: mimetic on layer 1 of 3 leaves layers 0 and 2 at the default",
  ignore: noGpu,
  fn: async () => {
    const keys = [key(10)];
    const def = initLM(keys, LM_CFG);
    const mim = initLM(keys, LM_CFG, (_run, layer) => (layer === 1 ? MIMETIC_MAMBA2 : DEFAULT_INIT));
    const [pd, pm] = [await readTree(def.params), await readTree(mim.params)];
    const [cd, cm] = [await readTree(def.consts), await readTree(mim.consts)];
    disposeTree([def, mim]);
    const changed = new Set([
      "inC",
      "inDt",
      "dtBias",
      ...["convX", "convB", "convC"].flatMap((c) => [`${c}.weight`, `${c}.bias`]),
    ]);
    for (const [path, v] of pd) {
      const m = /^layers\[1\]\.mixer\.(.+)$/.exec(path);
      const differs = m !== null && changed.has(m[1]);
      assert.equal(
        !sameBits(v, pm.get(path)!),
        differs,
        `${path} ${differs ? "should differ" : "should be unchanged"}`,
      );
    }
    assert.deepEqual(
      [0, 1, 2].map((i) => cm.get(`layers[${i}].aScale`)![0]),
      [1, -8, 1],
      "A scale per layer",
    );
    assert.deepEqual([0, 1, 2].map((i) => cd.get(`layers[${i}].aScale`)![0]), [1, 1, 1]);
  },
});

Deno.test({
  name: "the same key gives identical params, a different key different ones",
  ignore: noGpu,
  fn: async () => {
    const mim = () => MIMETIC_MAMBA2;
    const inits = [initLM([key(11)], LM_CFG), initLM([key(11)], LM_CFG), initLM([key(12)], LM_CFG)];
    const mims = [initLM([key(11)], LM_CFG, mim), initLM([key(11)], LM_CFG, mim)];
    const [pa, pb, pc, ma, mb] = await Promise.all([...inits, ...mims].map((m) => readTree(m.params)));
    disposeTree([inits, mims]);
    let random = 0;
    for (const [path, v] of pa) {
      assert.ok(sameBits(v, pb.get(path)!), `${path}: same key, different default params`);
      assert.ok(sameBits(ma.get(path)!, mb.get(path)!), `${path}: same key, different mimetic params`);
      // deterministic defaults: D, norm weights, and Mamba 1's S4D-real A_log (layer 2)
      const constant = v.every((x) => x === v[0]) || path === "layers[2].mixer.aLog";
      if (!constant) {
        random++;
        assert.ok(!sameBits(v, pc.get(path)!), `${path}: different keys, same params`);
      }
    }
    console.log(`${pa.size} parameters, ${random} of them random: all differ between keys`);
    assert.ok(random >= 20);
  },
});

Deno.test({
  name: "mixed default/mimetic runs on the run axis (K = 2) each match a K = 1 init of the same key",
  ignore: noGpu,
  fn: async () => {
    const keys = split(key(13), 2);
    const choice = (r: number) => (r === 1 ? MIMETIC_MAMBA2 : DEFAULT_INIT);
    const both = initLM(keys, LM_CFG, (r) => choice(r));
    const one = [0, 1].map((r) => initLM([keys[r]], LM_CFG, () => choice(r)));
    const pBoth = await readTree([both.params, both.consts]);
    const pOne = await Promise.all(one.map((m) => readTree([m.params, m.consts])));
    disposeTree([both, one]);
    for (const [path, v] of pBoth) {
      for (const r of [0, 1]) assert.ok(sameBits(run(v, 2, r), pOne[r].get(path)!), `${path}, run ${r}`);
    }
    console.log(`${pBoth.size} tensors: each run's slice is bit-identical to its K = 1 init`);
  },
});
