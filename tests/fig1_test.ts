/**
 * `deno task fig1` as a user runs it: bad flags exit 2 with one line before the GPU is touched; `--scale smoke`
 * trains end to end and writes runs.csv, the curve and summary CSVs, the charts and index.html, with heatmaps drawn
 * from the runs' real attention maps and the paper's Mamba 1 mimetic components (A, Δ, W_Cᵀ W_B; no conv).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { messageLines, runScript } from "./cli_util.ts";
import { noGpu } from "./harness.ts";
import { readCsv } from "../lib/study/csv.ts";
import { readResults, ResultsFolder } from "../lib/study/results.ts";

const FIG1 = new URL("../experiments/fig1.ts", import.meta.url).pathname;

const tmp = Deno.makeTempDirSync({ prefix: "mimetic_fig1_" });
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

const BAD: [string[], RegExp][] = [
  [["--mixer", "mamba3"], /--mixer: expected one of mamba1, mamba2, got "mamba3"/],
  [["--inits", "fancy"], /--inits: expected values from default, mimetic, got "fancy"/],
  [["--mimetic", "paper,A"], /--mimetic: "paper" stands for the paper's components/],
  [["--mimetic", "B"], /--mimetic: expected values from paper, A, delta, qk, conv, got "B"/],
  [["--gen-factor", "1"], /--gen-factor: expected a value ≥ 2, got 1/],
  [["--threshold", "1.5"], /--threshold: expected a value ≤ 1, got 1\.5/],
  [["--curve-every", "0"], /--curve-every: expected a value ≥ 1, got 0/],
  [["--mixer", "mamba2", "--head-dim", "7"], /headDim 7 must divide the inner width/],
  [["--train-len", "30"], /context must be ≥|context/],
];

Deno.test(`fig1: ${BAD.length} bad invocations each exit 2 with one line naming the problem`, async () => {
  const failures: string[] = [];
  for (let i = 0; i < BAD.length; i += 3) {
    await Promise.all(
      BAD.slice(i, i + 3).map(async ([args, pattern]) => {
        const r = await runScript(FIG1, ["--scale", "smoke", "--out", join(tmp, "bad"), ...args], {
          DENO_WEBGPU_BACKEND: "",
        });
        const lines = messageLines(r.stderr);
        const what = `fig1 ${args.join(" ")}`;
        if (r.code !== 2) failures.push(`${what}: exit ${r.code}, stderr:\n${r.stderr}`);
        else if (lines.length !== 1) failures.push(`${what}: ${lines.length} lines:\n${r.stderr}`);
        else if (!pattern.test(lines[0]) || !lines[0].startsWith("fig1: ")) {
          failures.push(`${what}: "${lines[0]}" does not match ${pattern}`);
        }
      }),
    );
  }
  assert.deepEqual(failures, []);
});

Deno.test("fig1 --help lists the figure's flags with their values per scale", async () => {
  const r = await runScript(FIG1, ["--help"], { DENO_WEBGPU_BACKEND: "" });
  assert.equal(r.code, 0, r.stderr);
  for (const flag of ["--mixer", "--inits", "--mimetic", "--curve-every", "--gen-factor", "--map-length"]) {
    assert.ok(r.stdout.includes(flag), `${flag} missing from --help`);
  }
  assert.match(r.stdout, /Mamba layers \(smoke: 2; quick: 4; paper: 4\)/);
});

interface Panel {
  title: { text: string };
  layer: { mark: { type: string }; data?: { values: { row: number; col: number; value: number }[] } }[];
}

Deno.test({
  name:
    "fig1 --scale smoke trains end to end and writes its CSVs, charts (heatmaps of the real maps), index.html",
  ignore: noGpu,
  async fn() {
    const out = join(tmp, "smoke");
    const r = await runScript(FIG1, ["--scale", "smoke", "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    const files = ["runs.csv", "curve_accuracy.csv", "summary.csv", "run_stats.csv", "index.html"];
    for (const chart of ["fig1_accuracy", "fig1_loss", "fig1_maps"]) {
      files.push(`${chart}.png`, `${chart}.svg`, `${chart}.vl.json`);
    }
    for (const f of files) assert.ok(Deno.statSync(join(out, f)).size > 0, `${f} is empty`);

    // 2 inits × 1 seed, evaluated at 6 and 12 (1× and 2× the smoke training length).
    const runs = readCsv(join(out, "runs.csv"));
    assert.deepEqual(runs.map((x) => `${x.init}@${x.eval_len}`).sort(), [
      "default@12",
      "default@6",
      "mimetic@12",
      "mimetic@6",
    ]);
    const mimetic = runs.find((x) => x.init === "mimetic")!;
    assert.deepEqual(
      [
        mimetic["spec.init.A"],
        mimetic["spec.init.delta"],
        mimetic["spec.init.qk"],
        mimetic["spec.init.conv"],
      ],
      ["true", "true", "true", "false"],
      "the paper's Mamba 1 mimetic init is A, Δ and W_Cᵀ W_B without the identity conv",
    );
    assert.equal(mimetic["spec.model.layers.*.kind"], "mamba1");
    for (const x of runs) assert.ok(Number(x.exact_acc) >= 0 && Number(x.exact_acc) <= 1);

    const curve = readCsv(join(out, "curve_accuracy.csv"));
    assert.equal(curve.length, 2 * 2 * 4, "2 inits × 2 lengths × curve steps 10, 20, 30, 40");
    assert.deepEqual([...new Set(curve.map((c) => c.step))].sort((a, b) => Number(a) - Number(b)), [
      "10",
      "20",
      "30",
      "40",
    ]);
    const summary = readCsv(join(out, "summary.csv"));
    assert.equal(summary.length, 4);
    for (const col of ["final_acc_mean", "final_acc_stderr", "first_step_mean", "seeds_reaching"]) {
      assert.ok(col in summary[0], `summary lacks ${col}`);
    }

    // Accuracy chart: solid line for 2× (first in the dash order), colour by init.
    const acc = JSON.parse(Deno.readTextFileSync(join(out, "fig1_accuracy.vl.json")));
    const line = acc.layer[1].encoding;
    assert.deepEqual(line.strokeDash.sort, ["12 (2×)", "6 (1×)"]);
    assert.deepEqual(line.color.sort, ["default", "mimetic"]);

    // Heatmaps: one rect panel per init and layer, its cells (keys j ≤ query i) equal to the result files' maps.
    const maps = JSON.parse(Deno.readTextFileSync(join(out, "fig1_maps.vl.json")));
    const panels = maps.concat as Panel[];
    assert.deepEqual(panels.map((p) => p.title.text), [
      "default, layer 1",
      "default, layer 2",
      "mimetic, layer 1",
      "mimetic, layer 2",
    ]);
    const results = [...readResults(new ResultsFolder(out)).values()];
    const T = 2 * 6 + 2;
    for (const [i, p] of panels.entries()) {
      const rect = p.layer.find((l) => l.mark.type === "rect")!;
      assert.ok(rect, "a panel without rect marks");
      assert.ok(p.layer.some((l) => l.mark.type === "rule"), "the delimiter is not marked");
      const cells = rect.data!.values;
      assert.equal(cells.length, (T * (T + 1)) / 2, "one cell per key j ≤ query i");
      const run = results.find((x) => x.labels.init === (i < 2 ? "default" : "mimetic"))!;
      const m = run.maps[i % 2];
      assert.equal(m.T, T);
      for (const c of cells) {
        assert.ok(c.col <= c.row);
        assert.equal(c.value, m.map[c.row * T + c.col]);
      }
      assert.ok(new Set(cells.map((c) => c.value)).size > T, "a map of (nearly) constant values");
      // Eq. 8 is causal: the result's map is 0 above the diagonal (those cells are not drawn).
      for (let q = 0; q < T; q++) for (let k = q + 1; k < T; k++) assert.equal(m.map[q * T + k], 0);
    }
    assert.notDeepEqual(
      results[0].maps[0].map,
      results[1].maps[0].map,
      "the two inits gave the same attention map",
    );
    const html = Deno.readTextFileSync(join(out, "index.html"));
    for (const s of ["fig1_accuracy.svg", "fig1_maps.svg", "summary.csv"]) assert.ok(html.includes(s), s);
  },
});
