/**
 * Figure 3 of "Mimetic Initialization Helps State Space Models Learn to Recall": which of the four mimetic
 * components matter? All 16 on/off combinations of A ≈ 1, Δ ≈ 1, W_Cᵀ W_B ≈ I and the identity conv, for Mamba 1
 * and Mamba 2, trained to copy strings up to the training length (50) and evaluated at 50, 100 and 300.
 *
 * Mamba 2's conv runs over x, B and C; the paper does not say whether its identity conv covers all three or x
 * only, so each combination with the conv on runs once per reading (`--conv-scopes`). Mamba 1 convolves x only:
 * there the two readings are the same init and run once.
 *
 *   deno task fig3 [--scale smoke|quick|paper] [--out results/fig3] [flags...]   (--help lists them all)
 * @module
 */
import {
  aggregate,
  bestBy,
  copyVocab,
  type CsvRow,
  defineStudy,
  evalSpecOf,
  type GridRun,
  type InitSpec,
  MAMBA1_DEFAULTS,
  MAMBA2_DEFAULTS,
  plural,
  pointsWithErrorBars,
  seedsOf,
  TASKS,
  TRAIN_FLAGS,
  trainSpecOf,
} from "../mod.ts";

/** The four components, in the order of the paper and of the combination labels. */
const COMPONENTS = ["A", "delta", "qk", "conv"] as const;
type Component = (typeof COMPONENTS)[number];
type Combo = Record<Component, boolean>;

const SHORT: Record<Component, string> = { A: "A", delta: "Δ", qk: "qk", conv: "conv" };
const LONG: Record<Component, string> = {
  A: "A ≈ 1",
  delta: "Δ ≈ 1",
  qk: "W_Cᵀ W_B ≈ I",
  conv: "identity conv",
};

/** The 16 combinations in binary order with A as the highest bit: none, conv, qk, qk+conv, Δ, …, A+Δ+qk+conv. */
const COMBOS: Combo[] = Array.from({ length: 16 }, (_, i) => ({
  A: (i & 8) !== 0,
  delta: (i & 4) !== 0,
  qk: (i & 2) !== 0,
  conv: (i & 1) !== 0,
}));

/** "A+Δ+qk+conv", …, "none". */
const comboLabel = (c: Combo) => COMPONENTS.filter((k) => c[k]).map((k) => SHORT[k]).join("+") || "none";

/** conv_scope label of a run: which of Mamba 2's convolutions the identity conv covers ("n/a" without it). */
const NO_CONV = "n/a";
const MIXER_NAMES: Record<string, string> = { mamba1: "Mamba 1", mamba2: "Mamba 2" };
const READING_NAMES: Record<string, string> = {
  xBC: "identity conv over x, B and C",
  x: "identity conv over x only",
};

/** The conv readings of a mixer: Mamba 1 convolves x only; Mamba 2 has the chosen ones. */
const readingsOf = (mixer: string, scopes: readonly string[]) => (mixer === "mamba1" ? ["x"] : scopes);

/** A panel of the charts: a mixer under one reading of the identity conv (Mamba 1 has one). */
const panelName = (mixer: string, reading: string) =>
  mixer === "mamba1" ? MIXER_NAMES.mamba1 : `${MIXER_NAMES[mixer]}\n${READING_NAMES[reading]}`;

/** Identity conv off in grey, on in blue, in both charts. */
const CONV_COLORS: Record<string, string> = { off: "#555555", on: "#0072B2" };

const study = defineStudy({
  name: "fig3",
  title: "Figure 3: the four mimetic components, all 16 combinations (Mamba 1 and 2, copying)",
  summary: "copying with all 16 on/off combinations of the mimetic components, Mamba 1 and 2",
  description:
    "Mamba 1 and Mamba 2 trained to copy strings up to the training length, each with one of the 16 on/off " +
    "combinations of the four mimetic components (A ≈ 1 through A = −exp(−c·A_log), Δ ≈ 1 through W_Δ = 0 and " +
    "b_Δ = softplus⁻¹(1), W_Cᵀ W_B ≈ I through W_C := (W_C' + W_B)/2, identity conv), on every layer; string " +
    "accuracy (teacher-forced greedy exact match) at the training length and beyond.\n\n" +
    "The paper's claim (24 layers, width 1024, 10 seeds, c = 8): for Mamba 1 only A ≈ 1 has a significant effect, " +
    "Δ ≈ 1 none, W_Cᵀ W_B ≈ I a tiny one, and the identity conv is somewhat harmful; for Mamba 2 A ≈ 1 helps, " +
    "W_Cᵀ W_B ≈ I helps even without it and the two interact, and adding the identity conv is much better still " +
    "(100% accuracy in many cases), most visibly at length 300.\n\n" +
    "With all four off a run uses the default init, which is what a mimetic init without components computes. " +
    "Mamba 2's conv runs over x, B and C; the " +
    "paper does not say whether its identity conv covers all three or x only, so each combination with the " +
    "conv on runs once per reading (--conv-scopes). Mamba 1 convolves x only, so for it the readings coincide.\n\n" +
    "Reported per init: the lr with the highest string accuracy averaged over seeds and evaluated lengths. The " +
    "main effect of a component: per seed, the mean accuracy of the 8 combinations with it on minus the 8 " +
    "without it (under one conv reading), then mean ± s.e. over seeds.",
  flags: {
    mixers: {
      type: "strings",
      choices: ["mamba1", "mamba2"],
      default: ["mamba1", "mamba2"],
      help: "mixers (every layer of a model has the same mixer)",
    },
    convScopes: {
      type: "strings",
      choices: ["xBC", "x"],
      default: ["xBC", "x"],
      help: "Mamba 2 readings of the identity conv: over x, B and C (xBC) or x only (x); one run of each " +
        "conv-on combination per reading",
    },
    c: { type: "number", min: 0, default: 8, help: "mimetic A: A = −exp(−c·A_log)" },
    dModel: { type: "number", integer: true, min: 1, help: "model width D" },
    layers: { type: "number", integer: true, min: 1, help: "layers" },
    expand: { type: "number", integer: true, min: 1, default: 2, help: "inner width E = expand·D" },
    mamba1State: { type: "number", integer: true, min: 1, default: 32, help: "Mamba 1 state size N" },
    mamba2State: { type: "number", integer: true, min: 1, default: 128, help: "Mamba 2 state size N" },
    headDim: { type: "number", integer: true, min: 1, default: 64, help: "Mamba 2 head dim P" },
    vocab: { type: "number", integer: true, min: 2, default: 26, help: "copy alphabet size" },
    context: { type: "number", integer: true, min: 4, default: 220, help: "training context length T" },
    minTrainLen: { type: "number", integer: true, min: 1, default: 5, help: "shortest training string" },
    trainLen: {
      type: "number",
      integer: true,
      min: 1,
      default: 50,
      help: "longest training string (the 'training length')",
    },
    evalLengths: {
      type: "numbers",
      integer: true,
      min: 1,
      default: [50, 100, 300],
      help: "string lengths to evaluate",
    },
    ...TRAIN_FLAGS,
  },
  scales: {
    smoke: {
      seeds: 1,
      lrs: [3e-3],
      steps: 20,
      batch: 2,
      warmup: 5,
      dModel: 16,
      layers: 1,
      mamba1State: 4,
      mamba2State: 8,
      headDim: 8,
      vocab: 6,
      context: 16,
      minTrainLen: 2,
      trainLen: 6,
      evalLengths: [6, 12, 36],
      evalSamples: 8,
      logEvery: 10,
      checkpointEvery: 0,
    },
    quick: {
      // 2 layers of width 128 instead of 24 of 1024, 800 steps, 2 seeds, one lr (3e-3: fig7's quick calibration
      // for short training); 24 Mamba 2 inits × 2 seeds train as one group of 48 runs, 16 Mamba 1 × 2 as one of 32.
      seeds: 2,
      lrs: [3e-3],
      steps: 800,
      batch: 32,
      dModel: 128,
      layers: 2,
      evalSamples: 256,
      logEvery: 100,
      checkpointEvery: 500,
    },
    paper: {
      seeds: 10,
      lrs: [1e-3, 5e-4, 1e-4],
      steps: 5000,
      batch: 64,
      dModel: 1024,
      layers: 24,
      evalSamples: 256,
      logEvery: 100,
      checkpointEvery: 500,
    },
  },
  plan(v) {
    const runs: GridRun[] = [];
    for (const mixer of v.mixers) {
      const layer = mixer === "mamba1"
        ? { ...MAMBA1_DEFAULTS, dState: v.mamba1State, expand: v.expand }
        : { ...MAMBA2_DEFAULTS, dState: v.mamba2State, headDim: v.headDim, expand: v.expand };
      for (const combo of COMBOS) {
        // Runs that would be the same init run once: without the conv the scope changes nothing, and Mamba 1
        // convolves x only.
        const scopes = !combo.conv ? [NO_CONV] : mixer === "mamba1" ? ["x"] : v.convScopes;
        for (const scope of scopes) {
          const init: InitSpec = COMPONENTS.some((k) => combo[k])
            ? {
              kind: "mimetic",
              ...combo,
              c: v.c,
              convScope: scope === "x" ? "x" : "xBC",
              layers: "all",
            }
            : { kind: "default" };
          for (const lr of v.lrs) {
            for (const seed of seedsOf(v)) {
              runs.push({
                labels: { mixer, combo: comboLabel(combo), conv_scope: scope, ...combo },
                spec: {
                  model: {
                    vocab: copyVocab(v.vocab).size,
                    dModel: v.dModel,
                    normEps: 1e-5,
                    layers: Array.from({ length: v.layers }, () => ({ ...layer })),
                  },
                  init,
                  task: {
                    kind: "copy",
                    variant: "copy",
                    vocab: v.vocab,
                    context: v.context,
                    minLen: v.minTrainLen,
                    maxLen: v.trainLen,
                  },
                  train: trainSpecOf(v, lr),
                  seed,
                  eval: evalSpecOf(v, v.evalLengths),
                },
              });
            }
          }
        }
      }
    }
    return runs;
  },
  async report(ctx) {
    const v = ctx.values;
    const rows = ctx.finalRows();
    const variant = ["mixer", "combo", "conv_scope"];
    // The best lr per init, by string accuracy averaged over the seeds and the evaluated lengths.
    const best = rows.filter(bestBy(rows, variant, "lr", "exact_acc"));
    const keys = [...variant, ...COMPONENTS, "lr", "eval_len"];
    const chars = aggregate(best, keys, "token_acc");
    const summary: CsvRow[] = aggregate(best, keys, "exact_acc").map((g, i) => ({
      ...g,
      char_mean: chars[i].mean,
      char_stderr: chars[i].stderr,
    }));
    ctx.table(
      "summary_accuracy",
      summary,
      "String accuracy (mean, std, s.e., n over seeds) and character accuracy per mixer, combination, conv " +
        "reading and length; best lr per init",
    );
    // One panel row per mixer and reading, each with all 16 combinations: the 8 without the conv are shared by
    // Mamba 2's two readings and shown in both.
    const panels = v.mixers.flatMap((mixer) =>
      readingsOf(mixer, v.convScopes).flatMap((reading) =>
        summary
          .filter((g) => g.mixer === mixer && (g.conv_scope === NO_CONV || g.conv_scope === reading))
          .map((g) => ({ ...g, panel: panelName(mixer, reading), identity_conv: g.conv ? "on" : "off" }))
      )
    );
    const seedsNote = plural(v.seeds, "seed");
    await ctx.chart(
      "fig3",
      pointsWithErrorBars({
        data: panels,
        x: "mean",
        xLow: "low",
        xHigh: "high",
        y: "combo",
        yOrder: COMBOS.map(comboLabel),
        color: "identity_conv",
        colors: CONV_COLORS,
        shape: "identity_conv",
        row: "panel",
        column: "eval_len",
        title: "Which mimetic components matter for copying?",
        subtitle: `${plural(v.layers, "layer")}, width ${v.dModel}, trained on lengths ≤ ${v.trainLen}, ` +
          `${ctx.scale} scale; mean ± s.e. over ${seedsNote}, best lr`,
        xTitle: "string accuracy",
        yTitle: "mimetic components on",
        colorTitle: "identity conv",
        rowTitle: "",
        columnTitle: "evaluated string length",
        xDomain: [0, 1],
      }),
      "String accuracy of each of the 16 combinations of A ≈ 1, Δ ≈ 1, W_Cᵀ W_B ≈ I (qk) and the identity conv " +
        "(conv); rows: mixer and, for Mamba 2, which convolutions the identity conv covers (the 8 combinations " +
        "without it appear under both); columns: evaluated length. Bars: ± s.e. over seeds.",
    );

    // Main effect of each component under each reading: per seed, the mean accuracy of the 8 combinations with
    // the component on minus that of the 8 with it off; then mean ± s.e. over seeds.
    const effects: CsvRow[] = [];
    for (const mixer of v.mixers) {
      for (const reading of readingsOf(mixer, v.convScopes)) {
        const of = best.filter((r) =>
          r.mixer === mixer && (r.conv_scope === NO_CONV || r.conv_scope === reading)
        );
        for (const len of v.evalLengths) {
          for (const seed of seedsOf(v)) {
            const cell = of.filter((r) => r.eval_len === len && r.seed === seed);
            if (new Set(cell.map((r) => r.combo)).size !== COMBOS.length) continue; // not all 16 done yet
            for (const k of COMPONENTS) {
              const mean = (on: boolean) => {
                const xs = cell.filter((r) => r[k] === on).map((r) => r.exact_acc as number);
                return xs.reduce((a, b) => a + b, 0) / xs.length;
              };
              effects.push({
                mixer,
                reading,
                eval_len: len,
                component: LONG[k],
                seed,
                effect: mean(true) - mean(false),
              });
            }
          }
        }
      }
    }
    if (effects.length === 0) return;
    const effectSummary = aggregate(effects, ["mixer", "reading", "eval_len", "component"], "effect");
    ctx.table(
      "summary_effects",
      effectSummary,
      "Main effect of each component on string accuracy: mean over the 8 combinations with it on minus the 8 " +
        "without it, per seed; mean, std, s.e., n over seeds; per mixer, conv reading and length",
    );
    await ctx.chart(
      "fig3_effects",
      pointsWithErrorBars({
        data: effectSummary.map((g) => ({ ...g, panel: panelName(g.mixer as string, g.reading as string) })),
        x: "mean",
        xLow: "low",
        xHigh: "high",
        y: "component",
        yOrder: COMPONENTS.map((k) => LONG[k]),
        row: "eval_len",
        column: "panel",
        title: "Main effect of each mimetic component",
        subtitle:
          `accuracy with the component on minus off, averaged over the other components' 8 combinations; ` +
          `± s.e. over ${seedsNote}`,
        xTitle: "change in string accuracy",
        yTitle: "",
        rowTitle: "evaluated string length",
        columnTitle: "",
        xDomain: [-1, 1],
        xRule: 0,
      }),
      "Main effect of each component on string accuracy (mean over the 8 combinations with it on minus the 8 " +
        "without it); columns: mixer and conv reading; rows: evaluated length. Bars: ± s.e. over seeds.",
    );
  },
}, TASKS);

if (import.meta.main) await study.main(Deno.args);
export default study;
