/**
 * Figure 8 of "Mimetic Initialization Helps State Space Models Learn to Recall": mimetic against default init
 * over the model's size, width D × depth (layers), for Mamba 1 and Mamba 2, on copying and multi-query
 * associative recall (MQAR); accuracy at 1×, 2× and 4× the training length.
 *
 * MQAR lengths count key–value pairs by default (`--mqar-unit pairs`, as fig4): "length 25" is 25 pairs to recall
 * in a sequence of 25 · tokensPerPair tokens, as a copy length counts the tokens to recall.
 *
 *   deno task fig8 [--scale smoke|quick|paper] [--out results/fig8] [flags...]   (--help lists them all)
 * @module
 */
import {
  accuracyColumn,
  aggregate,
  bestBy,
  copyVocab,
  type CsvRow,
  defineStudy,
  evalSpecOf,
  type GridRun,
  type InitSpec,
  lengthAt,
  lineWithBands,
  MAMBA1_DEFAULTS,
  MAMBA2_DEFAULTS,
  MIMETIC_ALL,
  type MixerConfig,
  plural,
  type RunSpec,
  seedsOf,
  TASKS,
  times,
  TRAIN_FLAGS,
  trainSpecOf,
  UsageError,
} from "../mod.ts";

const MIXER_NAMES: Record<string, string> = { mamba1: "Mamba 1", mamba2: "Mamba 2" };
const TASK_NAMES: Record<string, string> = { copy: "copy", mqar: "MQAR" };

/** The accuracy a task reports (copy: string accuracy; MQAR: accuracy per query), from its table entry. */
const metricOf = (task: string) => accuracyColumn(TASKS[task as keyof typeof TASKS]);

const study = defineStudy({
  name: "fig8",
  title: "Figure 8: mimetic init and model size (width × depth; Mamba 1 and 2; copy and MQAR)",
  summary: "mimetic vs default over model width × depth, Mamba 1 and 2, copy and MQAR",
  description:
    "Mamba 1 (N 32) and Mamba 2 (N 128, head dim 64) language models of every width D and depth (layers) of the " +
    "grid, default against mimetic init (Mamba 1: A ≈ 1, Δ ≈ 1, W_Cᵀ W_B ≈ I, the paper's choice for it; " +
    "Mamba 2: those and the identity conv), trained on copying (strings of minTrainLen..trainLen letters) and on " +
    "multi-query associative recall (mqarLen key–value pairs); accuracy (copy: string accuracy, teacher-forced " +
    "greedy exact match; MQAR: accuracy per query) at 1×, 2× and 4× the training length.\n\n" +
    "The paper's claim: a mere two layers is enough, and deeper models improve generalisation beyond 2× the " +
    "length; with width 1024 Mamba 2 copies very well at many depths; for MQAR slightly deeper models are " +
    "better; in almost all cases mimetic init generalises better than default. The paper does not list its " +
    "widths, depths or training lengths; the scales choose them.\n\n" +
    "Reported per (mixer, task, D, depth, init): the lr with the highest accuracy averaged over seeds and " +
    "evaluated lengths; mean ± s.e. over seeds.",
  flags: {
    mixers: {
      type: "strings",
      choices: ["mamba1", "mamba2"],
      default: ["mamba1", "mamba2"],
      help: "mixers (every layer of a model has the same mixer)",
    },
    tasks: { type: "strings", choices: ["copy", "mqar"], default: ["copy", "mqar"], help: "tasks" },
    inits: {
      type: "strings",
      choices: ["default", "mimetic"],
      default: ["default", "mimetic"],
      help: "initialisations",
    },
    widths: { type: "numbers", integer: true, min: 1, help: "model widths D" },
    depths: { type: "numbers", integer: true, min: 1, help: "depths (layers per model)" },
    evalFactors: {
      type: "numbers",
      min: 0,
      default: [1, 2, 4],
      help: "evaluate at these multiples of the training length (rounded)",
    },
    c: { type: "number", min: 0, default: 8, help: "mimetic A: A = −exp(−c·A_log)" },
    expand: { type: "number", integer: true, min: 1, default: 2, help: "inner width E = expand·D" },
    mamba1State: { type: "number", integer: true, min: 1, default: 32, help: "Mamba 1 state size N" },
    mamba2State: { type: "number", integer: true, min: 1, default: 128, help: "Mamba 2 state size N" },
    headDim: { type: "number", integer: true, min: 1, default: 64, help: "Mamba 2 head dim P" },
    vocab: { type: "number", integer: true, min: 2, default: 26, help: "copy alphabet size" },
    context: {
      type: "number",
      integer: true,
      min: 4,
      default: 220,
      help: "copy training context T (raised to 2·trainLen+2 where the longest string does not fit)",
    },
    minTrainLen: { type: "number", integer: true, min: 1, default: 5, help: "shortest copy training string" },
    trainLen: {
      type: "number",
      integer: true,
      min: 1,
      help: "copy training length (the longest training string)",
    },
    mqarVocab: { type: "number", integer: true, min: 4, help: "MQAR vocabulary (keys and values)" },
    mqarLen: { type: "number", integer: true, min: 1, help: "MQAR training length (in --mqar-unit)" },
    tokensPerPair: {
      type: "number",
      integer: true,
      min: 4,
      default: 4,
      help: "MQAR tokens per key–value pair (4: pairs then queries, densely)",
    },
    alpha: { type: "number", default: 0.01, help: "MQAR query-gap law p(g) ∝ (g+1)^(α−1) (zoology)" },
    mqarUnit: {
      type: "string",
      choices: ["pairs", "tokens"],
      default: "pairs",
      help: "what an MQAR length counts: key–value pairs, or sequence tokens",
    },
    ...TRAIN_FLAGS,
  },
  scales: {
    smoke: {
      widths: [16, 32],
      depths: [1, 2],
      seeds: 1,
      lrs: [3e-3],
      steps: 12,
      warmup: 3,
      batch: 4,
      mamba1State: 4,
      mamba2State: 8,
      headDim: 8,
      context: 24,
      minTrainLen: 2,
      trainLen: 4,
      mqarVocab: 40,
      mqarLen: 4,
      evalSamples: 8,
      logEvery: 4,
      checkpointEvery: 0,
    },
    quick: {
      // 24 groups (2 mixers × 2 tasks × 2 widths × 3 depths) of 4 runs (2 inits × 2 seeds), 600 steps of batch
      // 32, one lr (3e-3: fig6/fig7's quick calibration for short training); copy strings ≤ 25 and MQAR of 25
      // pairs (T 100), short enough to be fitted in 600 steps (fig6 quick fitted L 25, not 50). 3 min 41 s on
      // one H200 (measured).
      widths: [128, 256],
      depths: [1, 2, 4],
      seeds: 2,
      lrs: [3e-3],
      steps: 600,
      batch: 32,
      trainLen: 25,
      mqarVocab: 1024,
      mqarLen: 25,
      evalSamples: 256,
      logEvery: 100,
      checkpointEvery: 500,
    },
    paper: {
      // The paper's lr sweep and 5 seeds (section 5); widths and depths as the issue reads Fig. 8; training
      // length 50 as its Figs. 3–7, MQAR vocabulary 8192 (zoology's default).
      widths: [256, 512, 1024],
      depths: [2, 4, 8, 16],
      seeds: 5,
      lrs: [1e-3, 5e-4, 1e-4],
      steps: 5000,
      batch: 64,
      trainLen: 50,
      mqarVocab: 8192,
      mqarLen: 50,
      evalSamples: 256,
      logEvery: 100,
      checkpointEvery: 500,
    },
  },
  plan(v) {
    if (v.evalFactors.some((f) => !(f > 0))) {
      throw new UsageError(`--eval-factors: expected positive multiples, got ${v.evalFactors.join(",")}`);
    }
    if (v.trainLen < v.minTrainLen) {
      throw new UsageError(
        `--train-len ${v.trainLen} is shorter than --min-train-len ${v.minTrainLen}: lower --min-train-len`,
      );
    }
    const lengthsOf = (task: string) => {
      const L = task === "mqar" ? v.mqarLen : v.trainLen;
      const lengths = v.evalFactors.map((f) => lengthAt(f, L));
      if (new Set(lengths).size !== lengths.length) {
        throw new UsageError(
          `--eval-factors ${v.evalFactors.join(",")} give the same length twice at ${task} length ${L}`,
        );
      }
      return lengths;
    };
    for (const task of v.tasks) lengthsOf(task);
    if (v.tasks.includes("mqar")) {
      const longest = Math.max(...lengthsOf("mqar"));
      const pairs = v.mqarUnit === "pairs" ? longest : Math.floor(longest / v.tokensPerPair);
      const keys = Math.floor(v.mqarVocab / 2) - 1;
      if (pairs > keys) {
        throw new UsageError(
          `--mqar-vocab ${v.mqarVocab} has ${keys} keys, but MQAR at ${
            Math.max(...v.evalFactors)
          }× the length needs ${pairs} distinct keys: raise --mqar-vocab to ${
            2 * (pairs + 1)
          } or lower --eval-factors`,
        );
      }
    }
    const runs: GridRun[] = [];
    for (const mixer of v.mixers) {
      const layer: MixerConfig = mixer === "mamba1"
        ? { ...MAMBA1_DEFAULTS, dState: v.mamba1State, expand: v.expand }
        : { ...MAMBA2_DEFAULTS, dState: v.mamba2State, headDim: v.headDim, expand: v.expand };
      for (const task of v.tasks) {
        const taskSpec: RunSpec["task"] = task === "mqar"
          ? {
            kind: "mqar",
            vocab: v.mqarVocab,
            length: v.mqarLen,
            tokensPerPair: v.tokensPerPair,
            alpha: v.alpha,
            lengthUnit: v.mqarUnit as "pairs" | "tokens",
          }
          : {
            kind: "copy",
            variant: "copy",
            vocab: v.vocab,
            context: Math.max(v.context, 2 * v.trainLen + 2),
            minLen: v.minTrainLen,
            maxLen: v.trainLen,
          };
        const vocab = task === "mqar" ? v.mqarVocab : copyVocab(v.vocab).size;
        const evalSpec = evalSpecOf(v, lengthsOf(task));
        for (const D of v.widths) {
          for (const depth of v.depths) {
            for (const init of v.inits) {
              const initSpec: InitSpec = init === "default"
                ? { kind: "default" }
                // The paper's Mamba 1 choice: no identity conv.
                : mixer === "mamba1"
                ? { ...MIMETIC_ALL, c: v.c, conv: false }
                : { ...MIMETIC_ALL, c: v.c };
              for (const lr of v.lrs) {
                for (const seed of seedsOf(v)) {
                  runs.push({
                    labels: { mixer, task, width: D, depth, init },
                    spec: {
                      model: {
                        vocab,
                        dModel: D,
                        normEps: 1e-5,
                        layers: Array.from({ length: depth }, () => ({ ...layer })),
                      },
                      init: initSpec,
                      task: taskSpec,
                      train: trainSpecOf(v, lr),
                      seed,
                      eval: evalSpec,
                    },
                  });
                }
              }
            }
          }
        }
      }
    }
    return runs;
  },
  async report(ctx) {
    const v = ctx.values;
    const trainLenOf = (task: string) => (task === "mqar" ? v.mqarLen : v.trainLen);
    const rows = ctx.finalRows().map((r) => {
      const task = r.task as string;
      return {
        ...r,
        metric: metricOf(task),
        acc: r[metricOf(task)],
        factor: v.evalFactors.find((f) => lengthAt(f, trainLenOf(task)) === r.eval_len) ?? null,
      };
    });
    const variant = ["mixer", "task", "width", "depth", "init"];
    // The best lr per (mixer, task, D, depth, init): highest accuracy averaged over seeds and evaluated lengths.
    const best = rows.filter(bestBy(rows, variant, "lr", "acc"));
    const summary = aggregate(best, [...variant, "metric", "lr", "factor", "eval_len"], "acc");
    ctx.table(
      "summary_accuracy",
      summary,
      "Accuracy (copy: string accuracy; MQAR: accuracy per query; mean, std, s.e., n over seeds) per mixer, " +
        "task, width, depth, init and evaluated multiple of the training length; best lr",
    );
    // Mimetic minus default per cell, with the s.e. of the difference (independent seeds).
    const at = new Map(
      summary.map((g) => [JSON.stringify([g.mixer, g.task, g.width, g.depth, g.factor, g.init]), g]),
    );
    const gains: CsvRow[] = [];
    for (const g of summary) {
      if (g.init !== "mimetic") continue;
      const d = at.get(JSON.stringify([g.mixer, g.task, g.width, g.depth, g.factor, "default"]));
      if (!d || typeof d.mean !== "number" || typeof g.mean !== "number") continue;
      const se = Math.sqrt((g.stderr as number) ** 2 + (d.stderr as number) ** 2);
      gains.push({
        mixer: g.mixer,
        task: g.task,
        width: g.width,
        depth: g.depth,
        factor: g.factor,
        eval_len: g.eval_len,
        default_mean: d.mean,
        mimetic_mean: g.mean,
        gain: g.mean - d.mean,
        gain_stderr: se,
      });
    }
    if (gains.length > 0) {
      ctx.table(
        "summary_gain",
        gains,
        "Mimetic minus default accuracy per mixer, task, width, depth and multiple of the training length " +
          "(s.e. of the difference from the two inits' s.e. over seeds); best lr of each",
      );
    }
    // One chart per evaluated multiple (the longest first): accuracy against depth, a line per init; panels:
    // mixer × task (rows) and width (columns).
    const panel = (g: CsvRow) =>
      `${MIXER_NAMES[g.mixer as string]}, ${TASK_NAMES[g.task as string]}, D ${g.width}`;
    const order = (g: CsvRow) => [
      v.mixers.indexOf(g.mixer as string),
      v.tasks.indexOf(g.task as string),
      g.width as number,
    ];
    const panels = [...summary].sort((a, b) => {
      const [x, y] = [order(a), order(b)];
      return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
    }).map((g): CsvRow => ({ ...g, panel: panel(g) }));
    const lens = `copy strings ≤ ${v.trainLen}, MQAR ${v.mqarLen} ${v.mqarUnit}`;
    for (const f of [...v.evalFactors].sort((a, b) => b - a)) {
      const data = panels.filter((g) => g.factor === f);
      if (data.length === 0) continue;
      await ctx.chart(
        `fig8_${String(f).replace(".", "_")}x`,
        lineWithBands({
          data,
          x: "depth",
          y: "mean",
          yLow: "low",
          yHigh: "high",
          color: "init",
          facet: "panel",
          title: `Accuracy at ${times(f)} the training length vs depth`,
          subtitle: `${lens}; ${ctx.scale} scale; mean ± s.e. over ${plural(v.seeds, "seed")}, best lr`,
          xTitle: "layers (log scale)",
          yTitle: `accuracy at ${times(f)} L`,
          xScale: "log",
          yDomain: [0, 1],
          colorTitle: "init",
          facetTitle: "",
          columns: v.widths.length,
        }),
        `Accuracy (copy: string accuracy; MQAR: per query) at ${
          times(f)
        } the training length against depth; ` +
          "panels: mixer and task (rows) and width D (columns); lines: init. Bands: ± s.e. over seeds.",
      );
    }
    // The claims, in numbers: where mimetic beats default; which depth is best.
    for (const f of v.evalFactors) {
      const cells = gains.filter((g) => g.factor === f);
      if (cells.length === 0) continue;
      const above = cells.filter((g) => (g.gain as number) > 0).length;
      const below = cells.filter((g) => (g.gain as number) < 0).length;
      // With one seed there is no standard error to weigh the differences by.
      const clear = v.seeds > 1
        ? `; by more than 2 s.e. above in ${
          cells.filter((g) => (g.gain as number) > 2 * (g.gain_stderr as number)).length
        }, below in ${cells.filter((g) => -(g.gain as number) > 2 * (g.gain_stderr as number)).length}`
        : " (one seed: no s.e.)";
      ctx.note(
        `At ${times(f)} the training length mimetic is above default in ${above} of ${cells.length} ` +
          `(mixer, task, width, depth) cells and below in ${below}${clear}.`,
      );
    }
    const top = Math.max(...v.evalFactors);
    for (const mixer of v.mixers) {
      for (const task of v.tasks) {
        const parts = v.widths.flatMap((D) => {
          const cells = summary.filter((g) =>
            g.mixer === mixer && g.task === task && g.width === D && g.init === "mimetic" &&
            g.factor === top &&
            typeof g.mean === "number"
          );
          if (cells.length === 0) return [];
          // Ties go to the shallowest depth (the grid's order).
          const b = cells.reduce((a, c) => ((c.mean as number) > (a.mean as number) ? c : a));
          return [
            `D ${D}: ${plural(b.depth as number, "layer")} (${(b.mean as number).toFixed(2)} ± ${
              (b.stderr as number).toFixed(2)
            })`,
          ];
        });
        if (parts.length > 0) {
          ctx.note(
            `${MIXER_NAMES[mixer]}, ${TASK_NAMES[task]}, mimetic: the best depth at ${times(top)} L — ${
              parts.join("; ")
            }.`,
          );
        }
      }
    }
  },
}, TASKS);

if (import.meta.main) await study.main(Deno.args);
export default study;
