/**
 * `deno task fig5` as a user runs it: the grid replaces only the target layer (linear attention of each head dim,
 * or a mimetic Mamba layer of each state size); `--scale smoke` writes its CSVs, charts (accuracy against head
 * dim, curves, the two kinds of attention map side by side from the GPU maps) and index.html; bad flags exit 2
 * with one line.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { noGpu } from "./harness.ts";
import { assertRejected, runScript } from "./cli_util.ts";
import fig5 from "../experiments/fig5.ts";
import { readCsv, readJson, readResults, ResultsFolder } from "../mod.ts";

const script = new URL("../experiments/fig5.ts", import.meta.url).pathname;
type Values = Parameters<typeof fig5.definition.plan>[0];

/** The figure's values at a scale: overrides, then the scale, then the flag defaults (as the study layer merges). */
function valuesAt(scale: "smoke" | "quick" | "paper", overrides: Partial<Values> = {}): Values {
  const def = fig5.definition;
  const preset = def.scales[scale] as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(def.flags)) {
    out[name] = (overrides as Record<string, unknown>)[name] ?? preset[name] ??
      ("default" in s ? s.default : undefined);
  }
  return out as Values;
}

Deno.test("fig5: the grid swaps only the target layer: linear attention per head dim, mimetic Mamba per N", () => {
  for (const scope of ["all", "target"] as const) {
    const v = valuesAt("quick", { stateScope: scope, mambaInits: ["mimetic", "default"] });
    const grid = fig5.definition.plan(v);
    assert.equal(grid.length, (v.headDims.length + 2 * v.stateSizes.length) * v.seeds * v.lrs.length);
    const mamba = {
      kind: "mamba1",
      dState: 32,
      expand: 2,
      dConv: 4,
      dtRank: 0,
      dtMin: 0.001,
      dtMax: 0.1,
      dtFloor: 1e-4,
    };
    for (const P of v.headDims) {
      const runs = grid.filter((g) => g.labels.kind === "linear attention" && g.labels.size === P);
      assert.equal(runs.length, v.seeds);
      for (const { spec } of runs) {
        assert.equal(spec.model.layers.length, 8);
        spec.model.layers.forEach((l, i) =>
          assert.deepEqual(
            l,
            i === 3 ? { kind: "attention", variant: "linear", heads: 1, headDim: P } : mamba,
          )
        );
        assert.deepEqual(spec.init, { kind: "default" });
        assert.deepEqual(spec.eval.maps, { layers: [3], length: 50 });
        assert.deepEqual(spec.eval.curve.lengths, [50, 100, 200]);
      }
    }
    for (const N of v.stateSizes) {
      const mim = grid.filter((g) => g.labels.kind === "mimetic Mamba" && g.labels.size === N);
      const def = grid.filter((g) => g.labels.kind === "default Mamba" && g.labels.size === N);
      assert.equal(mim.length, v.seeds);
      for (const { spec } of mim) {
        spec.model.layers.forEach((l, i) =>
          assert.deepEqual(l, { ...mamba, dState: i === 3 || scope === "all" ? N : 32 }, `layer ${i}`)
        );
        assert.deepEqual(spec.init, {
          kind: "mimetic",
          A: true,
          c: 8,
          delta: true,
          qk: true,
          conv: false,
          convScope: "xBC",
          layers: [3],
        });
      }
      assert.deepEqual(def[0].spec.model, mim[0].spec.model, "default and mimetic Mamba share the model");
      assert.deepEqual(def[0].spec.init, { kind: "default" });
    }
  }
});

Deno.test({
  name: "fig5 --scale smoke writes runs.csv, summaries, accuracy vs head dim, curves, maps side by side",
  ignore: noGpu,
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "mimetic_fig5_" });
    const r = await runScript(script, ["--scale", "smoke", "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    const v = valuesAt("smoke");
    const arms = v.headDims.length + v.stateSizes.length;
    const rows = readCsv(join(out, "runs.csv"));
    assert.equal(rows.length, arms * v.evalLengths.length);
    for (const row of rows) assert.ok(Number(row.exact_acc) >= 0 && Number(row.exact_acc) <= 1);
    assert.equal(readCsv(join(out, "summary_final.csv")).length, arms * v.evalLengths.length);
    assert.equal(readCsv(join(out, "summary_curves.csv")).length, arms * v.evalLengths.length * 3);
    for (const f of ["fig5a", "fig5b", "fig5_maps"]) {
      for (const ext of ["png", "svg", "vl.json"]) {
        assert.ok((await Deno.stat(join(out, `${f}.${ext}`))).size > 0, `${f}.${ext} missing`);
      }
    }
    // (a): linear attention over the head dims, and each Mamba arm as a flat line across them.
    const a = readJson(join(out, "fig5a.vl.json")) as { data: { values: Record<string, unknown>[] } };
    const series = new Set(a.data.values.map((x) => x.series));
    assert.deepEqual([...series].sort(), ["linear attention", "mimetic Mamba N 4", "mimetic Mamba N 8"]);
    for (const s of ["mimetic Mamba N 4", "mimetic Mamba N 8"]) {
      const pts = a.data.values.filter((x) => x.series === s && x.eval_len === "length 12");
      assert.deepEqual(pts.map((x) => x.head_dim), [4, 8]);
      assert.equal(pts[0].mean, pts[1].mean);
    }
    // The maps chart: linear attention P 4 (nearest N 4) beside mimetic Mamba N 4, from the runs' own maps.
    const results = [...readResults(new ResultsFolder(out)).values()];
    const maps = readJson(join(out, "fig5_maps.vl.json")) as {
      hconcat: {
        title: { text: string; subtitle: string };
        mark: { type: string };
        data: { values: { row: number; col: number; value: number }[] };
        encoding: { x: { title: string }; y: { title: string } };
      }[];
    };
    assert.deepEqual(maps.hconcat.map((p) => p.title.text), ["linear attention, P 4", "mimetic Mamba, N 4"]);
    assert.match(maps.hconcat[0].title.subtitle, /masked scores/);
    const T = 2 * v.trainLen + 2;
    for (
      const [panel, pick] of [[maps.hconcat[0], "linear P 4"], [
        maps.hconcat[1],
        "mimetic Mamba N 4",
      ]] as const
    ) {
      assert.equal(panel.mark.type, "rect");
      assert.equal(panel.encoding.x.title, "key position j");
      assert.equal(panel.encoding.y.title, "query position i");
      const m = results.find((x) => x.labels.arm === pick)!.maps[0];
      assert.equal(m.T, T);
      assert.equal(panel.data.values.length, T * (T + 1) / 2);
      for (const cell of panel.data.values) assert.equal(cell.value, m.map[cell.row * T + cell.col]);
    }
    // Linear attention's map is its masked scores: zero above the diagonal, and not a softmax (rows need not sum
    // to 1, entries may be negative).
    const lin = results.find((x) => x.labels.arm === "linear P 4")!.maps[0];
    for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) assert.equal(lin.map[i * T + j], 0);
    assert.ok(lin.map.some((x) => x < 0), "linear-attention scores take both signs");
    assert.match(Deno.readTextFileSync(join(out, "index.html")), /fig5_maps\.svg/);
    await Deno.remove(out, { recursive: true });
  },
});

Deno.test("fig5: bad flags exit 2 with a one-line message naming the flag, before the GPU", async () => {
  const cases: [string[], RegExp][] = [
    [["--head-dims", "8,8"], /--head-dims: 8 is listed twice/],
    [["--head-dims", "0"], /--head-dims: expected a value ≥ 1, got 0/],
    [["--state-sizes", "4.5"], /--state-sizes: expected an integer, got 4\.5/],
    [["--state-scope", "some"], /--state-scope: expected one of all, target, got "some"/],
    [["--map-head-dim", "16"], /--map-head-dim 16 is not one of --head-dims 4,8/],
    [["--map-state-size", "64"], /--map-state-size 64 is not one of --state-sizes 4,8/],
    [["--target-layer", "5"], /--target-layer 5 is not a layer of a 2-layer model/],
    [["--variant", "reverse"], /--variant: expected one of copy, stack, sort/],
    [["--variant", "sort", "--eval-lengths", "6,30"], /vocab must be ≥ the longest string for sort/],
  ];
  await assertRejected(script, cases);
});
