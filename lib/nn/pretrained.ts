/**
 * Pretrained Mamba checkpoints in and out, in the Hugging Face layout: a folder with `config.json` and
 * `model.safetensors` (or shards listed by `model.safetensors.index.json`), tensors named as transformers'
 * `MambaForCausalLM` (`model_type` `mamba`) and `Mamba2ForCausalLM` (`mamba2`), e.g.
 * `backbone.layers.0.mixer.in_proj.weight`. {@link loadPretrained} reads such a folder into
 * `{ cfg, params, consts }` for `applyLM` (K copies on the run axis); {@link savePretrained} writes one run of a
 * model trained here so that transformers' `from_pretrained` opens it. Nothing is downloaded: the folder is local.
 * For planning and for runs that start from a checkpoint: {@link readPretrainedConfig} reads only config.json (and
 * tokenizer.json), {@link readPretrainedHost} reads the tensors onto the host without the GPU, and
 * {@link checkpointDigest} hashes the files that decide what loads.
 *
 * Glossary: K runs, D model width (`hidden_size`), E = expand·D inner width, N state (`state_size`), R dt rank
 * (`time_step_rank`), W conv width (`conv_kernel`), H heads (`num_heads`), P head dim (`head_dim`), G groups
 * (`n_groups`), V vocab.
 *
 * **The mapping.** torch's `Linear` weights are (out, in) and compute x·Wᵀ; ours are (K, in, out) and compute
 * x·W, so every projection is transposed. transformers fuses what we keep apart:
 * - Mamba 1: `in_proj` (2E, D) is [x | z] → `inX`, `inZ`; `x_proj` (R + 2N, E) is [dt | B | C] → `xProjDt`,
 *   `xProjB`, `xProjC`; `dt_proj` (E, R) + bias → `dtProjWeight`, `dtProjBias`; `conv1d` (E, 1, W) → `conv`;
 *   `A_log` (E, N), `D` (E), `out_proj` (D, E).
 * - Mamba 2: `in_proj` (2E + 2GN + H, D) is [z | x | B | C | dt] → `inZ`, `inX`, `inB`, `inC`, `inDt`; `conv1d`
 *   (E + 2GN, 1, W) runs over [x | B | C] → `convX`, `convB`, `convC` (a depthwise conv acts per channel, so
 *   splitting it is exact); `dt_bias`, `A_log`, `D` (H); `mixer.norm.weight` (E); `out_proj` (D, E).
 * - Both: `backbone.embeddings.weight` (V, D) (also read as `backbone.embedding.weight`, the old name),
 *   `backbone.layers.i.norm.weight`, `backbone.norm_f.weight`; the head is tied to the embedding.
 *
 * **What a loaded model computes** is what transformers computes for that folder (read from its
 * `modeling_mamba.py` / `modeling_mamba2.py`, 5.x): pre-norm blocks, RMSNorms with ε = `layer_norm_epsilon`,
 * A = −exp(A_log) (our A = −exp(s·A_log) with consts s = 1), Δ = softplus(·), D skip, SiLU gate. One real
 * difference between the codebases: transformers' Mamba 2 gated norm (`MambaRMSNormGated`, its torch path and its
 * inference path) normalises over all E channels whatever `n_groups` is, while mamba_ssm's `RMSNormGated` (and
 * transformers' own fused CUDA training path) normalises each group of E/G channels. A loaded Mamba 2 layer carries
 * `gatedNorm: "all"` (override with `{ gatedNorm: "group" }` for a checkpoint converted from mamba_ssm whose
 * numbers you want as mamba_ssm computed them); the two agree when G = 1.
 *
 * **Refused, with one line naming the field or tensor:** an unknown `model_type`; `use_bias: true` (our mixers have
 * no in/out projection biases); `hidden_act` other than SiLU; a Mamba 2 `time_step_limit` other than (0, ∞) (we
 * have no Δ clamp); `rms_norm: false` (transformers applies the gated norm anyway, mamba_ssm would not: the
 * checkpoint is ambiguous); `norm_before_gate: true`; an untied `lm_head.weight` that differs from the embedding
 * (our head is tied); a missing, extra or wrongly shaped tensor; a non-float dtype; a malformed safetensors file.
 * `use_conv_bias: false` loads as zero conv biases (exact). `residual_in_fp32` is moot: we compute in f32. F16,
 * BF16 and F64 tensors are converted to f32.
 *
 * **Saving** folds each run's A scale into A_log (A_log' = fround(s·A_log), what our forward multiplies anyway), so
 * a mimetic run (s = −c) saves as a plain transformers model computing the same A; with s = 1 (the default init,
 * and every loaded model) save → load is bit-identical. A Mamba 2 model with G > 1 must use `gatedNorm: "all"` to
 * be saved: with `"group"` transformers would compute another function, and we refuse rather than write it.
 *
 * **Tokenizers.** The task generators (`tasks/`) speak their own small vocabulary (for copy: letters a..z, then
 * `$ | . *`). Where the folder has a `tokenizer.json`, `loadPretrained(dir, { symbols })` maps each task symbol to
 * the pretrained vocabulary's token that is exactly that one character ({@link tokenIdsForSymbols}) and keeps only
 * those rows of the embedding (and so of the tied head): the loaded model's vocabulary is then the task's, in the
 * task's order, and trains and evaluates with the task pipeline unchanged; its logits are the full model's logits
 * at those tokens (a softmax over the task's symbols only). We chose single-character tokens because the tasks
 * feed one symbol per position: the text `$abc|abc.` would tokenise into multi-character BPE pieces whose
 * boundaries change with the string, and the symbols themselves are single characters in every common vocabulary
 * (GPT-NeoX's byte-level BPE, used by the state-spaces Mamba models, has `a`..`z`, `$`, `|`, `.`, `*`). The bare
 * character is used, not its space-prefixed variant (`Ġa`). A model saved after such a restriction has the task's
 * vocabulary, not the tokenizer's.
 * @module
 */
import {
  FLOAT_DTYPES,
  parseSafetensors,
  type SafetensorsEntry,
  type SafetensorsFile,
  writeSafetensors,
} from "../core/safetensors.ts";
import { createHash } from "node:crypto";
import { writeJsonAtomic } from "../core/fs.ts";
import { type HostTensor, readTensors, type Tensor, tensor } from "../core/tensor.ts";
import type { BlockParams, LMConfig, LMConsts, LMParams } from "./lm.ts";
import { type Mamba1Config, type Mamba1Consts, mamba1Dims, type Mamba1Params } from "./mamba1.ts";
import {
  type ConvParams,
  type Mamba2Config,
  type Mamba2Consts,
  mamba2Dims,
  type Mamba2Params,
} from "./mamba2.ts";

/** A pretrained folder that cannot be read as a model we can run, or a model that cannot be saved as one. */
export class PretrainedError extends RangeError {
  override name = "PretrainedError";
}

/** The `model_type`s {@link loadPretrained} reads. */
export type PretrainedModelType = "mamba" | "mamba2";

/** Options of {@link loadPretrained}. */
export interface LoadPretrainedOptions {
  /** K: how many copies of the model to put on the run axis (default 1). */
  runs?: number;
  /**
   * Keep only the tokens that are exactly these single characters in the folder's `tokenizer.json`, in this order:
   * the loaded model's vocabulary becomes `symbols` ({@link tokenIdsForSymbols}).
   */
  symbols?: readonly string[];
  /** Mamba 2 only: the gated norm's grouping; default `"all"`, what transformers computes for this layout. */
  gatedNorm?: "group" | "all";
}

/** A loaded model: feed `params`, `consts`, `cfg` to `applyLM`. */
export interface PretrainedModel {
  cfg: LMConfig;
  /** Every tensor (K, ...): K copies of the checkpoint. */
  params: LMParams;
  /** Per layer, the A scale s = 1 (K, 1) or (K, 1, 1). */
  consts: LMConsts;
  modelType: PretrainedModelType;
  /** With `symbols`: the pretrained token id of each symbol (our id i is their id `tokenIds[i]`); else null. */
  tokenIds: Int32Array | null;
}

type Json = Record<string, unknown>;

/** A params type with host tensors at the leaves (so field names are checked against the mixers' types). */
type HostOf<T> = T extends Tensor ? HostTensor : { [K in keyof T]: HostOf<T[K]> };

/**
 * Parses JSON as Python writes it for transformers' configs: bare `Infinity`, `-Infinity` and `NaN` (Python's
 * `json`), and objects `{"__float__": "Infinity"}` (transformers 5 writes non-finite floats that way, e.g. Mamba 2's
 * `time_step_limit` as `[0.0, {"__float__": "Infinity"}]`) become numbers (NaN as null).
 */
export function parsePythonJson(text: string): unknown {
  // Strings are matched first and kept, so only bare tokens are rewritten; 1e999 parses to Infinity.
  return JSON.parse(
    text.replace(
      /"(?:[^"\\]|\\.)*"|(-?)\bInfinity\b|\bNaN\b/g,
      (m, sign) => (m.startsWith('"') ? m : m === "NaN" ? "null" : `${sign ?? ""}1e999`),
    ),
    (_key, value) => {
      if (value && typeof value === "object" && !Array.isArray(value)) {
        const keys = Object.keys(value);
        if (keys.length === 1 && keys[0] === "__float__" && typeof value.__float__ === "string") {
          const f = Number(value.__float__);
          return Number.isNaN(f) ? null : f;
        }
      }
      return value;
    },
  );
}

function readJsonFile(path: string, what: string): Json {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new PretrainedError(`${path}: not found; ${what}`);
    throw e;
  }
  let v: unknown;
  try {
    v = parsePythonJson(text);
  } catch (e) {
    throw new PretrainedError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new PretrainedError(`${path}: expected a JSON object`);
  }
  return v as Json;
}

// transformers' defaults (5.x configuration_mamba.py / configuration_mamba2.py), for keys a config.json leaves out.
const HF_DEFAULTS: Record<PretrainedModelType, Json> = {
  mamba: {
    vocab_size: 50280,
    hidden_size: 768,
    state_size: 16,
    num_hidden_layers: 32,
    layer_norm_epsilon: 1e-5,
    expand: 2,
    conv_kernel: 4,
    use_bias: false,
    use_conv_bias: true,
    hidden_act: "silu",
    time_step_rank: "auto",
    time_step_min: 0.001,
    time_step_max: 0.1,
    time_step_floor: 1e-4,
    tie_word_embeddings: true,
  },
  mamba2: {
    num_heads: 128,
    head_dim: 64,
    vocab_size: 32768,
    hidden_size: 4096,
    state_size: 128,
    num_hidden_layers: 64,
    layer_norm_epsilon: 1e-5,
    expand: 2,
    conv_kernel: 4,
    n_groups: 8,
    use_bias: false,
    use_conv_bias: true,
    hidden_act: "silu",
    time_step_min: 0.001,
    time_step_max: 0.1,
    time_step_floor: 1e-4,
    time_step_limit: [0, Infinity],
    rms_norm: true,
    tie_word_embeddings: false,
  },
};

/** Typed access to config.json with transformers' defaults; errors name the field. */
class ConfigReader {
  constructor(readonly path: string, readonly json: Json, readonly defaults: Json) {}
  fail(msg: string): never {
    throw new PretrainedError(`${this.path}: ${msg}`);
  }
  raw(key: string): unknown {
    return key in this.json ? this.json[key] : this.defaults[key];
  }
  int(key: string, min = 1): number {
    const v = this.raw(key);
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      this.fail(`${key} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    }
    return v as number;
  }
  num(key: string): number {
    const v = this.raw(key);
    if (typeof v !== "number" || !Number.isFinite(v)) {
      this.fail(`${key} must be a number, got ${JSON.stringify(v)}`);
    }
    return v as number;
  }
  bool(key: string): boolean {
    const v = this.raw(key);
    if (typeof v !== "boolean") this.fail(`${key} must be true or false, got ${JSON.stringify(v)}`);
    return v as boolean;
  }
  refuse(key: string, ok: (v: unknown) => boolean, why: string): void {
    const v = this.raw(key);
    if (v !== undefined && !ok(v)) this.fail(`${key} = ${JSON.stringify(v)} is not supported: ${why}`);
  }
}

/** The tensors of a folder: one safetensors file, or shards named by model.safetensors.index.json. */
class TensorSource {
  readonly used = new Set<string>();
  constructor(readonly files: Map<string, SafetensorsFile>, readonly label: string) {}

  static async open(dir: string): Promise<TensorSource> {
    const single = `${dir}/model.safetensors`;
    const index = `${dir}/model.safetensors.index.json`;
    const exists = (p: string) => {
      try {
        return Deno.statSync(p).isFile;
      } catch {
        return false;
      }
    };
    const read = async (path: string) => parseSafetensors(await Deno.readFile(path), path);
    if (exists(single)) {
      const f = await read(single);
      return new TensorSource(new Map([...f.tensors.keys()].map((n) => [n, f])), single);
    }
    if (exists(index)) {
      const map = readJsonFile(index, "").weight_map;
      if (typeof map !== "object" || map === null) {
        throw new PretrainedError(`${index}: no weight_map object`);
      }
      const shards = new Map<string, SafetensorsFile>();
      const files = new Map<string, SafetensorsFile>();
      for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
        if (typeof shard !== "string" || shard.includes("/")) {
          throw new PretrainedError(`${index}: weight_map.${name} is not a file name in the folder`);
        }
        if (!shards.has(shard)) {
          if (!exists(`${dir}/${shard}`)) {
            throw new PretrainedError(`${dir}/${shard}: not found (listed in ${index} for tensor ${name})`);
          }
          shards.set(shard, await read(`${dir}/${shard}`));
        }
        const f = shards.get(shard)!;
        if (!f.has(name)) {
          throw new PretrainedError(`${f.file}: no tensor ${name} (${index} says it is there)`);
        }
        files.set(name, f);
      }
      for (const f of shards.values()) {
        for (const n of f.tensors.keys()) {
          if (!files.has(n)) files.set(n, f);
        }
      }
      return new TensorSource(files, `${dir}/model-*.safetensors`);
    }
    const bin = exists(`${dir}/pytorch_model.bin`)
      ? " (the folder has pytorch_model.bin: only safetensors is read; " +
        "save it with save_pretrained(..., safe_serialization=True))"
      : "";
    throw new PretrainedError(`${single}: not found${bin}`);
  }

  has(name: string): boolean {
    return this.files.has(name);
  }

  /** Tensor `name` as f32, checked against `shape`; `why` says where the expected shape comes from. */
  take(name: string, shape: number[], why: string): Float32Array {
    const f = this.files.get(name);
    const want = `[${shape.join(", ")}]`;
    if (!f) throw new PretrainedError(`${this.label}: missing tensor ${name}; expected ${want} (${why})`);
    const info = f.tensors.get(name)!;
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new PretrainedError(
        `${f.file}: tensor ${name} has shape [${info.shape.join(", ")}], expected ${want} (${why})`,
      );
    }
    if (!FLOAT_DTYPES.includes(info.dtype)) {
      throw new PretrainedError(
        `${f.file}: tensor ${name} has dtype ${info.dtype}; expected a float dtype (${
          FLOAT_DTYPES.join(", ")
        })`,
      );
    }
    this.used.add(name);
    return f.f32(name);
  }

  /** Refuses tensors nothing consumed (a config/file mismatch, or parts we do not have). */
  checkAllUsed(): void {
    for (const [name, f] of this.files) {
      if (!this.used.has(name)) {
        throw new PretrainedError(
          `${f.file}: unexpected tensor ${name}; config.json describes a model without it`,
        );
      }
    }
  }
}

/** Rows [r0, r1) of a row-major (rows, cols) matrix, transposed: (cols, r1 − r0). torch (out, in) → ours (in, out). */
function rowsT(w: Float32Array, cols: number, r0: number, r1: number): Float32Array {
  const n = r1 - r0;
  const out = new Float32Array(cols * n);
  for (let j = 0; j < n; j++) {
    for (let c = 0; c < cols; c++) out[c * n + j] = w[(r0 + j) * cols + c];
  }
  return out;
}

/** Stacks ours (in, n_i) matrices, transposed, into one torch (Σ n_i, in) matrix. */
function stackT(parts: { data: Float32Array; cols: number }[], inDim: number): Float32Array {
  const rows = parts.reduce((s, p) => s + p.cols, 0);
  const out = new Float32Array(rows * inDim);
  let r0 = 0;
  for (const { data, cols } of parts) {
    for (let j = 0; j < cols; j++) {
      for (let c = 0; c < inDim; c++) out[(r0 + j) * inDim + c] = data[c * cols + j];
    }
    r0 += cols;
  }
  return out;
}

const host = (data: Float32Array, shape: number[]): HostTensor => ({ shape, data });

interface HostModel {
  cfg: LMConfig;
  modelType: PretrainedModelType;
  /** LMParams with HostTensor leaves. */
  params: {
    embedding: HostTensor;
    normF: HostTensor;
    layers: { norm: HostTensor; mixer: Record<string, unknown> }[];
  };
}

/** A folder's config.json, checked and turned into our model config (no tensor read). */
interface FolderConfig {
  modelType: PretrainedModelType;
  V: number;
  D: number;
  L: number;
  E: number;
  eps: number;
  convBias: boolean;
  tied: boolean;
  layerCfg: Mamba1Config | Mamba2Config;
}

/** Reads and checks a folder's config.json. No tensor is read, no GPU. */
function readFolderConfig(dir: string, gatedNorm: "group" | "all" | undefined): FolderConfig {
  try {
    if (!Deno.statSync(dir).isDirectory) throw new PretrainedError(`${dir}: not a folder`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new PretrainedError(`${dir}: no such folder`);
    throw e;
  }
  const configPath = `${dir}/config.json`;
  const json = readJsonFile(
    configPath,
    "a Hugging Face model folder holds config.json and model.safetensors",
  );
  const modelType = json.model_type;
  if (modelType !== "mamba" && modelType !== "mamba2") {
    const hint = modelType === undefined && ("d_model" in json || "ssm_cfg" in json)
      ? " (this looks like a mamba_ssm config: d_model/ssm_cfg; convert it with transformers' " +
        "convert_mamba*_ssm_checkpoint script first)"
      : "";
    throw new PretrainedError(
      `${configPath}: model_type ${
        JSON.stringify(modelType)
      } is not supported; expected "mamba" or "mamba2"${hint}`,
    );
  }
  const c = new ConfigReader(configPath, json, HF_DEFAULTS[modelType]);
  c.refuse("use_bias", (v) => v === false, "our mixers have no in_proj/out_proj biases");
  c.refuse("hidden_act", (v) => v === "silu" || v === "swish", "our mixers use SiLU");
  c.refuse("layer_types", (v) => Array.isArray(v) && v.every((t) => t === "mamba"), "only Mamba layers load");
  const V = c.int("vocab_size"), D = c.int("hidden_size"), N = c.int("state_size");
  const L = c.int("num_hidden_layers"), W = c.int("conv_kernel"), expand = c.num("expand");
  const eps = c.num("layer_norm_epsilon");
  const convBias = c.bool("use_conv_bias");
  const tied = c.bool("tie_word_embeddings");
  const E = Math.trunc(expand * D); // transformers: int(expand · hidden_size)
  if (E <= 0) c.fail(`expand · hidden_size = ${expand * D} gives no inner width`);
  if (json.intermediate_size !== undefined && json.intermediate_size !== E) {
    c.fail(`intermediate_size ${JSON.stringify(json.intermediate_size)} ≠ int(expand · hidden_size) = ${E}`);
  }
  let layerCfg: Mamba1Config | Mamba2Config;
  if (modelType === "mamba") {
    const rawRank = c.raw("time_step_rank");
    const R = rawRank === "auto" ? Math.ceil(D / 16) : c.int("time_step_rank");
    layerCfg = {
      kind: "mamba1",
      dState: N,
      expand,
      dConv: W,
      dtRank: R,
      dtMin: c.num("time_step_min"),
      dtMax: c.num("time_step_max"),
      dtFloor: c.num("time_step_floor"),
    };
    try {
      mamba1Dims(layerCfg, D);
    } catch (e) {
      c.fail((e as Error).message);
    }
  } else {
    const P = c.int("head_dim"), G = c.int("n_groups"), H = c.int("num_heads");
    if (H * P !== E) c.fail(`num_heads · head_dim = ${H}·${P} = ${H * P} ≠ expand · hidden_size = ${E}`);
    const limit = c.raw("time_step_limit");
    if (!Array.isArray(limit) || limit.length !== 2 || limit[0] !== 0 || limit[1] !== Infinity) {
      c.fail(
        `time_step_limit = ${
          JSON.stringify(limit)
        } is not supported: we have no Δ clamp; expected [0, Infinity]`,
      );
    }
    c.refuse(
      "rms_norm",
      (v) => v === true,
      "transformers applies the gated norm anyway; mamba_ssm would not",
    );
    c.refuse(
      "norm_before_gate",
      (v) => v === false,
      "our gated norm is norm(y ⊙ silu(z)) (norm_before_gate false)",
    );
    layerCfg = {
      kind: "mamba2",
      dState: N,
      headDim: P,
      expand,
      nGroups: G,
      dConv: W,
      dtMin: c.num("time_step_min"),
      dtMax: c.num("time_step_max"),
      dtFloor: c.num("time_step_floor"),
      normEps: eps,
      gatedNorm: gatedNorm ?? "all",
    };
    try {
      mamba2Dims(layerCfg, D);
    } catch (e) {
      c.fail((e as Error).message);
    }
  }
  return { modelType, V, D, L, E, eps, convBias, tied, layerCfg };
}

/** Reads and checks a folder on the host: config, every tensor's name, shape and dtype. No GPU. */
async function readHostModel(dir: string, gatedNorm: "group" | "all" | undefined): Promise<HostModel> {
  const { modelType, V, D, L, E, eps, convBias, tied, layerCfg } = readFolderConfig(dir, gatedNorm);
  const src = await TensorSource.open(dir);
  const cfgWhy = (what: string) => `${what} from config.json`;

  const embName = src.has("backbone.embeddings.weight") || !src.has("backbone.embedding.weight")
    ? "backbone.embeddings.weight"
    : "backbone.embedding.weight";
  const embedding = host(src.take(embName, [V, D], cfgWhy("vocab_size × hidden_size")), [V, D]);
  const normF = host(src.take("backbone.norm_f.weight", [D], cfgWhy("hidden_size")), [D]);
  if (src.has("lm_head.weight")) {
    const head = src.take("lm_head.weight", [V, D], cfgWhy("vocab_size × hidden_size"));
    if (head.some((v, i) => !Object.is(v, embedding.data[i]))) {
      throw new PretrainedError(
        `${
          src.files.get("lm_head.weight")!.file
        }: lm_head.weight differs from ${embName} (tie_word_embeddings ` +
          `${tied}); our LM ties its head to the embedding, so this model cannot load without changing what it computes`,
      );
    }
  } else if (!tied) {
    throw new PretrainedError(
      `${src.label}: missing tensor lm_head.weight; config.json says tie_word_embeddings is false, so the head ` +
        "is its own tensor",
    );
  }
  const layers: HostModel["params"]["layers"] = [];
  const zeros = (n: number) => new Float32Array(n);
  if (layerCfg.kind === "mamba1") {
    const { N, R, W } = mamba1Dims(layerCfg, D);
    for (let i = 0; i < L; i++) {
      const p = `backbone.layers.${i}.`;
      const inProj = src.take(`${p}mixer.in_proj.weight`, [2 * E, D], cfgWhy("2·intermediate × hidden_size"));
      const xProj = src.take(
        `${p}mixer.x_proj.weight`,
        [R + 2 * N, E],
        cfgWhy("time_step_rank + 2·state_size"),
      );
      const convW = src.take(`${p}mixer.conv1d.weight`, [E, 1, W], cfgWhy("intermediate × 1 × conv_kernel"));
      const convB = convBias ? src.take(`${p}mixer.conv1d.bias`, [E], cfgWhy("intermediate")) : zeros(E);
      const mixer: HostOf<Mamba1Params> = {
        inX: host(rowsT(inProj, D, 0, E), [D, E]),
        inZ: host(rowsT(inProj, D, E, 2 * E), [D, E]),
        conv: { weight: host(convW, [E, W]), bias: host(convB, [E]) },
        xProjDt: host(rowsT(xProj, E, 0, R), [E, R]),
        xProjB: host(rowsT(xProj, E, R, R + N), [E, N]),
        xProjC: host(rowsT(xProj, E, R + N, R + 2 * N), [E, N]),
        dtProjWeight: host(
          rowsT(
            src.take(`${p}mixer.dt_proj.weight`, [E, R], cfgWhy("intermediate × time_step_rank")),
            R,
            0,
            E,
          ),
          [R, E],
        ),
        dtProjBias: host(src.take(`${p}mixer.dt_proj.bias`, [E], cfgWhy("intermediate")), [E]),
        aLog: host(src.take(`${p}mixer.A_log`, [E, N], cfgWhy("intermediate × state_size")), [E, N]),
        D: host(src.take(`${p}mixer.D`, [E], cfgWhy("intermediate")), [E]),
        outProj: host(
          rowsT(src.take(`${p}mixer.out_proj.weight`, [D, E], cfgWhy("hidden × intermediate")), E, 0, D),
          [
            E,
            D,
          ],
        ),
      };
      layers.push({ norm: host(src.take(`${p}norm.weight`, [D], cfgWhy("hidden_size")), [D]), mixer });
    }
  } else {
    const { H, G, N, W } = mamba2Dims(layerCfg, D);
    const GN = G * N, C = E + 2 * GN;
    for (let i = 0; i < L; i++) {
      const p = `backbone.layers.${i}.`;
      const inProj = src.take(
        `${p}mixer.in_proj.weight`,
        [2 * E + 2 * GN + H, D],
        cfgWhy("2·intermediate + 2·n_groups·state_size + num_heads × hidden_size"),
      );
      const convW = src.take(
        `${p}mixer.conv1d.weight`,
        [C, 1, W],
        cfgWhy("(intermediate + 2·n_groups·state_size) × 1 × conv_kernel"),
      );
      const convB = convBias
        ? src.take(`${p}mixer.conv1d.bias`, [C], cfgWhy("intermediate + 2·n_groups·state_size"))
        : zeros(C);
      const conv = (c0: number, c1: number) => ({
        weight: host(convW.slice(c0 * W, c1 * W), [c1 - c0, W]),
        bias: host(convB.slice(c0, c1), [c1 - c0]),
      });
      const mixer: HostOf<Mamba2Params> = {
        inZ: host(rowsT(inProj, D, 0, E), [D, E]),
        inX: host(rowsT(inProj, D, E, 2 * E), [D, E]),
        inB: host(rowsT(inProj, D, 2 * E, 2 * E + GN), [D, GN]),
        inC: host(rowsT(inProj, D, 2 * E + GN, 2 * E + 2 * GN), [D, GN]),
        inDt: host(rowsT(inProj, D, 2 * E + 2 * GN, 2 * E + 2 * GN + H), [D, H]),
        convX: conv(0, E),
        convB: conv(E, E + GN),
        convC: conv(E + GN, C),
        dtBias: host(src.take(`${p}mixer.dt_bias`, [H], cfgWhy("num_heads")), [H]),
        aLog: host(src.take(`${p}mixer.A_log`, [H], cfgWhy("num_heads")), [H]),
        D: host(src.take(`${p}mixer.D`, [H], cfgWhy("num_heads")), [H]),
        normWeight: host(src.take(`${p}mixer.norm.weight`, [E], cfgWhy("intermediate")), [E]),
        outProj: host(
          rowsT(src.take(`${p}mixer.out_proj.weight`, [D, E], cfgWhy("hidden × intermediate")), E, 0, D),
          [
            E,
            D,
          ],
        ),
      };
      layers.push({ norm: host(src.take(`${p}norm.weight`, [D], cfgWhy("hidden_size")), [D]), mixer });
    }
  }
  src.checkAllUsed();
  return {
    cfg: { vocab: V, dModel: D, normEps: eps, layers: Array.from({ length: L }, () => ({ ...layerCfg })) },
    modelType,
    params: { embedding, normF, layers },
  };
}

// GPT-2's bytes_to_unicode: the printable characters byte-level BPE vocabularies spell each byte with.
const BYTE_CHARS: string[] = (() => {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(keep(b) ? b : 256 + extra++);
  return out;
})();

/**
 * The pretrained token id of each symbol: the token of a `tokenizer.json` (Hugging Face tokenizers) that is exactly
 * that one character (the bare character, not a space-prefixed `Ġa` / `▁a`; spelled through the byte alphabet when
 * the tokenizer is byte-level). `file` names the tokenizer in messages.
 * @throws {PretrainedError} when a symbol is not one character, the vocabulary has no such token, or two symbols
 * map to one token.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tokenIdsForSymbols } from "./pretrained.ts";
 * const tokenizer = { model: { type: "BPE", vocab: { "$": 4, "a": 7, "b": 8, "|": 90 } }, added_tokens: [] };
 * assert.deepEqual(Array.from(tokenIdsForSymbols(tokenizer, ["a", "b", "$", "|"])), [7, 8, 4, 90]);
 * ```
 */
export function tokenIdsForSymbols(
  tokenizer: unknown,
  symbols: readonly string[],
  file = "tokenizer.json",
): Int32Array {
  const tok = tokenizer as {
    model?: { vocab?: unknown };
    added_tokens?: unknown;
    pre_tokenizer?: unknown;
    decoder?: unknown;
  };
  const vocab = new Map<string, number>();
  const v = tok?.model?.vocab;
  if (Array.isArray(v)) v.forEach((entry, id) => Array.isArray(entry) && vocab.set(String(entry[0]), id)); // Unigram
  else if (typeof v === "object" && v !== null) {
    for (const [t, id] of Object.entries(v as Record<string, unknown>)) {
      if (typeof id === "number") vocab.set(t, id);
    }
  } else throw new PretrainedError(`${file}: no model.vocab (expected a Hugging Face tokenizers file)`);
  if (Array.isArray(tok.added_tokens)) {
    for (const a of tok.added_tokens as { id?: unknown; content?: unknown }[]) {
      if (typeof a?.content === "string" && typeof a.id === "number" && !vocab.has(a.content)) {
        vocab.set(a.content, a.id);
      }
    }
  }
  const byteLevel = JSON.stringify([tok.pre_tokenizer ?? null, tok.decoder ?? null]).includes('"ByteLevel"');
  const seen = new Map<number, string>();
  return Int32Array.from(symbols, (s) => {
    if ([...s].length !== 1) {
      throw new PretrainedError(`${file}: symbol ${JSON.stringify(s)} is not a single character`);
    }
    const spelled = byteLevel ? Array.from(new TextEncoder().encode(s), (b) => BYTE_CHARS[b]).join("") : s;
    const id = vocab.get(spelled);
    if (id === undefined) {
      throw new PretrainedError(`${file}: no single-character token for symbol ${JSON.stringify(s)}`);
    }
    if (seen.has(id)) {
      throw new PretrainedError(
        `${file}: symbols ${JSON.stringify(seen.get(id))} and ${JSON.stringify(s)} map to token ${id}`,
      );
    }
    seen.set(id, s);
    return id;
  });
}

/** The pretrained token id of each symbol, checked against the model's vocabulary (the folder's tokenizer.json). */
function symbolTokenIds(dir: string, symbols: readonly string[], V: number): Int32Array {
  const path = `${dir}/tokenizer.json`;
  const ids = tokenIdsForSymbols(
    readJsonFile(path, "symbols need the folder's tokenizer.json"),
    symbols,
    path,
  );
  ids.forEach((id, i) => {
    if (id >= V) {
      throw new PretrainedError(
        `${path}: symbol ${JSON.stringify(symbols[i])} is token ${id}, beyond the model's vocab_size ${V}`,
      );
    }
  });
  return ids;
}

/** What {@link readPretrainedConfig} returns: the model a folder holds, without its tensors. */
export interface PretrainedConfig {
  /** Our config of the model; with `symbols`, its vocab is the symbols'. */
  cfg: LMConfig;
  modelType: PretrainedModelType;
  /** With `symbols`: the pretrained token id of each symbol; else null. */
  tokenIds: Int32Array | null;
}

/**
 * The config of a local Hugging Face folder as {@link loadPretrained} would load it, from `config.json` (and
 * `tokenizer.json` with `symbols`) only: no tensor is read, no GPU. For planning runs on a pretrained model.
 * @throws {PretrainedError} as {@link loadPretrained}, for what the config and tokenizer can tell.
 * @example
 * ```ts ignore
 * const { cfg } = readPretrainedConfig("weights/mamba-130m-hf", { symbols: ["a", "b", "$", "|", ".", "*"] });
 * console.log(cfg.layers.length, cfg.dModel, cfg.vocab); // 24 768 6
 * ```
 */
export function readPretrainedConfig(
  dir: string,
  options: Pick<LoadPretrainedOptions, "symbols" | "gatedNorm"> = {},
): PretrainedConfig {
  const f = readFolderConfig(dir, options.gatedNorm);
  const tokenIds = options.symbols ? symbolTokenIds(dir, options.symbols, f.V) : null;
  return {
    cfg: {
      vocab: tokenIds ? tokenIds.length : f.V,
      dModel: f.D,
      normEps: f.eps,
      layers: Array.from({ length: f.L }, () => ({ ...f.layerCfg })),
    },
    modelType: f.modelType,
    tokenIds,
  };
}

/** A checkpoint read onto the host: one run's parameters and constants, ready for `initLMRuns` or upload. */
export interface PretrainedHost extends PretrainedConfig {
  /** {@link LMParams} with {@link HostTensor} leaves (no run axis). */
  params: unknown;
  /** {@link LMConsts} with host leaves: the A scale s = 1 of every layer, [1, 1] (Mamba 1) or [1] (Mamba 2). */
  consts: unknown;
}

/**
 * Reads and checks a local Hugging Face folder on the host (no GPU): what {@link loadPretrained} uploads, as one
 * run's {@link HostTensor}s. With `symbols`, the embedding keeps only the rows of the symbols' tokens.
 * @throws {PretrainedError} (or `SafetensorsError`) with one line naming the file and field or tensor.
 */
export async function readPretrainedHost(
  dir: string,
  options: Pick<LoadPretrainedOptions, "symbols" | "gatedNorm"> = {},
): Promise<PretrainedHost> {
  const m = await readHostModel(dir, options.gatedNorm);
  let tokenIds: Int32Array | null = null;
  if (options.symbols) {
    tokenIds = symbolTokenIds(dir, options.symbols, m.cfg.vocab);
    const { data } = m.params.embedding, D = m.cfg.dModel;
    const rows = new Float32Array(tokenIds.length * D);
    tokenIds.forEach((id, i) => rows.set(data.subarray(id * D, (id + 1) * D), i * D));
    m.params.embedding = host(rows, [tokenIds.length, D]);
    m.cfg.vocab = tokenIds.length;
  }
  const consts = {
    layers: m.cfg.layers.map((l) => ({
      aScale: host(new Float32Array([1]), l.kind === "mamba1" ? [1, 1] : [1]),
    })),
  };
  return { cfg: m.cfg, modelType: m.modelType, tokenIds, params: m.params, consts };
}

/** The files a folder's model is made of, in a fixed order: config, tensors (index and shards), tokenizer. */
function checkpointFiles(dir: string): string[] {
  const isFile = (name: string) => {
    try {
      return Deno.statSync(`${dir}/${name}`).isFile;
    } catch {
      return false;
    }
  };
  const files = ["config.json"];
  if (isFile("model.safetensors")) files.push("model.safetensors");
  else if (isFile("model.safetensors.index.json")) {
    const map = readJsonFile(`${dir}/model.safetensors.index.json`, "").weight_map;
    const shards = typeof map === "object" && map !== null
      ? [...new Set(Object.values(map as Record<string, unknown>).map(String))].sort()
      : [];
    files.push("model.safetensors.index.json", ...shards);
  } else throw new PretrainedError(`${dir}/model.safetensors: not found`);
  if (isFile("tokenizer.json")) files.push("tokenizer.json");
  for (const f of files) {
    if (!isFile(f)) throw new PretrainedError(`${dir}/${f}: not found`);
  }
  return files;
}

const fileDigests = new Map<string, string>();

/** SHA-256 of a file, read in chunks; remembered per path, size and mtime (a changed file is hashed again). */
function fileDigest(path: string): string {
  const st = Deno.statSync(path);
  const memo = [path, st.size, st.mtime?.getTime(), st.ctime?.getTime(), st.ino].join("\0");
  const known = fileDigests.get(memo);
  if (known) return known;
  const hash = createHash("sha256");
  const file = Deno.openSync(path, { read: true });
  try {
    const chunk = new Uint8Array(8 << 20);
    for (let n = file.readSync(chunk); n !== null && n > 0; n = file.readSync(chunk)) {
      hash.update(chunk.subarray(0, n));
    }
  } finally {
    file.close();
  }
  const digest = hash.digest("hex");
  fileDigests.set(memo, digest);
  return digest;
}

/**
 * A content hash of the model in a local Hugging Face folder: SHA-256 over the name and SHA-256 of each file that
 * decides what loads (`config.json`, `model.safetensors` or the index and its shards, and `tokenizer.json` when
 * present), so any changed byte of them changes it, and moving or renaming the folder does not. Synchronous (for
 * planning a grid); each file's hash is remembered in the process until its size or mtime changes.
 * @throws {PretrainedError} when the folder lacks `config.json` or the tensors.
 * @example
 * ```ts ignore
 * const sha256 = checkpointDigest("weights/mamba-130m-hf"); // 64 hex digits
 * ```
 */
export function checkpointDigest(dir: string): string {
  try {
    if (!Deno.statSync(dir).isDirectory) throw new PretrainedError(`${dir}: not a folder`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new PretrainedError(`${dir}: no such folder`);
    throw e;
  }
  const lines = checkpointFiles(dir).map((f) => `${f} ${fileDigest(`${dir}/${f}`)}\n`);
  return createHash("sha256").update(lines.join("")).digest("hex");
}

function uploadRuns(t: HostTensor, K: number): Tensor {
  const n = t.data.length;
  const data = new Float32Array(K * n);
  for (let k = 0; k < K; k++) data.set(t.data, k * n);
  return tensor(data, [K, ...t.shape]);
}

function uploadTree(tree: unknown, K: number): unknown {
  const t = tree as HostTensor;
  if (t && t.data instanceof Float32Array && Array.isArray(t.shape)) return uploadRuns(t, K);
  if (Array.isArray(tree)) return tree.map((x) => uploadTree(x, K));
  return Object.fromEntries(Object.entries(tree as Json).map(([k, v]) => [k, uploadTree(v, K)]));
}

/**
 * Loads a local Hugging Face folder (`config.json` + `model.safetensors`, `model_type` `mamba` or `mamba2`) as K
 * copies of the model on the run axis. Everything is read and checked on the host before anything is uploaded, so
 * a bad folder fails fast, with one {@link PretrainedError} (or `SafetensorsError`) line naming the file and the
 * field or tensor and what was expected. Needs `initGpu()` first (the upload).
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { key } from "../core/random.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { applyLM, initLM } from "./lm.ts";
 * import { MAMBA2_DEFAULTS } from "./mamba2.ts";
 * import { loadPretrained, savePretrained } from "./pretrained.ts";
 * await initGpu();
 * const cfg = { vocab: 30, dModel: 32, normEps: 1e-5, layers: [{ ...MAMBA2_DEFAULTS, dState: 8, headDim: 16 }] };
 * const { params, consts } = initLM([key(0)], cfg);
 * const dir = Deno.makeTempDirSync();
 * await savePretrained(dir, cfg, params, consts); // opens in transformers' Mamba2ForCausalLM.from_pretrained
 * const m = await loadPretrained(dir, { runs: 2 }); // two copies on the run axis
 * const logits = applyLM(m.params, m.consts, tensor(new Int32Array(2 * 8), [2, 1, 8], "i32"), m.cfg); // (2, 8, 30)
 * ```
 */
export async function loadPretrained(
  dir: string,
  options: LoadPretrainedOptions = {},
): Promise<PretrainedModel> {
  const K = options.runs ?? 1;
  if (!Number.isInteger(K) || K < 1) {
    throw new RangeError(`loadPretrained: runs must be an integer ≥ 1, got ${K}`);
  }
  const m = await readPretrainedHost(dir, options);
  const params = uploadTree(m.params, K) as LMParams;
  const consts = uploadTree(m.consts, K) as LMConsts;
  return { cfg: m.cfg, params, consts, modelType: m.modelType, tokenIds: m.tokenIds };
}

/**
 * Writes run `run` of a Mamba 1 or Mamba 2 language model (every layer the same mixer config) to `dir` in the
 * Hugging Face layout: `config.json` (`MambaForCausalLM` / `Mamba2ForCausalLM`, tied head, f32) and
 * `model.safetensors` (F32), each written atomically. transformers' `from_pretrained(dir)` then computes what
 * `applyLM` computes (up to f32 rounding); {@link loadPretrained} reads it back bit-identically where the run's A
 * scale is 1 (otherwise the scale is folded into A_log: same A, other parameters).
 * @throws {PretrainedError} for models the layout cannot hold (mixed or attention layers, a Mamba 2 gated norm per
 * group with G > 1, a non-integer expand, a Mamba 2 norm ε other than the LM's).
 */
export async function savePretrained(
  dir: string,
  cfg: LMConfig,
  params: LMParams,
  consts: LMConsts,
  run = 0,
): Promise<void> {
  const fail: (msg: string) => never = (msg) => {
    throw new PretrainedError(`savePretrained: ${msg}`);
  };
  const K = params.embedding.shape[0];
  if (!Number.isInteger(run) || run < 0 || run >= K) fail(`run ${run} is not one of the model's ${K} runs`);
  const first = cfg.layers[0];
  if (!first || (first.kind !== "mamba1" && first.kind !== "mamba2")) {
    fail(`layer 0 is a ${first?.kind} layer; the Hugging Face layout holds Mamba 1 or Mamba 2 models`);
  }
  const key = (l: unknown) => JSON.stringify(l, Object.keys(l as object).sort());
  cfg.layers.forEach((l, i) => {
    if (key(l) !== key(first)) {
      fail(`layer ${i} differs from layer 0 (${l.kind}); the layout has one mixer config for every layer`);
    }
  });
  const D = cfg.dModel, V = cfg.vocab, L = cfg.layers.length;
  if (!Number.isInteger(first.expand)) fail(`expand ${first.expand} must be an integer for transformers`);
  const E = first.expand * D;

  // One readback of every tensor, then run `run`'s slice of each.
  const blocks = params.layers as BlockParams[];
  const list: Tensor[] = [params.embedding, params.normF];
  const order: string[] = ["embedding", "normF"];
  blocks.forEach((b, i) => {
    list.push(b.norm);
    order.push(`${i}.norm`);
    const mixer = b.mixer as Record<string, Tensor | ConvParams>;
    for (const [name, t] of Object.entries(mixer)) {
      if ("weight" in t) {
        list.push(t.weight, t.bias);
        order.push(`${i}.${name}.weight`, `${i}.${name}.bias`);
      } else {
        list.push(t);
        order.push(`${i}.${name}`);
      }
    }
    list.push((consts.layers[i] as Mamba1Consts | Mamba2Consts).aScale);
    order.push(`${i}.aScale`);
  });
  const arrays = await readTensors(list);
  const got = new Map<string, Float32Array>();
  order.forEach((name, j) => {
    const a = arrays[j] as Float32Array, n = a.length / K;
    got.set(name, a.slice(run * n, (run + 1) * n));
  });
  const g = (name: string) => got.get(name)!;

  const out: Record<string, SafetensorsEntry> = {};
  const put = (
    name: string,
    shape: number[],
    data: Float32Array,
  ) => (out[name] = { dtype: "F32", shape, data });
  put("backbone.embeddings.weight", [V, D], g("embedding"));
  let config: Json;
  for (let i = 0; i < L; i++) {
    const p = `backbone.layers.${i}.`;
    const s = g(`${i}.aScale`)[0];
    const aLog = g(`${i}.aLog`).map((v) => Math.fround(s * v)); // s = 1: unchanged bits
    put(`${p}norm.weight`, [D], g(`${i}.norm`));
    if (first.kind === "mamba1") {
      const { N, R, W } = mamba1Dims(first, D);
      put(
        `${p}mixer.in_proj.weight`,
        [2 * E, D],
        stackT([{ data: g(`${i}.inX`), cols: E }, { data: g(`${i}.inZ`), cols: E }], D),
      );
      put(`${p}mixer.conv1d.weight`, [E, 1, W], g(`${i}.conv.weight`));
      put(`${p}mixer.conv1d.bias`, [E], g(`${i}.conv.bias`));
      put(
        `${p}mixer.x_proj.weight`,
        [R + 2 * N, E],
        stackT([{ data: g(`${i}.xProjDt`), cols: R }, { data: g(`${i}.xProjB`), cols: N }, {
          data: g(`${i}.xProjC`),
          cols: N,
        }], E),
      );
      put(`${p}mixer.dt_proj.weight`, [E, R], stackT([{ data: g(`${i}.dtProjWeight`), cols: E }], R));
      put(`${p}mixer.dt_proj.bias`, [E], g(`${i}.dtProjBias`));
      put(`${p}mixer.A_log`, [E, N], aLog);
      put(`${p}mixer.D`, [E], g(`${i}.D`));
      put(`${p}mixer.out_proj.weight`, [D, E], stackT([{ data: g(`${i}.outProj`), cols: D }], E));
    } else {
      const { H, G, N, W } = mamba2Dims(first, D);
      if (G > 1 && (first.gatedNorm ?? "group") === "group") {
        fail(
          `layer ${i}: Mamba 2 with nGroups ${G} and gatedNorm "group" normalises per group, transformers over all ` +
            `E channels; it would compute another function (train with gatedNorm "all", or nGroups 1)`,
        );
      }
      if (first.normEps !== cfg.normEps) {
        fail(`Mamba 2 normEps ${first.normEps} ≠ the LM's normEps ${cfg.normEps}; the layout has one ε`);
      }
      const GN = G * N;
      put(
        `${p}mixer.in_proj.weight`,
        [2 * E + 2 * GN + H, D],
        stackT([
          { data: g(`${i}.inZ`), cols: E },
          { data: g(`${i}.inX`), cols: E },
          { data: g(`${i}.inB`), cols: GN },
          { data: g(`${i}.inC`), cols: GN },
          { data: g(`${i}.inDt`), cols: H },
        ], D),
      );
      const cat = (parts: Float32Array[]) => {
        const o = new Float32Array(parts.reduce((s, q) => s + q.length, 0));
        let at = 0;
        for (const q of parts) {
          o.set(q, at);
          at += q.length;
        }
        return o;
      };
      put(
        `${p}mixer.conv1d.weight`,
        [E + 2 * GN, 1, W],
        cat(["convX", "convB", "convC"].map((c) => g(`${i}.${c}.weight`))),
      );
      put(
        `${p}mixer.conv1d.bias`,
        [E + 2 * GN],
        cat(["convX", "convB", "convC"].map((c) => g(`${i}.${c}.bias`))),
      );
      put(`${p}mixer.dt_bias`, [H], g(`${i}.dtBias`));
      put(`${p}mixer.A_log`, [H], aLog);
      put(`${p}mixer.D`, [H], g(`${i}.D`));
      put(`${p}mixer.norm.weight`, [E], g(`${i}.normWeight`));
      put(`${p}mixer.out_proj.weight`, [D, E], stackT([{ data: g(`${i}.outProj`), cols: D }], E));
    }
  }
  put("backbone.norm_f.weight", [D], g("normF"));

  const common: Json = {
    vocab_size: V,
    hidden_size: D,
    state_size: first.dState,
    num_hidden_layers: L,
    layer_norm_epsilon: cfg.normEps,
    expand: first.expand,
    conv_kernel: first.dConv,
    use_bias: false,
    use_conv_bias: true,
    hidden_act: "silu",
    residual_in_fp32: true,
    time_step_min: first.dtMin,
    time_step_max: first.dtMax,
    time_step_floor: first.dtFloor,
    tie_word_embeddings: true,
    dtype: "float32",
  };
  if (first.kind === "mamba1") {
    config = {
      architectures: ["MambaForCausalLM"],
      model_type: "mamba",
      ...common,
      time_step_rank: mamba1Dims(first, D).R,
    };
  } else {
    const { H, P, G } = mamba2Dims(first, D);
    config = {
      architectures: ["Mamba2ForCausalLM"],
      model_type: "mamba2",
      ...common,
      num_heads: H,
      head_dim: P,
      n_groups: G,
      rms_norm: true,
      // time_step_limit is left at transformers' default (0, ∞): strict JSON has no Infinity.
    };
  }
  Deno.mkdirSync(dir, { recursive: true });
  writeSafetensors(`${dir}/model.safetensors`, out, {
    format: "pt",
    mimetic_source: `mimetic savePretrained, run ${run} of ${K}`,
  });
  writeJsonAtomic(`${dir}/config.json`, config);
}
