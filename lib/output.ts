/**
 * The output layer of the experiments: results → CSV → Vega-Lite → SVG / PNG / HTML.
 *
 * - Files: {@link writeFileAtomic} (tmp file + rename, so a crash or a concurrent reader never sees half a file),
 *   {@link writeCsv}, {@link readCsv}, {@link appendCsvRow} (resumable sweeps append one row per finished run),
 *   {@link writeJsonAtomic}, {@link readJson}. These are synchronous: a sweep appends a row, then goes on.
 * - Seeds: {@link aggregate} turns per-seed rows into mean ± standard error per group.
 * - Charts: {@link lineWithBands}, {@link lineChart}, {@link heatmap} build Vega-Lite specs (plain JSON) with one
 *   shared look (colourblind-safe Okabe–Ito palette, viridis for heatmaps, DejaVu Sans);
 *   {@link renderVegaLite} renders a spec headless to SVG and PNG; {@link writeChart} writes
 *   `<name>.vl.json`, `<name>.svg`, `<name>.png`; {@link writeIndexHtml} writes a page showing them.
 *
 * npm packages (pinned to major.minor; the GPU pack step and CI must cache all of them): csv-stringify 6.9,
 * csv-parse 6.2, and, loaded on first render only, vega 6.4, vega-lite 6.5, @resvg/resvg-js 2.6 (native
 * binding, needs `--allow-ffi` or `-A`) and dejavu-fonts-ttf 2.37 (the font PNGs are drawn with, so they look
 * the same on every machine, fonts installed or not).
 * @module
 */
// Inline npm: specifiers on purpose: mod.ts may be imported from a URL, where deno.json's import map does not apply.
// deno-lint-ignore-file no-import-prefix
import { parse } from "npm:csv-parse@6.2/sync";
import { stringify } from "npm:csv-stringify@6.9/sync";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** One CSV cell before writing: `null`/`undefined` become an empty cell, booleans `true`/`false`. */
export type CsvValue = string | number | boolean | null | undefined;

/** One CSV row before writing, keyed by column name. */
export type CsvRow = Record<string, CsvValue>;

/** A Vega-Lite spec as plain JSON (https://vega.github.io/vega-lite/docs/spec.html). */
export type VegaLiteSpec = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------------------------
// Files

/**
 * Writes `data` to `path` atomically: to `path.tmp-<pid>-<rand>` in the same folder, flushed to disk, then renamed
 * over `path` (rename is atomic on POSIX), so readers see the old file or the new one, never a partial one.
 * Creates missing parent folders. The tmp file is removed if the write fails.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeFileAtomic } from "./output.ts";
 * const dir = Deno.makeTempDirSync();
 * writeFileAtomic(`${dir}/a/b/note.txt`, "first");
 * writeFileAtomic(`${dir}/a/b/note.txt`, "second");
 * assert.equal(Deno.readTextFileSync(`${dir}/a/b/note.txt`), "second");
 * assert.deepEqual([...Deno.readDirSync(`${dir}/a/b`)].map((e) => e.name), ["note.txt"]);
 * ```
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  Deno.mkdirSync(dirname(path), { recursive: true });
  // Not the project's keyed RNG on purpose: this only has to differ between concurrent writers.
  const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(16).padStart(8, "0");
  const tmp = `${path}.tmp-${Deno.pid}-${rand}`;
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  try {
    const file = Deno.openSync(tmp, { write: true, createNew: true });
    try {
      let off = 0;
      while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
      file.syncSync(); // the rename must not land before the data does
    } finally {
      file.close();
    }
    Deno.renameSync(tmp, path);
  } catch (err) {
    try {
      Deno.removeSync(tmp);
    } catch { /* never created, or already renamed */ }
    throw err;
  }
}

const CSV_CAST = {
  boolean: (v: boolean) => (v ? "true" : "false"), // csv-stringify's default writes "1" and ""
  number: (v: number) => String(v), // shortest string that parses back to the same double
};

/** Column names in order of first appearance over all rows. */
function unionColumns(rows: readonly CsvRow[]): string[] {
  const seen = new Set<string>();
  for (const row of rows) for (const k of Object.keys(row)) seen.add(k);
  return [...seen];
}

function csvText(rows: readonly CsvRow[], columns: readonly string[], header: boolean): string {
  return stringify(rows as CsvRow[], { header, columns: [...columns], cast: CSV_CAST, eof: true });
}

/**
 * Writes rows as a CSV file with a header line, atomically ({@link writeFileAtomic}). Fields with commas, quotes
 * or newlines are quoted (RFC 4180); numbers are written in full precision; `null`/`undefined` as empty cells.
 *
 * @param columns the columns and their order; keys of a row not listed are left out. Default: every key, in order
 *   of first appearance. With no rows and no columns the file is empty.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readCsv, writeCsv } from "./output.ts";
 * const path = `${Deno.makeTempDirSync()}/runs.csv`;
 * writeCsv(path, [{ init: "mimetic, c=8", seed: 0, acc: 0.97, diverged: false }]);
 * assert.equal(Deno.readTextFileSync(path), 'init,seed,acc,diverged\n"mimetic, c=8",0,0.97,false\n');
 * assert.deepEqual(readCsv(path), [{ init: "mimetic, c=8", seed: "0", acc: "0.97", diverged: "false" }]);
 * ```
 */
export function writeCsv(path: string, rows: readonly CsvRow[], columns?: readonly string[]): void {
  const cols = columns ?? unionColumns(rows);
  if (new Set(cols).size !== cols.length) {
    throw new RangeError(`writeCsv: columns must be distinct, got [${cols.join(", ")}]`);
  }
  writeFileAtomic(path, cols.length === 0 ? "" : csvText(rows, cols, true));
}

function readTextOrNull(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/**
 * Reads a CSV file with a header line into one object per row, every value a string (empty cells are `""`).
 * Returns `[]` when the file does not exist, so a resumable sweep can start from `readCsv(path)`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readCsv, writeCsv } from "./output.ts";
 * const path = `${Deno.makeTempDirSync()}/r.csv`;
 * assert.deepEqual(readCsv(path), []);
 * writeCsv(path, [{ lr: 1e-3, note: 'say "hi"' }, { lr: 5e-4, note: null }]);
 * assert.deepEqual(readCsv(path), [{ lr: "0.001", note: 'say "hi"' }, { lr: "0.0005", note: "" }]);
 * ```
 */
export function readCsv(path: string): Record<string, string>[] {
  const text = readTextOrNull(path);
  if (text === null || text.trim() === "") return [];
  try {
    return parse(text, { columns: true, bom: true, skip_empty_lines: true }) as Record<string, string>[];
  } catch (err) {
    throw new Error(`readCsv: cannot parse ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Appends one row to a CSV file, atomically: the new file is the old text plus the row, written with
 * {@link writeFileAtomic}, so a sweep killed at any moment leaves a well-formed file. Creates the file (with a
 * header line) when it does not exist. Rewrites the whole file each time: fine for sweeps of thousands of rows.
 *
 * @param columns the header; when the file exists its header must equal this (same names, same order).
 *   Default: the file's header, or the row's keys for a new file.
 * @throws {RangeError} when `columns` differs from the file's header, or `row` has a key not in the header
 *   (it would be lost).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { appendCsvRow, readCsv } from "./output.ts";
 * const path = `${Deno.makeTempDirSync()}/sweep.csv`;
 * const columns = ["lr", "seed", "acc"];
 * for (const seed of [0, 1]) {
 *   if (readCsv(path).some((r) => r.seed === String(seed))) continue; // done in an earlier, interrupted run
 *   appendCsvRow(path, { lr: 1e-3, seed, acc: 0.5 + seed / 4 }, columns);
 * }
 * assert.deepEqual(readCsv(path).map((r) => r.acc), ["0.5", "0.75"]);
 * ```
 */
export function appendCsvRow(path: string, row: CsvRow, columns?: readonly string[]): void {
  const text = readTextOrNull(path);
  if (text === null || text.trim() === "") {
    writeCsv(path, [row], columns ?? Object.keys(row));
    return;
  }
  const header = (parse(text, { bom: true, to_line: 1 }) as string[][])[0] ?? [];
  if (columns && (columns.length !== header.length || columns.some((c, i) => c !== header[i]))) {
    throw new RangeError(
      `appendCsvRow: columns must equal the header of ${path}: expected [${header.join(", ")}], ` +
        `found [${columns.join(", ")}]`,
    );
  }
  const extra = Object.keys(row).filter((k) => !header.includes(k));
  if (extra.length > 0) {
    throw new RangeError(
      `appendCsvRow: row has keys not in the header of ${path}: [${extra.join(", ")}]; header is ` +
        `[${header.join(", ")}]`,
    );
  }
  const body = text.endsWith("\n") ? text : text + "\n";
  writeFileAtomic(path, body + csvText([row], header, false));
}

/**
 * Writes `value` as pretty-printed JSON (2-space indent, trailing newline) atomically ({@link writeFileAtomic}).
 * Note JSON turns NaN and ±Infinity into `null`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJson, writeJsonAtomic } from "./output.ts";
 * const path = `${Deno.makeTempDirSync()}/config.json`;
 * writeJsonAtomic(path, { layers: 2, lr: [1e-3, 5e-4] });
 * assert.deepEqual(readJson(path), { layers: 2, lr: [0.001, 0.0005] });
 * ```
 */
export function writeJsonAtomic(path: string, value: unknown): void {
  const text = JSON.stringify(value, null, 2);
  if (text === undefined) throw new RangeError(`writeJsonAtomic: value for ${path} is not JSON-serialisable`);
  writeFileAtomic(path, text + "\n");
}

/**
 * Reads and parses a JSON file. When the file does not exist, returns `fallback` if one is given, else throws
 * `Deno.errors.NotFound`. The result is not validated: `T` is the caller's promise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJson } from "./output.ts";
 * const state = readJson<{ step: number }>(`${Deno.makeTempDirSync()}/state.json`, { step: 0 });
 * assert.equal(state.step, 0);
 * ```
 */
export function readJson<T = unknown>(path: string, fallback?: T): T {
  const text = readTextOrNull(path);
  if (text === null) {
    if (fallback !== undefined) return fallback;
    throw new Deno.errors.NotFound(`readJson: no such file: ${path}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new Error(`readJson: cannot parse ${path}: ${(err as Error).message}`, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Seed aggregation

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
 * import { aggregate } from "./output.ts";
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

// ---------------------------------------------------------------------------------------------------------------
// Chart specs

const VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

/**
 * Okabe & Ito (2008), "Color universal design": distinguishable under the common colour-vision deficiencies.
 * Yellow last: it is faint on white.
 */
export const OKABE_ITO: readonly string[] = [
  "#0072B2",
  "#D55E00",
  "#009E73",
  "#CC79A7",
  "#E69F00",
  "#56B4E9",
  "#000000",
  "#F0E442",
];

const FONT = "DejaVu Sans, Helvetica, Arial, sans-serif";

/** The shared look: font sizes, palette, quiet grid. Every builder puts it in the spec's `config`. */
export const CHART_CONFIG: VegaLiteSpec = {
  font: FONT,
  background: "white",
  padding: 8,
  title: {
    fontSize: 15,
    fontWeight: "bold",
    subtitleFontSize: 12,
    subtitleColor: "#555",
    anchor: "start",
    offset: 8,
  },
  axis: {
    labelFontSize: 11,
    titleFontSize: 12,
    titleFontWeight: "normal",
    titleColor: "#222",
    labelColor: "#333",
    gridColor: "#ececec",
    domainColor: "#888",
    tickColor: "#888",
  },
  legend: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: "normal", symbolStrokeWidth: 2 },
  header: { labelFontSize: 12, titleFontSize: 12, titleFontWeight: "normal" },
  view: { stroke: "#ddd" },
  range: { category: [...OKABE_ITO] },
  mark: { color: OKABE_ITO[0] },
  line: { strokeWidth: 2 },
};

/** Options common to the line chart builders. Field arguments name columns of `data`. */
export interface LineChartOptions {
  /** Rows, e.g. from {@link readCsv} or {@link aggregate}; numeric strings in x/y fields are parsed. */
  data: readonly CsvRow[];
  /** Quantitative x field. */
  x: string;
  /** Quantitative y field (the mean line for {@link lineWithBands}). */
  y: string;
  /** Nominal field giving each series a colour (Okabe–Ito). Numeric categories sort numerically. */
  color?: string;
  /** Nominal field giving each series a dash pattern (combined with `color`). */
  strokeDash?: string;
  /** Nominal field: one small panel per value, up to `columns` per row. */
  facet?: string;
  title: string;
  subtitle?: string;
  xTitle?: string;
  yTitle?: string;
  /** Legend and header titles; default: the field names. */
  colorTitle?: string;
  strokeDashTitle?: string;
  facetTitle?: string;
  /** `log`: ticks at the data's x values when there are at most 12 of them (e.g. 8, 16, …, 1024). */
  xScale?: "log" | "linear";
  yScale?: "log" | "linear";
  /** Fixed y range, e.g. [0, 1] for accuracy; bands are clipped to it (lines and points are not, so points on
   * the edge stay whole). */
  yDomain?: readonly [number, number];
  /** Draw a dot at each data point. Default: true for {@link lineWithBands}, false for {@link lineChart}. */
  points?: boolean;
  /** Plot (panel) size in pixels; default 420×260, or 240×180 per panel when faceted. */
  width?: number;
  height?: number;
  /** Panels per row when faceted; default min(panels, 3). */
  columns?: number;
}

/** Options of {@link lineWithBands}: a line per series plus a shaded band from `yLow` to `yHigh`. */
export interface LineWithBandsOptions extends LineChartOptions {
  /** Lower edge of the band (e.g. `low` from {@link aggregate}). */
  yLow: string;
  /** Upper edge of the band (e.g. `high` from {@link aggregate}). */
  yHigh: string;
}

function toNumber(v: unknown): number | null {
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  if (typeof v === "string" && v.trim() !== "") {
    const n = Number(v);
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

function checkFields(
  where: string,
  data: readonly CsvRow[],
  fields: Record<string, string | undefined>,
): void {
  if (data.length === 0) return;
  const present = new Set(unionColumns(data));
  for (const [arg, field] of Object.entries(fields)) {
    if (field !== undefined && !present.has(field)) {
      throw new RangeError(
        `${where}: ${arg} must name a column of data, found "${field}"; columns are [${
          [...present].join(", ")
        }]`,
      );
    }
  }
}

/** Distinct values of a nominal field: numerically sorted if all are numbers, else in order of appearance. */
function categoryOrder(data: readonly CsvRow[], field: string): CsvValue[] {
  const values = [...new Set(data.map((r) => r[field]))].filter((v) =>
    v !== null && v !== undefined && v !== ""
  );
  if (values.every((v) => toNumber(v) !== null)) values.sort((a, b) => toNumber(a)! - toNumber(b)!);
  return values;
}

function lineSpec(where: string, o: LineChartOptions, band?: { yLow: string; yHigh: string }): VegaLiteSpec {
  checkFields(where, o.data, {
    x: o.x,
    y: o.y,
    yLow: band?.yLow,
    yHigh: band?.yHigh,
    color: o.color,
    strokeDash: o.strokeDash,
    facet: o.facet,
  });
  const quantitative = [o.x, o.y, ...(band ? [band.yLow, band.yHigh] : [])];
  const values = o.data.map((r) => {
    const out: Record<string, unknown> = { ...r };
    for (const f of quantitative) out[f] = toNumber(r[f]);
    return out;
  });
  for (const f of quantitative) {
    if (values.length > 0 && values.every((r) => r[f] === null)) {
      throw new RangeError(
        `${where}: column "${f}" must hold numbers, found none (first value ${JSON.stringify(o.data[0][f])})`,
      );
    }
  }
  const xs = [...new Set(values.map((r) => r[o.x] as number | null).filter((v) => v !== null))].sort((a, b) =>
    a - b
  );
  const xScale = o.xScale ?? "linear";
  const yScale = o.yScale ?? "linear";
  const x = {
    field: o.x,
    type: "quantitative",
    title: o.xTitle ?? o.x,
    // A log scale's nice domain runs to the next power of ten: ticks at 50..1000 would float in empty space.
    scale: xScale === "log" ? { type: "log", nice: false, padding: 10 } : { zero: false },
    axis: xScale === "log" && xs.length > 0 && xs.length <= 12 ? { values: xs, format: "~g" } : {},
  };
  const yScaleSpec: Record<string, unknown> = yScale === "log" ? { type: "log" } : { zero: false };
  if (o.yDomain) yScaleSpec.domain = [...o.yDomain];
  const y = { field: o.y, type: "quantitative", title: o.yTitle ?? o.y, scale: yScaleSpec };
  const series: Record<string, unknown> = {};
  if (o.color) {
    series.color = {
      field: o.color,
      type: "nominal",
      title: o.colorTitle ?? o.color,
      sort: categoryOrder(o.data, o.color),
      legend: { symbolType: "stroke", symbolStrokeWidth: 2.5 },
    };
  }
  if (o.strokeDash) {
    series.strokeDash = {
      field: o.strokeDash,
      type: "nominal",
      title: o.strokeDashTitle ?? o.strokeDash,
      sort: categoryOrder(o.data, o.strokeDash),
      legend: { symbolType: "stroke", symbolStrokeColor: "#444", symbolStrokeWidth: 2 },
    };
  }
  const points = o.points ?? band !== undefined;
  const layer: VegaLiteSpec[] = [];
  if (band) {
    // The band's colour goes through `fill` of a copy of the colour field: a scale of its own with the same domain
    // order and palette, and a legend Vega-Lite does not merge with the line layer's, so it can be hidden and the
    // legend shows lines, not faint band swatches.
    const bandColor = "__band_" + o.color;
    layer.push({
      ...(o.color ? { transform: [{ calculate: `datum[${JSON.stringify(o.color)}]`, as: bandColor }] } : {}),
      mark: { type: "area", opacity: 0.18, clip: o.yDomain !== undefined },
      encoding: {
        x,
        y: { ...y, field: band.yLow },
        y2: { field: band.yHigh },
        ...(o.color ? { fill: { ...(series.color as object), field: bandColor, legend: null } } : {}),
        // One band per (colour, dash) series, not one per colour.
        ...(o.strokeDash ? { detail: { field: o.strokeDash, type: "nominal" } } : {}),
      },
    });
  }
  layer.push({
    mark: { type: "line", ...(points ? { point: { filled: true, size: 28 } } : {}) },
    encoding: { x, y, ...series },
  });
  const title = o.subtitle ? { text: o.title, subtitle: o.subtitle } : o.title;
  const base = { $schema: VEGA_LITE_SCHEMA, title, data: { values } };
  if (!o.facet) {
    return {
      ...base,
      width: o.width ?? 420,
      height: o.height ?? 260,
      layer,
      config: structuredClone(CHART_CONFIG),
    };
  }
  const panels = categoryOrder(o.data, o.facet);
  return {
    ...base,
    facet: { field: o.facet, type: "nominal", title: o.facetTitle ?? o.facet, sort: panels },
    columns: o.columns ?? Math.max(1, Math.min(panels.length, 3)),
    spec: { width: o.width ?? 240, height: o.height ?? 180, layer },
    config: structuredClone(CHART_CONFIG),
  };
}

/**
 * Vega-Lite spec: one line per series (mean) with a shaded band (e.g. ± standard error over seeds), optionally
 * one panel per value of `facet`. Pair it with {@link aggregate}, which gives `mean`, `low`, `high`.
 *
 * @throws {RangeError} when a field argument does not name a column of a non-empty `data`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { aggregate, lineWithBands } from "./output.ts";
 * const runs = [1, 2, 3].flatMap((seed) =>
 *   [50, 100, 300].flatMap((len) =>
 *     ["default", "mimetic"].map((init) => ({ init, len, seed, acc: init === "mimetic" ? 0.9 : 30 / len }))
 *   )
 * );
 * const spec = lineWithBands({
 *   data: aggregate(runs, ["init", "len"], "acc"),
 *   x: "len", y: "mean", yLow: "low", yHigh: "high", color: "init",
 *   title: "Copy accuracy vs length", xTitle: "string length", yTitle: "accuracy",
 *   xScale: "log", yDomain: [0, 1],
 * });
 * assert.equal((spec.layer as unknown[]).length, 2);
 * ```
 */
export function lineWithBands(o: LineWithBandsOptions): VegaLiteSpec {
  return lineSpec("lineWithBands", o, { yLow: o.yLow, yHigh: o.yHigh });
}

/**
 * Vega-Lite spec: one line per series (e.g. training loss per init), optionally faceted. See
 * {@link LineChartOptions}; points are off by default since curves are dense.
 *
 * @throws {RangeError} when a field argument does not name a column of a non-empty `data`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lineChart } from "./output.ts";
 * const data = [0, 100, 200].flatMap((step) =>
 *   ["default", "mimetic"].map((init) => ({ step, init, loss: 3 / (1 + step / (init === "mimetic" ? 20 : 100)) }))
 * );
 * const spec = lineChart({ data, x: "step", y: "loss", color: "init", yScale: "log", title: "Training loss" });
 * assert.equal(spec.title, "Training loss");
 * ```
 */
export function lineChart(o: LineChartOptions): VegaLiteSpec {
  return lineSpec("lineChart", o);
}

/** Options of {@link heatmap}. Row i of `matrix` is drawn as row i from the top (query i of an attention map). */
export interface HeatmapOptions {
  /** (rows, cols) values; non-finite entries are left blank. */
  matrix: readonly (readonly number[])[] | readonly ArrayLike<number>[];
  title: string;
  subtitle?: string;
  /** Axis titles, e.g. "key position" and "query position". */
  xTitle?: string;
  yTitle?: string;
  /** Legend title; default "value". */
  colorTitle?: string;
  /** Vega sequential scheme; default "viridis" (perceptually uniform, colourblind-safe). */
  scheme?: string;
  /** Fixed colour range, e.g. [0, 1] for attention weights; default: the data's range. */
  domain?: readonly [number, number];
  /** Tick labels (e.g. the tokens); default the indices, thinned to at most ~12 ticks. */
  xLabels?: readonly string[];
  yLabels?: readonly string[];
}

/** Tick positions 0, s, 2s, … with s a 1-2-5 step giving at most ~12 ticks; every index when labels are given. */
function ticks(n: number, labelled: boolean): number[] {
  if (labelled && n <= 64) return Array.from({ length: n }, (_, i) => i);
  const raw = Math.max(1, Math.ceil(n / 12));
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
  return Array.from({ length: Math.ceil(n / step) }, (_, i) => i * step);
}

function axisFor(n: number, labels: readonly string[] | undefined, where: string, arg: string) {
  if (labels && labels.length !== n) {
    throw new RangeError(
      `heatmap: ${arg} must have ${n} labels (the matrix ${where}), found ${labels.length}`,
    );
  }
  return {
    values: ticks(n, labels !== undefined),
    labelAngle: 0,
    ...(labels ? { labelExpr: `${JSON.stringify(labels)}[datum.value]` } : {}),
  };
}

/**
 * Vega-Lite spec: a matrix as coloured cells (rect marks, sequential scheme), e.g. an attention map. Cells are
 * square, at most 24 px, the plot at most ~420 px.
 *
 * @throws {RangeError} when `matrix` is empty or ragged, or labels do not match its size.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { heatmap } from "./output.ts";
 * const T = 6; // causal attention: each query attends uniformly to keys 0..i
 * const att = Array.from({ length: T }, (_, i) => Array.from({ length: T }, (_, j) => (j <= i ? 1 / (i + 1) : 0)));
 * const spec = heatmap({ matrix: att, title: "Attention, layer 4", xTitle: "key", yTitle: "query", domain: [0, 1] });
 * assert.equal((spec.data as { values: unknown[] }).values.length, T * T);
 * ```
 */
export function heatmap(o: HeatmapOptions): VegaLiteSpec {
  const rows = o.matrix.length;
  const cols = rows > 0 ? o.matrix[0].length : 0;
  if (rows === 0 || cols === 0) {
    throw new RangeError(`heatmap: matrix must be non-empty, found ${rows}×${cols}`);
  }
  const values: { row: number; col: number; value: number }[] = [];
  for (let i = 0; i < rows; i++) {
    const r = o.matrix[i];
    if (r.length !== cols) {
      throw new RangeError(
        `heatmap: matrix must be rectangular: row 0 has ${cols} entries, row ${i} has ${r.length}`,
      );
    }
    for (let j = 0; j < cols; j++) if (Number.isFinite(r[j])) values.push({ row: i, col: j, value: r[j] });
  }
  const cell = Math.min(24, 420 / Math.max(rows, cols));
  const colorScale: Record<string, unknown> = { scheme: o.scheme ?? "viridis" };
  if (o.domain) colorScale.domain = [...o.domain];
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: o.subtitle ? { text: o.title, subtitle: o.subtitle } : o.title,
    data: { values },
    width: Math.round(cols * cell),
    height: Math.round(rows * cell),
    mark: { type: "rect" },
    encoding: {
      x: {
        field: "col",
        type: "ordinal",
        title: o.xTitle ?? "column",
        axis: axisFor(cols, o.xLabels, "columns", "xLabels"),
      },
      y: {
        field: "row",
        type: "ordinal",
        title: o.yTitle ?? "row",
        axis: axisFor(rows, o.yLabels, "rows", "yLabels"),
      },
      color: { field: "value", type: "quantitative", title: o.colorTitle ?? "value", scale: colorScale },
    },
    config: { ...structuredClone(CHART_CONFIG), view: { stroke: null } },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Rendering

// The fonts PNGs are drawn with, from the npm package (the same glyphs on every machine). Regular, bold for
// titles, oblique for italics.
const FONT_FILES = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf"];

interface Renderer {
  vega: typeof import("npm:vega@6.4");
  vl: typeof import("npm:vega-lite@6.5");
  Resvg: typeof import("npm:@resvg/resvg-js@2.6").Resvg;
  fontFiles: string[];
}

let renderer: Promise<Renderer> | undefined;

/** Loads vega, vega-lite, resvg and the fonts once, on first use: CSV-only scripts never pay for them. */
function loadRenderer(): Promise<Renderer> {
  return renderer ??= (async () => {
    const [vega, vl, resvg] = await Promise.all([
      import("npm:vega@6.4"),
      import("npm:vega-lite@6.5"),
      import("npm:@resvg/resvg-js@2.6"),
    ]);
    let fontFiles: string[] = [];
    try {
      // Importing the package's package.json is what makes Deno install the package; then its files resolve.
      await import("npm:dejavu-fonts-ttf@2.37/package.json", { with: { type: "json" } });
      fontFiles = FONT_FILES.map((f) =>
        fileURLToPath(import.meta.resolve(`npm:dejavu-fonts-ttf@2.37/ttf/${f}`))
      );
      for (const f of fontFiles) Deno.statSync(f);
    } catch (err) {
      fontFiles = [];
      console.warn(
        `renderVegaLite: bundled DejaVu fonts unavailable (${err}); using system fonts for PNG text`,
      );
    }
    return { vega, vl, Resvg: resvg.Resvg, fontFiles };
  })().catch((err) => {
    renderer = undefined; // let a later call try again rather than keep the failure
    throw err;
  });
}

/** Options of {@link renderVegaLite}. */
export interface RenderOptions {
  /** PNG pixels per SVG pixel; default 2 (sharp on high-DPI screens and in papers). */
  scale?: number;
}

/**
 * Renders a Vega-Lite spec headless: vega-lite compiles it to Vega, a Vega View with renderer "none" makes the
 * SVG, and resvg rasterises the SVG to PNG at `scale`× on white. Data must be inline (`data.values`).
 *
 * Fonts: PNG text is drawn with DejaVu Sans from the npm package dejavu-fonts-ttf, whatever the spec's font
 * names. If that package cannot be loaded, resvg falls back to the system's fonts (a warning is printed); with no
 * fonts at all, resvg silently draws no text (marks and axes only). The SVG names fonts and leaves drawing them
 * to the viewer. Without a canvas, Vega estimates text widths, so labels may sit a little loosely.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lineChart, renderVegaLite } from "./output.ts";
 * const spec = lineChart({ data: [{ t: 0, v: 1 }, { t: 1, v: 2 }], x: "t", y: "v", title: "Tiny" });
 * const { svg, png } = await renderVegaLite(spec);
 * assert.ok(svg.startsWith("<svg") && svg.includes("Tiny"));
 * assert.deepEqual([...png.subarray(1, 4)], [80, 78, 71]); // "PNG"
 * ```
 */
export async function renderVegaLite(
  spec: object,
  options: RenderOptions = {},
): Promise<{ svg: string; png: Uint8Array }> {
  const scale = options.scale ?? 2;
  if (!(scale > 0)) throw new RangeError(`renderVegaLite: scale must be positive, got ${scale}`);
  const { vega, vl, Resvg, fontFiles } = await loadRenderer();
  let svg: string;
  try {
    const vgSpec = vl.compile(spec as Parameters<typeof vl.compile>[0]).spec;
    const view = new vega.View(vega.parse(vgSpec), { renderer: "none" });
    try {
      svg = await view.toSVG();
    } finally {
      view.finalize();
    }
  } catch (err) {
    throw new Error(`renderVegaLite: cannot render the spec: ${(err as Error).message}`, { cause: err });
  }
  const bundled = fontFiles.length > 0;
  const resvg = new Resvg(svg, {
    fitTo: { mode: "zoom", value: scale },
    background: "white",
    font: {
      fontFiles,
      loadSystemFonts: !bundled, // bundled only: the same PNG on every machine
      ...(bundled ? { defaultFontFamily: "DejaVu Sans", sansSerifFamily: "DejaVu Sans" } : {}),
    },
  });
  const png = new Uint8Array(resvg.render().asPng());
  return { svg, png };
}

/** Paths written by {@link writeChart}. */
export interface ChartFiles {
  spec: string;
  svg: string;
  png: string;
}

/**
 * Renders `spec` and writes `<dir>/<name>.vl.json` (the spec, openable in the Vega editor), `<name>.svg` and
 * `<name>.png`, each atomically. The spec is written first, so it is there even if rendering fails.
 *
 * @throws {RangeError} when `name` is empty or contains a path separator.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lineChart, writeChart } from "./output.ts";
 * const dir = Deno.makeTempDirSync();
 * const files = await writeChart(dir, "loss", lineChart({ data: [{ s: 0, l: 2 }, { s: 1, l: 1 }], x: "s", y: "l", title: "Loss" }));
 * assert.equal(files.png, `${dir}/loss.png`);
 * assert.ok(Deno.statSync(files.svg).size > 0);
 * ```
 */
export async function writeChart(
  dir: string,
  name: string,
  spec: object,
  options: RenderOptions = {},
): Promise<ChartFiles> {
  if (name === "" || /[\\/]/.test(name)) {
    throw new RangeError(`writeChart: name must be a file name without "/", got ${JSON.stringify(name)}`);
  }
  const files = {
    spec: join(dir, `${name}.vl.json`),
    svg: join(dir, `${name}.svg`),
    png: join(dir, `${name}.png`),
  };
  writeJsonAtomic(files.spec, spec);
  const { svg, png } = await renderVegaLite(spec, options);
  writeFileAtomic(files.svg, svg);
  writeFileAtomic(files.png, png);
  return files;
}

// ---------------------------------------------------------------------------------------------------------------
// HTML index

/** Contents of an experiment's `index.html` ({@link writeIndexHtml}). */
export interface IndexPage {
  title: string;
  /** Plain text; blank lines separate paragraphs. */
  description: string;
  /** Charts written by {@link writeChart} into the same folder, shown in this order. */
  charts: readonly { name: string; caption: string }[];
  /** CSV files in the same folder (paths relative to it), linked, with a preview of their first rows. */
  tables?: readonly { name: string; caption: string; csvFile: string }[];
}

const PREVIEW_ROWS = 20;

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A relative URL for a file name: each path segment percent-encoded. */
function href(file: string): string {
  return file.split("/").map(encodeURIComponent).join("/");
}

const CSS = `
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #222;
  max-width: 1320px; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(620px, 100%), 1fr)); gap: 1.5rem; }
figure { margin: 0; padding: .8rem; border: 1px solid #e4e4e4; border-radius: 6px; background: #fff; }
figure.wide { grid-column: 1 / -1; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { font-size: .9rem; color: #444; margin-top: .5rem; }
.links { font-size: .8rem; color: #777; } a { color: #0067a5; }
.missing { color: #b00; font-style: italic; }
table { border-collapse: collapse; font-size: .8rem; margin: .5rem 0; }
th, td { border-bottom: 1px solid #eee; padding: .15rem .6rem; text-align: left; }
th { background: #f6f6f6; } details { margin: .3rem 0 1rem; }
`;

function tableHtml(dir: string, t: { name: string; caption: string; csvFile: string }): string {
  const link = `<a href="${esc(href(t.csvFile))}">${esc(t.csvFile)}</a>`;
  let preview = `<p class="missing">${esc(t.csvFile)} not written yet</p>`;
  try {
    if (Deno.statSync(join(dir, t.csvFile)).isFile) {
      const rows = readCsv(join(dir, t.csvFile));
      const cols = rows.length > 0 ? Object.keys(rows[0]) : [];
      const head = `<tr>${cols.map((c) => `<th>${esc(c)}</th>`).join("")}</tr>`;
      const body = rows.slice(0, PREVIEW_ROWS)
        .map((r) => `<tr>${cols.map((c) => `<td>${esc(r[c] ?? "")}</td>`).join("")}</tr>`).join("\n");
      const more = rows.length > PREVIEW_ROWS ? ` (first ${PREVIEW_ROWS} of ${rows.length} rows)` : "";
      preview = `<details><summary>preview${more}</summary>\n<table>${head}\n${body}</table></details>`;
    }
  } catch { /* not there yet, or unreadable: the link still stands */ }
  return `<section><h3>${esc(t.name)}</h3><p>${esc(t.caption)} — ${link}</p>\n${preview}</section>`;
}

/**
 * Writes `<dir>/index.html` atomically: title, description, every chart as `<img src="<name>.svg">` with its
 * caption and links to its PNG and Vega-Lite spec, then the tables with links to their CSVs and a preview of
 * their first 20 rows. A chart or CSV not yet written is marked as missing. Returns the path written.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeIndexHtml } from "./output.ts";
 * const dir = Deno.makeTempDirSync();
 * const path = writeIndexHtml(dir, {
 *   title: "Fig. 3: copy with mimetic init",
 *   description: "24 layers, width 1024.",
 *   charts: [{ name: "copy_acc", caption: "String accuracy vs length, mean ± s.e. over 10 seeds." }],
 *   tables: [{ name: "Runs", caption: "One row per run.", csvFile: "runs.csv" }],
 * });
 * const html = Deno.readTextFileSync(path);
 * assert.ok(html.includes('href="copy_acc.vl.json"') && html.includes('href="runs.csv"'));
 * assert.ok(html.includes("copy_acc.svg not rendered yet")); // writeChart has not run in this example
 * ```
 */
export function writeIndexHtml(dir: string, page: IndexPage): string {
  const paragraphs = page.description.trim() === "" ? [] : page.description.trim().split(/\n\s*\n/);
  const charts = page.charts.map(({ name, caption }) => {
    const svg = readTextOrNull(join(dir, `${name}.svg`));
    // Faceted charts are wider than a grid cell: give them the whole row rather than shrinking them.
    const width = Number(svg?.match(/^<svg[^>]*\swidth="([\d.]+)"/)?.[1] ?? 0);
    const img = svg === null
      ? `<p class="missing">${esc(name)}.svg not rendered yet</p>`
      : `<img src="${esc(href(`${name}.svg`))}" alt="${esc(caption)}">`;
    const links = [["PNG", `${name}.png`], ["SVG", `${name}.svg`], ["Vega-Lite spec", `${name}.vl.json`]]
      .map(([label, file]) => `<a href="${esc(href(file))}">${label}</a>`).join(" · ");
    return `<figure id="${esc(name)}"${width > 640 ? ' class="wide"' : ""}>${img}
<figcaption>${esc(caption)}<br><span class="links">${esc(name)}: ${links}</span></figcaption></figure>`;
  });
  const tables = page.tables ?? [];
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(page.title)}</title>
<style>${CSS}</style>
</head>
<body>
<h1>${esc(page.title)}</h1>
${paragraphs.map((p) => `<p>${esc(p.trim())}</p>`).join("\n")}
${charts.length > 0 ? `<h2>Charts</h2>\n<div class="charts">\n${charts.join("\n")}\n</div>` : ""}
${tables.length > 0 ? `<h2>Data</h2>\n${tables.map((t) => tableHtml(dir, t)).join("\n")}` : ""}
</body>
</html>
`;
  const path = join(dir, "index.html");
  writeFileAtomic(path, html);
  return path;
}
