/**
 * Test helpers for the Hugging Face layout: a float64 reference of what transformers' `MambaForCausalLM` and
 * `Mamba2ForCausalLM` compute, written with plain loops straight from the checkpoint's own tensors (torch (out, in)
 * weights, fused in_proj / x_proj / conv1d), so it shares no code and no layout decision with `lib/nn/pretrained.ts`;
 * a writer of random checkpoints in that layout; and `perturbed`, which moves a model's parameters off their init.
 *
 * Read from transformers 5.x modeling_mamba.py (slow_forward) and modeling_mamba2.py (torch_forward): pre-norm
 * blocks h += mixer(rmsnorm(h)), final rmsnorm, head tied to the embedding; Mamba 2's gated norm over all E
 * channels (`gatedNorm` "group" gives mamba_ssm's per-group norm instead).
 *
 * Glossary: B batch, T length, D model width, E inner width, N state, R dt rank, W conv width, H heads, P head dim,
 * G groups, V vocab.
 */
import { encodeSafetensors, type SafetensorsEntry } from "../lib/core/safetensors.ts";
import { type Key, key, normal, split, uniform } from "../lib/core/random.ts";
import { mapTree, readTensors, type Tensor, tensor } from "../lib/core/tensor.ts";
import type { LMParams } from "../lib/nn/lm.ts";

type Json = Record<string, unknown>;
const silu = (v: number) => v / (1 + Math.exp(-v));
const softplus = (v: number) => Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v)));

/** Integer/number fields of a config.json, with transformers' defaults where the file leaves them out. */
function field(cfg: Json, name: string, fallback?: number): number {
  const v = cfg[name] ?? fallback;
  if (typeof v !== "number") throw new Error(`reference: config has no ${name}`);
  return v;
}

/** y (rows, out) = x (rows, in) · Wᵀ with W torch-style (out, in) starting at row `r0` of a bigger matrix. */
function linear(x: Float64Array, rows: number, inDim: number, w: ArrayLike<number>, r0: number, out: number) {
  const y = new Float64Array(rows * out);
  for (let i = 0; i < rows; i++) {
    for (let o = 0; o < out; o++) {
      let acc = 0;
      for (let c = 0; c < inDim; c++) acc += x[i * inDim + c] * w[(r0 + o) * inDim + c];
      y[i * out + o] = acc;
    }
  }
  return y;
}

function rmsnorm(x: Float64Array, rows: number, width: number, w: ArrayLike<number> | null, eps: number) {
  const y = new Float64Array(x.length);
  for (let i = 0; i < rows; i++) {
    let ss = 0;
    for (let c = 0; c < width; c++) ss += x[i * width + c] ** 2;
    const r = 1 / Math.sqrt(ss / width + eps);
    for (let c = 0; c < width; c++) y[i * width + c] = x[i * width + c] * r * (w ? w[c] : 1);
  }
  return y;
}

/** torch's depthwise Conv1d(padding W−1)[..., :T]: tap W−1 is the current step. x (T, C) → (T, C). */
function causalConv(
  x: Float64Array,
  T: number,
  C: number,
  w: ArrayLike<number>,
  b: ArrayLike<number> | null,
  W: number,
) {
  const y = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < C; c++) {
      let acc = b ? b[c] : 0;
      for (let j = 0; j < W; j++) {
        const tt = t - (W - 1) + j;
        if (tt >= 0) acc += w[c * W + j] * x[tt * C + c];
      }
      y[t * C + c] = acc;
    }
  }
  return y;
}

/**
 * Float64 logits (B, T, V) of a Hugging Face Mamba / Mamba 2 checkpoint for ids (B, T), from its config.json object
 * and its tensors by name.
 */
export function hfLogitsRef(
  cfg: Json,
  get: (name: string) => ArrayLike<number>,
  ids: ArrayLike<number>,
  B: number,
  T: number,
  gatedNorm: "all" | "group" = "all",
): Float64Array {
  const mamba2 = cfg.model_type === "mamba2";
  const D = field(cfg, "hidden_size"), V = field(cfg, "vocab_size"), L = field(cfg, "num_hidden_layers");
  const N = field(cfg, "state_size"),
    W = field(cfg, "conv_kernel", 4),
    eps = field(cfg, "layer_norm_epsilon", 1e-5);
  const E = Math.trunc(field(cfg, "expand", 2) * D);
  const convBias = cfg.use_conv_bias !== false;
  const emb = get("backbone.embeddings.weight");
  const logits = new Float64Array(B * T * V);
  for (let b = 0; b < B; b++) {
    let h = new Float64Array(T * D);
    for (let t = 0; t < T; t++) {
      for (let d = 0; d < D; d++) h[t * D + d] = emb[ids[b * T + t] * D + d];
    }
    for (let l = 0; l < L; l++) {
      const p = `backbone.layers.${l}.`;
      const mamba1Mixer = (x: Float64Array): Float64Array => {
        const R = typeof cfg.time_step_rank === "number" ? cfg.time_step_rank : Math.ceil(D / 16);
        const inW = get(`${p}mixer.in_proj.weight`);
        const xs = linear(x, T, D, inW, 0, E), z = linear(x, T, D, inW, E, E);
        const u = causalConv(
          xs,
          T,
          E,
          get(`${p}mixer.conv1d.weight`),
          convBias ? get(`${p}mixer.conv1d.bias`) : null,
          W,
        )
          .map(silu);
        const xpW = get(`${p}mixer.x_proj.weight`);
        const dt = linear(u, T, E, xpW, 0, R),
          Bm = linear(u, T, E, xpW, R, N),
          Cm = linear(u, T, E, xpW, R + N, N);
        const dtW = get(`${p}mixer.dt_proj.weight`), dtB = get(`${p}mixer.dt_proj.bias`);
        const delta = linear(dt, T, R, dtW, 0, E).map((v, i) => softplus(v + dtB[i % E]));
        const aLog = get(`${p}mixer.A_log`), Dskip = get(`${p}mixer.D`);
        const y = new Float64Array(T * E);
        for (let e = 0; e < E; e++) {
          const s = new Float64Array(N);
          for (let t = 0; t < T; t++) {
            const dl = delta[t * E + e];
            let acc = 0;
            for (let n = 0; n < N; n++) {
              s[n] = Math.exp(-dl * Math.exp(aLog[e * N + n])) * s[n] + dl * Bm[t * N + n] * u[t * E + e];
              acc += s[n] * Cm[t * N + n];
            }
            y[t * E + e] = (acc + Dskip[e] * u[t * E + e]) * silu(z[t * E + e]);
          }
        }
        return linear(y, T, E, get(`${p}mixer.out_proj.weight`), 0, D);
      };
      const mamba2Mixer = (x: Float64Array): Float64Array => {
        const P = field(cfg, "head_dim"), H = field(cfg, "num_heads"), G = field(cfg, "n_groups");
        const GN = G * N, C = E + 2 * GN;
        const inW = get(`${p}mixer.in_proj.weight`);
        const z = linear(x, T, D, inW, 0, E);
        const xBC = causalConv(
          linear(x, T, D, inW, E, C),
          T,
          C,
          get(`${p}mixer.conv1d.weight`),
          convBias ? get(`${p}mixer.conv1d.bias`) : null,
          W,
        ).map(silu);
        const dtB = get(`${p}mixer.dt_bias`), aLog = get(`${p}mixer.A_log`), Dskip = get(`${p}mixer.D`);
        const dt = linear(x, T, D, inW, E + C, H).map((v, i) => softplus(v + dtB[i % H]));
        const y = new Float64Array(T * E);
        for (let hd = 0; hd < H; hd++) {
          const g = Math.floor(hd / (H / G));
          const s = new Float64Array(P * N);
          for (let t = 0; t < T; t++) {
            const dtv = dt[t * H + hd], dA = Math.exp(-dtv * Math.exp(aLog[hd]));
            for (let q = 0; q < P; q++) {
              const xv = xBC[t * C + hd * P + q];
              let acc = 0;
              for (let n = 0; n < N; n++) {
                const i = q * N + n;
                s[i] = dA * s[i] + dtv * xv * xBC[t * C + E + g * N + n];
                acc += s[i] * xBC[t * C + E + GN + g * N + n];
              }
              y[t * E + hd * P + q] = acc + Dskip[hd] * xv;
            }
          }
        }
        const gated = y.map((v, i) => v * silu(z[i]));
        const groups = gatedNorm === "all" ? 1 : G;
        const nw = get(`${p}mixer.norm.weight`);
        const normed = rmsnorm(gated, T * groups, E / groups, null, eps).map((v, i) => v * nw[i % E]);
        return linear(normed, T, E, get(`${p}mixer.out_proj.weight`), 0, D);
      };
      const xn = rmsnorm(h, T, D, get(`${p}norm.weight`), eps);
      const out = mamba2 ? mamba2Mixer(xn) : mamba1Mixer(xn);
      h = h.map((v, i) => v + out[i]);
    }
    const hn = rmsnorm(h, T, D, get("backbone.norm_f.weight"), eps);
    logits.set(linear(hn, T, D, emb, 0, V), b * T * V);
  }
  return logits;
}

/** Sizes of a random checkpoint. */
export interface RandomHfDims {
  V: number;
  D: number;
  L: number;
  N: number;
  W: number;
  /** Mamba 2 only. */
  P?: number;
  G?: number;
}

/**
 * A random checkpoint in the Hugging Face layout: its config.json object and F32 tensors by name. Values are drawn
 * around what trained models hold (norm weights near 1, non-zero conv biases, A_log spread, Δ biases below 0).
 */
export function randomHfCheckpoint(
  k: Key,
  modelType: "mamba" | "mamba2",
  dims: RandomHfDims,
): { config: Json; tensors: Record<string, SafetensorsEntry> } {
  const { V, D, L, N, W } = dims;
  const E = 2 * D;
  const tensors: Record<string, SafetensorsEntry> = {};
  let counter = 0;
  const keys = split(k, 64 * (L + 1));
  const draw = (n: number, f: (kk: Key, n: number) => Float64Array) =>
    Float32Array.from(f(keys[counter++], n));
  const put = (
    name: string,
    shape: number[],
    f: (kk: Key, n: number) => Float64Array,
  ) => (tensors[name] = { dtype: "F32", shape, data: draw(shape.reduce((a, b) => a * b, 1), f) });
  const gauss = (mean: number, std: number) => (kk: Key, n: number) => normal(kk, n, mean, std);
  const unif = (lo: number, hi: number) => (kk: Key, n: number) => uniform(kk, n, lo, hi);
  put("backbone.embeddings.weight", [V, D], gauss(0, 1));
  const config: Json = {
    model_type: modelType,
    vocab_size: V,
    hidden_size: D,
    state_size: N,
    num_hidden_layers: L,
    expand: 2,
    conv_kernel: W,
    layer_norm_epsilon: 1e-5,
    use_bias: false,
    use_conv_bias: true,
    tie_word_embeddings: true,
  };
  for (let l = 0; l < L; l++) {
    const p = `backbone.layers.${l}.`;
    put(`${p}norm.weight`, [D], gauss(1, 0.2));
    if (modelType === "mamba") {
      const R = Math.ceil(D / 16);
      config.time_step_rank = R;
      put(`${p}mixer.in_proj.weight`, [2 * E, D], gauss(0, 1 / Math.sqrt(D)));
      put(`${p}mixer.conv1d.weight`, [E, 1, W], gauss(0, 0.5));
      put(`${p}mixer.conv1d.bias`, [E], gauss(0, 0.2));
      put(`${p}mixer.x_proj.weight`, [R + 2 * N, E], gauss(0, 1 / Math.sqrt(E)));
      put(`${p}mixer.dt_proj.weight`, [E, R], gauss(0, 1 / Math.sqrt(R)));
      put(`${p}mixer.dt_proj.bias`, [E], gauss(-2, 0.5));
      put(`${p}mixer.A_log`, [E, N], unif(0, 2.5));
      put(`${p}mixer.D`, [E], gauss(1, 0.3));
      put(`${p}mixer.out_proj.weight`, [D, E], gauss(0, 1 / Math.sqrt(E)));
    } else {
      const P = dims.P!, G = dims.G!, H = E / P, GN = G * N;
      Object.assign(config, { head_dim: P, num_heads: H, n_groups: G, time_step_limit: [0, Infinity] });
      put(`${p}mixer.in_proj.weight`, [2 * E + 2 * GN + H, D], gauss(0, 1 / Math.sqrt(D)));
      put(`${p}mixer.conv1d.weight`, [E + 2 * GN, 1, W], gauss(0, 0.5));
      put(`${p}mixer.conv1d.bias`, [E + 2 * GN], gauss(0, 0.2));
      put(`${p}mixer.dt_bias`, [H], gauss(-2, 0.5));
      put(`${p}mixer.A_log`, [H], unif(0, 2.7));
      put(`${p}mixer.D`, [H], gauss(1, 0.3));
      put(`${p}mixer.norm.weight`, [E], gauss(1, 0.2));
      put(`${p}mixer.out_proj.weight`, [D, E], gauss(0, 1 / Math.sqrt(E)));
    }
  }
  put("backbone.norm_f.weight", [D], gauss(1, 0.2));
  return { config, tensors };
}

/** Writes a checkpoint as a folder: config.json (Python-style JSON, so Infinity stays bare) + model.safetensors. */
export function writeHfFolder(dir: string, config: Json, tensors: Record<string, SafetensorsEntry>): void {
  Deno.mkdirSync(dir, { recursive: true });
  Deno.writeTextFileSync(
    `${dir}/config.json`,
    JSON.stringify(config, (_k, v) => (v === Infinity ? "__INF__" : v), 2).replaceAll(
      '"__INF__"',
      "Infinity",
    ),
  );
  Deno.writeFileSync(`${dir}/model.safetensors`, encodeSafetensors(tensors, { format: "pt" }));
}

/**
 * The params with noise added (the embedding redrawn N(0, 1)): initLM's norm weights of 1, D of 1 and embedding of
 * N(0, 0.02) would make tiny logits and let swapped tensors go unseen.
 */
export async function perturbed(params: LMParams, seed: number): Promise<LMParams> {
  const leavesOf: Tensor[] = [];
  mapTree(params, (t) => leavesOf.push(t));
  const data = await readTensors(leavesOf);
  let i = 0;
  return mapTree(params, (t, path) => {
    const d = data[i], noise = normal(key(seed * 1000 + i++), d.length, 0, path === "embedding" ? 1 : 0.1);
    return tensor(Float32Array.from(d, (v, j) => (path === "embedding" ? 0 : v) + noise[j]), t.shape);
  }) as LMParams;
}
