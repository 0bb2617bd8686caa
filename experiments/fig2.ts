/**
 * Figure 2 of "Mimetic Initialization Helps State Space Models Learn to Recall": an 8-layer Mamba whose fourth
 * layer is single-head softmax attention, learning to copy strings of length ≤ 50: string accuracy against
 * training step at 50 and 100, and the attention layer's map; by default beside the all-Mamba model of the same
 * depth (the layer in the same position).
 *
 *   deno task fig2 [--scale smoke|quick|paper] [--mixer mamba1|mamba2] [--out results/fig2] [flags...]
 * @module
 */
import {
  aggregate,
  ATTENTION_DEFAULTS,
  bestBy,
  copyVocab,
  type CsvRow,
  curveSteps,
  defineStudy,
  evalSpecOf,
  firstReaching,
  heatmapGrid,
  type InitSpec,
  lineChart,
  lineWithBands,
  mambaMixer,
  MIMETIC_COMPONENTS,
  mimeticInit,
  type MixerConfig,
  type RunResult,
  seedsOf,
  TASKS,
  TRAIN_FLAGS,
  trainSpecOf,
  UsageError,
} from "../mod.ts";

/** A causal map's rows, keys j > i (never attended) left out of the heatmap (NaN): they are not zeros to colour. */
const causalRows = (map: readonly number[], T: number) =>
  Array.from({ length: T }, (_, i) => Array.from({ length: T }, (_, j) => (j <= i ? map[i * T + j] : NaN)));

const study = defineStudy({
  name: "fig2",
  title: "Figure 2: a hybrid Mamba with one softmax-attention layer learning to copy",
  summary:
    "8-layer Mamba with attention at layer 4, copying: accuracy vs step at 50 and 100; its attention map",
  description:
    "An 8-layer Mamba (Mamba 1, state size 32, unless --mixer mamba2) whose fourth layer is single-head causal " +
    "softmax attention (no positional encoding: positions come from the Mamba layers before it), trained to " +
    "copy strings of length up to 50 (context 220, Jelassi et al.'s pipeline), default init; by default beside " +
    "the all-Mamba model of the same depth and width. String accuracy (teacher-forced greedy exact match) is " +
    "evaluated during training at the training length and at twice it; after training, the attention layer's " +
    "map (softmax weights) and the map (Eq. 8, averaged over channels) of the Mamba layer in the same position " +
    "of the all-Mamba model.\n\n" +
    "The paper's claim: this one attention layer enables perfect copying at the training length and " +
    "generalisation to twice it; the attention head learns a sharp look-behind, each answer position attending " +
    "to the next character of the copy string.",
  flags: {
    mixer: {
      type: "string",
      choices: ["mamba1", "mamba2"],
      default: "mamba1",
      help: "Mamba version of the non-attention layers",
    },
    arms: {
      type: "strings",
      choices: ["hybrid", "mamba"],
      default: ["hybrid", "mamba"],
      help: "models: hybrid (attention at --attention-layer), mamba (every layer Mamba)",
    },
    inits: {
      type: "strings",
      choices: ["default", "mimetic"],
      default: ["default"],
      help: "initialisations of the Mamba layers (the paper's hybrid: default)",
    },
    mimetic: {
      type: "strings",
      choices: ["paper", ...MIMETIC_COMPONENTS],
      default: ["paper"],
      help: "mimetic components, when --inits has mimetic; paper: Mamba 1 A,delta,qk, Mamba 2 all four",
    },
    c: { type: "number", min: 0, default: 8, help: "mimetic A: A = −exp(−c·A_log)" },
    convScope: {
      type: "string",
      choices: ["xBC", "x"],
      default: "xBC",
      help: "Mamba 2 identity conv over x, B and C, or x only",
    },
    layers: { type: "number", integer: true, min: 1, help: "layers in all" },
    attentionLayer: {
      type: "number",
      integer: true,
      min: 0,
      default: 3,
      help: "0-based index of the attention layer (3: the paper's 'layer 4')",
    },
    attentionVariant: {
      type: "string",
      choices: ["softmax", "linear"],
      default: "softmax",
      help: "attention layer: softmax, or simple causal linear attention",
    },
    attentionHeads: { type: "number", integer: true, min: 1, default: 1, help: "attention heads H" },
    attentionHeadDim: {
      type: "number",
      integer: true,
      min: 0,
      default: 0,
      help: "attention head dim P (0: D/H, as mamba_ssm's MHA)",
    },
    dModel: { type: "number", integer: true, min: 1, help: "model width D" },
    stateSize: { type: "number", integer: true, min: 1, default: 32, help: "state size N" },
    headDim: { type: "number", integer: true, min: 1, help: "Mamba 2 head dim P (unused by Mamba 1)" },
    expand: { type: "number", integer: true, min: 1, default: 2, help: "inner width E = expand·D" },
    vocab: { type: "number", integer: true, min: 2, default: 26, help: "copy alphabet size" },
    context: { type: "number", integer: true, min: 4, help: "training context length T" },
    minTrainLen: { type: "number", integer: true, min: 1, help: "shortest training string" },
    trainLen: {
      type: "number",
      integer: true,
      min: 1,
      help: "longest training string (the 'training length')",
    },
    genFactor: {
      type: "number",
      integer: true,
      min: 2,
      default: 2,
      help: "the generalisation length is this times the training length",
    },
    curveEvery: { type: "number", integer: true, min: 1, help: "evaluate the curve every this many steps" },
    curveSamples: {
      type: "number",
      integer: true,
      min: 1,
      help: "evaluation rows per length and curve step",
    },
    threshold: {
      type: "number",
      min: 0,
      max: 1,
      default: 0.9,
      help: "summaries: the first step at which string accuracy reaches this",
    },
    maps: {
      type: "string",
      choices: ["attention", "all"],
      default: "attention",
      help: "maps of the layer at --attention-layer in every arm, or of every layer",
    },
    mapLength: {
      type: "number",
      integer: true,
      min: 0,
      default: 0,
      help: "string length of the attention maps' example (0: the training length)",
    },
    ...TRAIN_FLAGS,
  },
  scales: {
    smoke: {
      layers: 3,
      attentionLayer: 1,
      dModel: 16,
      stateSize: 8,
      headDim: 8,
      context: 40,
      minTrainLen: 2,
      trainLen: 6,
      steps: 40,
      batch: 8,
      lrs: [3e-3],
      seeds: 1,
      warmup: 10,
      curveEvery: 10,
      curveSamples: 16,
      evalSamples: 32,
      logEvery: 10,
      checkpointEvery: 20,
    },
    quick: {
      // One lr, the top of the paper's grid: an 8-layer model at short training; --lrs 1e-3,3e-3 sweeps both.
      layers: 8,
      dModel: 256,
      headDim: 64,
      context: 220,
      minTrainLen: 5,
      trainLen: 50,
      steps: 1000,
      batch: 32,
      lrs: [1e-3],
      seeds: 2,
      curveEvery: 50,
      curveSamples: 128,
      evalSamples: 256,
      logEvery: 50,
      checkpointEvery: 500,
    },
    paper: {
      // The paper gives no width for this model; 1024 as Jelassi et al. (and the paper's Fig. 3).
      layers: 8,
      dModel: 1024,
      headDim: 64,
      context: 220,
      minTrainLen: 5,
      trainLen: 50,
      steps: 5000,
      batch: 64,
      lrs: [1e-3, 5e-4, 1e-4],
      seeds: 5,
      curveEvery: 100,
      curveSamples: 256,
      evalSamples: 256,
      logEvery: 100,
      checkpointEvery: 500,
    },
  },
  plan(v) {
    if (v.attentionLayer >= v.layers) {
      throw new UsageError(
        `--attention-layer ${v.attentionLayer} is not a layer of a ${v.layers}-layer model (0-based); ` +
          `choose one below --layers`,
      );
    }
    if (v.attentionHeadDim === 0 && v.dModel % v.attentionHeads !== 0) {
      throw new UsageError(
        `--attention-heads ${v.attentionHeads} must divide --d-model ${v.dModel} when --attention-head-dim is 0`,
      );
    }
    const kind = v.mixer as "mamba1" | "mamba2";
    const mimetic: InitSpec = mimeticInit(v.mimetic, kind, {
      c: v.c,
      convScope: v.convScope as "xBC" | "x",
      flag: "--mimetic",
    });
    const mamba: MixerConfig = mambaMixer(kind, {
      dState: v.stateSize,
      headDim: v.headDim,
      expand: v.expand,
    });
    const attention: MixerConfig = {
      ...ATTENTION_DEFAULTS,
      variant: v.attentionVariant as "softmax" | "linear",
      heads: v.attentionHeads,
      headDim: v.attentionHeadDim || v.dModel / v.attentionHeads,
    };
    const all = Array.from({ length: v.layers }, (_, i) => i);
    const L = v.trainLen, lengths = [L, v.genFactor * L];
    return v.arms.flatMap((arm) =>
      v.inits.flatMap((init) =>
        v.lrs.flatMap((lr) =>
          seedsOf(v).map((seed) => ({
            labels: { mixer: v.mixer, arm, init },
            spec: {
              model: {
                vocab: copyVocab(v.vocab).size,
                dModel: v.dModel,
                normEps: 1e-5,
                layers: all.map((i) =>
                  structuredClone(arm === "hybrid" && i === v.attentionLayer ? attention : mamba)
                ),
              },
              init: init === "mimetic" ? mimetic : { kind: "default" as const },
              task: {
                kind: "copy",
                variant: "copy",
                vocab: v.vocab,
                context: v.context,
                minLen: v.minTrainLen,
                maxLen: L,
              },
              train: trainSpecOf(v, lr),
              seed,
              eval: evalSpecOf(v, lengths, {
                curve: { steps: curveSteps(v.steps, v.curveEvery), lengths, samples: v.curveSamples },
                maps: { layers: v.maps === "all" ? all : [v.attentionLayer], length: v.mapLength || L },
              }),
            },
          }))
        )
      )
    );
  },
  async report(ctx) {
    const v = ctx.values, L = v.trainLen, gL = v.genFactor * L;
    const mixerName = v.mixer === "mamba1" ? "Mamba 1" : "Mamba 2";
    const armName = (arm: unknown) =>
      arm === "hybrid"
        ? `hybrid, ${v.attentionVariant} attention at layer ${v.attentionLayer + 1}`
        : `all ${mixerName}`;
    // A series per arm (and init, when there are several).
    const model = (arm: unknown, init: unknown) => `${armName(arm)}${v.inits.length > 1 ? `, ${init}` : ""}`;
    const lengthLabel = (len: unknown) => `${len} (${Number(len) / L}×)`;
    const by = ["arm", "init"];
    const finals = ctx.finalRows();
    // The best lr per arm and init by string accuracy after training, averaged over 1× and 2× and seeds.
    const isBest = bestBy(finals, by, "lr", "exact_acc");
    const curves = ctx.curveRows().filter(isBest);
    // Longer length first, so the line chart gives it the solid line (the paper's look: dotted = training length).
    const curve = aggregate(curves, [...by, "lr", "eval_len", "step"], "exact_acc")
      .map((r): CsvRow => ({ ...r, model: model(r.arm, r.init), length: lengthLabel(r.eval_len) }))
      .sort((a, b) => Number(b.eval_len) - Number(a.eval_len));
    ctx.table(
      "curve_accuracy",
      curve,
      "String accuracy per step and length (mean, s.e. over seeds; best lr)",
    );

    const reach = firstReaching(
      ctx.curveRows(),
      ["run_id", ...by, "lr", "seed", "eval_len"],
      "step",
      "exact_acc",
      v.threshold,
    );
    const perRun = reach.map(({ first, last, ...r }): CsvRow => ({
      ...r,
      first_step: first,
      curve_last_acc: last,
      final_acc: finals.find((f) => f.run_id === r.run_id && f.eval_len === r.eval_len)?.exact_acc ?? null,
    }));
    const acc = aggregate(perRun, [...by, "lr", "eval_len"], "final_acc");
    const first = aggregate(perRun, [...by, "lr", "eval_len"], "first_step");
    const summary = acc.map((a, i) => ({
      best_lr: isBest(a),
      arm: a.arm,
      init: a.init,
      lr: a.lr,
      eval_len: a.eval_len,
      length: lengthLabel(a.eval_len),
      final_acc_mean: a.mean,
      final_acc_stderr: a.stderr,
      seeds: a.n,
      threshold: v.threshold,
      first_step_mean: first[i].mean,
      first_step_stderr: first[i].stderr,
      seeds_reaching: first[i].n,
    }));
    ctx.table(
      "summary",
      summary,
      `String accuracy after ${v.steps} steps (${v.evalSamples} rows a length) and the first curve step with ` +
        `accuracy ≥ ${v.threshold} (mean, s.e. over the seeds that reach it), per arm, init and lr ` +
        "(best_lr: the lr the charts show)",
    );
    ctx.table(
      "run_stats",
      perRun,
      `Every run: first curve step with string accuracy ≥ ${v.threshold} (empty: never), the ` +
        "curve's last accuracy and the final accuracy",
    );
    const f3 = (x: unknown) => (typeof x === "number" ? x.toFixed(3) : "–");
    for (const s of summary.filter((s) => s.best_lr)) {
      ctx.note(
        `${
          model(s.arm, s.init)
        } (lr ${s.lr}): string accuracy at length ${s.eval_len} after ${v.steps} steps ` +
          `${f3(s.final_acc_mean)} ± ${f3(s.final_acc_stderr)} (s.e. over ${s.seeds} seeds); ` +
          `${s.seeds_reaching} of ${s.seeds} seeds reached ${v.threshold} on the curve.`,
      );
    }

    await ctx.chart(
      "fig2_accuracy",
      lineWithBands({
        data: curve,
        x: "step",
        y: "mean",
        yLow: "low",
        yHigh: "high",
        color: "model",
        strokeDash: "length",
        title: `Hybrid ${mixerName} with one attention layer learning to copy`,
        subtitle:
          `${v.layers} layers (attention: layer ${v.attentionLayer + 1}), D ${v.dModel}, N ${v.stateSize}; ` +
          `${ctx.scale} scale; mean ± s.e. over seeds, best lr`,
        xTitle: "training step",
        yTitle: "string accuracy",
        colorTitle: "model",
        strokeDashTitle: "string length",
        yDomain: [0, 1],
        points: false,
      }),
      `String accuracy during training at the training length ${L} (dashed) and at ${gL} (solid); ` +
        `${v.curveSamples} rows a point. Bands: ± s.e. over seeds.`,
    );

    const best = (r: RunResult) => isBest({ arm: r.labels.arm, init: r.labels.init, lr: r.spec.train.lr });
    const loss = aggregate(
      ctx.results.filter(best).flatMap((r) =>
        r.history.map(([step, l]) => ({ model: model(r.labels.arm, r.labels.init), step, loss: l }))
      ),
      ["model", "step"],
      "loss",
    ).filter((r) => r.mean !== null);
    if (loss.length > 0) {
      await ctx.chart(
        "fig2_loss",
        lineChart({
          data: loss,
          x: "step",
          y: "mean",
          color: "model",
          yScale: "log",
          title: "Training loss",
          subtitle: "mean over seeds, best lr",
          xTitle: "training step",
          yTitle: "cross-entropy (answer tokens)",
        }),
        "Training loss (mean over seeds) at the logged steps.",
      );
    }

    // One run per arm and init for the maps: the best lr's first seed (maps are not averaged over seeds).
    const mapRuns = v.arms.flatMap((arm) =>
      v.inits.map((init) =>
        ctx.results.filter((r) => r.labels.arm === arm && r.labels.init === init && best(r))
          .sort((a, b) => a.spec.seed - b.spec.seed)[0]
      )
    ).filter((r) => r !== undefined && r.maps.length > 0);
    if (mapRuns.length > 0) {
      const T = mapRuns[0].maps[0].T, mapLen = (T - 2) / 2;
      const kind = (r: RunResult, layer: number) =>
        r.spec.model.layers[layer].kind === "attention" ? `${v.attentionVariant} attention` : mixerName;
      await ctx.chart(
        "fig2_maps",
        heatmapGrid({
          panels: mapRuns.flatMap((r) =>
            r.maps.map((m) => ({
              title: `${r.labels.arm === "hybrid" ? "hybrid" : `all ${mixerName}`}${
                v.inits.length > 1 ? `, ${r.labels.init}` : ""
              }: layer ${m.layer + 1} (${kind(r, m.layer)})`,
              matrix: causalRows(m.map, m.T),
            }))
          ),
          columns: v.maps === "all" ? v.layers : mapRuns.length,
          title: "Attention maps after training",
          subtitle: `one copy example "$ s | s" of length ${mapLen}; seed ${mapRuns[0].spec.seed}; ` +
            `dashed: the delimiter |`,
          xTitle: "key position j",
          yTitle: "query position i",
          colorTitle: "value",
          colorScale: "independent",
          guides: [{ at: mapLen + 1, label: "delimiter |" }],
        }),
        `Maps after training for the best lr's first seed (layers counted from 1, as the paper does): the ` +
          `attention layer's head-averaged softmax weights, and for Mamba layers Eq. 8 averaged over channels; ` +
          `each panel has its own colour scale. Rows: query positions i of "$ s | s", columns: key positions ` +
          `j ≤ i; a look-behind shows as a line from the delimiter's row through the copy string's columns.`,
      );
    }
  },
}, TASKS);

if (import.meta.main) await study.main(Deno.args);
export default study;
