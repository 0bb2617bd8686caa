/**
 * Seed statistics: {@link aggregate} turns per-seed rows into mean ± standard error per group.
 * @module
 */
import type { CsvRow } from "./csv.ts";

/**
 * Groups rows by the columns `by` and summarises column `value` per group: `mean`, `std` (sample standard
 * deviation, n − 1), `stderr` = std/√n, `low`/`high` = mean ∓ stderr (ready for {@link lineWithBands}), `n`.
 * Groups come out in order of first appearance, with their `by` values as found in the first row of the group.
 * Empty cells (`""`, `null`, `undefined`) are skipped; numeric strings (as from {@link readCsv}) are parsed.
 * With n = 1, std and stderr are 0; a group whose values are all empty has n = 0 and `null` statistics.
 *
 * @throws {RangeError} when a value is not a number, or `by` names `value` or an output column.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { aggregate } from "./stats.ts";
 * const rows = [
 *   { init: "default", len: "50", seed: "0", acc: "0.2" },
 *   { init: "default", len: "50", seed: "1", acc: "0.4" },
 *   { init: "mimetic", len: "50", seed: "0", acc: "1" },
 * ];
 * const [d, m] = aggregate(rows, ["init", "len"], "acc");
 * assert.equal(d.init, "default");
 * assert.equal(d.n, 2);
 * assert.ok(Math.abs((d.mean as number) - 0.3) < 1e-12);
 * assert.ok(Math.abs((d.stderr as number) - 0.1) < 1e-12); // std = √0.02, /√2
 * assert.deepEqual(m, { init: "mimetic", len: "50", mean: 1, std: 0, stderr: 0, low: 1, high: 1, n: 1 });
 * ```
 */
export function aggregate(rows: readonly CsvRow[], by: readonly string[], value: string): CsvRow[] {
  const outputs = ["mean", "std", "stderr", "low", "high", "n"];
  const clash = by.filter((b) => b === value || outputs.includes(b));
  if (clash.length > 0) {
    throw new RangeError(
      `aggregate: by must not name the value column "${value}" or an output column (${
        outputs.join(", ")
      }), ` +
        `found [${clash.join(", ")}]`,
    );
  }
  const groups = new Map<string, { keys: CsvRow; xs: number[] }>();
  rows.forEach((row, i) => {
    const id = JSON.stringify(by.map((b) => row[b] ?? null));
    let g = groups.get(id);
    if (!g) groups.set(id, g = { keys: Object.fromEntries(by.map((b) => [b, row[b] ?? null])), xs: [] });
    const v = row[value];
    if (v === null || v === undefined || v === "") return;
    const x = typeof v === "number" ? v : typeof v === "string" ? Number(v.trim()) : NaN;
    if (Number.isNaN(x) && !(typeof v === "number" || v === "NaN")) {
      throw new RangeError(
        `aggregate: column "${value}" must hold numbers, found ${JSON.stringify(v)} in row ${i}`,
      );
    }
    g.xs.push(x);
  });
  return [...groups.values()].map(({ keys, xs }) => {
    const n = xs.length;
    if (n === 0) return { ...keys, mean: null, std: null, stderr: null, low: null, high: null, n };
    let sum = 0;
    for (const x of xs) sum += x;
    const mean = sum / n;
    let ss = 0;
    for (const x of xs) ss += (x - mean) ** 2;
    const std = n > 1 ? Math.sqrt(ss / (n - 1)) : 0;
    const stderr = std / Math.sqrt(n);
    return { ...keys, mean, std, stderr, low: mean - stderr, high: mean + stderr, n };
  });
}

/**
 * Best-candidate selection over seeds: per group of `by`, the value of `candidate` (e.g. the lr) whose mean `score`
 * over its rows is highest (the first such value on ties, in order of appearance). Returns a predicate that keeps
 * the rows of each group's best candidate.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bestBy } from "./stats.ts";
 * const rows = [
 *   { N: 8, lr: 1e-3, auc: 10 }, { N: 8, lr: 1e-3, auc: 12 }, { N: 8, lr: 5e-4, auc: 20 },
 *   { N: 16, lr: 1e-3, auc: 30 }, { N: 16, lr: 5e-4, auc: 5 },
 * ];
 * const best = bestBy(rows, ["N"], "lr", "auc");
 * assert.deepEqual(rows.filter(best).map((r) => [r.N, r.lr]), [[8, 5e-4], [16, 1e-3]]);
 * ```
 */
export function bestBy(
  rows: readonly CsvRow[],
  by: readonly string[],
  candidate: string,
  score: string,
): (row: CsvRow) => boolean {
  const groupOf = (r: CsvRow) => JSON.stringify(by.map((b) => r[b] ?? null));
  const best = new Map<string, { value: string; mean: number }>();
  for (const g of aggregate(rows, [...by, candidate], score)) {
    const id = groupOf(g);
    const mean = typeof g.mean === "number" ? g.mean : -Infinity;
    const cur = best.get(id);
    if (!cur || mean > cur.mean) best.set(id, { value: JSON.stringify(g[candidate] ?? null), mean });
  }
  return (r) => best.get(groupOf(r))?.value === JSON.stringify(r[candidate] ?? null);
}

/**
 * When a curve first reaches a level: per group of `by` (e.g. a run and a length), the smallest `x` (e.g. the
 * training step) whose `y` (e.g. the accuracy) is ≥ `threshold`, as column `first` (null if it never does), and
 * the group's `y` at its largest `x` as column `last`. Groups come out in order of first appearance; rows with an
 * empty `x` or `y` are skipped. Pair it with {@link aggregate} over seeds (which skips the nulls: its `n` counts
 * the seeds that reached the level).
 *
 * @throws {RangeError} when `by` names `x`, `y`, `first` or `last`, or an `x` or `y` is not a number.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { firstReaching } from "./stats.ts";
 * const rows = [
 *   { run: "a", step: 100, acc: 0.2 }, { run: "a", step: 200, acc: 0.95 }, { run: "a", step: 300, acc: 0.99 },
 *   { run: "b", step: 100, acc: 0.1 }, { run: "b", step: 200, acc: 0.3 }, { run: "b", step: 300, acc: 0.5 },
 * ];
 * assert.deepEqual(firstReaching(rows, ["run"], "step", "acc", 0.9), [
 *   { run: "a", first: 200, last: 0.99 },
 *   { run: "b", first: null, last: 0.5 },
 * ]);
 * ```
 */
export function firstReaching(
  rows: readonly CsvRow[],
  by: readonly string[],
  x: string,
  y: string,
  threshold: number,
): CsvRow[] {
  const clash = by.filter((b) => [x, y, "first", "last"].includes(b));
  if (clash.length > 0) {
    throw new RangeError(
      `firstReaching: by must not name "${x}", "${y}", "first" or "last", found [${clash.join(", ")}]`,
    );
  }
  const num = (v: CsvRow[string], column: string, i: number): number | null => {
    if (v === null || v === undefined || v === "") return null;
    const n = typeof v === "number" ? v : typeof v === "string" ? Number(v.trim()) : NaN;
    if (Number.isNaN(n) && v !== "NaN" && !(typeof v === "number")) {
      throw new RangeError(
        `firstReaching: column "${column}" must hold numbers, found ${JSON.stringify(v)} in row ${i}`,
      );
    }
    return n;
  };
  const groups = new Map<string, { keys: CsvRow; points: [number, number][] }>();
  rows.forEach((row, i) => {
    const id = JSON.stringify(by.map((b) => row[b] ?? null));
    let g = groups.get(id);
    if (!g) groups.set(id, g = { keys: Object.fromEntries(by.map((b) => [b, row[b] ?? null])), points: [] });
    const [px, py] = [num(row[x], x, i), num(row[y], y, i)];
    if (px !== null && py !== null) g.points.push([px, py]);
  });
  return [...groups.values()].map(({ keys, points }) => {
    points.sort((a, b) => a[0] - b[0]);
    const hit = points.find(([, v]) => v >= threshold);
    return {
      ...keys,
      first: hit ? hit[0] : null,
      last: points.length > 0 ? points[points.length - 1][1] : null,
    };
  });
}
