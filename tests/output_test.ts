import assert from "node:assert/strict";
import { readJson, writeFileAtomic, writeJsonAtomic } from "../lib/core/fs.ts";
import { readCsv, writeCsv } from "../lib/study/csv.ts";
import { aggregate, firstReaching } from "../lib/study/stats.ts";
import {
  attentionMapPanel,
  heatmap,
  heatmapGrid,
  heatmapPanels,
  heatmapRow,
  lineChart,
  lineWithBands,
  OKABE_ITO,
  pointsWithErrorBars,
} from "../lib/study/charts.ts";
import { renderVegaLite, writeChart, writeIndexHtml } from "../lib/study/render.ts";

const dirs: string[] = [];
const tmp = () => {
  const dir = Deno.makeTempDirSync({ prefix: "mimetic_output_test_" });
  dirs.push(dir);
  return dir;
};
globalThis.addEventListener("unload", () => {
  for (const dir of dirs) Deno.removeSync(dir, { recursive: true });
});
const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

/** Width and height from a PNG's IHDR chunk (bytes 16..23, big-endian). */
function pngSize(png: Uint8Array): [number, number] {
  const v = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return [v.getUint32(16), v.getUint32(20)];
}

function svgSize(svg: string): [number, number] {
  const m = svg.match(/^<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/);
  assert.ok(m, `no width/height on the <svg> element: ${svg.slice(0, 200)}`);
  return [Number(m[1]), Number(m[2])];
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

Deno.test("writeFileAtomic creates parent folders, replaces content and leaves no tmp file", () => {
  const dir = tmp();
  const path = `${dir}/a/b/c.txt`;
  writeFileAtomic(path, "old content that is longer");
  writeFileAtomic(path, "new");
  assert.equal(Deno.readTextFileSync(path), "new");
  writeFileAtomic(path, new Uint8Array([0, 1, 255]));
  assert.deepEqual([...Deno.readFileSync(path)], [0, 1, 255]);
  assert.deepEqual(names(`${dir}/a/b`), ["c.txt"]);
});

Deno.test("writeFileAtomic removes its tmp file when the rename fails", () => {
  const dir = tmp();
  Deno.mkdirSync(`${dir}/target`); // renaming a file over a folder fails
  assert.throws(() => writeFileAtomic(`${dir}/target`, "x"));
  assert.deepEqual(names(dir), ["target"]);
});

Deno.test("CSV roundtrip: quotes, commas, newlines, unicode, null, booleans, full-precision numbers", () => {
  const path = `${tmp()}/runs.csv`;
  const rows = [
    { name: 'say "hi", then\nleave', x: 0.1 + 0.2, tiny: 1e-300, ok: true, note: null },
    { name: "Δ ≈ 1 — ünïcode", x: -3, tiny: Number.MAX_SAFE_INTEGER, ok: false, note: "  padded  " },
  ];
  writeCsv(path, rows);
  const back = readCsv(path);
  assert.deepEqual(back, [
    { name: 'say "hi", then\nleave', x: "0.30000000000000004", tiny: "1e-300", ok: "true", note: "" },
    { name: "Δ ≈ 1 — ünïcode", x: "-3", tiny: "9007199254740991", ok: "false", note: "  padded  " },
  ]);
  assert.equal(Number(back[0].x), 0.1 + 0.2);
  assert.ok(Deno.readTextFileSync(path).startsWith("name,x,tiny,ok,note\n"));
});

Deno.test("writeCsv: explicit columns select and order; union of keys by default; empty input", () => {
  const dir = tmp();
  writeCsv(`${dir}/a.csv`, [{ a: 1, b: 2, c: 3 }], ["c", "a"]);
  assert.equal(Deno.readTextFileSync(`${dir}/a.csv`), "c,a\n3,1\n");
  writeCsv(`${dir}/b.csv`, [{ a: 1 }, { b: 2 }]);
  assert.deepEqual(readCsv(`${dir}/b.csv`), [{ a: "1", b: "" }, { a: "", b: "2" }]);
  writeCsv(`${dir}/c.csv`, [], ["a", "b"]);
  assert.equal(Deno.readTextFileSync(`${dir}/c.csv`), "a,b\n");
  assert.deepEqual(readCsv(`${dir}/c.csv`), []);
  writeCsv(`${dir}/d.csv`, []);
  assert.deepEqual(readCsv(`${dir}/d.csv`), []);
  assert.deepEqual(readCsv(`${dir}/missing.csv`), []);
  assert.throws(() => writeCsv(`${dir}/e.csv`, [], ["a", "a"]), RangeError);
});

Deno.test("writeJsonAtomic / readJson roundtrip, fallback and missing file", () => {
  const dir = tmp();
  const value = { name: "fig3", lrs: [1e-3, 5e-4], nested: { ok: true, none: null } };
  writeJsonAtomic(`${dir}/x/config.json`, value);
  assert.deepEqual(readJson(`${dir}/x/config.json`), value);
  assert.ok(Deno.readTextFileSync(`${dir}/x/config.json`).endsWith("}\n"));
  assert.deepEqual(readJson(`${dir}/nope.json`, { step: 0 }), { step: 0 });
  assert.throws(() => readJson(`${dir}/nope.json`), Deno.errors.NotFound);
  assert.throws(() => writeJsonAtomic(`${dir}/u.json`, undefined), RangeError);
});

Deno.test("aggregate: mean, sample std, stderr, low/high, n per group in first-appearance order", () => {
  const rows = [
    { init: "mimetic", len: "50", seed: "0", acc: "1" },
    { init: "default", len: "50", seed: "0", acc: "1" },
    { init: "default", len: "50", seed: "1", acc: "2" },
    { init: "default", len: "50", seed: "2", acc: "3" },
    { init: "default", len: "50", seed: "3", acc: 4 },
    { init: "default", len: "50", seed: "4", acc: "" }, // missing: skipped
    { init: "default", len: "100", seed: "0", acc: null },
  ];
  const out = aggregate(rows, ["init", "len"], "acc");
  assert.deepEqual(out.map((r) => [r.init, r.len, r.n]), [["mimetic", "50", 1], ["default", "50", 4], [
    "default",
    "100",
    0,
  ]]);
  assert.deepEqual(out[0], { init: "mimetic", len: "50", mean: 1, std: 0, stderr: 0, low: 1, high: 1, n: 1 });
  const d = out[1];
  const std = Math.sqrt(5 / 3); // values 1..4: squared deviations 2.25+0.25+0.25+2.25 = 5, over n-1 = 3
  const close = (a: unknown, b: number) => assert.ok(Math.abs((a as number) - b) < 1e-12, `${a} vs ${b}`);
  close(d.mean, 2.5);
  close(d.std, std);
  close(d.stderr, std / 2);
  close(d.low, 2.5 - std / 2);
  close(d.high, 2.5 + std / 2);
  assert.equal(out[2].mean, null);
  assert.throws(() => aggregate([{ g: "a", v: "oops" }], ["g"], "v"), /must hold numbers.*oops/);
  assert.throws(() => aggregate([{ g: "a", v: 1 }], ["g", "v"], "v"), RangeError);
  assert.ok(Number.isNaN(aggregate([{ g: "a", v: "NaN" }], ["g"], "v")[0].mean)); // a diverged run stays visible
});

Deno.test("builders: numeric strings become numbers, categories sort numerically, bad fields throw", () => {
  const data = [
    { N: "128", len: "100", mean: "0.5", low: "0.4", high: "0.6" },
    { N: "32", len: "50", mean: "0.9", low: "0.8", high: "1" },
  ];
  const spec = lineWithBands({
    data,
    x: "len",
    y: "mean",
    yLow: "low",
    yHigh: "high",
    color: "N",
    title: "t",
  });
  const values = (spec.data as { values: Record<string, unknown>[] }).values;
  assert.deepEqual(values[0], { N: "128", len: 100, mean: 0.5, low: 0.4, high: 0.6 });
  const line = (spec.layer as { encoding: { color: { sort: unknown[] } } }[])[1];
  assert.deepEqual(line.encoding.color.sort, ["32", "128"]);
  assert.throws(
    () => lineChart({ data, x: "len", y: "acc", title: "t" }),
    (e) => e instanceof RangeError && /y must name a column of data, found "acc"/.test(e.message),
  );
  assert.throws(
    () => lineChart({ data: [{ init: "a", acc: 1 }], x: "init", y: "acc", title: "t" }),
    /column "init" must hold numbers/,
  );
  assert.throws(() => heatmap({ matrix: [[1, 2], [3]], title: "ragged" }), /rectangular/);
  assert.throws(() => heatmap({ matrix: [], title: "empty" }), RangeError);
  assert.throws(() => heatmap({ matrix: [[1, 2]], title: "labels", xLabels: ["a"] }), /xLabels must have 2/);
});

Deno.test("renderVegaLite: lineWithBands (faceted) gives an SVG with the title and a 2x PNG", async () => {
  const runs = [];
  for (const layer of ["Mamba 1", "Mamba 2"]) {
    for (const seed of [0, 1, 2]) {
      for (const len of [50, 100, 300]) {
        for (const init of ["default", "mimetic"]) {
          runs.push({ layer, seed, len, init, acc: (init === "mimetic" ? 0.9 : 40 / len) + 0.01 * seed });
        }
      }
    }
  }
  const spec = lineWithBands({
    data: aggregate(runs, ["layer", "len", "init"], "acc"),
    x: "len",
    y: "mean",
    yLow: "low",
    yHigh: "high",
    color: "init",
    facet: "layer",
    title: "Copy accuracy vs string length",
    xTitle: "string length",
    yTitle: "accuracy",
    xScale: "log",
    yDomain: [0, 1],
  });
  const { svg, png } = await renderVegaLite(spec);
  assert.ok(svg.startsWith("<svg"), svg.slice(0, 100));
  for (const text of ["Copy accuracy vs string length", "string length", "accuracy", "mimetic", "Mamba 2"]) {
    assert.ok(svg.includes(text), `SVG lacks "${text}"`);
  }
  assert.deepEqual([...png.subarray(0, 8)], PNG_SIGNATURE);
  const [sw, sh] = svgSize(svg);
  const [pw, ph] = pngSize(png);
  console.log(`svg ${sw}x${sh}, png ${pw}x${ph}, ${png.length} bytes`);
  assert.ok(sw > 400 && sh > 200, `svg size ${sw}x${sh}`);
  assert.ok(Math.abs(pw - 2 * sw) <= 2 && Math.abs(ph - 2 * sh) <= 2, `png ${pw}x${ph} vs svg ${sw}x${sh}`);

  const one = await renderVegaLite(spec, { scale: 1 });
  assert.ok(Math.abs(pngSize(one.png)[0] - sw) <= 1);
  await assert.rejects(() => renderVegaLite({ mark: "nonsense" }), /renderVegaLite/);
});

Deno.test("writeChart writes spec, SVG and PNG; heatmap and lineChart render", async () => {
  const dir = tmp();
  const att = Array.from(
    { length: 12 },
    (_, i) => Array.from({ length: 12 }, (_, j) => (j <= i ? 1 / (i + 1) : 0)),
  );
  const files = await writeChart(
    dir,
    "attention",
    heatmap({ matrix: att, title: "Attention map", xTitle: "key", yTitle: "query", domain: [0, 1] }),
  );
  assert.deepEqual(names(dir), ["attention.png", "attention.svg", "attention.vl.json"]);
  assert.equal((readJson(files.spec) as { title: string }).title, "Attention map");
  assert.ok(Deno.readTextFileSync(files.svg).includes("Attention map"));
  assert.deepEqual([...Deno.readFileSync(files.png).subarray(0, 8)], PNG_SIGNATURE);

  const loss = [0, 10, 20, 30].flatMap((step) =>
    ["a", "b"].map((run) => ({ step, run, loss: 2 / (1 + step / 10) }))
  );
  await writeChart(
    dir,
    "loss",
    lineChart({ data: loss, x: "step", y: "loss", color: "run", yScale: "log", title: "Loss" }),
  );
  assert.ok(names(dir).includes("loss.png"));
  await assert.rejects(() => writeChart(dir, "a/b", {}), RangeError);
});

Deno.test("writeIndexHtml references the charts, their specs and the CSVs, escaping text", () => {
  const dir = tmp();
  Deno.writeTextFileSync(`${dir}/copy_acc.svg`, '<svg width="900" height="300"></svg>');
  writeCsv(`${dir}/runs.csv`, [{ init: "<b>mimetic</b>", acc: 1 }]);
  const path = writeIndexHtml(dir, {
    title: "Fig. 3 <copy>",
    description: "First paragraph & more.\n\nSecond paragraph.",
    charts: [{ name: "copy_acc", caption: "Accuracy vs length" }, { name: "not_yet", caption: "Later" }],
    tables: [{ name: "Runs", caption: "One row per run", csvFile: "runs.csv" }],
  });
  assert.equal(path, `${dir}/index.html`);
  const html = Deno.readTextFileSync(path);
  for (
    const s of [
      '<img src="copy_acc.svg"',
      'href="copy_acc.vl.json"',
      'href="copy_acc.png"',
      "Accuracy vs length",
      'href="runs.csv"',
      "<title>Fig. 3 &#60;copy&#62;</title>",
      "<p>First paragraph &#38; more.</p>",
      "<p>Second paragraph.</p>",
      "&#60;b&#62;mimetic&#60;/b&#62;", // CSV preview, escaped
      "not_yet.svg not rendered yet",
      'class="wide"',
    ]
  ) assert.ok(html.includes(s), `index.html lacks ${s}`);
  assert.ok(!html.includes('<img src="not_yet.svg"'));
  assert.deepEqual(names(dir), ["copy_acc.svg", "index.html", "runs.csv"]);
});

Deno.test("pointsWithErrorBars: rows in the given order, fixed colours, rule and facets; renders; bad fields throw", async () => {
  const combos = ["none", "conv", "A", "A+conv"];
  const runs = ["Mamba 1", "Mamba 2\nconv over x only"].flatMap((mixer) =>
    [50, 300].flatMap((len) =>
      combos.flatMap((combo, i) =>
        [0, 1, 2].map((seed) => ({
          mixer,
          len,
          combo,
          conv: combo.includes("conv") ? "on" : "off",
          seed,
          acc: Math.min(1, (0.2 * i + 0.03 * seed) * (50 / len) + (mixer === "Mamba 1" ? 0 : 0.1)),
        }))
      )
    )
  );
  const data = aggregate(runs, ["mixer", "len", "combo", "conv"], "acc");
  const spec = pointsWithErrorBars({
    data,
    x: "mean",
    xLow: "low",
    xHigh: "high",
    y: "combo",
    yOrder: ["A+conv", "A", "not in the data"], // unlisted values follow in order of appearance
    color: "conv",
    colors: { on: "#0072B2", off: "#555555" },
    shape: "conv",
    row: "mixer",
    column: "len",
    title: "Accuracy per combination",
    subtitle: "mean ± s.e. over 3 seeds",
    xTitle: "string accuracy",
    colorTitle: "identity conv",
    xDomain: [0, 1],
    xRule: 0.5,
  });
  type Layer = { mark: { type: string }; encoding: Record<string, Record<string, unknown>> };
  const inner = spec.spec as { layer: Layer[]; height: { step: number } };
  assert.deepEqual(inner.layer.map((l) => l.mark.type), ["rule", "rule", "point"]);
  const [rule, bar, point] = inner.layer;
  assert.deepEqual(rule.encoding.x, { datum: 0.5, type: "quantitative" });
  assert.equal(bar.encoding.x.field, "low");
  assert.equal(bar.encoding.x2.field, "high");
  assert.deepEqual(point.encoding.y.sort, ["A+conv", "A", "none", "conv"]);
  // The map's order and colours for the values present; the same domain for the shape, so one legend.
  assert.deepEqual(point.encoding.color.scale, { domain: ["on", "off"], range: ["#0072B2", "#555555"] });
  assert.deepEqual((point.encoding.shape.scale as { domain: unknown[] }).domain, ["on", "off"]);
  const facet = spec.facet as Record<string, { field: string; sort: unknown[] }>;
  assert.equal(facet.row.field, "mixer");
  assert.deepEqual(facet.column.sort, [50, 300]);
  const values = (spec.data as { values: Record<string, unknown>[] }).values;
  assert.equal(values.length, 2 * 2 * 4);
  assert.equal(typeof values[0].mean, "number");

  // Unlisted colours take the Okabe–Ito colours the map does not use.
  const partial = pointsWithErrorBars({
    data,
    x: "mean",
    xLow: "low",
    xHigh: "high",
    y: "combo",
    color: "conv",
    colors: { on: OKABE_ITO[0] },
    title: "t",
  });
  const layers = (partial as { layer: Layer[] }).layer;
  assert.equal(layers.length, 2, "no rule without xRule");
  assert.deepEqual(layers[1].encoding.color.scale, {
    domain: ["on", "off"],
    range: [OKABE_ITO[0], OKABE_ITO[1]],
  });

  const { svg } = await renderVegaLite(spec);
  for (
    const text of [
      "Accuracy per combination",
      "A+conv",
      "none",
      "Mamba 1",
      "conv over x only",
      "identity conv",
    ]
  ) {
    assert.ok(svg.includes(text), `SVG lacks "${text}"`);
  }
  const [w, h] = svgSize(svg);
  assert.ok(w > 400 && h > 200, `svg size ${w}x${h}`);

  assert.throws(
    () => pointsWithErrorBars({ data, x: "mean", xLow: "lo", xHigh: "high", y: "combo", title: "t" }),
    (e) => e instanceof RangeError && /xLow must name a column of data, found "lo"/.test(e.message),
  );
  assert.throws(
    () => pointsWithErrorBars({ data, x: "combo", xLow: "low", xHigh: "high", y: "mean", title: "t" }),
    /column "combo" must hold numbers/,
  );
});

Deno.test("heatmapRow: panels side by side, each with its own colour scale and title; renders; bad panels throw", async () => {
  const T = 9;
  const softmaxLike = Array.from(
    { length: T },
    (_, i) => Array.from({ length: T }, (_, j) => (j <= i ? 1 / (i + 1) : 0)),
  );
  // A second operator on another scale (negative scores), and of another size.
  const linearLike = Array.from(
    { length: 6 },
    (_, i) => Array.from({ length: 6 }, (_, j) => (j <= i ? 5 * (i - 2 * j) : NaN)),
  );
  const spec = heatmapRow({
    title: "Layer 4 attention maps",
    subtitle: "copy, length 4",
    xTitle: "key position j",
    yTitle: "query position i",
    colorTitle: "weight",
    panels: [
      { title: "softmax attention", matrix: softmaxLike, domain: [0, 1] },
      { title: "linear attention", matrix: linearLike, colorTitle: "score" },
    ],
  });
  const panels = spec.hconcat as {
    title: string;
    data: { values: { value: number }[] };
    encoding: { color: { title: string; scale: { domain?: number[] } }; x: { title: string } };
  }[];
  assert.equal(panels.length, 2);
  assert.deepEqual(spec.resolve, { scale: { color: "independent" }, legend: { color: "independent" } });
  assert.deepEqual(panels.map((p) => p.title), ["softmax attention", "linear attention"]);
  assert.deepEqual(panels[0].encoding.color.scale.domain, [0, 1]);
  assert.equal(panels[1].encoding.color.scale.domain, undefined);
  assert.deepEqual(panels.map((p) => p.encoding.color.title), ["weight", "score"]);
  assert.equal(panels[1].encoding.x.title, "key position j");
  assert.equal(panels[0].data.values.length, T * T);
  assert.equal(panels[1].data.values.length, 21, "NaN cells (above the diagonal) are left out");
  assert.ok(!("$schema" in panels[0]) && !("config" in panels[0]), "panels are plain unit specs");
  const { svg, png } = await renderVegaLite(spec);
  for (
    const text of [
      "Layer 4 attention maps",
      "softmax attention",
      "linear attention",
      "key position j",
      "score",
    ]
  ) {
    assert.ok(svg.includes(text), `SVG lacks "${text}"`);
  }
  assert.deepEqual([...png.subarray(0, 8)], PNG_SIGNATURE);
  const [w] = svgSize(svg);
  assert.ok(w > 2 * 9 * 20, `two panels side by side: svg width ${w}`);
  const grid = heatmapRow({
    title: "grid",
    columns: 1,
    panels: [{ title: "a", matrix: [[1]] }, { title: "b", matrix: [[2]] }],
  });
  assert.equal((grid.concat as unknown[]).length, 2);
  assert.equal(grid.columns, 1);
  assert.throws(() => heatmapRow({ title: "none", panels: [] }), /panels must not be empty/);
  assert.throws(
    () =>
      heatmapRow({
        title: "ragged",
        panels: [{ title: "ok", matrix: [[1]] }, { title: "bad", matrix: [[1, 2], [3]] }],
      }),
    (e) => e instanceof RangeError && /panel 1 \(bad\).*rectangular/.test(e.message),
  );
});

Deno.test("attentionMapPanel: blanks j > i, block-averages long maps, clips the colour range to quantiles", () => {
  const T = 10;
  // Row i: 1 on the diagonal, i·j/100 below it, one outlier of 1000 at (9, 0), and garbage above the diagonal.
  const map = Array.from({ length: T * T }, (_, n) => {
    const i = Math.floor(n / T), j = n % T;
    return j > i ? 777 : i === 9 && j === 0 ? 1000 : i === j ? 1 : (i * j) / 100;
  });
  const full = attentionMapPanel({ T, map }, "layer 3", { clip: 0, subtitle: "seed 0", colorTitle: "score" });
  assert.equal(full.title, "layer 3");
  assert.equal(full.subtitle, "seed 0");
  assert.equal(full.colorTitle, "score");
  assert.equal(full.matrix.length, T);
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < T; j++) {
      if (j > i) assert.ok(Number.isNaN(full.matrix[i][j]), `(${i}, ${j}) is blank`);
      else assert.equal(full.matrix[i][j], map[i * T + j]);
    }
  }
  assert.deepEqual(
    full.domain,
    [0, 1000],
    "clip 0: the whole causal range (777 above the diagonal is ignored)",
  );
  // Clipped at 20%: of the 55 causal entries (8 zeros, 36 more below the diagonal up to 9·8/100, ten ones on the
  // diagonal, the outlier), the 80% quantile is the largest below the diagonal, and the 20% one is above zero.
  const clipped = attentionMapPanel({ T, map }, "layer 3", { clip: 0.2 });
  assert.equal(clipped.domain![1], 0.72);
  assert.ok(clipped.domain![0] > 0, `clipped domain ${clipped.domain}`);
  // The default 1%: the 99% quantile of 55 entries is the second largest, so the one outlier stops setting it.
  assert.deepEqual(attentionMapPanel({ T, map }, "default clip").domain, [0, 1]);
  // maxSide 4 → stride 3: 4×4 blocks, each the mean of the entries it covers (the last block row covers only i = 9).
  const small = attentionMapPanel({ T, map }, "small", { maxSide: 4, clip: 0 });
  assert.equal(small.matrix.length, 4);
  assert.ok(Number.isNaN(small.matrix[0][1]) && Number.isNaN(small.matrix[2][3]));
  const block00 = [0, 1, 2].flatMap((i) => [0, 1, 2].map((j) => map[i * T + j]));
  assert.ok(Math.abs(small.matrix[0][0] - block00.reduce((a, b) => a + b, 0) / 9) < 1e-12);
  assert.ok(Math.abs(small.matrix[3][0] - (1000 + 0.09 + 0.18) / 3) < 1e-9);
  const flat = attentionMapPanel({ T: 2, map: [5, 0, 5, 5] }, "constant");
  assert.equal(flat.domain, undefined, "a constant map keeps the default range");
  assert.throws(() => attentionMapPanel({ T: 3, map: [1, 2] }, "short"), /T·T = 9 entries, got 2/);
  assert.throws(
    () => attentionMapPanel({ T, map }, "bad", { maxSide: 0 }),
    /maxSide must be a positive integer/,
  );
  assert.throws(() => attentionMapPanel({ T, map }, "bad", { clip: 0.5 }), /clip must be in \[0, 0.5\)/);
});

Deno.test("heatmap guides and size; heatmapGrid puts every panel's cells, guides and colour scale in one chart", async () => {
  const T = 14;
  const map = (k: number) =>
    Array.from(
      { length: T },
      (_, i) => Array.from({ length: T }, (_, j) => (j <= i ? (i * T + j + k) / 300 : 0)),
    );
  // One heatmap with a guide: rect cells plus a rule at that column and one at that row.
  const one = heatmap({ matrix: map(0), title: "t", guides: [{ at: 7, label: "|" }], size: 140 });
  const layers = one.layer as { mark: { type: string }; data: { values: Record<string, number>[] } }[];
  assert.deepEqual(layers.map((l) => l.mark.type), ["rect", "rule", "rule"]);
  assert.equal(layers[0].data.values.length, T * T);
  assert.deepEqual(layers[1].data.values, [{ col: 7, guide: "|" }]);
  assert.deepEqual(layers[2].data.values, [{ row: 7, guide: "|" }]);
  assert.equal(one.width, 140, "14 cells of 10 whole pixels");
  assert.equal(heatmap({ matrix: map(0), title: "t", size: 150 }).width, 140, "cells stay whole pixels");
  assert.throws(() => heatmap({ matrix: map(0), title: "t", guides: [{ at: -1, label: "x" }] }), /guide "x"/);
  assert.throws(() => heatmap({ matrix: map(0), title: "t", size: 0 }), /size must be a positive/);

  const spec = heatmapGrid({
    panels: [0, 1, 2, 3].map((k) => ({ matrix: map(k), title: `layer ${k + 1}` })),
    columns: 2,
    title: "Attention maps",
    xTitle: "key position j",
    yTitle: "query position i",
    guides: [{ at: 7, label: "delimiter" }],
    colorScale: "independent",
  });
  const panels = spec.concat as { title: { text: string }; layer: typeof layers; width: number }[];
  assert.equal(spec.columns, 2);
  assert.deepEqual(panels.map((p) => p.title.text), ["layer 1", "layer 2", "layer 3", "layer 4"]);
  assert.deepEqual(spec.resolve, { scale: { color: "independent" } });
  panels.forEach((p, k) => {
    const cells = p.layer[0].data.values;
    assert.equal(cells.length, T * T);
    assert.equal(cells.find((c) => c.row === 5 && c.col === 3)!.value, (5 * T + 3 + k) / 300);
  });
  assert.throws(
    () =>
      heatmapGrid({
        panels: [{ matrix: map(0), title: "a" }],
        title: "t",
        domain: [0, 1],
        colorScale: "independent",
      }),
    /fixed domain needs colorScale shared/,
  );
  assert.throws(() => heatmapGrid({ panels: [], title: "t" }), /panels must be non-empty/);
  assert.throws(
    () => heatmapGrid({ panels: [{ matrix: [[1, 2], [3]], title: "bad" }], title: "t" }),
    /panel 0 \(bad\): matrix must be rectangular/,
  );
  const { svg, png } = await renderVegaLite(spec);
  for (const text of ["Attention maps", "layer 4", "key position j", "query position i"]) {
    assert.ok(svg.includes(text), `SVG lacks "${text}"`);
  }
  assert.deepEqual([...png.subarray(0, 8)], PNG_SIGNATURE);
});

Deno.test("firstReaching: first x with y ≥ threshold per group, null if never, and the last y", () => {
  const rows = [
    { run: "a", len: "50", step: "300", acc: "0.95" },
    { run: "a", len: "50", step: "100", acc: "0.2" },
    { run: "a", len: "50", step: "200", acc: "0.9" },
    { run: "a", len: "100", step: "100", acc: "0.1" },
    { run: "a", len: "100", step: "200", acc: "" },
    { run: "b", len: "50", step: "100", acc: "0.91" },
  ];
  assert.deepEqual(firstReaching(rows, ["run", "len"], "step", "acc", 0.9), [
    { run: "a", len: "50", first: 200, last: 0.95 },
    { run: "a", len: "100", first: null, last: 0.1 },
    { run: "b", len: "50", first: 100, last: 0.91 },
  ]);
  const agg = aggregate(firstReaching(rows, ["run", "len"], "step", "acc", 0.9), ["len"], "first");
  assert.deepEqual(agg.map((g) => [g.len, g.mean, g.n]), [["50", 150, 2], ["100", null, 0]]);
  assert.throws(() => firstReaching(rows, ["step"], "step", "acc", 0.9), /by must not name/);
  assert.throws(
    () => firstReaching([{ run: "a", step: 1, acc: "high" }], ["run"], "step", "acc", 0.9),
    /must hold numbers/,
  );
});

Deno.test("heatmapPanels: one panel per matrix on a shared colour scale, in order; bad matrices refused; renders", async () => {
  const T = 6;
  const decay = (r: number) =>
    Array.from({ length: T }, (_, i) => Array.from({ length: T }, (_, j) => (j <= i ? r ** (i - j) : NaN)));
  const spec = heatmapPanels({
    panels: [{ label: "T_31", matrix: decay(0.99) }, { label: "T_0", matrix: decay(0.3) }],
    title: "Average attention masks",
    xTitle: "key",
    yTitle: "query",
    domain: [0, 1],
  });
  const values =
    (spec.data as { values: { panel: string; row: number; col: number; value: number }[] }).values;
  assert.equal(values.length, 2 * (T * (T + 1)) / 2, "non-finite cells are left out");
  assert.deepEqual((spec.facet as { sort: string[] }).sort, ["T_31", "T_0"]);
  const cell = values.find((v) => v.panel === "T_0" && v.row === 3 && v.col === 1)!;
  assert.ok(Math.abs(cell.value - 0.3 ** 2) < 1e-12);
  assert.deepEqual(
    (spec.spec as { encoding: { color: { scale: { domain: number[] } } } }).encoding.color.scale.domain,
    [0, 1],
  );
  assert.throws(() => heatmapPanels({ panels: [], title: "none" }), /panels must not be empty/);
  assert.throws(
    () =>
      heatmapPanels({
        panels: [{ label: "a", matrix: decay(1) }, { label: "b", matrix: [[1]] }],
        title: "t",
      }),
    /panel "b" is not 6×6 like panel "a"/,
  );
  const dir = tmp();
  await writeChart(dir, "masks", spec);
  assert.ok(names(dir).includes("masks.png") && names(dir).includes("masks.svg"));
  assert.ok(Deno.readTextFileSync(`${dir}/masks.svg`).includes("T_31"));
});
