/**
 * How much GPU memory training takes, estimated before anything is allocated, so that a sweep picks how many runs
 * share the run axis and refuses a run that cannot fit with a message instead of a crash.
 *
 * (Provisional estimate from the tensors the mixers keep per token; to be replaced by one measured against the
 * runtime's peak.)
 * @module
 */
import type { DeviceInfo } from "../core/runtime.ts";
import type { LMConfig } from "../nn/lm.ts";

/** The estimate for K runs at batch B × length T. */
export interface MemoryEstimate {
  paramBytes: number;
  optimizerBytes: number;
  activationBytes: number;
  peakBytes: number;
  largestTensorBytes: number;
  largestTensor: string;
}

function paramCount(cfg: LMConfig): number {
  const D = cfg.dModel;
  let n = cfg.vocab * D + D;
  for (const l of cfg.layers) {
    n += D;
    if (l.kind === "mamba1") {
      const E = l.expand * D, R = l.dtRank > 0 ? l.dtRank : Math.ceil(D / 16), N = l.dState;
      n += 2 * D * E + E * (l.dConv + 1) + E * (R + 2 * N) + R * E + E + E * N + E + E * D;
    } else if (l.kind === "mamba2") {
      const E = l.expand * D, H = E / l.headDim, GN = l.nGroups * l.dState;
      n += D * (2 * E + 2 * GN + H) + (E + 2 * GN) * (l.dConv + 1) + 3 * H + E + E * D;
    } else {
      n += 4 * D * l.heads * l.headDim;
    }
  }
  return n;
}

/** f32 values kept per token (per run) by one layer for its backward, and its widest activation. */
function layerFloats(l: LMConfig["layers"][number], D: number, T: number): { kept: number; widest: number } {
  if (l.kind === "mamba1") {
    const E = l.expand * D, R = l.dtRank > 0 ? l.dtRank : Math.ceil(D / 16), N = l.dState;
    return { kept: 3 * D + 9 * E + R + 2 * N + (E * N) / 64, widest: E };
  }
  if (l.kind === "mamba2") {
    const E = l.expand * D, H = E / l.headDim, GN = l.nGroups * l.dState;
    return { kept: 3 * D + 8 * E + 6 * GN + 3 * H + (H * l.headDim * l.dState) / 128, widest: E };
  }
  const HP = l.heads * l.headDim;
  return { kept: 3 * D + 4 * HP + 3 * l.heads * T, widest: Math.max(HP, l.heads * T) };
}

/** Estimates training memory of K runs of `cfg` at batch × T. */
export function estimateTrainingMemory(cfg: LMConfig, K: number, batch: number, T: number): MemoryEstimate {
  const tokens = K * batch * T;
  const params = paramCount(cfg);
  let kept = 0, widest = cfg.dModel, widestName = "residual stream";
  for (const [i, l] of cfg.layers.entries()) {
    const f = layerFloats(l, cfg.dModel, T);
    kept += f.kept;
    if (f.widest > widest) [widest, widestName] = [f.widest, `layer ${i} activation`];
  }
  if (cfg.vocab > widest) [widest, widestName] = [cfg.vocab, "logits"];
  const activationBytes = 4 * tokens * (kept + 3 * cfg.vocab);
  const paramBytes = 4 * K * params;
  const optimizerBytes = 3 * paramBytes; // gradients, AdamW m and v
  return {
    paramBytes,
    optimizerBytes,
    activationBytes,
    peakBytes: Math.ceil(1.25 * (paramBytes + optimizerBytes + activationBytes)),
    largestTensorBytes: 4 * tokens * widest,
    largestTensor: `${widestName} (K ${K} × B ${batch} × T ${T} × ${widest})`,
  };
}

/** The most runs of `cfg` at batch × T that fit in `budgetBytes` with every tensor under `maxBindingBytes`. */
export function maxRunsThatFit(
  cfg: LMConfig,
  batch: number,
  T: number,
  budgetBytes: number,
  maxBindingBytes: number,
): number {
  const one = estimateTrainingMemory(cfg, 1, batch, T);
  return Math.max(
    0,
    Math.min(Math.floor(budgetBytes / one.peakBytes), Math.floor(maxBindingBytes / one.largestTensorBytes)),
  );
}

/** The memory a process may plan to use on the adapter: `MIMETIC_GPU_MEMORY` (GiB), else by adapter. */
export function adapterMemoryBudget(info: Pick<DeviceInfo, "description" | "isCpu">): number {
  const env = Deno.env.get("MIMETIC_GPU_MEMORY");
  const GiB = 2 ** 30;
  if (env) {
    const v = Number(env);
    if (!(v > 0)) throw new RangeError(`MIMETIC_GPU_MEMORY: expected GiB as a positive number, got "${env}"`);
    return v * GiB;
  }
  if (info.isCpu) return 0.5 * Deno.systemMemoryInfo().total;
  if (/H200/i.test(info.description)) return 0.85 * 141e9;
  if (/H100|A100.*80|A100-SXM4-80/i.test(info.description)) return 0.85 * 80e9;
  return 8 * GiB;
}
