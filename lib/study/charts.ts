/**
 * Vega-Lite chart builders with one shared look (colourblind-safe Okabe–Ito palette, viridis for heatmaps, DejaVu
 * Sans): {@link lineWithBands}, {@link lineChart}, {@link heatmap}. Each returns a plain JSON spec; `render.ts`
 * turns it into SVG and PNG.
 * @module
 */
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
 * import { heatmap } from "./charts.ts";
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
