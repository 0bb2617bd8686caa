/**
 * Vega-Lite chart builders with one shared look (colourblind-safe Okabe–Ito palette, viridis for heatmaps, DejaVu
 * Sans): {@link lineWithBands}, {@link lineChart}, {@link heatmap}, {@link heatmapGrid}. Each returns a plain JSON
 * spec; `render.ts` turns it into SVG and PNG.
 * @module
 */
import { attentionMapToRows } from "../ops/attention_map.ts";
import { type CsvRow, type CsvValue, unionColumns } from "./csv.ts";

/** A Vega-Lite spec as plain JSON (https://vega.github.io/vega-lite/docs/spec.html). */
export type VegaLiteSpec = Record<string, unknown>;

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
    axis: xScale === "log" && xs.length > 0 && xs.length <= 12
      ? { values: xs, format: "~g" }
      // Integer x (lengths, layers, steps): no ticks between integers.
      : xs.length > 0 && xs.every(Number.isInteger)
      ? { tickMinStep: 1, format: "d" }
      : {},
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
 * import { lineWithBands } from "./charts.ts";
 * import { aggregate } from "./stats.ts";
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
 * import { lineChart } from "./charts.ts";
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
  /** Dashed lines through the middle of these rows and columns, e.g. the delimiter of a copy example in an
   * attention map; index `at` of both axes (a line is drawn only where the matrix has that row or column). */
  guides?: readonly { at: number; label: string }[];
  /** The longer side of the plot in pixels, at most (cells stay square and ≤ 24 px); default 420. */
  size?: number;
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
 * square, whole pixels where they fit, at most 24 px; the plot at most `size` (420) px; `guides` mark rows and
 * columns with dashed lines.
 *
 * @throws {RangeError} when `matrix` is empty or ragged, or labels do not match its size.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { heatmap } from "./charts.ts";
 * const T = 6; // causal attention: each query attends uniformly to keys 0..i
 * const att = Array.from({ length: T }, (_, i) => Array.from({ length: T }, (_, j) => (j <= i ? 1 / (i + 1) : 0)));
 * const spec = heatmap({ matrix: att, title: "Attention, layer 4", xTitle: "key", yTitle: "query", domain: [0, 1] });
 * assert.equal((spec.data as { values: unknown[] }).values.length, T * T);
 * ```
 */
export function heatmap(o: HeatmapOptions): VegaLiteSpec {
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: o.subtitle ? { text: o.title, subtitle: o.subtitle } : o.title,
    ...heatmapView("heatmap", o),
    config: { ...structuredClone(CHART_CONFIG), view: { stroke: null } },
  };
}

/** The view of one heatmap (data, size, marks, encodings), without schema, title or config. */
function heatmapView(where: string, o: Omit<HeatmapOptions, "title">): VegaLiteSpec {
  const rows = o.matrix.length;
  const cols = rows > 0 ? o.matrix[0].length : 0;
  if (rows === 0 || cols === 0) {
    throw new RangeError(`${where}: matrix must be non-empty, found ${rows}×${cols}`);
  }
  const values: { row: number; col: number; value: number }[] = [];
  for (let i = 0; i < rows; i++) {
    const r = o.matrix[i];
    if (r.length !== cols) {
      throw new RangeError(
        `${where}: matrix must be rectangular: row 0 has ${cols} entries, row ${i} has ${r.length}`,
      );
    }
    for (let j = 0; j < cols; j++) if (Number.isFinite(r[j])) values.push({ row: i, col: j, value: r[j] });
  }
  const size = o.size ?? 420;
  if (!(size > 0)) throw new RangeError(`${where}: size must be a positive number of pixels, got ${o.size}`);
  // Whole-pixel cells where they fit: cell edges on fractional pixels leave antialiased seams between cells.
  const fit = size / Math.max(rows, cols);
  const cell = Math.min(24, fit >= 1 ? Math.floor(fit) : fit);
  const colorScale: Record<string, unknown> = { scheme: o.scheme ?? "viridis" };
  // Cells outside a fixed range take the end colours (not colours extrapolated past the scheme).
  if (o.domain) Object.assign(colorScale, { domain: [...o.domain], clamp: true });
  const x = {
    field: "col",
    type: "ordinal",
    title: o.xTitle ?? "column",
    axis: axisFor(cols, o.xLabels, "columns", "xLabels"),
  };
  const y = {
    field: "row",
    type: "ordinal",
    title: o.yTitle ?? "row",
    axis: axisFor(rows, o.yLabels, "rows", "yLabels"),
  };
  const rect = {
    // No ARIA labels per cell: they would triple the SVG of a 100×100 map.
    mark: { type: "rect", aria: false },
    encoding: {
      x,
      y,
      color: { field: "value", type: "quantitative", title: o.colorTitle ?? "value", scale: colorScale },
    },
  };
  const view = { width: Math.round(cols * cell), height: Math.round(rows * cell) };
  const guides = o.guides ?? [];
  for (const g of guides) {
    if (!Number.isInteger(g.at) || g.at < 0) {
      throw new RangeError(`${where}: guide "${g.label}" must be at a row/column index ≥ 0, got ${g.at}`);
    }
  }
  if (guides.length === 0) return { data: { values }, ...view, ...rect };
  // Rules share the rect's band scales: a rule at band `at` runs through the middle of that row or column.
  const rule = (field: "col" | "row", n: number) => ({
    data: { values: guides.filter((g) => g.at < n).map((g) => ({ [field]: g.at, guide: g.label })) },
    mark: { type: "rule", color: "white", strokeDash: [4, 3], strokeWidth: 1, opacity: 0.9 },
    encoding: { [field === "col" ? "x" : "y"]: field === "col" ? x : y },
  });
  return { ...view, layer: [{ data: { values }, ...rect }, rule("col", cols), rule("row", rows)] };
}

/** Options of {@link heatmapGrid}: many heatmaps side by side, e.g. the attention map of every layer. */
export interface HeatmapGridOptions
  extends Omit<HeatmapOptions, "matrix" | "title" | "subtitle" | "xLabels" | "yLabels"> {
  /** The panels in reading order, each with its title (e.g. "mimetic, layer 2"). */
  panels: readonly { matrix: HeatmapOptions["matrix"]; title: string }[];
  title: string;
  subtitle?: string;
  /** Panels per row; default min(panels, 4). */
  columns?: number;
  /** `shared`: one colour scale and legend for every panel (default); `independent`: each panel its own (for maps
   * whose magnitudes differ from panel to panel, as Mamba layers' do). */
  colorScale?: "shared" | "independent";
  /** Each panel's longer side in pixels, at most; default 220. */
  size?: number;
}

/**
 * Vega-Lite spec: heatmaps side by side (a `concat` of rect views, `columns` per row), with shared axis titles and
 * optional guides on every panel. One chart, so a reader compares panels at a glance.
 *
 * @throws {RangeError} when there are no panels, a matrix is empty or ragged, or `domain` is set with an
 * independent colour scale.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { heatmapGrid } from "./charts.ts";
 * const T = 6;
 * const causal = (sharp: number) =>
 *   Array.from({ length: T }, (_, i) => Array.from({ length: T }, (_, j) => (j <= i ? Math.exp(-sharp * (i - j)) : 0)));
 * const spec = heatmapGrid({
 *   panels: [1, 2, 3].map((l) => ({ matrix: causal(l), title: `layer ${l}` })),
 *   title: "Attention maps", xTitle: "key position j", yTitle: "query position i",
 *   guides: [{ at: 2, label: "delimiter" }], colorScale: "independent",
 * });
 * assert.equal((spec.concat as unknown[]).length, 3);
 * ```
 */
export function heatmapGrid(o: HeatmapGridOptions): VegaLiteSpec {
  if (o.panels.length === 0) throw new RangeError("heatmapGrid: panels must be non-empty");
  const independent = o.colorScale === "independent";
  if (independent && o.domain) {
    throw new RangeError("heatmapGrid: a fixed domain needs colorScale shared (one scale for every panel)");
  }
  const { panels, title, subtitle, columns, colorScale: _c, ...shared } = o;
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: subtitle ? { text: title, subtitle } : title,
    columns: columns ?? Math.min(panels.length, 4),
    concat: panels.map((p, i) => ({
      title: { text: p.title, fontSize: 12, fontWeight: "normal", anchor: "middle" },
      ...heatmapView(`heatmapGrid: panel ${i} (${p.title})`, {
        ...shared,
        matrix: p.matrix,
        size: o.size ?? 220,
      }),
    })),
    resolve: { scale: { color: independent ? "independent" : "shared" } },
    spacing: 16,
    config: { ...structuredClone(CHART_CONFIG), view: { stroke: null } },
  };
}

/** Options of {@link pointsWithErrorBars}: one point per row of `data` with a horizontal error bar. */
export interface PointsWithErrorBarsOptions {
  /** Rows, e.g. from {@link aggregate}; numeric strings in x fields are parsed. */
  data: readonly CsvRow[];
  /** Quantitative field of the point (e.g. `mean`). */
  x: string;
  /** Left and right ends of the error bar (e.g. `low` and `high` from {@link aggregate}). */
  xLow: string;
  xHigh: string;
  /** Nominal field: one line of the chart per value (e.g. a combination's label). */
  y: string;
  /** Order of the lines, top to bottom; default: order of first appearance in `data`. Values not listed go last. */
  yOrder?: readonly CsvValue[];
  /** Nominal field colouring the points and bars; numeric categories sort numerically. */
  color?: string;
  /**
   * Colours of `color`'s values (e.g. the same value the same colour in every chart of a figure); values present
   * in `data` keep this order, values not listed take the unused Okabe–Ito colours. Default: Okabe–Ito in order.
   */
  colors?: Readonly<Record<string, string>>;
  /** Nominal field giving the points a shape (e.g. the same field as `color`: legible in grey too). */
  shape?: string;
  /**
   * Nominal fields: a grid of panels, one row of panels per value of `row`, one column per value of `column`. A
   * newline in a value breaks its panel label into lines.
   */
  row?: string;
  column?: string;
  title: string;
  subtitle?: string;
  xTitle?: string;
  yTitle?: string;
  colorTitle?: string;
  rowTitle?: string;
  columnTitle?: string;
  /** Fixed x range, e.g. [0, 1] for accuracy; error bars are clipped to it. */
  xDomain?: readonly [number, number];
  /** A dashed vertical reference line at this x (e.g. 0 for differences). */
  xRule?: number;
  /** Panel width in pixels (default 220) and height of one category line (default 16). */
  width?: number;
  rowHeight?: number;
}

/**
 * Vega-Lite spec: a dot plot with error bars — one point per row of `data` at `x`, a horizontal bar from `xLow` to
 * `xHigh`, one line per category of `y` in `yOrder`, optionally coloured by `color` and laid out in a grid of
 * panels by `row` and `column`. For many categories compared on one measure, e.g. accuracy ± s.e. of each of the
 * 16 init combinations, per length and mixer. Panels share the y axis (each lists every category); points of one
 * category in one panel sit on one line, so put what should not overlap in panels of its own.
 *
 * @throws {RangeError} when a field argument does not name a column of a non-empty `data`, or an x field holds no
 * numbers.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pointsWithErrorBars } from "./charts.ts";
 * import { aggregate } from "./stats.ts";
 * const runs = ["none", "A", "A+Δ"].flatMap((combo, i) =>
 *   [0, 1, 2].flatMap((seed) =>
 *     [50, 100].map((len) => ({ combo, seed, len, acc: Math.min(1, (0.3 * (i + 1) + 0.05 * seed) * 50 / len) }))
 *   )
 * );
 * const spec = pointsWithErrorBars({
 *   data: aggregate(runs, ["combo", "len"], "acc"),
 *   x: "mean", xLow: "low", xHigh: "high", y: "combo", column: "len",
 *   title: "Accuracy per init combination", xTitle: "string accuracy", xDomain: [0, 1],
 * });
 * const layers = (spec.spec as { layer: { mark: { type: string } }[] }).layer;
 * assert.deepEqual(layers.map((l) => l.mark.type), ["rule", "point"]);
 * ```
 */
export function pointsWithErrorBars(o: PointsWithErrorBarsOptions): VegaLiteSpec {
  const where = "pointsWithErrorBars";
  checkFields(where, o.data, {
    x: o.x,
    xLow: o.xLow,
    xHigh: o.xHigh,
    y: o.y,
    color: o.color,
    shape: o.shape,
    row: o.row,
    column: o.column,
  });
  const quantitative = [o.x, o.xLow, o.xHigh];
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
  const present = [...new Set(o.data.map((r) => r[o.y]))];
  const listed = (o.yOrder ?? []).filter((v) => present.includes(v));
  const yOrder = [...listed, ...present.filter((v) => !listed.includes(v))];
  const xScale: Record<string, unknown> = { zero: false };
  if (o.xDomain) xScale.domain = [...o.xDomain];
  const x = { field: o.x, type: "quantitative", title: o.xTitle ?? o.x, scale: xScale };
  const y = { field: o.y, type: "nominal", title: o.yTitle ?? o.y, sort: yOrder, axis: { labelLimit: 240 } };
  // Colour (and shape) domains: with `colors`, the named values first, in the map's order.
  const domainOf = (field: string) => {
    const order = categoryOrder(o.data, field);
    if (!o.colors || field !== o.color) return order;
    const named = Object.keys(o.colors).filter((k) => order.some((v) => String(v) === k));
    return [...named, ...order.filter((v) => !named.includes(String(v)))];
  };
  const encoding: Record<string, unknown> = {};
  if (o.color) {
    const domain = domainOf(o.color);
    const spare = OKABE_ITO.filter((c) => !Object.values(o.colors ?? {}).includes(c));
    let next = 0;
    const range = domain.map((v) => o.colors?.[String(v)] ?? spare[next++ % spare.length]);
    encoding.color = {
      field: o.color,
      type: "nominal",
      title: o.colorTitle ?? o.color,
      scale: { domain, range },
      legend: { titleLimit: 400, labelLimit: 400 },
    };
  }
  const shape = o.shape
    ? {
      // The same field, title and domain as the colour: Vega-Lite merges the two legends into one.
      shape: {
        field: o.shape,
        type: "nominal",
        title: o.shape === o.color ? (o.colorTitle ?? o.color) : o.shape,
        scale: { domain: domainOf(o.shape) },
      },
    }
    : {};
  const layer: VegaLiteSpec[] = [];
  if (o.xRule !== undefined) {
    // One rule per panel: the aggregate leaves one row (per facet cell, when faceted).
    layer.push({
      transform: [{ aggregate: [{ op: "count", as: "__rows" }] }],
      mark: { type: "rule", color: "#999", strokeDash: [4, 3] },
      encoding: { x: { datum: o.xRule, type: "quantitative" } },
    });
  }
  layer.push(
    {
      mark: { type: "rule", strokeWidth: 1.5, clip: o.xDomain !== undefined },
      encoding: { x: { ...x, field: o.xLow }, x2: { field: o.xHigh }, y, ...encoding },
    },
    {
      mark: { type: "point", filled: true, size: 40, opacity: 1 },
      encoding: {
        x,
        y,
        ...encoding,
        ...shape,
        tooltip: [
          { field: o.y, type: "nominal" },
          ...(o.color ? [{ field: o.color, type: "nominal" }] : []),
          { field: o.x, type: "quantitative", format: ".3f" },
          { field: o.xLow, type: "quantitative", format: ".3f" },
          { field: o.xHigh, type: "quantitative", format: ".3f" },
        ],
      },
    },
  );
  const title = o.subtitle ? { text: o.title, subtitle: o.subtitle } : o.title;
  const inner = { width: o.width ?? 220, height: { step: o.rowHeight ?? 16 }, layer };
  const base = { $schema: VEGA_LITE_SCHEMA, title, data: { values } };
  if (!o.row && !o.column) return { ...base, ...inner, config: structuredClone(CHART_CONFIG) };
  const facet: Record<string, unknown> = {};
  for (
    const [channel, field, t] of [["row", o.row, o.rowTitle], ["column", o.column, o.columnTitle]] as const
  ) {
    if (!field) continue;
    facet[channel] = {
      field,
      type: "nominal",
      title: t ?? field,
      sort: categoryOrder(o.data, field),
      // A newline in a value breaks its label into lines.
      header: { labelExpr: "split(datum.label, '\\n')" },
    };
  }
  return {
    ...base,
    facet,
    spec: inner,
    config: structuredClone(CHART_CONFIG),
  };
}

/** One panel of {@link heatmapRow}: a matrix with its own title (and, optionally, its own colour range). */
export interface HeatmapPanel {
  /** (rows, cols) values; non-finite entries are left blank. Panels may differ in size. */
  matrix: readonly (readonly number[])[] | readonly ArrayLike<number>[];
  /** The panel's title, e.g. "linear attention, P 32". */
  title: string;
  subtitle?: string;
  /** Fixed colour range of this panel, e.g. [0, 1] for softmax weights; default: the panel's data range. */
  domain?: readonly [number, number];
  /** Legend title of this panel; default the row's `colorTitle`. */
  colorTitle?: string;
}

/** Options of {@link heatmapRow}. */
export interface HeatmapRowOptions {
  panels: readonly HeatmapPanel[];
  title: string;
  subtitle?: string;
  /** Axis titles shared by the panels, e.g. "key position j" and "query position i". */
  xTitle?: string;
  yTitle?: string;
  /** Legend title; default "value". */
  colorTitle?: string;
  /** Vega sequential scheme; default "viridis". */
  scheme?: string;
  /** Panels per row; default all in one row. */
  columns?: number;
}

/**
 * Vega-Lite spec: heatmaps side by side (e.g. the attention maps of two layers, or of one layer under two inits),
 * each a {@link heatmap} with its own title and its own colour scale and legend (maps of different operators live
 * on different scales: softmax weights in [0, 1], linear-attention scores unbounded).
 *
 * @throws {RangeError} when there are no panels, or a panel's matrix is empty or ragged.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { heatmapRow } from "./charts.ts";
 * const T = 5;
 * const causal = (f: (i: number, j: number) => number) =>
 *   Array.from({ length: T }, (_, i) => Array.from({ length: T }, (_, j) => (j <= i ? f(i, j) : NaN)));
 * const spec = heatmapRow({
 *   title: "Layer 4 attention maps",
 *   xTitle: "key position j",
 *   yTitle: "query position i",
 *   panels: [
 *     { title: "softmax attention", matrix: causal((i) => 1 / (i + 1)), domain: [0, 1] },
 *     { title: "linear attention", matrix: causal((i, j) => i * j - 3) },
 *   ],
 * });
 * assert.equal((spec.hconcat as unknown[]).length, 2);
 * ```
 */
export function heatmapRow(o: HeatmapRowOptions): VegaLiteSpec {
  if (o.panels.length === 0) throw new RangeError("heatmapRow: panels must not be empty");
  const panels = o.panels.map((p, i) => {
    let spec: VegaLiteSpec;
    try {
      spec = heatmap({
        matrix: p.matrix,
        title: p.title,
        subtitle: p.subtitle,
        xTitle: o.xTitle,
        yTitle: o.yTitle,
        colorTitle: p.colorTitle ?? o.colorTitle,
        scheme: o.scheme,
        domain: p.domain,
      });
    } catch (e) {
      throw new RangeError(`heatmapRow: panel ${i} (${p.title}): ${(e as Error).message}`);
    }
    const { $schema: _s, config: _c, ...panel } = spec;
    return panel;
  });
  const title = o.subtitle ? { text: o.title, subtitle: o.subtitle } : o.title;
  const columns = o.columns ?? panels.length;
  const resolve = { scale: { color: "independent" }, legend: { color: "independent" } };
  const config = { ...structuredClone(CHART_CONFIG), view: { stroke: null }, concat: { spacing: 28 } };
  if (columns >= panels.length) {
    return { $schema: VEGA_LITE_SCHEMA, title, hconcat: panels, resolve, config };
  }
  return { $schema: VEGA_LITE_SCHEMA, title, concat: panels, columns, resolve, config };
}

/** Options of {@link attentionMapPanel}. */
export interface AttentionMapPanelOptions {
  subtitle?: string;
  /** Largest side drawn: longer maps are averaged in s×s blocks, s = ⌈T / maxSide⌉ (default 128). */
  maxSide?: number;
  /**
   * Colour range from the `clip` and 1 − `clip` quantiles of the causal entries (default 0.01), so that a few
   * extreme entries (often the diagonal) do not wash out the rest; cells beyond it take the end colours. 0: the
   * full range.
   */
  clip?: number;
  colorTitle?: string;
}

/**
 * A heatmap panel ({@link heatmapRow}) of one causal T×T attention map, e.g. a `LayerMap` of a run's result
 * (row-major, row i = query position): entries above the diagonal (j > i, outside every causal layer's reach)
 * are left blank, long maps are block-averaged to at most `maxSide` cells a side, and the colour range is clipped
 * to quantiles of the causal entries.
 *
 * @throws {RangeError} when `map` does not hold T·T entries, or `maxSide` or `clip` is out of range.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { attentionMapPanel, heatmapRow } from "./charts.ts";
 * const T = 300; // a softmax layer that looks one step back, downsampled to 100×100
 * const map = Array.from({ length: T * T }, (_, n) => (n % T === Math.floor(n / T) - 1 ? 1 : 0));
 * const panel = attentionMapPanel({ T, map }, "softmax attention", { maxSide: 100, clip: 0 });
 * assert.equal(panel.matrix.length, 100);
 * assert.ok(Number.isNaN(panel.matrix[0][1])); // above the diagonal: blank
 * assert.deepEqual(panel.domain, [0, 2 / 9]); // a 3×3 block on the diagonal holds two of the nine ones
 * const spec = heatmapRow({ title: "Layer 4", panels: [panel], xTitle: "key", yTitle: "query" });
 * assert.equal((spec.hconcat as unknown[]).length, 1);
 * ```
 */
export function attentionMapPanel(
  m: { T: number; map: ArrayLike<number> },
  title: string,
  o: AttentionMapPanelOptions = {},
): HeatmapPanel {
  const maxSide = o.maxSide ?? 128;
  const clip = o.clip ?? 0.01;
  if (!Number.isInteger(maxSide) || maxSide < 1) {
    throw new RangeError(`attentionMapPanel: maxSide must be a positive integer, got ${maxSide}`);
  }
  if (!(clip >= 0 && clip < 0.5)) {
    throw new RangeError(`attentionMapPanel: clip must be in [0, 0.5), got ${clip}`);
  }
  const stride = Math.ceil(m.T / maxSide);
  const rows = attentionMapToRows(m.map, m.T, stride).map((row, r) => row.map((v, c) => (c > r ? NaN : v)));
  const causal = rows.flatMap((row) => row.filter((v) => Number.isFinite(v))).sort((a, b) => a - b);
  const at = (q: number) =>
    causal[Math.min(causal.length - 1, Math.max(0, Math.round(q * (causal.length - 1))))];
  let domain: [number, number] = [at(clip), at(1 - clip)];
  if (!(domain[1] > domain[0])) domain = [causal[0], causal[causal.length - 1]];
  return {
    matrix: rows,
    title,
    ...(o.subtitle !== undefined ? { subtitle: o.subtitle } : {}),
    ...(domain[1] > domain[0] ? { domain } : {}),
    ...(o.colorTitle !== undefined ? { colorTitle: o.colorTitle } : {}),
  };
}

/** Options of {@link heatmapPanels}: {@link heatmap}'s, for several matrices side by side. */
export interface HeatmapPanelsOptions {
  /** One panel per matrix, in order, titled by `label`; every matrix (rows, cols) of the same size. */
  panels: readonly { label: string; matrix: readonly (readonly number[])[] | readonly ArrayLike<number>[] }[];
  title: string;
  subtitle?: string;
  xTitle?: string;
  yTitle?: string;
  /** Legend title; default "value". */
  colorTitle?: string;
  /** Vega sequential scheme; default "viridis". */
  scheme?: string;
  /** One colour range for every panel, e.g. [0, 1]; default: the range of all of them. */
  domain?: readonly [number, number];
  /** Panels per row; default min(panels, 4). */
  columns?: number;
  /** Panel edge in pixels; default 150. */
  panelSize?: number;
}

/**
 * Vega-Lite spec: several matrices as small heatmaps on one shared colour scale (one panel each, e.g. the attention
 * maps of several layers), `columns` per row. Row i of each matrix is drawn as row i from the top.
 *
 * @throws {RangeError} when there are no panels, a matrix is empty or ragged, or matrices differ in size.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { heatmapPanels } from "./charts.ts";
 * const T = 5;
 * const decay = (r: number) => Array.from({ length: T }, (_, i) => Array.from({ length: T }, (_, j) => (j <= i ? r ** (i - j) : 0)));
 * const spec = heatmapPanels({
 *   panels: [{ label: "layer 0", matrix: decay(0.5) }, { label: "layer 1", matrix: decay(1) }],
 *   title: "Average attention mask", xTitle: "key", yTitle: "query", domain: [0, 1],
 * });
 * assert.equal((spec.data as { values: unknown[] }).values.length, 2 * T * T);
 * ```
 */
export function heatmapPanels(o: HeatmapPanelsOptions): VegaLiteSpec {
  if (o.panels.length === 0) throw new RangeError("heatmapPanels: panels must not be empty");
  const rows = o.panels[0].matrix.length;
  const cols = rows > 0 ? o.panels[0].matrix[0].length : 0;
  if (rows === 0 || cols === 0) {
    throw new RangeError(`heatmapPanels: panel "${o.panels[0].label}" is empty (${rows}×${cols})`);
  }
  const values: { panel: string; row: number; col: number; value: number }[] = [];
  for (const { label, matrix } of o.panels) {
    if (matrix.length !== rows || matrix.some((r) => r.length !== cols)) {
      throw new RangeError(
        `heatmapPanels: panel "${label}" is not ${rows}×${cols} like panel "${o.panels[0].label}"`,
      );
    }
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const v = matrix[i][j];
        if (Number.isFinite(v)) values.push({ panel: label, row: i, col: j, value: v });
      }
    }
  }
  const size = o.panelSize ?? 150;
  const colorScale: Record<string, unknown> = { scheme: o.scheme ?? "viridis" };
  if (o.domain) colorScale.domain = [...o.domain];
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: o.subtitle ? { text: o.title, subtitle: o.subtitle } : o.title,
    data: { values },
    facet: {
      field: "panel",
      type: "nominal",
      title: null,
      sort: o.panels.map((p) => p.label),
      header: { labelFontSize: 12 },
    },
    columns: o.columns ?? Math.min(o.panels.length, 4),
    spec: {
      width: Math.round(size * Math.min(1, cols / Math.max(rows, cols))),
      height: Math.round(size * Math.min(1, rows / Math.max(rows, cols))),
      mark: { type: "rect" },
      encoding: {
        x: {
          field: "col",
          type: "ordinal",
          title: o.xTitle ?? "column",
          axis: { ...axisFor(cols, undefined, "columns", "xLabels"), labelFontSize: 9 },
        },
        y: {
          field: "row",
          type: "ordinal",
          title: o.yTitle ?? "row",
          axis: { ...axisFor(rows, undefined, "rows", "yLabels"), labelFontSize: 9 },
        },
        color: { field: "value", type: "quantitative", title: o.colorTitle ?? "value", scale: colorScale },
      },
    },
    config: { ...structuredClone(CHART_CONFIG), view: { stroke: null } },
  };
}
