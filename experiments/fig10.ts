/**
 * Figure 10 of "Mimetic Initialization Helps State Space Models Learn to Recall" (section 6): a pretrained Mamba
 * (state-spaces/mamba-130m: Mamba 1, 24 layers, width 768) fine-tuned to copy and to do multi-query associative
 * recall, against the same architecture trained from scratch with mimetic init and with the default init.
 * String accuracy (copy) and query accuracy (MQAR) against length.
 *
 *   deno task fig10 --weights DIR [--scale smoke|quick|paper] [--out results/fig10] [flags...]
 *
 * DIR is a local Hugging Face folder of state-spaces/mamba-130m-hf (config.json, model.safetensors,
 * tokenizer.json); nothing is downloaded. The task's tokens are mapped onto the pretrained vocabulary's
 * single-character tokens (copy: a..z, `$ | . *`; MQAR: printable ASCII), and the embedding keeps only those rows
 * (see `tokenIdsForSymbols`): the tasks feed one symbol per position, and every symbol is one byte, a token of its
 * own in GPT-NeoX's byte-level vocabulary. The from-scratch runs use the checkpoint's architecture.
 * @module
 */
import {
  aggregate,
  areaUnderCurve,
  bestBy,
  checkpointFromFlag,
  copyVocab,
  defineStudy,
  evalSpecOf,
  generalisationLength,
  type InitSpec,
  lineChart,
  lineWithBands,
  type LMConfig,
  MIMETIC_ALL,
  type ResultRow,
  type RunSpec,
  seedsOf,
  TASKS,
  TRAIN_FLAGS,
  trainSpecOf,
  UsageError,
} from "../mod.ts";

const WEIGHTS_HELP =
  "a local Hugging Face folder of state-spaces/mamba-130m-hf with config.json, model.safetensors and " +
  "tokenizer.json; nothing is downloaded";

/** The paper's mimetic components for the checkpoint's mixer: Mamba 1 A, Δ, W_CᵀW_B; Mamba 2 all four. */
function mimeticFor(cfg: LMConfig, c: number): InitSpec {
  return { ...MIMETIC_ALL, c, conv: cfg.layers[0].kind !== "mamba1" };
}

const study = defineStudy({
  name: "fig10",
  title: "Figure 10: pretrained Mamba vs mimetic init from scratch (copy and MQAR)",
  summary: "fine-tuned pretrained Mamba vs from-scratch mimetic and default init, copy and MQAR",
  description:
    "A pretrained Mamba (state-spaces/mamba-130m: Mamba 1, 24 layers, width 768) fine-tuned to copy strings and " +
    "to do multi-query associative recall, against the same architecture trained from scratch with mimetic init " +
    "(A ≈ 1, Δ ≈ 1, W_Cᵀ W_B ≈ I) and with the default init. Copy: teacher-forced greedy string accuracy per " +
    "string length; MQAR: accuracy over the queried values per sequence length (⌊length / tokens-per-pair⌋ " +
    "pairs). The task's tokens are the pretrained vocabulary's single-character tokens (copy: a..z and $ | . *; " +
    "MQAR: printable ASCII), the embedding restricted to them.\n\n" +
    "The paper's claim: fine-tuning the pretrained model generalises well, and training from scratch with " +
    "mimetic init gets close to it (especially for shorter strings), although the pretrained model saw far " +
    "longer contexts (> 1k tokens) in pretraining.",
  flags: {
    weights: { type: "string", default: "", help: `the pretrained model: ${WEIGHTS_HELP} (required)` },
    inits: {
      type: "strings",
      choices: ["pretrained", "mimetic", "default"],
      default: ["pretrained", "mimetic", "default"],
      help: "arms: fine-tuned pretrained weights, mimetic or default init from scratch",
    },
    tasks: { type: "strings", choices: ["copy", "mqar"], default: ["copy", "mqar"], help: "tasks" },
    c: { type: "number", min: 0, default: 8, help: "mimetic A: A = −exp(−c·A_log)" },
    vocab: { type: "number", integer: true, min: 2, default: 26, help: "copy alphabet size (letters a..)" },
    context: { type: "number", integer: true, min: 4, help: "copy training context T" },
    minTrainLen: { type: "number", integer: true, min: 1, help: "shortest copy training string" },
    trainLen: { type: "number", integer: true, min: 1, help: "longest copy training string" },
    copyEvalLengths: { type: "numbers", integer: true, min: 1, help: "copy string lengths to evaluate" },
    mqarVocab: {
      type: "number",
      integer: true,
      min: 4,
      max: 94,
      default: 94,
      help: "MQAR vocabulary (printable ASCII symbols; keys from the first half, values from the second)",
    },
    mqarLength: { type: "number", integer: true, min: 4, help: "MQAR training sequence length" },
    tokensPerPair: {
      type: "number",
      integer: true,
      min: 4,
      default: 8,
      help: "MQAR: one key–value pair per this many tokens of sequence",
    },
    mqarAlpha: { type: "number", min: 0, default: 0.01, help: "MQAR query-gap law p(g) ∝ (g+1)^(α−1)" },
    mqarEvalLengths: { type: "numbers", integer: true, min: 4, help: "MQAR sequence lengths to evaluate" },
    ...TRAIN_FLAGS,
  },
  scales: {
    smoke: {
      seeds: 1,
      lrs: [3e-3],
      steps: 30,
      batch: 4,
      vocab: 8,
      context: 24,
      minTrainLen: 2,
      trainLen: 6,
      copyEvalLengths: [4, 8],
      mqarVocab: 16,
      mqarLength: 16,
      tokensPerPair: 4,
      mqarEvalLengths: [16, 24],
      evalSamples: 16,
      warmup: 5,
      logEvery: 10,
    },
    quick: {
      // Not calibrated on a GPU yet: one lr for all arms, 400 steps (the paper: 5000). Estimated ~5 min on an
      // H200: 2 groups (copy, MQAR) of K 3 runs × 400 steps at ~0.3 s a step (24 layers × 22 MFLOP a token ×
      // 2048 tokens × 3 runs ≈ 3.3 TFLOP at 10–15 TFLOP/s, plus ~2 ms of dispatch a layer).
      seeds: 1,
      lrs: [5e-4],
      steps: 400,
      batch: 16,
      context: 128,
      minTrainLen: 5,
      trainLen: 50,
      copyEvalLengths: [25, 50, 75, 100, 150],
      mqarLength: 64,
      mqarEvalLengths: [32, 64, 128, 192, 256],
      evalSamples: 128,
      logEvery: 50,
      checkpointEvery: 200,
    },
    paper: {
      seeds: 5,
      lrs: [1e-3, 5e-4, 1e-4],
      steps: 5000,
      batch: 64,
      context: 220,
      minTrainLen: 5,
      trainLen: 50,
      copyEvalLengths: [25, 50, 75, 100, 150, 200, 250, 300],
      mqarLength: 64,
      mqarEvalLengths: [32, 64, 128, 192, 256, 320, 368],
      evalSamples: 256,
      logEvery: 100,
      checkpointEvery: 500,
    },
  },
  plan(v) {
    type Planned = { name: string; task: RunSpec["task"]; lengths: number[] };
    const tasks = v.tasks.map((name): Planned =>
      name === "copy"
        ? {
          name,
          task: {
            kind: "copy",
            variant: "copy",
            vocab: v.vocab,
            context: v.context,
            minLen: v.minTrainLen,
            maxLen: v.trainLen,
          },
          lengths: v.copyEvalLengths,
        }
        : {
          name,
          task: {
            kind: "mqar",
            vocab: v.mqarVocab,
            length: v.mqarLength,
            tokensPerPair: v.tokensPerPair,
            alpha: v.mqarAlpha,
            lengthUnit: "tokens",
          },
          lengths: v.mqarEvalLengths,
        }
    );
    if (v.vocab > 62) {
      throw new UsageError(`--vocab ${v.vocab}: the copy task's symbols exist for up to 62 letters`);
    }
    return tasks.flatMap(({ name, task, lengths }) => {
      const { kind, ...taskCfg } = task;
      const symbols = TASKS[kind as "copy" | "mqar"].symbols!(taskCfg as never);
      const { cfg, sha256 } = checkpointFromFlag("weights", v.weights, symbols, WEIGHTS_HELP);
      if (name === "copy" && cfg.vocab !== copyVocab(v.vocab).size) {
        throw new Error("fig10: copy symbols ≠ vocab");
      }
      return v.inits.flatMap((init) => {
        const initSpec: InitSpec = init === "pretrained"
          ? { kind: "pretrained", dir: v.weights, sha256, symbols }
          : init === "mimetic"
          ? mimeticFor(cfg, v.c)
          : { kind: "default" };
        return v.lrs.flatMap((lr) =>
          seedsOf(v).map((seed) => ({
            labels: { task: name, init },
            spec: {
              model: cfg,
              init: initSpec,
              task,
              train: trainSpecOf(v, lr),
              seed,
              eval: evalSpecOf(v, lengths),
            },
          }))
        );
      });
    });
  },
  async report(ctx) {
    // Copy: string accuracy; MQAR: the fraction of queried values recalled (token_acc).
    const rows: ResultRow[] = ctx.finalRows().map((r) => ({
      ...r,
      acc: r.task === "mqar" ? r.token_acc : r.exact_acc,
    }));
    const runs = [...Map.groupBy(rows, (r) => r.run_id as string).values()].map((rs) => {
      const L = rs.map((r) => r.eval_len as number), acc = rs.map((r) => r.acc as number);
      const { task, init, lr, seed } = rs[0];
      return { task, init, lr, seed, gen_len: generalisationLength(L, acc), auc: areaUnderCurve(L, acc) };
    });
    const isBest = bestBy(runs, ["task", "init"], "lr", "auc");
    const accuracy = aggregate(rows.filter(isBest), ["task", "init", "lr", "eval_len"], "acc");
    const gen = aggregate(runs.filter(isBest), ["task", "init", "lr"], "gen_len");
    ctx.table(
      "summary_accuracy",
      accuracy,
      "Accuracy per length (copy: string accuracy; MQAR: query accuracy); mean, s.e. over seeds; best lr per arm",
    );
    ctx.table(
      "summary_generalisation",
      gen,
      "Generalisation length (accuracy ≥ 0.5) per task and arm; best lr",
    );
    ctx.table("run_stats", runs, "Generalisation length and AUC of every run");
    const chart = lineWithBands({
      data: accuracy,
      x: "eval_len",
      y: "mean",
      yLow: "low",
      yHigh: "high",
      color: "init",
      facet: "task",
      title: "Pretrained and fine-tuned vs trained from scratch",
      subtitle: `${ctx.results[0].spec.model.layers.length}-layer ${
        ctx.results[0].spec.model.layers[0].kind
      }, width ${ctx.results[0].spec.model.dModel}, ${ctx.scale} scale; mean ± s.e. over seeds, best lr`,
      xTitle: "length (copy: string; MQAR: sequence)",
      yTitle: "accuracy (copy: string; MQAR: query)",
      colorTitle: "init",
      facetTitle: "task",
      yDomain: [0, 1],
      columns: 2,
    });
    await ctx.chart(
      "fig10",
      { ...chart, resolve: { scale: { x: "independent" } } },
      "Accuracy vs length: the pretrained model fine-tuned, and the same architecture trained from scratch with " +
        `mimetic or default init. Copy trained on strings of ${ctx.values.minTrainLen}..${ctx.values.trainLen}; ` +
        `MQAR on sequences of ${ctx.values.mqarLength}. Bands: ± s.e. over seeds.`,
    );
    const loss = ctx.results.filter((r) =>
      isBest({ task: r.labels.task, init: r.labels.init, lr: r.spec.train.lr })
    )
      .flatMap((r) =>
        r.history.filter(([, l]) => l !== null).map(([step, l]) => ({
          task: r.labels.task,
          init: r.labels.init,
          seed: `seed ${r.spec.seed}`,
          step,
          loss: l as number,
        }))
      );
    if (loss.length > 0) {
      await ctx.chart(
        "fig10_loss",
        lineChart({
          data: loss,
          x: "step",
          y: "loss",
          color: "init",
          strokeDash: "seed",
          facet: "task",
          yScale: "log",
          title: "Training loss",
          subtitle: "masked next-token cross-entropy; best lr per arm",
          columns: 2,
        }),
        "Training loss per run (best lr per arm).",
      );
    }
  },
}, TASKS);

if (import.meta.main) await study.main(Deno.args);
export default study;
