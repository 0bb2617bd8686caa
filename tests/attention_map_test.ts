/**
 * Attention maps of Mamba layers (lib/ops/attention_map.ts):
 * 1. GPU maps and masks against the float64 references (K = 2, T not a multiple of the 16-tile, several passes over
 *    channels, states and heads), including T = 1000, where the blockwise exponents are compared with naive f32
 *    prefix-sum differences.
 * 2. The map is the SSM's actual input-to-output linear map: one-hot inputs through `ssdScan` / `selectiveScan`
 *    (D = 0, no gate) give its columns.
 * 3. Eq. 12: a mimetic layer's map is close to CausalMask(C_iᵀ B_j); a default layer's is not.
 */
import assert from "node:assert/strict";
import { maxRelError, noGpu, randomInputs } from "./harness.ts";
import {
  attentionMapToRows,
  mamba1AttentionMap,
  mamba1AttentionMapRef,
  mamba2AttentionMap,
  mamba2AttentionMapRef,
} from "../lib/ops/attention_map.ts";
import { ssdScan } from "../lib/ops/ssd_scan.ts";
import { selectiveScan } from "../lib/ops/selective_scan.ts";
import { disposeTree, readTensors, type Tensor, tensor, tidy, zeros } from "../lib/core/tensor.ts";
import { correlation, DEFAULT_INIT, MIMETIC_MAMBA1, MIMETIC_MAMBA2 } from "../lib/nn/init.ts";
import { initMamba1, MAMBA1_DEFAULTS, mamba1ScanInputs } from "../lib/nn/mamba1.ts";
import { initMamba2, MAMBA2_DEFAULTS, mamba2ScanInputs } from "../lib/nn/mamba2.ts";
import { key, normal, randint, split } from "../lib/core/random.ts";
import { applyBlocks, initLM, layerAttentionMap, type LMConfig } from "../lib/nn/lm.ts";
import { rmsNorm } from "../lib/ops/norm.ts";
import type { Mamba2Config, Mamba2Consts, Mamba2Params } from "../lib/nn/mamba2.ts";

/** Reads map and mask back and disposes them. */
async function readMap(m: { map: Tensor; mask: Tensor }): Promise<[Float32Array, Float32Array]> {
  const [map, mask] = await readTensors([m.map, m.mask]);
  m.map.dispose();
  m.mask.dispose();
  return [map as Float32Array, mask as Float32Array];
}

/** Reads tensors back and disposes them. */
async function readAndDispose(ts: Tensor[]): Promise<Float32Array[]> {
  const out = await readTensors(ts);
  ts.forEach((t) => t.dispose());
  return out as Float32Array[];
}

// ---------------------------------------------------------------------------------------------------------------
// 1. GPU against the float64 reference

interface M1Case {
  K: number;
  Bt: number;
  T: number;
  E: number;
  N: number;
  b: number;
  /** Δ range and A range */
  delta?: [number, number];
  A?: [number, number];
  tol?: number;
}

async function checkMamba1(c: M1Case): Promise<{ map: number; mask: number }> {
  const { K, Bt, T, E, N, b } = c;
  const shapes = [[K, Bt, T, E], [K, E, N], [K, Bt, T, N], [K, Bt, T, N]];
  const [delta, A, B, C] = randomInputs([
    { shape: shapes[0], range: c.delta ?? [0.05, 1.5] },
    { shape: shapes[1], range: c.A ?? [-2, -0.05] },
    { shape: shapes[2] },
    { shape: shapes[3] },
  ]);
  const [map, mask] = await readMap(tidy(() => {
    const [td, tA, tB, tC] = [delta, A, B, C].map((v, i) => tensor(v, shapes[i]));
    return mamba1AttentionMap({ delta: td, A: tA, B: tB, C: tC }, { batchIndex: b });
  }));
  const ref = mamba1AttentionMapRef({ delta, A, B, C }, { K, Bt, T, E, N }, b);
  const err = { map: maxRelError(map, ref.map), mask: maxRelError(mask, ref.mask) };
  console.log(
    `mamba1AttentionMap K ${K} Bt ${Bt} T ${T} E ${E} N ${N} b ${b}: max rel error map ${
      err.map.toExponential(2)
    }, ` +
      `mask ${err.mask.toExponential(2)}`,
  );
  const tol = c.tol ?? 1e-5;
  assert.ok(err.map <= tol && err.mask <= tol, `errors ${JSON.stringify(err)} > ${tol}`);
  return err;
}

interface M2Case {
  K: number;
  Bt: number;
  T: number;
  H: number;
  G: number;
  N: number;
  b: number;
  dt?: [number, number];
  A?: [number, number];
  tol?: number;
}

async function checkMamba2(c: M2Case): Promise<{ map: number; mask: number }> {
  const { K, Bt, T, H, G, N, b } = c;
  const shapes = [[K, Bt, T, H], [K, H], [K, Bt, T, G, N], [K, Bt, T, G, N]];
  const [dt, A, B, C] = randomInputs([
    { shape: shapes[0], range: c.dt ?? [0.05, 1.5] },
    { shape: shapes[1], range: c.A ?? [-2, -0.05] },
    { shape: shapes[2] },
    { shape: shapes[3] },
  ]);
  const [map, mask] = await readMap(tidy(() => {
    const [tdt, tA, tB, tC] = [dt, A, B, C].map((v, i) => tensor(v, shapes[i]));
    return mamba2AttentionMap({ dt: tdt, A: tA, B: tB, C: tC }, { batchIndex: b });
  }));
  const ref = mamba2AttentionMapRef({ dt, A, B, C }, { K, Bt, T, H, G, N }, b);
  const err = { map: maxRelError(map, ref.map), mask: maxRelError(mask, ref.mask) };
  console.log(
    `mamba2AttentionMap K ${K} Bt ${Bt} T ${T} H ${H} G ${G} N ${N} b ${b}: max rel error map ` +
      `${err.map.toExponential(2)}, mask ${err.mask.toExponential(2)}`,
  );
  const tol = c.tol ?? 1e-5;
  assert.ok(err.map <= tol && err.mask <= tol, `errors ${JSON.stringify(err)} > ${tol}`);
  return err;
}

Deno.test({
  name: "mamba1AttentionMap matches the float64 reference (K 2, odd T, E and N, batch row 1)",
  ignore: noGpu,
  fn: async () => {
    await checkMamba1({ K: 2, Bt: 2, T: 37, E: 6, N: 5, b: 1 });
    // two passes over n (NB = 16), two chunks of channels (32 + 8), T one past a tile
    await checkMamba1({ K: 2, Bt: 1, T: 17, E: 40, N: 32, b: 0 });
    // N prime > 16: one state per pass
    await checkMamba1({ K: 1, Bt: 1, T: 5, E: 3, N: 17, b: 0 });
    // T = 1 and T a multiple of the tile
    await checkMamba1({ K: 2, Bt: 3, T: 1, E: 2, N: 4, b: 2 });
    await checkMamba1({ K: 1, Bt: 1, T: 32, E: 4, N: 8, b: 0 });
  },
});

Deno.test({
  name:
    "mamba2AttentionMap matches the float64 reference (K 2, odd T, several groups, chunks of N and heads)",
  ignore: noGpu,
  fn: async () => {
    await checkMamba2({ K: 2, Bt: 2, T: 37, H: 4, G: 2, N: 5, b: 1 });
    // N over two chunks of 32, heads per group over two chunks of 32
    await checkMamba2({ K: 2, Bt: 1, T: 21, H: 36, G: 1, N: 40, b: 0 });
    await checkMamba2({ K: 1, Bt: 1, T: 18, H: 6, G: 3, N: 3, b: 0 });
    await checkMamba2({ K: 1, Bt: 2, T: 1, H: 2, G: 1, N: 4, b: 1 });
  },
});

/**
 * The error of the naive exponent S_i − S_j from f32 prefix sums (map only, in float64 otherwise), to compare with
 * the kernel's blockwise exponents.
 */
function naiveMamba1MapError(
  a: { delta: Float64Array; A: Float64Array; B: Float64Array; C: Float64Array },
  T: number,
  E: number,
  N: number,
  ref: Float64Array,
): number {
  const f = Math.fround;
  const S = new Float64Array(T * E);
  for (let e = 0; e < E; e++) {
    let run = 0;
    for (let t = 0; t < T; t++) S[t * E + e] = run = f(run + f(a.delta[t * E + e]));
  }
  const out = new Float64Array(T * T);
  for (let i = 0; i < T; i++) {
    for (let j = 0; j <= i; j++) {
      let m = 0;
      for (let e = 0; e < E; e++) {
        const s = f(S[i * E + e] - S[j * E + e]);
        for (let n = 0; n < N; n++) {
          m += a.C[i * N + n] * Math.exp(a.A[e * N + n] * s) * a.delta[j * E + e] * a.B[j * N + n];
        }
      }
      out[i * T + j] = m / E;
    }
  }
  return maxRelError(out, ref);
}

Deno.test({
  name: "attention maps at T = 1000 keep f32 accuracy (blockwise exponents, not prefix-sum differences)",
  ignore: noGpu,
  fn: async () => {
    const T = 1000, E = 2, N = 3;
    const shapes = [[1, 1, T, E], [1, E, N], [1, 1, T, N], [1, 1, T, N]];
    const [delta, A, B, C] = randomInputs([
      { shape: shapes[0], range: [0.5, 1.5] },
      { shape: shapes[1], range: [-4, -1e-3] },
      { shape: shapes[2] },
      { shape: shapes[3] },
    ]);
    const [map] = await readMap(tidy(() => {
      const [td, tA, tB, tC] = [delta, A, B, C].map((v, i) => tensor(v, shapes[i]));
      return mamba1AttentionMap({ delta: td, A: tA, B: tB, C: tC });
    }));
    const ref = mamba1AttentionMapRef({ delta, A, B, C }, { K: 1, Bt: 1, T, E, N });
    const err = maxRelError(map, ref.map);
    const naive = naiveMamba1MapError({ delta, A, B, C }, T, E, N, ref.map);
    console.log(
      `T = 1000, Δ ∈ [0.5, 1.5], A ∈ [−4, −1e-3]: max rel error of the map ${err.toExponential(2)} ` +
        `(naive f32 prefix-sum differences: ${naive.toExponential(2)})`,
    );
    assert.ok(err < 1e-5, `map error ${err}`);
    assert.ok(err < naive, `blockwise ${err} not better than naive ${naive}`);
    const e2 = await checkMamba2({ K: 1, Bt: 1, T, H: 3, G: 1, N: 4, b: 0, dt: [0.5, 1.5], A: [-4, -1e-3] });
    assert.ok(e2.map < 1e-5);
  },
});

Deno.test({
  name: "attention maps reject bad shapes and batch rows with a RangeError",
  ignore: noGpu,
  fn: () => {
    tidy(() => {
      const d = zeros([1, 2, 3, 4]), A = zeros([1, 4, 5]), B = zeros([1, 2, 3, 5]);
      assert.throws(
        () => mamba1AttentionMap({ delta: d, A, B, C: zeros([1, 2, 3, 6]) }),
        /expected C of shape/,
      );
      assert.throws(
        () => mamba1AttentionMap({ delta: d, A: zeros([1, 3, 5]), B, C: B }),
        /expected A of shape/,
      );
      assert.throws(() => mamba1AttentionMap({ delta: d, A, B, C: B }, { batchIndex: 2 }), /batchIndex/);
      const dt = zeros([1, 2, 3, 4]), B2 = zeros([1, 2, 3, 3, 5]);
      assert.throws(() => mamba2AttentionMap({ dt, A: zeros([1, 4]), B: B2, C: B2 }), /G = 3 must divide/);
      assert.throws(() => mamba2AttentionMap({ dt, A: zeros([1, 3]), B: B2, C: B2 }), RangeError);
    });
  },
});

Deno.test("attentionMapToRows downsamples by block averages and checks its arguments", () => {
  const T = 5;
  const map = Float32Array.from({ length: T * T }, (_, x) => (x % T <= Math.floor(x / T) ? x : 0));
  const full = attentionMapToRows(map, T);
  assert.equal(full.length, T);
  assert.deepEqual(full[2], [10, 11, 12, 0, 0]);
  const rows = attentionMapToRows(map, T, 2);
  assert.equal(rows.length, 3);
  assert.deepEqual(rows[0], [(0 + 0 + 5 + 6) / 4, 0, 0]);
  assert.deepEqual(rows[2], [(20 + 21) / 2, (22 + 23) / 2, 24]);
  assert.throws(() => attentionMapToRows(map, 4), RangeError);
  assert.throws(() => attentionMapToRows(map, T, 0), RangeError);
});

// ---------------------------------------------------------------------------------------------------------------
// 2. The map is the SSM's linear map: column s is the channel-averaged response to a one-hot input at time s.

/** (K, 1, T, ...rest) → (K, T, T, ...rest): the row repeated for each of T batch rows. */
function repeatRows(a: Float64Array, K: number, T: number, rest: number): Float64Array {
  const out = new Float64Array(K * T * T * rest);
  for (let k = 0; k < K; k++) {
    for (let s = 0; s < T; s++) {
      out.set(a.subarray(k * T * rest, (k + 1) * T * rest), (k * T + s) * T * rest);
    }
  }
  return out;
}

/** One-hot inputs (K, T, T, C): batch row s is 1 at time s in every channel. */
function oneHots(K: number, T: number, C: number): Float64Array {
  const out = new Float64Array(K * T * T * C);
  for (let k = 0; k < K; k++) {
    for (let s = 0; s < T; s++) out.fill(1, ((k * T + s) * T + s) * C, ((k * T + s) * T + s + 1) * C);
  }
  return out;
}

/** map'[k, t, s] = mean over the C channels of y[k, s, t, :] (y from one-hot batch rows s). */
function responseMap(y: Float32Array, K: number, T: number, C: number): Float64Array {
  const out = new Float64Array(K * T * T);
  for (let k = 0; k < K; k++) {
    for (let s = 0; s < T; s++) {
      for (let t = 0; t < T; t++) {
        let m = 0;
        for (let c = 0; c < C; c++) m += y[((k * T + s) * T + t) * C + c];
        out[(k * T + t) * T + s] = m / C;
      }
    }
  }
  return out;
}

Deno.test({
  name: "mamba2AttentionMap equals ssdScan's input-to-output map (D = 0, one-hot inputs)",
  ignore: noGpu,
  fn: async () => {
    const K = 2, T = 21, H = 4, P = 8, G = 2, N = 12;
    const [dt, A, B, C] = randomInputs([
      { shape: [K, 1, T, H], range: [0.05, 1.5] },
      { shape: [K, H], range: [-2, -0.05] },
      { shape: [K, 1, T, G, N] },
      { shape: [K, 1, T, G, N] },
    ]);
    const [map, y] = await readAndDispose(tidy(() => {
      const m = mamba2AttentionMap({
        dt: tensor(dt, [K, 1, T, H]),
        A: tensor(A, [K, H]),
        B: tensor(B, [K, 1, T, G, N]),
        C: tensor(C, [K, 1, T, G, N]),
      });
      const y = ssdScan({
        x: tensor(oneHots(K, T, H * P), [K, T, T, H, P]),
        dt: tensor(repeatRows(dt, K, T, H), [K, T, T, H]),
        A: tensor(A, [K, H]),
        B: tensor(repeatRows(B, K, T, G * N), [K, T, T, G, N]),
        C: tensor(repeatRows(C, K, T, G * N), [K, T, T, G, N]),
        D: zeros([K, H]),
      });
      m.mask.dispose();
      return [m.map, y];
    }));
    const err = maxRelError(map, responseMap(y, K, T, H * P));
    console.log(
      `Mamba 2 map vs ssdScan responses (K ${K}, T ${T}, H ${H}, G ${G}): max rel error ${
        err.toExponential(2)
      }`,
    );
    assert.ok(err < 1e-5, `error ${err}`);
  },
});

Deno.test({
  name: "mamba1AttentionMap equals selectiveScan's input-to-output map (D = 0, no gate, one-hot inputs)",
  ignore: noGpu,
  fn: async () => {
    const K = 2, T = 19, E = 8, N = 6;
    const [delta, A, B, C] = randomInputs([
      { shape: [K, 1, T, E], range: [0.05, 1.5] },
      { shape: [K, E, N], range: [-2, -0.05] },
      { shape: [K, 1, T, N] },
      { shape: [K, 1, T, N] },
    ]);
    const [map, y] = await readAndDispose(tidy(() => {
      const m = mamba1AttentionMap({
        delta: tensor(delta, [K, 1, T, E]),
        A: tensor(A, [K, E, N]),
        B: tensor(B, [K, 1, T, N]),
        C: tensor(C, [K, 1, T, N]),
      });
      const y = selectiveScan({
        u: tensor(oneHots(K, T, E), [K, T, T, E]),
        delta: tensor(repeatRows(delta, K, T, E), [K, T, T, E]),
        A: tensor(A, [K, E, N]),
        B: tensor(repeatRows(B, K, T, N), [K, T, T, N]),
        C: tensor(repeatRows(C, K, T, N), [K, T, T, N]),
        D: zeros([K, E]),
      });
      m.mask.dispose();
      return [m.map, y];
    }));
    const err = maxRelError(map, responseMap(y, K, T, E));
    console.log(
      `Mamba 1 map vs selectiveScan responses (K ${K}, T ${T}, E ${E}, N ${N}): max rel error ${
        err.toExponential(2)
      }`,
    );
    assert.ok(err < 1e-5, `error ${err}`);
  },
});

// ---------------------------------------------------------------------------------------------------------------
// 3. Eq. 12: with A ≈ 1 and Δ ≈ 1 (mimetic) the map is ≈ CausalMask(C_iᵀ B_j); the default init's map is not.

/** Pearson correlation over the causal entries j ≤ i of two (T, T) maps of run k. */
function causalCorrelation(a: ArrayLike<number>, b: ArrayLike<number>, k: number, T: number): number {
  const xa: number[] = [], xb: number[] = [];
  for (let i = 0; i < T; i++) {
    for (let j = 0; j <= i; j++) {
      xa.push(a[(k * T + i) * T + j]);
      xb.push(b[(k * T + i) * T + j]);
    }
  }
  return correlation(xa, xb);
}

/** ‖a − b‖ / ‖b‖ over the causal entries of run k. */
function causalRelDiff(a: ArrayLike<number>, b: ArrayLike<number>, k: number, T: number): number {
  let num = 0, den = 0;
  for (let i = 0; i < T; i++) {
    for (let j = 0; j <= i; j++) {
      const x = a[(k * T + i) * T + j], y = b[(k * T + i) * T + j];
      num += (x - y) ** 2;
      den += y ** 2;
    }
  }
  return Math.sqrt(num / den);
}

/**
 * Eq. 12's prediction per run: P[k, i, j] = (1/G) Σ_g q_i,g · k_j,g for j ≤ i, from row-major q, k (K, T, G·N) (the
 * head average of (C_i·B_j)_g weighs the groups equally since every group has H/G heads).
 */
function linearAttention(
  q: ArrayLike<number>,
  kk: ArrayLike<number>,
  K: number,
  T: number,
  G: number,
  N: number,
) {
  const out = new Float64Array(K * T * T);
  for (let k = 0; k < K; k++) {
    for (let i = 0; i < T; i++) {
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let c = 0; c < G * N; c++) s += q[(k * T + i) * G * N + c] * kk[(k * T + j) * G * N + c];
        out[(k * T + i) * T + j] = s / G;
      }
    }
  }
  return out;
}

/** x (K, T, D) @ W (K, D, M) on the host. */
function project(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  K: number,
  T: number,
  D: number,
  M: number,
): Float64Array {
  const out = new Float64Array(K * T * M);
  for (let k = 0; k < K; k++) {
    for (let t = 0; t < T; t++) {
      for (let d = 0; d < D; d++) {
        const xv = x[(k * T + t) * D + d];
        for (let m = 0; m < M; m++) out[(k * T + t) * M + m] += xv * w[(k * D + d) * M + m];
      }
    }
  }
  return out;
}

Deno.test({
  name: "Eq. 12: a mimetic Mamba 2 layer's map ≈ CausalMask(C_iᵀB_j); the default layer's is far from it",
  ignore: noGpu,
  fn: async () => {
    const K = 2, T = 64, Dm = 32;
    const cfg = { ...MAMBA2_DEFAULTS, dState: 16, headDim: 8 };
    const G = cfg.nGroups, N = cfg.dState;
    // run 0: default init; run 1: the paper's Mamba 2 mimetic init (A, Δ, W_CᵀW_B, identity conv)
    const { params, consts } = initMamba2(split(key(12), K), "mixer", cfg, Dm, 1, [
      DEFAULT_INIT,
      MIMETIC_MAMBA2,
    ]);
    const x = normal(key(13), K * T * Dm);
    const [map, B, C, inB, inC] = await readAndDispose(tidy(() => {
      const s = mamba2ScanInputs(params, consts, tensor(x, [K, 1, T, Dm]), cfg);
      const m = mamba2AttentionMap(s);
      m.mask.dispose();
      return [m.map, s.B, s.C, params.inB, params.inC];
    }));
    const pred = linearAttention(C, B, K, T, G, N);
    const raw = linearAttention(
      project(x, inC, K, T, Dm, G * N),
      project(x, inB, K, T, Dm, G * N),
      K,
      T,
      G,
      N,
    );
    const corr = [0, 1].map((k) => causalCorrelation(map, pred, k, T));
    const corrRaw = [0, 1].map((k) => causalCorrelation(map, raw, k, T));
    const rel = causalRelDiff(map, pred, 1, T);
    console.log(
      `Mamba 2, T ${T}: corr(map, CausalMask(C·B)) default ${corr[0].toFixed(3)}, mimetic ${
        corr[1].toFixed(3)
      }; ` +
        `corr(map, CausalMask(XᵀW_CᵀW_BX)) default ${corrRaw[0].toFixed(3)}, mimetic ${
          corrRaw[1].toFixed(3)
        }; ` +
        `mimetic ‖map − C·B‖/‖C·B‖ = ${rel.toFixed(3)}`,
    );
    assert.ok(corr[1] > 0.9, `mimetic correlation ${corr[1]}`);
    assert.ok(corr[1] - corr[0] > 0.3, `gap ${corr[1] - corr[0]}`);
    // Through the identity conv and SiLU the raw projections still predict the mimetic map well.
    assert.ok(corrRaw[1] > 0.8 && corrRaw[1] > corrRaw[0], `raw-projection correlations ${corrRaw}`);
    disposeTree([params, consts]);
  },
});

Deno.test({
  name: "Eq. 12: a mimetic Mamba 1 layer's map ≈ CausalMask(C_iᵀB_j); the default layer's is far from it",
  ignore: noGpu,
  fn: async () => {
    const K = 2, T = 64, Dm = 32;
    const cfg = { ...MAMBA1_DEFAULTS, dState: 16 };
    const N = cfg.dState;
    const { params, consts } = initMamba1(split(key(14), K), "mixer", cfg, Dm, 1, [
      DEFAULT_INIT,
      MIMETIC_MAMBA1,
    ]);
    const x = normal(key(15), K * T * Dm);
    const [map, B, C] = await readAndDispose(tidy(() => {
      const s = mamba1ScanInputs(params, consts, tensor(x, [K, 1, T, Dm]), cfg);
      const m = mamba1AttentionMap(s);
      m.mask.dispose();
      return [m.map, s.B, s.C];
    }));
    // For Mamba 1, B_t = W_B u_t and C_t = W_C u_t with no conv after x_proj: the layer's B and C are Eq. 12's
    // raw projections of the SSM input X = u.
    const pred = linearAttention(C, B, K, T, 1, N);
    const corr = [0, 1].map((k) => causalCorrelation(map, pred, k, T));
    const rel = causalRelDiff(map, pred, 1, T);
    console.log(
      `Mamba 1, T ${T}: corr(map, CausalMask(C·B)) default ${corr[0].toFixed(3)}, mimetic ${
        corr[1].toFixed(3)
      }; ` +
        `mimetic ‖map − C·B‖/‖C·B‖ = ${rel.toFixed(3)}`,
    );
    assert.ok(corr[1] > 0.9, `mimetic correlation ${corr[1]}`);
    assert.ok(corr[1] - corr[0] > 0.3, `gap ${corr[1] - corr[0]}`);
    disposeTree([params, consts]);
  },
});

Deno.test({
  name: "layerAttentionMap of an LM layer is causal and matches the map of that layer's own scan inputs",
  ignore: noGpu,
  async fn() {
    const cfg: LMConfig = {
      vocab: 11,
      dModel: 8,
      normEps: 1e-5,
      layers: [{ ...MAMBA1_DEFAULTS, dState: 4 }, { ...MAMBA2_DEFAULTS, dState: 4, headDim: 4 }],
    };
    const T = 9;
    const { params, consts } = initLM(
      [key(5), key(6)],
      cfg,
      (k) => (k === 1 ? MIMETIC_MAMBA2 : DEFAULT_INIT),
    );
    const ids = tensor(randint(key(7), 2 * 2 * T, 0, 11), [2, 2, T], "i32");
    for (const layer of [0, 1]) {
      const m = layerAttentionMap(params, consts, cfg, layer, ids, 1);
      const got = await m.map.toArray();
      for (let k = 0; k < 2; k++) {
        for (let i = 0; i < T; i++) {
          for (let j = i + 1; j < T; j++) assert.equal(got[(k * T + i) * T + j], 0, "map is not causal");
        }
      }
      assert.ok(got.some((v) => v !== 0), "map is all zeros");
    }
    // Layer 1 by hand: its input is the stream after layer 0, normalised by layer 1's norm.
    const want = tidy(() => {
      const x = rmsNorm(applyBlocks(params, consts, ids, cfg, 1), params.layers[1].norm, cfg.normEps);
      const s = mamba2ScanInputs(
        params.layers[1].mixer as Mamba2Params,
        consts.layers[1] as Mamba2Consts,
        x,
        cfg.layers[1] as Mamba2Config,
      );
      return mamba2AttentionMap({ dt: s.dt, A: s.A, B: s.B, C: s.C }, { batchIndex: 1 }).map;
    });
    const got = await layerAttentionMap(params, consts, cfg, 1, ids, 1).map.toArray();
    assert.deepEqual(got, await want.toArray());
    assert.throws(() => layerAttentionMap(params, consts, cfg, 2, ids), /layer must be in \[0, 2\)/);
  },
});

Deno.test({
  name:
    "attention layers' maps: head-averaged softmax weights and masked linear scores match a float64 reference",
  ignore: noGpu,
  async fn() {
    const { initAttention, attentionWeights, ATTENTION_DEFAULTS } = await import("../lib/nn/attention.ts");
    const [K, B, T, D, H, P] = [2, 3, 9, 8, 2, 4];
    for (const variant of ["softmax", "linear"] as const) {
      const cfg = { ...ATTENTION_DEFAULTS, variant, heads: H, headDim: P };
      const keys = split(key(variant === "softmax" ? 11 : 12), K);
      const p = initAttention(keys, "att", cfg, D, 1);
      const xs = normal(key(13), K * B * T * D);
      const x = tensor(Float32Array.from(xs), [K, B, T, D]);
      const b = 2;
      const got = attentionWeights(p, x, cfg, b);
      const [map, mask] = await readTensors([got.map, got.mask]);
      const w = await readTensors(p.heads.flatMap((h) => [h.wq, h.wk]));
      const want = new Float64Array(K * T * T);
      for (let k = 0; k < K; k++) {
        for (let h = 0; h < H; h++) {
          const [wq, wk] = [w[2 * h], w[2 * h + 1]];
          const proj = (wm: ArrayLike<number>, t: number) =>
            Array.from({ length: P }, (_, j) => {
              let s = 0;
              for (let d = 0; d < D; d++) s += xs[((k * B + b) * T + t) * D + d] * wm[(k * D + d) * P + j];
              return s;
            });
          for (let i = 0; i < T; i++) {
            const q = proj(wq, i);
            const sc = Array.from(
              { length: i + 1 },
              (_, j) => q.reduce((s, qv, c) => s + qv * proj(wk, j)[c], 0),
            );
            if (variant === "softmax") {
              const m = Math.max(...sc.map((v) => v / Math.sqrt(P)));
              const e = sc.map((v) => Math.exp(v / Math.sqrt(P) - m));
              const z = e.reduce((a, c) => a + c, 0);
              e.forEach((v, j) => (want[(k * T + i) * T + j] += v / z / H));
            } else {
              sc.forEach((v, j) => (want[(k * T + i) * T + j] += v / H));
            }
          }
        }
      }
      const err = maxRelError(map, want);
      console.log(
        `${variant} attention map K ${K} B ${B} T ${T} H ${H}, row ${b}: max rel error ${
          err.toExponential(2)
        }`,
      );
      assert.ok(err < 1e-5, `${variant}: ${err}`);
      for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) assert.equal(mask[i * T + j], j <= i ? 1 : 0);
      disposeTree([p, x, got]);
    }
  },
});
