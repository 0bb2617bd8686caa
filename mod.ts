/**
 * mimetic: a WebGPU toolkit for studying how state space models learn to recall.
 *
 * Models are pure functions (`initLM(keys, config) → params`, `applyLM(params, consts, ids) → logits`), gradients
 * come from our own reverse-mode autodiff (`valueAndGrad`), and every op runs our own WGSL kernels.
 *
 * @example
 * ```ts
 * import { initGpu, tensor, valueAndGrad, mul, sum } from "./mod.ts";
 * await initGpu();
 * const f = (p: { w: ReturnType<typeof tensor> }) => sum(mul(p.w, p.w), 0);
 * const { value, grads } = valueAndGrad(f)({ w: tensor([3, 4]) });
 * console.log(await value.item(), await grads.w.toArray()); // 25, [6, 8]
 * ```
 * @module
 */

// Runtime and tensors
export {
  type DeviceInfo,
  flush,
  formatBytes,
  getDevice,
  gpuInfo,
  GpuUnavailableError,
  initGpu,
  type KernelTime,
  liveGpuBytes,
  peakGpuBytes,
  pooledGpuBytes,
  probeAdapter,
  profileKernels,
  resetPeakGpuBytes,
  runtimeStats,
  sync,
  trimPool,
} from "./lib/core/runtime.ts";
export {
  assign,
  clone,
  disposeTree,
  type DType,
  empty,
  full,
  hostLeaves,
  type HostTensor,
  isHostTensor,
  keep,
  leaves,
  mapTree,
  readTensors,
  type Shape,
  stackRuns,
  Tensor,
  tensor,
  tidy,
  type Tree,
  zeros,
} from "./lib/core/tensor.ts";
export { grad, valueAndGrad, vjp } from "./lib/ops/autodiff.ts";
export * as random from "./lib/core/random.ts";
export { foldIn, type Key, key, split } from "./lib/core/random.ts";

// Ops
export {
  add,
  affine,
  broadcastTo,
  div,
  exp,
  log,
  mul,
  neg,
  relu,
  scale,
  sigmoid,
  silu,
  softplus,
  sqrt,
  square,
  sub,
  tanh,
} from "./lib/ops/elementwise.ts";
export { max, mean, sum, sumAll } from "./lib/ops/reduce.ts";
export { matmul, matmulParts } from "./lib/ops/matmul.ts";
export { concat, splitAlong } from "./lib/ops/concat.ts";
export { embedding } from "./lib/ops/embedding.ts";
export { softmax } from "./lib/ops/softmax.ts";
export { argmaxLastAxis, maskedCrossEntropy } from "./lib/ops/cross_entropy.ts";
export { layerNorm, rmsNorm } from "./lib/ops/norm.ts";
export { gatedRmsNorm } from "./lib/ops/gated_norm.ts";
export { causalConv1d, type Conv1dOptions } from "./lib/ops/conv1d.ts";
export { selectiveScan } from "./lib/ops/selective_scan.ts";
export { ssdScan } from "./lib/ops/ssd_scan.ts";
export {
  type AttentionMap,
  attentionMapToRows,
  mamba1AttentionMap,
  mamba2AttentionMap,
} from "./lib/ops/attention_map.ts";

// Optimiser, layers, models, init
export { adamwInit, type AdamWState, adamwStep, disposeAdamW, lrSchedule } from "./lib/train/optim.ts";
export {
  correlation,
  DEFAULT_INIT,
  DELTA_ONE_BIAS,
  inverseSoftplus,
  type Mimetic,
  MIMETIC_MAMBA1,
  MIMETIC_MAMBA2,
} from "./lib/nn/init.ts";
export {
  applyMamba1,
  initMamba1,
  MAMBA1_DEFAULTS,
  type Mamba1Config,
  type Mamba1Params,
  mamba1ScanInputs,
} from "./lib/nn/mamba1.ts";
export {
  applyMamba2,
  initMamba2,
  MAMBA2_DEFAULTS,
  type Mamba2Config,
  type Mamba2Params,
  mamba2ScanInputs,
} from "./lib/nn/mamba2.ts";
export {
  applyAttention,
  ATTENTION_DEFAULTS,
  type AttentionConfig,
  type AttentionParams,
  initAttention,
} from "./lib/nn/attention.ts";
export {
  applyBlocks,
  applyLM,
  type HostRun,
  initLM,
  initLMRuns,
  layerAttentionMap,
  type LMBatch,
  type LMConfig,
  type LMConsts,
  lmLoss,
  type LMParams,
  type RunInit,
} from "./lib/nn/lm.ts";
export {
  type BackwardStep,
  mambaMixer,
  type MemoryDims,
  type Mixer,
  type MixerConfig,
  type MixerKind,
  type MixerMemory,
  mixerOf,
  MIXERS,
  type TensorSize,
} from "./lib/nn/mixers.ts";
export {
  checkpointDigest,
  loadPretrained,
  type LoadPretrainedOptions,
  type PretrainedConfig,
  PretrainedError,
  type PretrainedHost,
  type PretrainedModel,
  type PretrainedModelType,
  readPretrainedConfig,
  readPretrainedHost,
  savePretrained,
  tokenIdsForSymbols,
} from "./lib/nn/pretrained.ts";
export {
  encodeSafetensors,
  parseSafetensors,
  readSafetensors,
  type SafetensorsEntry,
  SafetensorsError,
  SafetensorsFile,
  type SafetensorsInfo,
  writeSafetensors,
} from "./lib/core/safetensors.ts";

// Training, evaluation, output
export {
  type BatchMaker,
  disposeModel,
  type HistoryRow,
  runKeys,
  type TaskBatch,
  TRAIN_DEFAULTS,
  trainLM,
  type TrainOptions,
  type TrainResult,
  type TrainRun,
} from "./lib/train/train.ts";
export {
  type Accuracy,
  areaUnderCurve,
  type EvalRows,
  evaluateLM,
  type EvaluateLMOptions,
  evaluateRows,
  generalisationLength,
} from "./lib/train/eval.ts";
export {
  type AdapterMemory,
  adapterMemory,
  adapterMemoryBudget,
  describeMemory,
  estimateEvalMemory,
  estimateTrainingMemory,
  evalChunkRows,
  type FitQuestion,
  maxRunsThatFit,
  type MemoryEstimate,
  trainingFitMessage,
} from "./lib/train/memory.ts";
export {
  CheckpointError,
  loadCheckpoint,
  restoreCheckpoint,
  saveCheckpoint,
} from "./lib/train/checkpoint.ts";
export { readJson, writeFileAtomic, writeJsonAtomic } from "./lib/core/fs.ts";
export { type CsvRow, type CsvValue, readCsv, writeCsv } from "./lib/study/csv.ts";
export { aggregate } from "./lib/study/stats.ts";
export * from "./lib/study/charts.ts";
export * from "./lib/study/render.ts";
export { fmtSeconds, Progress } from "./lib/study/progress.ts";

// Study layer: run specs, sweeps, results, figures
export {
  canonicalJson,
  type EvalSpec,
  flattenSpec,
  groupId,
  packKey,
  RUN_AXIS_FIELDS,
  runId,
  type RunSpec,
  type TrainSpec,
  validateSpec,
} from "./lib/study/spec.ts";
export {
  type AnalysisResult,
  type ClaimInfo,
  type CurvePoint,
  type LayerMap,
  type LengthAccuracy,
  readAnalysis,
  readResult,
  readResults,
  ResultsFolder,
  type RunResult,
} from "./lib/study/results.ts";
export { type PlannedRun, runWorker, type WorkerOptions, type WorkerReport } from "./lib/study/sweep.ts";
export {
  COMMON_FLAGS,
  defineStudy,
  type GridRun,
  type ReportContext,
  type ResultRow,
  runStudy,
  type ScaleName,
  SCALES,
  type Study,
  type StudyAnalysis,
  type StudyDefinition,
  type StudyOutcome,
  type StudyValues,
  TIME_COLUMNS,
} from "./lib/study/study.ts";
export {
  accuracyColumn,
  checkpointFromFlag,
  curveSteps,
  evalSpecOf,
  lengthAt,
  plural,
  seedsOf,
  times,
  TRAIN_FLAGS,
  trainSpecOf,
  type TrainValues,
} from "./lib/study/presets.ts";
export { bestBy, firstReaching } from "./lib/study/stats.ts";
export type { Task, TaskConfig, TaskTable } from "./lib/train/task.ts";
export {
  type DefaultInitSpec,
  type InitRule,
  initRule,
  INITS,
  type InitSpec,
  MIMETIC_ALL,
  MIMETIC_COMPONENTS,
  type MimeticComponent,
  mimeticInit,
  type MimeticInitSpec,
  paperComponents,
  type PretrainedInitSpec,
  type TeacherLayerInitSpec,
} from "./lib/nn/inits.ts";

// Tasks (data only)
export * from "./tasks/mod.ts";

// Command-line plumbing for experiment scripts
export { type Flags, type FlagSpec, helpText, parseFlags, runMain, UsageError } from "./lib/study/cli.ts";
