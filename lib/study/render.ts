/**
 * Rendering: {@link renderVegaLite} renders a spec headless to SVG and PNG; {@link writeChart} writes
 * `<name>.vl.json`, `<name>.svg`, `<name>.png`; {@link writeIndexHtml} writes a page showing them with the CSVs.
 *
 * npm packages, loaded on first render only: vega 6.4, vega-lite 6.5, @resvg/resvg-js 2.6 (native binding, needs
 * `--allow-ffi` or `-A`) and dejavu-fonts-ttf 2.37 (the font PNGs are drawn with, so they look the same on every
 * machine, fonts installed or not).
 * @module
 */
// Inline npm: specifiers on purpose: mod.ts may be imported from a URL, where deno.json's import map does not apply.
// deno-lint-ignore-file no-import-prefix
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readTextOrNull, writeFileAtomic, writeJsonAtomic } from "../core/fs.ts";
import { readCsv } from "./csv.ts";

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
 * import { lineChart } from "./charts.ts";
 * import { renderVegaLite } from "./render.ts";
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
 * import { lineChart } from "./charts.ts";
 * import { writeChart } from "./render.ts";
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
 * import { writeIndexHtml } from "./render.ts";
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
