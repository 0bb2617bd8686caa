/**
 * Float64 references of whole layers, composed from the ops' float64 references, and `checkLayer`: the GPU
 * gradients of <ct, layer(x)> with respect to every parameter and the input against central differences of the
 * reference (a dot-product test in a random direction per tensor). Shared by tests/layer_grad_test.ts and
 * tests/long_seq_test.ts.
 */
import assert from "node:assert/strict";
import { valueAndGrad } from "../lib/ops/autodiff.ts";
import type { Mamba1Config } from "../lib/nn/mamba1.ts";
import type { Mamba2Config } from "../lib/nn/mamba2.ts";
import type { AttentionConfig } from "../lib/nn/attention.ts";
import { mul } from "../lib/ops/elementwise.ts";
import { sumAll } from "../lib/ops/reduce.ts";
import { matmulRef } from "../lib/ops/matmul.ts";
import { causalConv1dRef } from "../lib/ops/conv1d.ts";
import { rmsNormRef } from "../lib/ops/norm.ts";
import { ssdScanRef } from "../lib/ops/ssd_scan.ts";
import { selectiveScanRef } from "../lib/ops/selective_scan.ts";
import { key, normal, split } from "../lib/core/random.ts";
import { leaves, mapTree, readTensors, type Tensor, tensor, tidy } from "../lib/core/tensor.ts";

export type F64Tree = Record<string, Float64Array>;
const silu = (v: number) => v / (1 + Math.exp(-v));
const softplus = (v: number) => Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v)));

/** The float64 Mamba 2 layer, from the ops' references: x (K, B, T, D) → (K, B, T, D). */
export function mamba2Ref(p: F64Tree, aScale: number[], x: Float64Array, s: number[], cfg: Mamba2Config) {
  const [K, B, T, D] = s;
  const E = cfg.expand * D, P = cfg.headDim, H = E / P, N = cfg.dState, G = cfg.nGroups;
  const mm = (a: Float64Array, w: Float64Array, n: number) => matmulRef(a, [K, B * T, D], w, [K, D, n]).data;
  const conv = (v: Float64Array, w: Float64Array, b: Float64Array, C: number) =>
    causalConv1dRef(v, w, b, [K, B, T, C]).map(silu);
  const z = mm(x, p.inZ, E);
  const xs = conv(mm(x, p.inX, E), p["convX.weight"], p["convX.bias"], E);
  const Bm = conv(mm(x, p.inB, G * N), p["convB.weight"], p["convB.bias"], G * N);
  const Cm = conv(mm(x, p.inC, G * N), p["convC.weight"], p["convC.bias"], G * N);
  const dt = mm(x, p.inDt, H).map((v, i) =>
    softplus(v + p.dtBias[Math.floor(i / (B * T * H)) * H + (i % H)])
  );
  const A = p.aLog.map((v, i) => -Math.exp(aScale[Math.floor(i / H)] * v));
  const y = ssdScanRef({ x: xs, dt, A, B: Bm, C: Cm, D: p.D }, { K, Bt: B, T, H, P, G, N });
  // RMSNorm over each group of E/G channels (unit weight), then the per-channel weight
  const unit = new Float64Array(K * (E / G)).fill(1);
  const normed = rmsNormRef(y.map((v, i) => v * silu(z[i])), unit, [K, B * T * G, E / G], cfg.normEps);
  const gated = normed.map((v, i) => v * p.normWeight[Math.floor(i / (B * T * E)) * E + (i % E)]);
  return matmulRef(gated, [K, B * T, E], p.outProj, [K, E, D]).data;
}

/** The float64 Mamba 1 layer. */
export function mamba1Ref(p: F64Tree, aScale: number[], x: Float64Array, s: number[], cfg: Mamba1Config) {
  const [K, B, T, D] = s;
  const E = cfg.expand * D, N = cfg.dState, R = cfg.dtRank > 0 ? cfg.dtRank : Math.ceil(D / 16);
  const mmIn = (a: Float64Array, w: Float64Array, din: number, n: number) =>
    matmulRef(a, [K, B * T, din], w, [K, din, n]).data;
  const u = causalConv1dRef(mmIn(x, p.inX, D, E), p["conv.weight"], p["conv.bias"], [K, B, T, E]).map(silu);
  const z = mmIn(x, p.inZ, D, E);
  const dtLow = mmIn(u, p.xProjDt, E, R);
  const delta = mmIn(dtLow, p.dtProjWeight, R, E).map((v, i) =>
    softplus(v + p.dtProjBias[Math.floor(i / (B * T * E)) * E + (i % E)])
  );
  const A = p.aLog.map((v, i) => -Math.exp(aScale[Math.floor(i / (E * N))] * v));
  const y = selectiveScanRef(
    { u, delta, A, B: mmIn(u, p.xProjB, E, N), C: mmIn(u, p.xProjC, E, N), D: p.D, z },
    { K, Bt: B, T, E, N },
  );
  return matmulRef(y, [K, B * T, E], p.outProj, [K, E, D]).data;
}

export async function checkLayer<P>(
  name: string,
  params: P,
  xShape: number[],
  apply: (p: P, x: Tensor) => Tensor,
  ref: (p: F64Tree, x: Float64Array) => Float64Array,
  tol: number,
) {
  const [kx, kc, kt] = split(key(42), 3);
  const n = xShape.reduce((a, b) => a * b, 1);
  const x0 = normal(kx, n);
  const ct = normal(kc, n);
  // GPU gradients of <ct, layer(x)> w.r.t. every parameter and x.
  const tree = { p: params, x: tensor(x0, xShape) };
  const grads = tidy(() =>
    valueAndGrad((t: typeof tree) => sumAll(mul(apply(t.p, t.x), tensor(ct, xShape))))(tree).grads
  );
  const names: string[] = [];
  mapTree(tree, (_t, path) => names.push(path));
  const values = (await readTensors(leaves(tree))).map((a) => Float64Array.from(a));
  const gpuGrads = await readTensors(leaves(grads));
  const f = (vals: Float64Array[]) => {
    const p: F64Tree = {};
    names.forEach((nm, i) => (p[nm.replace(/^p\./, "")] = vals[i]));
    return ref(p, p.x).reduce((s, v, i) => s + v * ct[i], 0);
  };
  const eps = 1e-6;
  let worst = 0;
  names.forEach((nm, i) => {
    const t = normal(split(kt, names.length)[i], values[i].length);
    const shifted = (sign: number) =>
      f(values.map((v, j) => (j === i ? v.map((w, q) => w + sign * eps * t[q]) : v)));
    const fd = (shifted(1) - shifted(-1)) / (2 * eps);
    const lhs = Array.from(gpuGrads[i]).reduce((s, g, q) => s + g * t[q], 0);
    const rel = Math.abs(lhs - fd) / Math.max(1e-3, Math.abs(fd));
    worst = Math.max(worst, rel);
    console.log(
      `${name} d/d${nm}: <grad, t> ${lhs.toExponential(4)} vs central difference ${
        fd.toExponential(4)
      } (rel ${rel.toExponential(1)})`,
    );
    assert.ok(rel < tol, `${name}: gradient of ${nm} is off: ${lhs} vs ${fd}`);
  });
  console.log(`${name}: worst relative error ${worst.toExponential(2)}`);
  for (const g of leaves(grads)) g.dispose();
}

/** The float64 attention mixer (softmax or simple causal linear), plain loops: x (K, B, T, D) → (K, B, T, D). */
export function attentionRef(p: F64Tree, x: Float64Array, s: number[], cfg: AttentionConfig) {
  const [K, B, T, D] = s;
  const P = cfg.headDim;
  const out = new Float64Array(x.length);
  for (let h = 0; h < cfg.heads; h++) {
    const proj = (w: Float64Array) => matmulRef(x, [K, B * T, D], w, [K, D, P]).data;
    const q = proj(p[`heads[${h}].wq`]), k = proj(p[`heads[${h}].wk`]), v = proj(p[`heads[${h}].wv`]);
    const y = new Float64Array(K * B * T * P);
    for (let kb = 0; kb < K * B; kb++) {
      for (let i = 0; i < T; i++) {
        const w = new Float64Array(i + 1);
        for (let j = 0; j <= i; j++) {
          let dot = 0;
          for (let c = 0; c < P; c++) dot += q[(kb * T + i) * P + c] * k[(kb * T + j) * P + c];
          w[j] = cfg.variant === "softmax" ? dot / Math.sqrt(P) : dot;
        }
        if (cfg.variant === "softmax") {
          const m = Math.max(...w);
          let z = 0;
          for (let j = 0; j <= i; j++) z += w[j] = Math.exp(w[j] - m);
          for (let j = 0; j <= i; j++) w[j] /= z;
        }
        for (let j = 0; j <= i; j++) {
          for (let c = 0; c < P; c++) y[(kb * T + i) * P + c] += w[j] * v[(kb * T + j) * P + c];
        }
      }
    }
    const o = matmulRef(y, [K, B * T, P], p[`heads[${h}].wo`], [K, P, D]).data;
    o.forEach((val, i) => (out[i] += val));
  }
  return out;
}
