/**
 * Checks that two results folders hold the same runs: their runs.csv files have the same rows, in any order,
 * ignoring the columns that may differ between a single-process run and a sweep of many workers (wall times,
 * which worker did a run). Every other cell must match exactly, losses and accuracies to the last printed bit.
 *
 *   deno run -A slurm/same_runs.ts DIR_A DIR_B [--ignore train_seconds,eval_seconds,...]
 *
 * Ignored always: the study layer's TIME_COLUMNS (times, worker, group size) and columns whose name ends in
 * `seconds`, starts with `worker` or contains `_worker`. Prints the differences (at most 20) and exits 1 when there are any; exits 2 on bad input
 * (a folder without runs.csv).
 */
import { join } from "node:path";
import { helpText, parseFlags, readCsv, runMain, TIME_COLUMNS, UsageError } from "../mod.ts";

const FLAGS = {
  ignore: { type: "strings", help: "More columns to ignore (besides the timing and worker columns)." },
} as const;

const IGNORED_BY_DEFAULT = /(seconds$|^worker|_worker)/;

/** A row as one comparable line over the kept columns. */
function rowKey(row: Record<string, string>, columns: string[]): string {
  return JSON.stringify(columns.map((c) => row[c] ?? ""));
}

/** The differences between two runs.csv tables (as multisets of rows over the kept columns); [] when equal. */
export function compareRuns(
  a: Record<string, string>[],
  b: Record<string, string>[],
  ignore: ReadonlySet<string>,
): string[] {
  const colsA = Object.keys(a[0] ?? {}), colsB = Object.keys(b[0] ?? {});
  const keep = (c: string) => !ignore.has(c) && !TIME_COLUMNS.includes(c) && !IGNORED_BY_DEFAULT.test(c);
  const kept = colsA.filter(keep);
  const problems: string[] = [];
  const onlyA = kept.filter((c) => !colsB.includes(c)),
    onlyB = colsB.filter(keep).filter((c) => !colsA.includes(c));
  if (onlyA.length || onlyB.length) {
    problems.push(`columns differ: only in A [${onlyA}], only in B [${onlyB}]`);
  }
  if (a.length !== b.length) problems.push(`row counts differ: ${a.length} against ${b.length}`);
  // Rows of A not yet matched, by their kept cells; each row of B takes one.
  const unmatched = new Map<string, Record<string, string>[]>();
  for (const row of a) {
    const k = rowKey(row, kept);
    unmatched.set(k, [...(unmatched.get(k) ?? []), row]);
  }
  for (const row of b) {
    const same = unmatched.get(rowKey(row, kept));
    if (same && same.length > 0) same.pop();
    else problems.push(`only in B: ${describe(row, kept)}`);
  }
  for (const rows of unmatched.values()) {
    for (const row of rows) problems.push(`only in A: ${describe(row, kept)}`);
  }
  return problems;
}

function describe(row: Record<string, string>, columns: string[]): string {
  return columns.map((c) => `${c}=${row[c] ?? ""}`).join(" ");
}

if (import.meta.main) {
  await runMain("same_runs", () => {
    const dirs: string[] = [], flagArgs: string[] = [];
    for (let i = 0; i < Deno.args.length; i++) {
      const arg = Deno.args[i];
      if (!arg.startsWith("--")) dirs.push(arg);
      else flagArgs.push(arg, ...(arg === "--ignore" && i + 1 < Deno.args.length ? [Deno.args[++i]] : []));
    }
    const flags = parseFlags(flagArgs, FLAGS);
    if (flags.help) {
      console.log(helpText("deno run -A slurm/same_runs.ts DIR_A DIR_B [--ignore a,b]", FLAGS));
      return Promise.resolve();
    }
    if (dirs.length !== 2) {
      throw new UsageError("expected two results folders: same_runs.ts DIR_A DIR_B [--ignore a,b]");
    }
    const tables = dirs.map((dir) => {
      const rows = readCsv(join(dir, "runs.csv"));
      if (rows.length === 0) throw new UsageError(`${dir}/runs.csv is missing or empty`);
      return rows;
    });
    const problems = compareRuns(tables[0], tables[1], new Set(flags.ignore ?? []));
    for (const p of problems.slice(0, 20)) console.error(`same_runs: ${p}`);
    if (problems.length > 20) console.error(`same_runs: ... and ${problems.length - 20} more`);
    if (problems.length > 0) Deno.exit(1);
    console.log(`same_runs: ${tables[0].length} rows, identical outside the timing and worker columns`);
    return Promise.resolve();
  });
}
