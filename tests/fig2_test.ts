/**
 * `deno task fig2` as a user runs it: bad flags exit 2 with one line before the GPU is touched; `--scale smoke`
 * trains the hybrid (softmax attention at the chosen layer) and the all-Mamba model end to end and writes
 * runs.csv, the curve and summary CSVs, the charts and index.html, the attention layer's heatmap drawn from its
 * real softmax weights.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { messageLines, runScript } from "./cli_util.ts";
import { noGpu } from "./harness.ts";
import { readCsv } from "../lib/study/csv.ts";
import { readResults, ResultsFolder } from "../lib/study/results.ts";

const FIG2 = new URL("../experiments/fig2.ts", import.meta.url).pathname;

const tmp = Deno.makeTempDirSync({ prefix: "mimetic_fig2_" });
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

const BAD: [string[], RegExp][] = [
  [["--attention-layer", "3"], /--attention-layer 3 is not a layer of a 3-layer model/],
  [["--arms", "transformer"], /--arms: expected values from hybrid, mamba, got "transformer"/],
  [["--arms", "hybrid,hybrid"], /--arms: hybrid is listed twice/],
  [["--attention-heads", "3"], /--attention-heads 3 must divide --d-model 16/],
  [["--attention-variant", "sparse"], /--attention-variant: expected one of softmax, linear/],
  [["--maps", "some"], /--maps: expected one of attention, all/],
  [["--mimetic", "conv,paper"], /--mimetic: "paper" stands for the paper's components/],
  [["--gen-factor", "0"], /--gen-factor: expected a value ≥ 2, got 0/],
];

Deno.test(`fig2: ${BAD.length} bad invocations each exit 2 with one line naming the problem`, async () => {
  const failures: string[] = [];
  for (let i = 0; i < BAD.length; i += 3) {
    await Promise.all(
      BAD.slice(i, i + 3).map(async ([args, pattern]) => {
        const r = await runScript(FIG2, ["--scale", "smoke", "--out", join(tmp, "bad"), ...args], {
          DENO_WEBGPU_BACKEND: "",
        });
        const lines = messageLines(r.stderr);
        const what = `fig2 ${args.join(" ")}`;
        if (r.code !== 2) failures.push(`${what}: exit ${r.code}, stderr:\n${r.stderr}`);
        else if (lines.length !== 1) failures.push(`${what}: ${lines.length} lines:\n${r.stderr}`);
        else if (!pattern.test(lines[0]) || !lines[0].startsWith("fig2: ")) {
          failures.push(`${what}: "${lines[0]}" does not match ${pattern}`);
        }
      }),
    );
  }
  assert.deepEqual(failures, []);
});

Deno.test("fig2 --help lists the figure's flags with their values per scale", async () => {
  const r = await runScript(FIG2, ["--help"], { DENO_WEBGPU_BACKEND: "" });
  assert.equal(r.code, 0, r.stderr);
  for (
    const flag of [
      "--mixer",
      "--arms",
      "--attention-layer",
      "--attention-head-dim",
      "--maps",
      "--curve-every",
    ]
  ) {
    assert.ok(r.stdout.includes(flag), `${flag} missing from --help`);
  }
  assert.match(r.stdout, /layers in all \(smoke: 3; quick: 8; paper: 8\)/);
});

interface Panel {
  title: { text: string };
  layer: { mark: { type: string }; data?: { values: { row: number; col: number; value: number }[] } }[];
}

Deno.test({
  name:
    "fig2 --scale smoke trains the hybrid and all-Mamba models and writes CSVs, charts, heatmaps, index.html",
  ignore: noGpu,
  async fn() {
    const out = join(tmp, "smoke");
    const r = await runScript(FIG2, ["--scale", "smoke", "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    const files = ["runs.csv", "curve_accuracy.csv", "summary.csv", "run_stats.csv", "index.html"];
    for (const chart of ["fig2_accuracy", "fig2_loss", "fig2_maps"]) {
      files.push(`${chart}.png`, `${chart}.svg`, `${chart}.vl.json`);
    }
    for (const f of files) assert.ok(Deno.statSync(join(out, f)).size > 0, `${f} is empty`);

    // 2 arms × 1 seed, at 6 and 12; the hybrid's layer 1 (0-based; smoke has 3 layers) is one softmax head.
    const runs = readCsv(join(out, "runs.csv"));
    assert.deepEqual(runs.map((x) => `${x.arm}@${x.eval_len}`).sort(), [
      "hybrid@12",
      "hybrid@6",
      "mamba@12",
      "mamba@6",
    ]);
    const hybrid = runs.find((x) => x.arm === "hybrid")!;
    assert.deepEqual(
      [0, 1, 2].map((i) => hybrid[`spec.model.layers.${i}.kind`]),
      ["mamba1", "attention", "mamba1"],
    );
    assert.equal(hybrid["spec.model.layers.1.variant"], "softmax");
    assert.equal(hybrid["spec.model.layers.1.heads"], "1");
    assert.equal(hybrid["spec.model.layers.1.headDim"], "16", "head dim 0 means D/H");
    assert.equal(hybrid["spec.init.kind"], "default");
    assert.equal(runs.find((x) => x.arm === "mamba")!["spec.model.layers.*.kind"], "mamba1");

    const curve = readCsv(join(out, "curve_accuracy.csv"));
    assert.equal(curve.length, 2 * 2 * 4, "2 arms × 2 lengths × curve steps 10, 20, 30, 40");
    const summary = readCsv(join(out, "summary.csv"));
    assert.deepEqual(summary.map((s) => `${s.arm}@${s.eval_len}`), [
      "hybrid@6",
      "hybrid@12",
      "mamba@6",
      "mamba@12",
    ]);

    const acc = JSON.parse(Deno.readTextFileSync(join(out, "fig2_accuracy.vl.json")));
    assert.deepEqual(acc.layer[1].encoding.strokeDash.sort, ["12 (2×)", "6 (1×)"]);

    // Heatmaps: the hybrid's attention layer and the all-Mamba model's layer in the same position.
    const maps = JSON.parse(Deno.readTextFileSync(join(out, "fig2_maps.vl.json")));
    const panels = maps.concat as Panel[];
    assert.deepEqual(panels.map((p) => p.title.text), [
      "hybrid: layer 2 (softmax attention)",
      "all Mamba 1: layer 2 (Mamba 1)",
    ]);
    const results = [...readResults(new ResultsFolder(out)).values()];
    const T = 2 * 6 + 2;
    for (const [i, p] of panels.entries()) {
      const cells = p.layer.find((l) => l.mark.type === "rect")!.data!.values;
      assert.equal(cells.length, (T * (T + 1)) / 2, "one cell per key j ≤ query i");
      const m = results.find((x) => x.labels.arm === (i === 0 ? "hybrid" : "mamba"))!.maps[0];
      assert.equal(m.layer, 1);
      for (const c of cells) {
        assert.ok(c.col <= c.row);
        assert.equal(c.value, m.map[c.row * T + c.col]);
      }
      assert.ok(new Set(cells.map((c) => c.value)).size > T, "a map of (nearly) constant values");
      for (let q = 0; q < T; q++) for (let k = q + 1; k < T; k++) assert.equal(m.map[q * T + k], 0);
    }
    // The attention map is causal softmax weights: each row sums to 1 over the keys j ≤ i.
    const att = panels[0].layer[0].data!.values;
    for (let i = 0; i < T; i++) {
      const row = att.filter((c) => c.row === i);
      assert.ok(row.every((c) => c.value >= 0));
      const sum = row.reduce((s, c) => s + c.value, 0);
      assert.ok(Math.abs(sum - 1) < 1e-3, `row ${i} of the softmax map sums to ${sum}`);
    }
    const html = Deno.readTextFileSync(join(out, "index.html"));
    for (const s of ["fig2_accuracy.svg", "fig2_maps.svg", "summary.csv"]) assert.ok(html.includes(s), s);
  },
});
