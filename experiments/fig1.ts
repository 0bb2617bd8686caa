/**
 * Figure 1 of "Mimetic Initialization Helps State Space Models Learn to Recall": a small 4-layer Mamba (Mamba 1,
 * N 32) learning to copy strings of length ≤ 50, default against mimetic init. (a, b) string accuracy against
 * training step at 1× and 2× the training length, evaluated during training; the attention map (Eq. 8, averaged
 * over channels) of every layer after training.
 *
 *   deno task fig1 [--scale smoke|quick|paper] [--mixer mamba1|mamba2] [--out results/fig1] [flags...]
 * @module
 */
import {
  aggregate,
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
  seedsOf,
  TASKS,
  TRAIN_FLAGS,
  trainSpecOf,
} from "../mod.ts";

/** A causal map's rows, keys j > i (never attended) left out of the heatmap (NaN): they are not zeros to colour. */
const causalRows = (map: readonly number[], T: number) =>
  Array.from({ length: T }, (_, i) => Array.from({ length: T }, (_, j) => (j <= i ? map[i * T + j] : NaN)));

const study = defineStudy({
  name: "fig1",
  title: "Figure 1: a small Mamba learning to copy, default vs mimetic init",
  summary: "4-layer Mamba copying: accuracy vs step at 1× and 2× length, and every layer's attention map",
  description:
    "A small Mamba (4 layers; Mamba 1 with state size 32 unless --mixer mamba2) trained to copy strings of " +
    "length up to 50 (context 220, Jelassi et al.'s pipeline), default against mimetic initialisation (Mamba 1: " +
    "A ≈ 1, Δ ≈ 1, W_Cᵀ W_B ≈ I; Mamba 2: also the identity conv). String accuracy (teacher-forced greedy " +
    "exact match) is evaluated during training at the training length and at twice it; after training, the " +
    "attention map of every layer (Eq. 8, averaged over channels) on one copy example.\n\n" +
    "The paper's claim: with default init the model plateaus and its layers look only into the recent past; " +
    "with mimetic init it copies strings of twice the training length with reasonable accuracy within a few " +
    "hundred steps, and a layer's map shows the look-behind structure of self-attention.",
  flags: {
    mixer: { type: "string", choices: ["mamba1", "mamba2"], default: "mamba1", help: "Mamba version" },
    inits: {
      type: "strings",
      choices: ["default", "mimetic"],
      default: ["default", "mimetic"],
      help: "initialisations",
    },
    mimetic: {
      type: "strings",
      choices: ["paper", ...MIMETIC_COMPONENTS],
      default: ["paper"],
      help: "mimetic components; paper: Mamba 1 A,delta,qk, Mamba 2 all four",
    },
    c: { type: "number", min: 0, default: 8, help: "mimetic A: A = −exp(−c·A_log)" },
    convScope: {
      type: "string",
      choices: ["xBC", "x"],
      default: "xBC",
      help: "Mamba 2 identity conv over x, B and C, or x only",
    },
    layers: { type: "number", integer: true, min: 1, help: "Mamba layers" },
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
      layers: 2,
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
      // The paper's lr grid tops at 1e-3 for 5000 steps; at 1000 steps a higher lr may be needed (fig7's
      // calibration found 3e-3 best at 1500 steps for Mamba 2), so quick tries both and reports the better.
      layers: 4,
      dModel: 256,
      headDim: 64,
      context: 220,
      minTrainLen: 5,
      trainLen: 50,
      steps: 1000,
      batch: 32,
      lrs: [1e-3, 3e-3],
      seeds: 2,
      curveEvery: 50,
      curveSamples: 128,
      evalSamples: 256,
      logEvery: 50,
      checkpointEvery: 500,
    },
    paper: {
      // The paper says only "small 4-layer Mamba"; width 1024 as Jelassi et al. (and the paper's Fig. 3).
      layers: 4,
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
    const kind = v.mixer as "mamba1" | "mamba2";
    const mimetic: InitSpec = mimeticInit(v.mimetic, kind, {
      c: v.c,
      convScope: v.convScope as "xBC" | "x",
      flag: "--mimetic",
    });
    const mixer: MixerConfig = mambaMixer(kind, {
      dState: v.stateSize,
      headDim: v.headDim,
      expand: v.expand,
    });
    const L = v.trainLen, lengths = [L, v.genFactor * L];
    const layers = Array.from({ length: v.layers }, (_, i) => i);
    return v.inits.flatMap((init) =>
      v.lrs.flatMap((lr) =>
        seedsOf(v).map((seed) => ({
          labels: { mixer: v.mixer, init },
          spec: {
            model: {
              vocab: copyVocab(v.vocab).size,
              dModel: v.dModel,
              normEps: 1e-5,
              layers: layers.map(() => structuredClone(mixer)),
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
              maps: { layers, length: v.mapLength || L },
            }),
          },
        }))
      )
    );
  },
  async report(ctx) {
    const v = ctx.values, L = v.trainLen, gL = v.genFactor * L;
    const mixerName = v.mixer === "mamba1" ? "Mamba 1" : "Mamba 2";
    const lengthLabel = (len: unknown) => `${len} (${Number(len) / L}×)`;
    // The best lr per init by string accuracy after training, averaged over 1× and 2× and seeds (ties: the
    // first lr).
    const finals = ctx.finalRows();
    const isBest = bestBy(finals, ["init"], "lr", "exact_acc");
    const curves = ctx.curveRows().filter(isBest);
    // Longer length first, so the line chart gives it the solid line (the paper's look: dashed = training length).
    const curve = aggregate(curves, ["init", "lr", "eval_len", "step"], "exact_acc")
      .map((r): CsvRow => ({ ...r, length: lengthLabel(r.eval_len) }))
      .sort((a, b) => Number(b.eval_len) - Number(a.eval_len));
    ctx.table(
      "curve_accuracy",
      curve,
      "String accuracy per step and length (mean, s.e. over seeds; best lr)",
    );

    const reach = firstReaching(
      ctx.curveRows(),
      ["run_id", "init", "lr", "seed", "eval_len"],
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
    const acc = aggregate(perRun, ["init", "lr", "eval_len"], "final_acc");
    const first = aggregate(perRun, ["init", "lr", "eval_len"], "first_step");
    const summary = acc.map((a, i) => ({
      best_lr: isBest(a),
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
        `accuracy ≥ ${v.threshold} (mean, s.e. over the seeds that reach it), per init and lr ` +
        "(best_lr: the lr the charts show)",
    );
    ctx.table(
      "run_stats",
      perRun,
      `Every run: first curve step with string accuracy ≥ ${v.threshold} (empty: never), the ` +
        "curve's last accuracy and the final accuracy",
    );
    const f3 = (x: unknown) => (typeof x === "number" ? x.toFixed(3) : "–");
    for (const s of summary.filter((s) => s.best_lr && s.eval_len === gL)) {
      ctx.note(
        `${s.init} (lr ${s.lr}): string accuracy at length ${gL} after ${v.steps} steps ` +
          `${f3(s.final_acc_mean)} ± ${f3(s.final_acc_stderr)} (s.e. over ${s.seeds} seeds); ` +
          `${s.seeds_reaching} of ${s.seeds} seeds reached ${v.threshold} on the curve.`,
      );
    }

    await ctx.chart(
      "fig1_accuracy",
      lineWithBands({
        data: curve,
        x: "step",
        y: "mean",
        yLow: "low",
        yHigh: "high",
        color: "init",
        strokeDash: "length",
        title: `${mixerName} learning to copy: string accuracy vs training step`,
        subtitle:
          `${v.layers} layers, D ${v.dModel}, N ${v.stateSize}; ${ctx.scale} scale; mean ± s.e. over ` +
          `seeds, best lr per init`,
        xTitle: "training step",
        yTitle: "string accuracy",
        colorTitle: "init",
        strokeDashTitle: "string length",
        yDomain: [0, 1],
        points: false,
      }),
      `String accuracy during training at the training length ${L} (dashed) and at ${gL} (solid); ` +
        `${v.curveSamples} rows a point. Bands: ± s.e. over seeds.`,
    );

    const loss = aggregate(
      ctx.results.filter((r) => isBest({ init: r.labels.init, lr: r.spec.train.lr }))
        .flatMap((r) => r.history.map(([step, l]) => ({ init: r.labels.init, step, loss: l }))),
      ["init", "step"],
      "loss",
    ).filter((r) => r.mean !== null);
    if (loss.length > 0) {
      await ctx.chart(
        "fig1_loss",
        lineChart({
          data: loss,
          x: "step",
          y: "mean",
          color: "init",
          yScale: "log",
          title: "Training loss",
          subtitle: "mean over seeds, best lr per init",
          xTitle: "training step",
          yTitle: "cross-entropy (answer tokens)",
        }),
        "Training loss (mean over seeds) at the logged steps.",
      );
    }

    // One run per init for the maps: the best lr's first seed (maps are not averaged over seeds: each seed
    // may put its structure at other positions).
    const mapRuns = v.inits.map((init) =>
      ctx.results.filter((r) => r.labels.init === init && isBest({ init, lr: r.spec.train.lr }))
        .sort((a, b) => a.spec.seed - b.spec.seed)[0]
    ).filter((r) => r !== undefined && r.maps.length > 0);
    if (mapRuns.length > 0) {
      const T = mapRuns[0].maps[0].T, mapLen = (T - 2) / 2;
      await ctx.chart(
        "fig1_maps",
        heatmapGrid({
          panels: mapRuns.flatMap((r) =>
            r.maps.map((m) => ({
              title: `${r.labels.init}, layer ${m.layer + 1}`,
              matrix: causalRows(m.map, m.T),
            }))
          ),
          columns: v.layers,
          title: `${mixerName} attention maps after training (Eq. 8, averaged over channels)`,
          subtitle: `one copy example "$ s | s" of length ${mapLen}; seed ${mapRuns[0].spec.seed}; ` +
            `dashed: the delimiter |`,
          xTitle: "key position j",
          yTitle: "query position i",
          colorTitle: "M",
          colorScale: "independent",
          guides: [{ at: mapLen + 1, label: "delimiter |" }],
        }),
        `Attention map M (Eq. 8, averaged over channels) of every layer (counted from 1, as the paper does) after ` +
          `training, for the best lr's first seed of each init; each panel has its own colour scale. Rows: ` +
          `query positions i of "$ s | s", columns: key positions j ≤ i; the copy starts after the delimiter.`,
      );
    }
  },
}, TASKS);

if (import.meta.main) await study.main(Deno.args);
export default study;
