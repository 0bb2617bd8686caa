/**
 * `deno task fig4` as a user runs it: the mimetic arm's per-layer init reaches layer 3 (the paper's layer 4) and
 * only it, exactly where its components act; `--scale smoke` writes its CSVs, charts (curves, and heatmaps drawn
 * from the GPU attention maps) and index.html; bad flags exit 2 with one line.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { noGpu } from "./harness.ts";
import { assertRejected, runScript } from "./cli_util.ts";
import fig4 from "../experiments/fig4.ts";
import {
  DELTA_ONE_BIAS,
  disposeTree,
  type GridRun,
  initLM,
  initRule,
  INITS,
  type InitSpec,
  type LMConfig,
  mapTree,
  readCsv,
  readJson,
  readResults,
  readTensors,
  ResultsFolder,
  runKeys,
  type Tensor,
} from "../mod.ts";

const script = new URL("../experiments/fig4.ts", import.meta.url).pathname;
type Values = Parameters<typeof fig4.definition.plan>[0];

/** The figure's values at a scale: overrides, then the scale, then the flag defaults (as the study layer merges). */
function valuesAt(scale: "smoke" | "quick" | "paper", overrides: Partial<Values> = {}): Values {
  const def = fig4.definition;
  const preset = def.scales[scale] as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(def.flags)) {
    out[name] = (overrides as Record<string, unknown>)[name] ?? preset[name] ??
      ("default" in s ? s.default : undefined);
  }
  return out as Values;
}

/** Every tensor of a model (params and consts) by path, read back. */
async function drawModel(model: LMConfig, init: InitSpec, seed: number): Promise<Map<string, Float32Array>> {
  const rule = initRule(init);
  const { params, consts } = initLM(
    [runKeys(seed).init],
    model,
    (_run, layer) => rule.layer(init as never, layer),
  );
  const entries: [string, Tensor][] = [];
  mapTree({ params, consts }, (t, path) => entries.push([path, t]));
  const data = await readTensors(entries.map(([, t]) => t));
  disposeTree([params, consts]);
  return new Map(entries.map(([path, _], i) => [path, data[i] as Float32Array]));
}

const same = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && a.every((x, i) => Object.is(x, b[i]));

/** Paths of layer `i` (params and consts) whose values differ between two draws; throws if any other path does. */
function differingPaths(a: Map<string, Float32Array>, b: Map<string, Float32Array>, layer: number): string[] {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort(), "the two draws have the same tensors");
  const inLayer = (p: string) => new RegExp(`^(params|consts)\\.layers\\[${layer}\\]`).test(p);
  const differ: string[] = [];
  for (const [path, x] of a) {
    if (same(x, b.get(path)!)) continue;
    assert.ok(inLayer(path), `${path} differs from the default draw, outside layer ${layer}`);
    differ.push(path.replace(/^(params|consts)\.layers\[\d+\]\.?/, "$1:"));
  }
  return differ.sort();
}

function runOf(grid: GridRun[], arm: string, task = "copy"): GridRun {
  const r = grid.find((g) => g.labels.arm === arm && g.labels.task === task && g.spec.seed === 0);
  assert.ok(r, `no ${task} ${arm} run in the grid`);
  return r;
}

Deno.test({
  name:
    "fig4: the mimetic arm's init reaches only layer 3, exactly where its components act (Mamba 1, Mamba 2)",
  ignore: noGpu,
  async fn() {
    assert.ok(INITS.mimetic && INITS.default);
    const cases = [
      {
        mixer: "mamba1",
        components: { A: true, delta: true, qk: true, conv: false },
        // Mamba 1, A, Δ, W_Cᵀ W_B: x_proj's C block, dt_proj, and the A scale (a const).
        changed: [
          "consts:aScale",
          "params:mixer.dtProjBias",
          "params:mixer.dtProjWeight",
          "params:mixer.xProjC",
        ],
        zeroWeight: "dtProjWeight",
        bias: "dtProjBias",
        C: "xProjC",
        B: "xProjB",
      },
      {
        mixer: "mamba2",
        components: { A: true, delta: true, qk: true, conv: true },
        changed: [
          "consts:aScale",
          ...["convB", "convC", "convX"].flatMap((
            c,
          ) => [`params:mixer.${c}.bias`, `params:mixer.${c}.weight`]),
          "params:mixer.dtBias",
          "params:mixer.inC",
          "params:mixer.inDt",
        ],
        zeroWeight: "inDt",
        bias: "dtBias",
        C: "inC",
        B: "inB",
      },
    ] as const;
    for (const c of cases) {
      // The quick scale's grid (8 layers, target 3), narrowed to D 16, N 4 so that it draws in a moment.
      const grid = fig4.definition.plan(
        valuesAt("quick", { mixer: c.mixer, dModel: 16, dState: 4, headDim: 8, seeds: 1 }),
      );
      const def = runOf(grid, "default"), mim = runOf(grid, "mimetic"), att = runOf(grid, "attention");
      assert.equal(mim.spec.model.layers.length, 8);
      assert.deepEqual(mim.spec.model, def.spec.model, "default and mimetic arms share the model");
      assert.deepEqual(mim.spec.init, {
        kind: "mimetic",
        c: 8,
        convScope: "xBC",
        layers: [3],
        ...c.components,
      });
      assert.equal(
        initRule(mim.spec.init).label(mim.spec.init as never),
        c.mixer === "mamba1" ? "mimetic A+Δ+qk @3" : "mimetic @3",
      );
      const base = await drawModel(def.spec.model, def.spec.init, 0);
      const drawn = await drawModel(mim.spec.model, mim.spec.init, 0);
      assert.deepEqual(differingPaths(base, drawn, 3), [...c.changed].sort(), c.mixer);
      // And the values are the mimetic ones: W_Δ = 0, b_Δ = softplus⁻¹(1), W_C = (W_C' + W_B)/2, A scale −c.
      const at = (m: Map<string, Float32Array>, name: string) => m.get(`params.layers[3].mixer.${name}`)!;
      assert.ok(at(drawn, c.zeroWeight).every((x) => x === 0));
      assert.ok(at(drawn, c.bias).every((x) => x === Math.fround(DELTA_ONE_BIAS)));
      const cDef = at(base, c.C), b = at(base, c.B), cMim = at(drawn, c.C);
      assert.ok(cMim.every((x, i) => x === Math.fround((cDef[i] + b[i]) / 2)), "W_C = (W_C' + W_B)/2");
      assert.deepEqual([...drawn.get("consts.layers[3].aScale")!], [-8]);
      assert.deepEqual([...drawn.get("consts.layers[2].aScale")!], [1]);
      if (c.mixer === "mamba2") {
        const w = at(drawn, "convX.weight"); // identity conv: the last tap of every channel
        assert.ok(w.every((x, i) => x === (i % 4 === 3 ? 1 : 0)));
      }
      // The hybrid: its layer 3 is single-head softmax attention of head dim D; every other layer is the default
      // arm's, bit for bit.
      assert.deepEqual(att.spec.model.layers[3], {
        kind: "attention",
        variant: "softmax",
        heads: 1,
        headDim: 16,
      });
      assert.deepEqual(att.spec.init, { kind: "default" });
      const hybrid = await drawModel(att.spec.model, att.spec.init, 0);
      for (const [path, x] of hybrid) {
        if (/layers\[3\]\.mixer/.test(path)) continue;
        assert.ok(same(x, base.get(path)!), `hybrid ${path} differs from the default arm's`);
      }
      assert.deepEqual(hybrid.get("params.layers[3].mixer.heads[0].wq")!.length, 16 * 16);
    }
  },
});

Deno.test({
  name: "fig4 --scale smoke writes runs.csv, summaries, curves, attention-map heatmaps and index.html",
  ignore: noGpu,
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "mimetic_fig4_" });
    const r = await runScript(script, ["--scale", "smoke", "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    const v = valuesAt("smoke");
    const rows = readCsv(join(out, "runs.csv"));
    assert.equal(rows.length, 4 * 3 * v.evalLengths.length, "4 tasks × 3 arms × 2 lengths");
    for (const row of rows) {
      for (const m of ["exact_acc", "token_acc"]) assert.ok(Number(row[m]) >= 0 && Number(row[m]) <= 1);
      assert.equal(row["spec.train.steps"], String(v.steps));
    }
    const final = readCsv(join(out, "summary_final.csv"));
    assert.deepEqual(
      [...new Set(final.map((f) => `${f.task}/${f.metric}`))],
      ["copy/exact_acc", "stack/exact_acc", "mqar/token_acc", "sort/exact_acc"],
    );
    const curves = readCsv(join(out, "summary_curves.csv"));
    assert.equal(curves.length, 12 * 2 * 3, "12 (task, arm) × 2 lengths × steps 4, 8, 12");
    for (
      const f of ["fig4_curves", "fig4_maps_copy", "fig4_maps_stack", "fig4_maps_mqar", "fig4_maps_sort"]
    ) {
      for (const ext of ["png", "svg", "vl.json"]) {
        assert.ok((await Deno.stat(join(out, `${f}.${ext}`))).size > 0, `${f}.${ext} missing`);
      }
    }
    const html = Deno.readTextFileSync(join(out, "index.html"));
    assert.match(html, /fig4_maps_mqar\.svg/);
    assert.match(html, /All 12 runs of the smoke scale are done/);
    // The heatmaps are rect charts of the runs' own GPU attention maps, with named axes.
    const results = [...readResults(new ResultsFolder(out)).values()];
    const copyAttention = results.find((x) => x.labels.task === "copy" && x.labels.arm === "attention")!;
    const map = copyAttention.maps.find((m) => m.layer === v.targetLayer)!;
    const T = 2 * v.trainLen + 2;
    assert.equal(map.T, T);
    for (let i = 0; i < T; i++) { // softmax weights: each query's row sums to 1 over j ≤ i, 0 beyond
      const row = map.map.slice(i * T, (i + 1) * T);
      assert.ok(Math.abs(row.slice(0, i + 1).reduce((a, b) => a + b, 0) - 1) < 1e-3, `row ${i}`);
      assert.ok(row.slice(i + 1).every((x) => x === 0));
    }
    const spec = readJson(join(out, "fig4_maps_copy.vl.json")) as {
      hconcat: {
        title: string;
        mark: { type: string };
        data: { values: { row: number; col: number; value: number }[] };
        encoding: { x: { title: string }; y: { title: string } };
      }[];
    };
    assert.equal(spec.hconcat.length, 3);
    const panel = spec.hconcat[2];
    assert.equal(panel.mark.type, "rect");
    assert.equal(panel.encoding.x.title, "key position j");
    assert.equal(panel.encoding.y.title, "query position i");
    assert.equal(panel.data.values.length, T * (T + 1) / 2, "the causal cells");
    for (const cell of panel.data.values) assert.equal(cell.value, map.map[cell.row * T + cell.col]);
    await Deno.remove(out, { recursive: true });
  },
});

Deno.test("fig4: bad flags exit 2 with a one-line message naming the flag, before the GPU", async () => {
  const cases: [string[], RegExp][] = [
    [["--target-layer", "2"], /--target-layer 2 is not a layer of a 2-layer model/],
    [["--tasks", "copy,copy"], /--tasks: copy is listed twice/],
    [["--tasks", "reverse"], /--tasks: expected values from copy, stack, mqar, sort, got "reverse"/],
    [["--mixer", "mamba3"], /--mixer: expected one of mamba1, mamba2, got "mamba3"/],
    [["--components", "paper,A"], /--components: "paper" stands for the paper's components/],
    [["--mqar-unit", "bytes"], /--mqar-unit: expected one of pairs, tokens/],
    [["--mixer", "mamba2", "--head-dim", "7"], /headDim 7 must divide/],
    [["--mqar-vocab", "20"], /mqar: vocab too small/],
    [["--train-len", "40"], /copy.*(context|maxLen)/],
  ];
  await assertRejected(script, cases);
});
