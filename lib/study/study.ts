/**
 * A study is what a figure declares: its flags (every constant), its scales (`smoke`, `quick`, `paper`), its grid
 * of runs (plain-data specs with labels), and its report (summaries and charts from the results). {@link runStudy}
 * does the rest: flags with `--help`, validation of every flag and spec before the GPU is touched, the sweep
 * (claims, groups, checkpoints, resume, many workers), `runs.csv` rebuilt from the result files, and `index.html`.
 *
 * @example
 * ```ts ignore
 * const study = defineStudy({ name: "fig7", title: "...", summary: "...", description: "...",
 *   flags: { stateSizes: { type: "numbers", integer: true, min: 1, help: "state sizes N" } },
 *   scales: { smoke: { stateSizes: [8, 32] }, quick: { stateSizes: [8, 64] }, paper: { stateSizes: [8, 256] } },
 *   plan: (p) => p.stateSizes.map((N) => ({ spec: specFor(N), labels: { state_size: N } })),
 *   report: async (ctx) => { await ctx.chart("fig7a", lineChart({ ... }), "caption"); },
 * });
 * if (import.meta.main) await study.main(Deno.args);
 * ```
 * @module
 */
import { join, resolve } from "node:path";
import { gpuInfo, initGpu, probeAdapter } from "../core/runtime.ts";
import { GpuUnavailableError } from "../core/runtime.ts";
import type { TaskTable } from "../train/task.ts";
import type { VegaLiteSpec } from "./charts.ts";
import { type Flags, type FlagSpec, helpText, kebab, parseFlags, runMain, UsageError } from "./cli.ts";
import { type CsvRow, writeCsv } from "./csv.ts";
import { fmtSeconds } from "./progress.ts";
import { writeChart, writeIndexHtml } from "./render.ts";
import {
  analysisInputsId,
  readAnalysis,
  readResults,
  ResultsFolder,
  type RunResult,
  writeAnalysis,
} from "./results.ts";
import { flattenSpec, runId, type RunSpec, validateSpec } from "./spec.ts";
import { type PlannedRun, runWorker } from "./sweep.ts";

/** The three scales every figure has. */
export const SCALES = ["smoke", "quick", "paper"] as const;
/** A scale: `smoke` (a CPU machine, minutes), `quick` (one GPU, ≤ 10 min), `paper` (the paper's settings). */
export type ScaleName = (typeof SCALES)[number];

/** Flags every study has, besides its own. */
export const COMMON_FLAGS = {
  scale: {
    type: "string",
    choices: SCALES,
    help: "preset of every value below (default: quick on a GPU, smoke on a CPU adapter)",
  },
  out: { type: "string", help: "results folder (default: results/<figure>)" },
  fresh: {
    type: "boolean",
    help:
      "delete the earlier results, claims, checkpoints and analyses in --out first (never while other workers " +
      "use it)",
  },
  shard: {
    type: "string",
    help: "take only share i of n of the runs, e.g. 0/3 (a static split across workers)",
  },
  workerId: { type: "string", help: "this worker's name in claims and logs (default: host-pid)" },
  groupSize: {
    type: "number",
    integer: true,
    min: 0,
    help: "train at most this many runs together on the run axis (0: as many as fit in memory)",
  },
  claimTimeout: {
    type: "number",
    min: 1,
    default: 120,
    help: "seconds without a heartbeat after which another worker takes a run over",
  },
  logEvery: { type: "number", integer: true, min: 1, help: "read losses every this many steps" },
  checkpointEvery: {
    type: "number",
    integer: true,
    min: 0,
    help: "checkpoint every this many steps (0: never)",
  },
  noWait: {
    type: "boolean",
    help: "exit once nothing is left to claim, instead of waiting for runs other workers hold",
  },
  list: { type: "boolean", help: "print the runs of the grid (id, labels, done or not) and exit; no GPU" },
  report: { type: "boolean", help: "only rebuild runs.csv, summaries and charts from the results; no GPU" },
} as const satisfies Record<string, FlagSpec>;

type Common = Flags<typeof COMMON_FLAGS>;

/** Values of every flag of a study after defaults, scale and command line are merged: none is missing. */
export type StudyValues<F extends Record<string, FlagSpec>> = { [K in keyof F]-?: NonNullable<Flags<F>[K]> };

/** Operational values a scale may set besides the study's own flags. */
export interface ScaleTuning {
  logEvery?: number;
  checkpointEvery?: number;
  groupSize?: number;
}

/** A run of the grid as a figure declares it. */
export interface GridRun {
  spec: RunSpec;
  labels: Record<string, string | number | boolean>;
}

/**
 * A computation a figure needs besides its runs, e.g. an analysis of a pretrained model that is not trained: done
 * once per results folder, on the GPU, before the sweep, and stored in `<out>/analyses/<name>.json` with the hash
 * of its inputs. A worker computes it when the file is missing or was computed from other inputs; `--report` and
 * `--list` never compute it (the report then gets `undefined`).
 */
export interface StudyAnalysis {
  /** Its name (letters, digits, `_`, `-`): the file name and the key of `ReportContext.analysis`. */
  name: string;
  /** Plain data that decides the value (hashed like a run spec: other inputs, another computation). */
  inputs: unknown;
  /** Computes the value, plain JSON data (finite numbers). Runs after `initGpu`. */
  compute(): Promise<unknown>;
}

/** One row per run and final evaluation length: the run's labels, its metrics and its key spec values. */
export type ResultRow = Record<string, string | number | boolean | null>;

/** What a figure's report gets. */
export interface ReportContext<V> {
  /** The results folder. */
  out: string;
  scale: ScaleName;
  /** The merged flag values. */
  values: V;
  /** Every finished run of the grid, in grid order. */
  results: RunResult[];
  /** Runs planned in all (results.length of them are done). */
  planned: number;
  /** One row per run and final length: labels, `run_id`, `seed`, `lr`, `eval_len`, `exact_acc`, `token_acc`, ... */
  finalRows(): ResultRow[];
  /** One row per run, curve step and length: labels, `run_id`, `seed`, `lr`, `step`, `eval_len`, accuracies. */
  curveRows(): ResultRow[];
  /** Writes `<name>.csv` and lists it on the index page. */
  table(name: string, rows: readonly CsvRow[], caption: string): void;
  /** Writes a chart (`.vl.json`, `.svg`, `.png`) and shows it on the index page. */
  chart(name: string, spec: VegaLiteSpec, caption: string): Promise<void>;
  /** Adds a paragraph to the index page. */
  note(text: string): void;
  /** The value of the study's analysis `name` computed from its current inputs, or undefined if not computed. */
  analysis(name: string): unknown;
}

/** A figure's declaration. */
export interface StudyDefinition<F extends Record<string, FlagSpec>> {
  /** Short name: the default output folder and the prefix of messages, e.g. "fig7". */
  name: string;
  /** The page title. */
  title: string;
  /** One line for `--help`. */
  summary: string;
  /** The index page's text: what is trained, and the paper's claim. Blank lines separate paragraphs. */
  description: string;
  /** The figure's flags: every constant. Flags without a default take their value from the scale. */
  flags: F;
  /** Per scale, the values of flags without a default (and any others the scale overrides). */
  scales: Record<ScaleName, Partial<StudyValues<F>> & ScaleTuning>;
  /** The grid of runs. Throw a UsageError (or RangeError) for flag combinations that make no sense. */
  plan(values: StudyValues<F>): GridRun[];
  /** Computations besides the runs, e.g. of a pretrained model (see {@link StudyAnalysis}). */
  analyses?(values: StudyValues<F>): StudyAnalysis[];
  /** Writes summaries and charts from the results (called after every worker's sweep, on what is done). */
  report(ctx: ReportContext<StudyValues<F>>): Promise<void> | void;
}

/** A defined study: its definition, and its command-line entry point. */
export interface Study<F extends Record<string, FlagSpec>> {
  definition: StudyDefinition<F>;
  /** Parses `args`, runs the sweep and the report; bad input exits 2 with one line. */
  main(args: string[]): Promise<void>;
  /** The same, returning instead of exiting (for tests and scripts); throws UsageError/RangeError on bad input. */
  run(args: string[], tasks?: TaskTable): Promise<StudyOutcome>;
}

/** What `run` did. */
export interface StudyOutcome {
  out: string;
  planned: number;
  done: number;
  trained: number;
}

/** Declares a figure. `tasks` is the task table (`TASKS` from mod.ts). */
export function defineStudy<F extends Record<string, FlagSpec>>(
  definition: StudyDefinition<F>,
  tasks: TaskTable,
): Study<F> {
  for (const name of Object.keys(definition.flags)) {
    if (name in COMMON_FLAGS || name === "help") {
      throw new Error(`study ${definition.name}: flag --${kebab(name)} is one of the common flags`);
    }
  }
  const study: Study<F> = {
    definition,
    main: (args) => runMain(definition.name, async () => void (await study.run(args, tasks))),
    run: (args, t = tasks) => runStudy(definition, args, t),
  };
  return study;
}

/** Checks that a results folder can be created and written, before any GPU work. */
function checkOut(out: string): void {
  if (out.trim() === "") throw new UsageError("--out: expected a folder, got an empty path");
  try {
    const st = Deno.statSync(out);
    if (!st.isDirectory) {
      throw new UsageError(`--out ${out}: exists and is not a folder; choose another --out`);
    }
  } catch (e) {
    if (e instanceof UsageError) throw e;
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new UsageError(`--out ${out}: cannot be read (${(e as Error).message}); choose another --out`);
    }
  }
  const probe = join(out, `.write-test-${Deno.pid}`);
  try {
    Deno.mkdirSync(out, { recursive: true });
    Deno.writeTextFileSync(probe, "");
    Deno.removeSync(probe);
  } catch (e) {
    const why = e instanceof Deno.errors.PermissionDenied ? "permission denied" : (e as Error).message;
    throw new UsageError(`--out ${out}: cannot write there (${why}); choose another --out`);
  }
}

function parseShard(text: string | undefined): { index: number; count: number } | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!m || Number(m[2]) < 1 || Number(m[1]) >= Number(m[2])) {
    throw new UsageError(`--shard: expected i/n with 0 ≤ i < n, e.g. 0/3, got "${text}"`);
  }
  return { index: Number(m[1]), count: Number(m[2]) };
}

const SPEC_COLUMN_PREFIX = "spec.";

/** Rows of runs.csv: one per run and final length, spec flattened into `spec.*` columns. */
function runsCsvRows(results: readonly RunResult[]): CsvRow[] {
  return results.flatMap((r) =>
    r.final.map((f) => ({
      run_id: r.id,
      ...r.labels,
      seed: r.spec.seed,
      lr: r.spec.train.lr,
      eval_len: f.length,
      exact_acc: f.exact,
      token_acc: f.token,
      eval_rows: f.rows,
      final_loss: r.finalLoss,
      diverged_step: r.divergedStep ?? "",
      group_size: r.groupSize,
      train_seconds: r.trainSeconds,
      eval_seconds: r.evalSeconds,
      device: r.device,
      worker: r.worker,
      finished_at: r.finishedAt,
      ...Object.fromEntries(Object.entries(flattenSpec(r.spec)).map(([k, v]) => [SPEC_COLUMN_PREFIX + k, v])),
    }))
  );
}

/** The time columns of runs.csv, which differ between otherwise identical sweeps. */
export const TIME_COLUMNS: readonly string[] = [
  "train_seconds",
  "eval_seconds",
  "worker",
  "finished_at",
  "group_size",
];

/** Writes runs.csv, the figure's summaries and charts, and index.html from the results present. */
async function writeReport<F extends Record<string, FlagSpec>>(
  def: StudyDefinition<F>,
  out: string,
  scale: ScaleName,
  values: StudyValues<F>,
  grid: readonly PlannedRun[],
  analyses: readonly StudyAnalysis[],
): Promise<number> {
  const folder = new ResultsFolder(out);
  const byId = readResults(folder);
  const results = grid.map((r) => byId.get(r.id)).filter((r): r is RunResult => r !== undefined);
  writeCsv(join(out, "runs.csv"), runsCsvRows(results));
  const charts: { name: string; caption: string }[] = [];
  const tables: { name: string; caption: string; csvFile: string }[] = [
    {
      name: "runs",
      caption: "Every run and evaluation length (spec.* columns: the run's whole spec)",
      csvFile: "runs.csv",
    },
  ];
  const notes: string[] = [];
  const base = (r: RunResult) => ({ run_id: r.id, ...r.labels, seed: r.spec.seed, lr: r.spec.train.lr });
  const ctx: ReportContext<StudyValues<F>> = {
    out,
    scale,
    values,
    results,
    planned: grid.length,
    finalRows: () =>
      results.flatMap((r) =>
        r.final.map((f) => ({
          ...base(r),
          eval_len: f.length,
          exact_acc: f.exact,
          token_acc: f.token,
          final_loss: r.finalLoss,
          diverged_step: r.divergedStep,
        }))
      ),
    curveRows: () =>
      results.flatMap((r) =>
        r.curve.map((c) => ({
          ...base(r),
          step: c.step,
          eval_len: c.length,
          exact_acc: c.exact,
          token_acc: c.token,
        }))
      ),
    table(name, rows, caption) {
      writeCsv(join(out, `${name}.csv`), rows);
      tables.unshift({ name, caption, csvFile: `${name}.csv` });
    },
    async chart(name, spec, caption) {
      await writeChart(out, name, spec);
      charts.push({ name, caption });
    },
    note: (text) => void notes.push(text),
    analysis: (name) => {
      const a = analyses.find((x) => x.name === name);
      return a ? readAnalysis(folder, name, a.inputs)?.value : undefined;
    },
  };
  if (results.length > 0) await def.report(ctx);
  const status = results.length === grid.length
    ? `All ${grid.length} runs of the ${scale} scale are done.`
    : `${results.length} of ${grid.length} runs of the ${scale} scale are done; the charts show those.`;
  writeIndexHtml(out, {
    title: def.title,
    description: [def.description, status, ...notes].join("\n\n"),
    charts,
    // Summaries first (in the order written), then runs.csv.
    tables: [...tables.slice(0, -1).reverse(), tables[tables.length - 1]],
  });
  return results.length;
}

/** Runs a study from command-line arguments (see {@link defineStudy}). */
export async function runStudy<F extends Record<string, FlagSpec>>(
  def: StudyDefinition<F>,
  args: string[],
  tasks: TaskTable,
): Promise<StudyOutcome> {
  const specs = { ...COMMON_FLAGS, ...def.flags };
  const given = parseFlags(args, specs, { defaults: false });
  if (given.help) {
    const notes: Record<string, string> = {};
    for (const name of Object.keys(def.flags)) {
      const perScale = SCALES.filter((s) => (def.scales[s] as Record<string, unknown>)[name] !== undefined)
        .map((s) => `${s}: ${String((def.scales[s] as Record<string, unknown>)[name])}`);
      if (perScale.length > 0) notes[name] = `(${perScale.join("; ")})`;
    }
    console.log(helpText(`deno task ${def.name} [flags]: ${def.summary}`, specs, notes));
    return { out: "", planned: 0, done: 0, trained: 0 };
  }
  const common = given as unknown as Common;
  const noGpuNeeded = common.list === true || common.report === true;
  let scale = common.scale as ScaleName | undefined;
  if (!scale) {
    const adapter = await probeAdapter();
    if (!adapter && !noGpuNeeded) {
      throw new GpuUnavailableError(
        "no WebGPU adapter found (no GPU driver; on Linux without a GPU install Mesa, e.g. mesa-vulkan-drivers)",
      );
    }
    scale = !adapter || adapter.isCpu ? "smoke" : "quick";
    if (adapter?.isCpu) console.error(`${def.name}: CPU adapter (${adapter.description}): --scale smoke`);
  }
  const preset = def.scales[scale] as Record<string, unknown>;
  const values: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(specs)) {
    const fromArgs = (given as Record<string, unknown>)[name];
    const fromScale = preset[name];
    const fromDefault = "default" in s ? s.default : undefined;
    values[name] = fromArgs ?? (fromScale !== undefined ? structuredClone(fromScale) : fromDefault);
    if (values[name] === undefined && name in def.flags) {
      throw new Error(
        `study ${def.name}: --${kebab(name)} has no value at scale ${scale} (the study must set it)`,
      );
    }
  }
  const out = resolve((values.out as string | undefined) ?? join("results", def.name));
  if ((values.out as string | undefined)?.trim() === "") {
    throw new UsageError("--out: expected a folder, got an empty path");
  }
  const shard = parseShard(values.shard as string | undefined);
  const grid = def.plan(values as StudyValues<F>);
  const planned: PlannedRun[] = [];
  const seen = new Map<string, GridRun>();
  for (const g of grid) {
    try {
      validateSpec(g.spec, tasks);
    } catch (e) {
      if (e instanceof RangeError) {
        throw new RangeError(`run (${Object.values(g.labels).join(" ")}): ${e.message}`);
      }
      throw e;
    }
    const id = runId(g.spec);
    const twin = seen.get(id);
    if (twin) {
      throw new UsageError(
        `two runs of the grid have the same spec (${JSON.stringify(twin.labels)} and ${
          JSON.stringify(g.labels)
        })`,
      );
    }
    seen.set(id, g);
    planned.push({ id, spec: g.spec, labels: g.labels });
  }
  const analyses = def.analyses?.(values as StudyValues<F>) ?? [];
  const names = new Set<string>();
  for (const a of analyses) {
    if (!/^[A-Za-z0-9_-]+$/.test(a.name) || names.has(a.name)) {
      throw new Error(`study ${def.name}: analysis name ${JSON.stringify(a.name)} is not a new file name`);
    }
    names.add(a.name);
    analysisInputsId(a.inputs); // plain data, or a RangeError naming the field
  }
  checkOut(out);
  const folder = new ResultsFolder(out);
  if (common.fresh) {
    for (const d of [folder.runs, folder.claims, folder.checkpoints, folder.analyses]) {
      try {
        Deno.removeSync(d, { recursive: true });
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  }
  if (common.list) {
    const done = readResults(folder);
    for (const r of planned) {
      console.log(`${r.id}  ${done.has(r.id) ? "done" : "todo"}  ${JSON.stringify(r.labels)}`);
    }
    return { out, planned: planned.length, done: planned.filter((r) => done.has(r.id)).length, trained: 0 };
  }
  const t0 = performance.now();
  let trained = 0;
  if (!common.report) {
    const info = await initGpu();
    console.error(
      `${def.name}: scale ${scale} on ${info.description}: ${planned.length} runs${
        shard ? ` (share ${shard.index}/${shard.count})` : ""
      }; results in ${out}`,
    );
    for (const a of analyses) {
      if (readAnalysis(folder, a.name, a.inputs)) continue;
      const start = performance.now();
      const value = await a.compute();
      const seconds = (performance.now() - start) / 1000;
      writeAnalysis(folder, {
        name: a.name,
        inputs: a.inputs,
        value,
        seconds,
        device: gpuInfo().description,
        finishedAt: new Date().toISOString(),
      });
      console.error(`${def.name}: analysis ${a.name} computed in ${fmtSeconds(seconds)}`);
    }
    const tuning = preset as ScaleTuning;
    const report = await runWorker(planned, {
      out,
      tasks,
      worker: values.workerId as string | undefined,
      shard,
      groupSize: (values.groupSize as number | undefined) ?? tuning.groupSize ?? 0,
      claimTimeout: values.claimTimeout as number,
      logEvery: (values.logEvery as number | undefined) ?? tuning.logEvery ?? 50,
      checkpointEvery: (values.checkpointEvery as number | undefined) ?? tuning.checkpointEvery ?? 0,
      label: def.name,
      wait: !common.noWait,
    });
    trained = report.trained;
  }
  const done = await writeReport(def, out, scale, values as StudyValues<F>, planned, analyses);
  console.error(
    `${def.name}: ${done}/${planned.length} runs done (${trained} trained here) in ${
      fmtSeconds((performance.now() - t0) / 1000)
    }; open ${join(out, "index.html")}`,
  );
  return { out, planned: planned.length, done, trained };
}
