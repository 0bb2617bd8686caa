/**
 * Figure 11 of "Mimetic Initialization Helps State Space Models Learn to Recall" (section 6): which layers of a
 * pretrained Mamba carry its copying ability. A teacher (state-spaces/mamba-370m: Mamba 1, 48 layers, width 1024)
 * gives one student per teacher layer T_i: a 12-layer Mamba whose every layer starts as T_i (S_j := T_i; the
 * embedding and final norm are the teacher's too). Each student is trained to copy; (a) copy accuracy per teacher
 * layer, against students with default and mimetic init; (b) per teacher layer, the correlation of W_C and W_B
 * (x_proj's C and B rows) and the average attention mask of the (untrained) teacher on a copy example; (c, d) the
 * teacher's average attention masks and attention maps (Eq. 8) as heatmaps.
 *
 *   deno task fig11 --teacher DIR [--scale smoke|quick|paper] [--out results/fig11] [flags...]
 *
 * DIR is a local Hugging Face folder of state-spaces/mamba-370m-hf (config.json, model.safetensors,
 * tokenizer.json); nothing is downloaded. The copy task's tokens are the teacher vocabulary's single-character
 * tokens a..z and `$ | . *` (see fig10.ts for why). The teacher's analysis needs the GPU: it runs once per results
 * folder before the sweep (`analyses`), and the report reads it.
 * @module
 */
import {
  aggregate,
  areaUnderCurve,
  bestBy,
  checkpointFromFlag,
  correlation,
  defineStudy,
  disposeTree,
  evalSpecOf,
  foldIn,
  heatmap,
  heatmapPanels,
  type InitSpec,
  key,
  layerAttentionMap,
  lineChart,
  lineWithBands,
  type LMConfig,
  loadPretrained,
  type Mamba1Params,
  type Mamba2Params,
  MIMETIC_ALL,
  readTensors,
  seedsOf,
  TASKS,
  tensor,
  TRAIN_FLAGS,
  trainSpecOf,
  UsageError,
} from "../mod.ts";

const TEACHER_HELP =
  "a local Hugging Face folder of state-spaces/mamba-370m-hf with config.json, model.safetensors and " +
  "tokenizer.json; nothing is downloaded";

/** "all", or a comma-separated list of layer indices below `L`. */
function parseLayers(text: string, L: number, flag: string): number[] {
  if (text.trim() === "all") return Array.from({ length: L }, (_, i) => i);
  const out = text.split(",").map((t) => {
    const i = Number(t.trim());
    if (t.trim() === "" || !Number.isInteger(i) || i < 0 || i >= L) {
      throw new UsageError(
        `${flag}: expected "all" or layers in 0..${L - 1} of the teacher, got "${t.trim()}"`,
      );
    }
    return i;
  });
  if (new Set(out).size !== out.length) throw new UsageError(`${flag}: a layer is listed twice in "${text}"`);
  return out;
}

/** What the teacher analysis stores per layer. */
interface LayerStats {
  layer: number;
  /** Pearson correlation of W_C and W_B (Mamba 1: x_proj's C and B blocks; Mamba 2: in_proj's). */
  corrCB: number;
  /** Mean of the average attention mask over the causal entries (i ≥ j). */
  maskMean: number;
  /** Row-major T×T, 4 significant digits. */
  mask: number[];
  map: number[];
}

interface TeacherAnalysis {
  T: number;
  /** The copy example the maps are computed on, as symbols. */
  tokens: string[];
  layers: LayerStats[];
}

const round4 = (x: number) => (Number.isFinite(x) ? Number(x.toPrecision(4)) : 0);

/** Per teacher layer: corr(W_C, W_B), the average attention mask and the attention map on one copy example. */
async function analyseTeacher(
  dir: string,
  symbols: string[],
  ids: Int32Array,
): Promise<TeacherAnalysis> {
  const m = await loadPretrained(dir, { symbols });
  const T = ids.length;
  const layers: LayerStats[] = [];
  for (let l = 0; l < m.cfg.layers.length; l++) {
    const mixer = m.params.layers[l].mixer as Mamba1Params | Mamba2Params;
    const [wB, wC] = await readTensors(
      "xProjB" in mixer ? [mixer.xProjB, mixer.xProjC] : [mixer.inB, mixer.inC],
    );
    const idsT = tensor(ids, [1, 1, T], "i32");
    const am = layerAttentionMap(m.params, m.consts, m.cfg, l, idsT);
    const [map, mask] = await readTensors([am.map, am.mask]);
    [idsT, am.map, am.mask].forEach((t) => t.dispose());
    let causal = 0;
    for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) causal += mask[i * T + j];
    layers.push({
      layer: l,
      corrCB: round4(correlation(wC, wB)),
      maskMean: round4(causal / ((T * (T + 1)) / 2)),
      mask: Array.from(mask, round4),
      map: Array.from(map, round4),
    });
  }
  disposeTree([m.params, m.consts]);
  return { T, tokens: Array.from(ids, (id) => symbols[id]), layers };
}

/** The copy task of the students. */
const copyTaskOf = (
  v: { vocab: number; context: number; minTrainLen: number; trainLen: number },
) => ({
  variant: "copy" as const,
  vocab: v.vocab,
  context: v.context,
  minLen: v.minTrainLen,
  maxLen: v.trainLen,
});

/** Rows of a row-major T×T array. */
const square = (a: readonly number[], T: number) =>
  Array.from({ length: T }, (_, i) => a.slice(i * T, (i + 1) * T));

const study = defineStudy({
  name: "fig11",
  title: "Figure 11: which layers of a pretrained Mamba carry copying",
  summary:
    "students initialised from one pretrained teacher layer each, trained to copy; teacher layer analysis",
  description:
    "A pretrained teacher (state-spaces/mamba-370m: Mamba 1, 48 layers, width 1024) gives one student per " +
    "teacher layer T_i: a Mamba with fewer layers (12 in the paper) whose every layer starts as T_i " +
    "(S_j := T_i: the block's norm and mixer; the embedding, restricted to the copy symbols' single-character " +
    "tokens, and the final norm are the teacher's, so students differ only in the layer). Each student is " +
    "trained to copy, and compared with students of the same shape trained from default and mimetic init. For " +
    "every teacher layer (the teacher itself, untrained): the correlation of W_C and W_B (x_proj's C and B " +
    "rows), and its average attention mask and attention map (Eq. 8) on one copy example.\n\n" +
    "The paper's claim: some teacher layers make copying much easier to learn, T_31 most of all, and those " +
    "layers look like mimetic init: correlated W_C and W_B, nearly all-ones average attention masks, and " +
    "lower-diagonal attention maps.",
  flags: {
    teacher: { type: "string", default: "", help: `the teacher: ${TEACHER_HELP} (required)` },
    teacherLayers: {
      type: "string",
      default: "all",
      help: 'teacher layers i (0-based) that start a student, e.g. "0,15,31", or "all"',
    },
    studentLayers: { type: "number", integer: true, min: 1, help: "layers M of each student" },
    baselines: {
      type: "strings",
      choices: ["default", "mimetic", "none"],
      default: ["default", "mimetic"],
      help: "students trained from scratch for comparison (none: no baseline)",
    },
    c: { type: "number", min: 0, default: 8, help: "mimetic A of the mimetic baseline: A = −exp(−c·A_log)" },
    vocab: { type: "number", integer: true, min: 2, max: 26, default: 26, help: "copy alphabet size (a..)" },
    context: { type: "number", integer: true, min: 4, help: "training context T" },
    minTrainLen: { type: "number", integer: true, min: 1, help: "shortest training string" },
    trainLen: { type: "number", integer: true, min: 1, help: "longest training string" },
    evalLengths: { type: "numbers", integer: true, min: 1, help: "string lengths to evaluate" },
    mapLength: {
      type: "number",
      integer: true,
      min: 1,
      default: 25,
      help: "string length of the copy example the teacher's maps are computed on (T = 2·length + 2)",
    },
    mapLayers: {
      type: "string",
      default: "auto",
      help:
        'teacher layers whose mask and map are drawn in full, e.g. "31,0"; "auto": the 3 best and the worst ' +
        "as student inits",
    },
    ...TRAIN_FLAGS,
  },
  scales: {
    smoke: {
      studentLayers: 2,
      seeds: 1,
      lrs: [3e-3],
      steps: 30,
      batch: 4,
      vocab: 8,
      context: 24,
      minTrainLen: 2,
      trainLen: 6,
      evalLengths: [4, 8],
      evalSamples: 16,
      mapLength: 6,
      warmup: 5,
      logEvery: 10,
    },
    quick: {
      // Not calibrated on a GPU yet: 4-layer students (the paper: 12), 200 steps (the paper: 5000). Estimated
      // ~5–7 min on an H200: 50 runs × 200 steps × 0.33 TFLOP a run-step (4 layers × 40 MFLOP a token × 2048
      // tokens) ≈ 3300 TFLOP at 10–15 TFLOP/s, plus dispatch, evaluation and reading the 1.5 GB teacher.
      studentLayers: 4,
      seeds: 1,
      lrs: [5e-4],
      steps: 200,
      warmup: 50,
      batch: 16,
      context: 128,
      minTrainLen: 5,
      trainLen: 30,
      evalLengths: [10, 20, 30, 45, 60],
      evalSamples: 128,
      logEvery: 50,
      checkpointEvery: 100,
    },
    paper: {
      studentLayers: 12,
      seeds: 5,
      lrs: [1e-3, 5e-4, 1e-4],
      steps: 5000,
      batch: 64,
      context: 220,
      minTrainLen: 5,
      trainLen: 50,
      evalLengths: [25, 50, 75, 100, 150, 200],
      evalSamples: 256,
      logEvery: 100,
      checkpointEvery: 500,
    },
  },
  plan(v) {
    const taskCfg = copyTaskOf(v);
    const symbols = TASKS.copy.symbols!(taskCfg);
    const { cfg: teacher, sha256 } = checkpointFromFlag("teacher", v.teacher, symbols, TEACHER_HELP);
    const layers = parseLayers(v.teacherLayers, teacher.layers.length, "--teacher-layers");
    if (v.mapLayers !== "auto") parseLayers(v.mapLayers, teacher.layers.length, "--map-layers");
    if (v.baselines.includes("none") && v.baselines.length > 1) {
      throw new UsageError(`--baselines: "none" cannot be listed with others (${v.baselines.join(",")})`);
    }
    const student: LMConfig = {
      ...teacher,
      layers: Array.from({ length: v.studentLayers }, () => ({ ...teacher.layers[0] })),
    };
    const arms: { labels: { source: string; teacher_layer: number | string }; init: InitSpec }[] = [
      ...layers.map((i) => ({
        labels: { source: "teacher layer", teacher_layer: i },
        init: { kind: "teacherLayer" as const, dir: v.teacher, sha256, symbols, layer: i },
      })),
      ...v.baselines.filter((b) => b !== "none").map((b) => ({
        labels: { source: `${b} init`, teacher_layer: "" },
        init: b === "mimetic"
          ? { ...MIMETIC_ALL, c: v.c, conv: teacher.layers[0].kind !== "mamba1" }
          : { kind: "default" as const },
      })),
    ];
    return arms.flatMap(({ labels, init }) =>
      v.lrs.flatMap((lr) =>
        seedsOf(v).map((seed) => ({
          labels,
          spec: {
            model: student,
            init,
            task: { kind: "copy", ...taskCfg },
            train: trainSpecOf(v, lr),
            seed,
            eval: evalSpecOf(v, v.evalLengths),
          },
        }))
      )
    );
  },
  analyses(v) {
    const taskCfg = copyTaskOf(v);
    const symbols = TASKS.copy.symbols!(taskCfg);
    const { sha256 } = checkpointFromFlag("teacher", v.teacher, symbols, TEACHER_HELP);
    // The copy example: row 0 of the evaluation rows at mapLength (the same key as the runs' evaluation).
    const rows = TASKS.copy.evalRows(foldIn(key(v.evalSeed), v.mapLength), taskCfg, v.mapLength, 1);
    const ids = rows.inputs.slice(0, rows.T);
    return [{
      name: "teacher",
      inputs: { dir: v.teacher, sha256, symbols, ids: Array.from(ids) },
      compute: () => analyseTeacher(v.teacher, symbols, Int32Array.from(ids)),
    }];
  },
  async report(ctx) {
    const rows = ctx.finalRows();
    const runs = [...Map.groupBy(rows, (r) => r.run_id as string).values()].map((rs) => {
      const L = rs.map((r) => r.eval_len as number), acc = rs.map((r) => r.exact_acc as number);
      const { source, teacher_layer, lr, seed } = rs[0];
      return {
        source,
        teacher_layer,
        lr,
        seed,
        // Mean accuracy over the evaluated lengths (the AUC over the length range, normalised).
        mean_acc: acc.reduce((a, b) => a + b, 0) / acc.length,
        auc: areaUnderCurve(L, acc),
      };
    });
    const isBest = bestBy(runs, ["source", "teacher_layer"], "lr", "auc");
    const perLength = aggregate(
      rows.filter(isBest),
      ["source", "teacher_layer", "lr", "eval_len"],
      "exact_acc",
    );
    const perArm = aggregate(runs.filter(isBest), ["source", "teacher_layer", "lr"], "mean_acc");
    ctx.table(
      "summary_accuracy",
      perLength,
      "String accuracy per student and length (mean, s.e. over seeds; best lr)",
    );
    ctx.table("run_stats", runs, "Mean accuracy over the lengths and AUC of every run");

    const teacherArms = perArm.filter((a) => a.source === "teacher layer");
    const layersTried = teacherArms.map((a) => a.teacher_layer as number);
    // Baselines as flat lines across the teacher layers tried.
    const lines = [
      ...teacherArms.map((a) => ({ ...a, series: "from T_i" })),
      ...perArm.filter((a) => a.source !== "teacher layer").flatMap((b) =>
        layersTried.map((i) => ({ ...b, teacher_layer: i, series: b.source as string }))
      ),
    ];
    const lengths = ctx.values.evalLengths;
    if (teacherArms.length > 0) {
      await ctx.chart(
        "fig11a",
        lineWithBands({
          data: lines,
          x: "teacher_layer",
          y: "mean",
          yLow: "low",
          yHigh: "high",
          color: "series",
          title: "Copying after training, by the teacher layer every student layer started as",
          subtitle:
            `${ctx.values.studentLayers}-layer students, ${ctx.scale} scale; string accuracy averaged over ` +
            `lengths ${lengths.join(", ")}; mean ± s.e. over seeds, best lr`,
          xTitle: "teacher layer i (S_j := T_i)",
          yTitle: "mean string accuracy",
          colorTitle: "student",
          yDomain: [0, 1],
        }),
        "(a) Copy accuracy of each student (every layer initialised from teacher layer i), averaged over the " +
          "evaluated lengths; flat lines: students of the same shape from default and mimetic init.",
      );
      const byLayer = new Map(
        perLength.filter((r) => r.source === "teacher layer").map((
          r,
        ) => [`${r.teacher_layer}/${r.eval_len}`, r]),
      );
      await ctx.chart(
        "fig11a_lengths",
        heatmap({
          matrix: lengths.map((L) =>
            layersTried.map((i) => (byLayer.get(`${i}/${L}`)?.mean as number | undefined) ?? NaN)
          ),
          title: "Copy accuracy by teacher layer and string length",
          subtitle: "mean over seeds, best lr",
          xTitle: "teacher layer i",
          yTitle: "string length",
          colorTitle: "string accuracy",
          domain: [0, 1],
          xLabels: layersTried.map(String),
          yLabels: lengths.map(String),
        }),
        "String accuracy of each teacher-layer student at each evaluated length.",
      );
    }

    const teacher = ctx.analysis("teacher") as TeacherAnalysis | undefined;
    if (!teacher) {
      ctx.note(
        "The teacher analysis (W_C/W_B correlation, masks and maps per layer) is not computed in this folder " +
          "yet: it runs on the GPU before a sweep (run the figure without --report).",
      );
      return;
    }
    const T = teacher.T;
    const accOf = new Map(teacherArms.map((a) => [a.teacher_layer as number, a.mean as number]));
    const stats = teacher.layers.map((s) => ({
      teacher_layer: s.layer,
      corr_cb: s.corrCB,
      mask_mean: s.maskMean,
      student_mean_acc: accOf.get(s.layer) ?? "",
    }));
    ctx.table(
      "teacher_layers",
      stats,
      "Per teacher layer: corr(W_C, W_B), the mean of its average attention mask (entries i ≥ j) on the copy " +
        "example, and the mean accuracy of the student it initialised",
    );
    const measures = stats.flatMap((s) => [
      { teacher_layer: s.teacher_layer, measure: "corr(W_C, W_B)", value: s.corr_cb },
      { teacher_layer: s.teacher_layer, measure: "mean avg. mask", value: s.mask_mean },
      ...(typeof s.student_mean_acc === "number"
        ? [{ teacher_layer: s.teacher_layer, measure: "student acc.", value: s.student_mean_acc }]
        : []),
    ]);
    await ctx.chart(
      "fig11b",
      lineChart({
        data: measures,
        x: "teacher_layer",
        y: "value",
        color: "measure",
        points: true,
        title: "Teacher layers: W_C/W_B correlation, average attention mask, and the student's accuracy",
        subtitle: `the untrained teacher on a copy example of length ${ctx.values.mapLength} (T = ${T})`,
        xTitle: "teacher layer i",
        yTitle: "value",
        colorTitle: "per layer",
      }),
      "(b) Per teacher layer: Pearson correlation of W_C and W_B (x_proj's C and B rows), the mean of the average " +
        "attention mask over i ≥ j, and the mean accuracy of the student initialised from it.",
    );
    const paired = stats.filter((s) => typeof s.student_mean_acc === "number");
    if (paired.length >= 3) {
      const acc = paired.map((s) => s.student_mean_acc as number);
      const r = (xs: number[]) => correlation(xs, acc);
      const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "undefined (no spread)");
      ctx.note(
        `Across the ${paired.length} teacher layers tried, the student's accuracy correlates with the layer's ` +
          `corr(W_C, W_B) at r = ${fmt(r(paired.map((s) => s.corr_cb)))} and with its mean average mask at ` +
          `r = ${fmt(r(paired.map((s) => s.mask_mean)))} (Pearson).`,
      );
    }
    await ctx.chart(
      "fig11c",
      heatmap({
        matrix: teacher.layers.map((s) => s.mask.slice((T - 1) * T, T * T)),
        title: "How far back each teacher layer sees: average attention mask of the last position",
        subtitle: `mask[T−1, j] on the copy example (${teacher.tokens.join("")})`,
        xTitle: "key position j",
        yTitle: "teacher layer",
        colorTitle: "average mask",
        domain: [0, 1],
        yLabels: teacher.layers.map((s) => String(s.layer)),
      }),
      "(c) The last row of every teacher layer's average attention mask: near 1 across the row means the layer " +
        "hardly decays what it has seen.",
    );
    let shown: number[];
    if (ctx.values.mapLayers !== "auto") {
      shown = parseLayers(ctx.values.mapLayers, teacher.layers.length, "--map-layers");
    } else if (paired.length > 0) {
      const ranked = [...paired].sort((a, b) =>
        (b.student_mean_acc as number) - (a.student_mean_acc as number)
      );
      shown = [...new Set([...ranked.slice(0, 3), ranked[ranked.length - 1]].map((s) => s.teacher_layer))];
    } else {
      const L = teacher.layers.length;
      shown = [...new Set([0, Math.floor(L / 3), Math.floor((2 * L) / 3), L - 1])];
    }
    const layerStats = new Map(teacher.layers.map((s) => [s.layer, s]));
    const label = (i: number) => {
      const a = accOf.get(i);
      return `T_${i}${a === undefined ? "" : `: acc ${a.toFixed(2)}`}, corr ${
        layerStats.get(i)!.corrCB.toFixed(2)
      }`;
    };
    await ctx.chart(
      "fig11d",
      heatmapPanels({
        panels: shown.map((i) => ({ label: label(i), matrix: square(layerStats.get(i)!.mask, T) })),
        title: "Average attention masks of teacher layers",
        subtitle: `copy example of length ${ctx.values.mapLength}: ${teacher.tokens.join("")}`,
        xTitle: "key position j",
        yTitle: "query position i",
        colorTitle: "average mask",
        domain: [0, 1],
      }),
      "(d) Average attention masks of some teacher layers (auto: the three best and the worst as student inits).",
    );
    await ctx.chart(
      "fig11e",
      heatmapPanels({
        panels: shown.map((i) => {
          const m = layerStats.get(i)!.map;
          const scale = Math.max(...m.map(Math.abs)) || 1;
          return { label: label(i), matrix: square(m.map((x) => x / scale), T) };
        }),
        title: "Attention maps (Eq. 8) of teacher layers",
        subtitle: "each map divided by its largest |entry|",
        xTitle: "key position j",
        yTitle: "query position i",
        colorTitle: "map / max |map|",
        scheme: "blueorange",
        domain: [-1, 1],
      }),
      "(e) Channel-averaged attention maps of the same layers on the copy example, each scaled to its largest " +
        "entry: lower-diagonal structure means the layer looks up earlier tokens.",
    );
  },
}, TASKS);

if (import.meta.main) await study.main(Deno.args);
export default study;
