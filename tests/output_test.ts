import assert from "node:assert/strict";
import { readJson, writeFileAtomic, writeJsonAtomic } from "../lib/core/fs.ts";
import { readCsv, writeCsv } from "../lib/study/csv.ts";
import { aggregate } from "../lib/study/stats.ts";
import { heatmap, heatmapPanels, lineChart, lineWithBands } from "../lib/study/charts.ts";
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
