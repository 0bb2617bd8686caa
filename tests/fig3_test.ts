/**
 * `deno task fig3` as a user runs it: bad flags exit 2 with one line; the grid holds the 16 combinations of the
 * four mimetic components as 16 distinct inits per mixer (24 for Mamba 2 with both readings of its identity conv),
 * each changing exactly the tensors of its components; `--scale smoke` end to end writes its CSVs, charts and
 * index.html.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { noGpu } from "./harness.ts";
import { assertRejected, runScript } from "./cli_util.ts";
import fig3 from "../experiments/fig3.ts";
import { readCsv } from "../lib/study/csv.ts";
import { canonicalJson, packKey, runId } from "../lib/study/spec.ts";
import type { GridRun, ScaleName } from "../lib/study/study.ts";
import { initRule } from "../lib/nn/inits.ts";
import { initLM } from "../lib/nn/lm.ts";
import { runKeys } from "../lib/train/train.ts";
import { disposeTree, mapTree, readTensors, type Tensor } from "../lib/core/tensor.ts";

const script = new URL("../experiments/fig3.ts", import.meta.url).pathname;
type Values = Parameters<typeof fig3.definition.plan>[0];

/** The merged flag values of a scale (flag defaults, then the scale's values, then `over`). */
function valuesAt(scale: ScaleName, over: Partial<Values> = {}): Values {
  const def = fig3.definition;
  const v: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(def.flags)) {
    v[name] = (def.scales[scale] as Record<string, unknown>)[name] ??
      ("default" in spec ? spec.default : undefined);
  }
  return { ...v, ...over } as Values;
}

Deno.test("fig3: bad flags exit 2 with a one-line message naming the problem", async () => {
  const cases: [string[], RegExp][] = [
    [["--mixers", "mamba3"], /--mixers: expected values from mamba1, mamba2, got "mamba3"/],
    [["--conv-scopes", "xB"], /--conv-scopes: expected values from xBC, x, got "xB"/],
    [["--conv-scopes", "x,x"], /--conv-scopes: x is listed twice/],
    [["--eval-lengths", "0"], /--eval-lengths: expected a value ≥ 1, got 0/],
    [["--mamba1-state", "0"], /--mamba1-state: expected a value ≥ 1, got 0/],
    [["--head-dim", "7"], /headDim 7 must divide the inner width/],
    [["--train-len", "40"], /maxLen too long for context/],
    [["--c", "0"], /mimetic c must be a positive number, got 0/],
  ];
  await assertRejected(script, cases);
});

Deno.test("fig3 --help lists the figure's flags", async () => {
  const r = await runScript(script, ["--help"]);
  assert.equal(r.code, 0);
  for (
    const flag of ["--mixers", "--conv-scopes", "--mamba1-state", "--mamba2-state", "--eval-lengths", "--c"]
  ) {
    assert.ok(r.stdout.includes(flag), `--help lacks ${flag}`);
  }
});

/** The combination of a run from its labels. */
const comboOf = (g: GridRun) => ({
  A: g.labels.A as boolean,
  delta: g.labels.delta as boolean,
  qk: g.labels.qk as boolean,
  conv: g.labels.conv as boolean,
});

Deno.test("fig3 grid: 16 combinations are 16 distinct inits per mixer (24 for Mamba 2 with both readings)", () => {
  for (const scale of ["smoke", "quick", "paper"] as const) {
    const v = valuesAt(scale);
    const grid = fig3.definition.plan(v);
    const ids = grid.map((g) => runId(g.spec));
    assert.equal(new Set(ids).size, grid.length, `${scale}: two runs share an id`);
    assert.equal(grid.length, (16 + 24) * v.seeds * v.lrs.length, `${scale}: grid size`);
    for (const [mixer, inits] of [["mamba1", 16], ["mamba2", 24]] as const) {
      const runs = grid.filter((g) => g.labels.mixer === mixer);
      assert.ok(runs.every((g) => g.spec.model.layers.every((l) => l.kind === mixer)));
      const specs = new Set(runs.map((g) => canonicalJson(g.spec.init)));
      assert.equal(specs.size, inits, `${scale} ${mixer}: ${specs.size} distinct inits`);
      const combos = new Set(runs.map((g) => JSON.stringify(comboOf(g))));
      assert.equal(combos.size, 16, `${scale} ${mixer}: ${combos.size} combinations`);
      // Runs that differ only in init, seed and lr: one group on the run axis.
      assert.equal(new Set(runs.map((g) => packKey(g.spec))).size, 1, `${scale} ${mixer}: not one group`);
      for (const g of runs) {
        const c = comboOf(g), init = g.spec.init;
        if (!c.A && !c.delta && !c.qk && !c.conv) {
          assert.deepEqual(init, { kind: "default" }, "all off runs as the default init");
          continue;
        }
        assert.equal(init.kind, "mimetic");
        if (init.kind !== "mimetic") continue;
        assert.deepEqual(
          { A: init.A, delta: init.delta, qk: init.qk, conv: init.conv },
          c,
          `labels and spec agree`,
        );
        assert.equal(init.c, v.c);
        assert.equal(init.layers, "all");
        assert.equal(g.labels.conv_scope, c.conv ? init.convScope : "n/a");
        assert.equal(
          g.labels.combo,
          Object.entries(c).filter(([, on]) => on).map(([k]) => (k === "delta" ? "Δ" : k)).join("+"),
        );
        if (mixer === "mamba1" && c.conv) assert.equal(init.convScope, "x", "Mamba 1 convolves x only");
      }
    }
  }
  // One reading: 16 inits for Mamba 2 as well.
  const one = fig3.definition.plan(valuesAt("smoke", { convScopes: ["x"], mixers: ["mamba2"] }));
  assert.equal(new Set(one.map((g) => canonicalJson(g.spec.init))).size, 16);
});

/** Every tensor of a tree, read back, by path. */
async function readTree(tree: unknown, prefix: string): Promise<Map<string, Float32Array>> {
  const entries: [string, Tensor][] = [];
  mapTree(tree, (t, path) => entries.push([`${prefix}.${path}`, t]));
  const data = await readTensors(entries.map(([, t]) => t));
  return new Map(entries.map(([path], i) => [path, data[i] as Float32Array]));
}

/** The tensors (by name within a layer) each component changes, per mixer and conv reading. */
function expectedTensors(mixer: string, component: string, scope: string): string[] {
  if (component === "A") return ["aScale"]; // a per-run constant: A = −exp(−c·A_log)
  if (mixer === "mamba1") {
    return { delta: ["dtProjWeight", "dtProjBias"], qk: ["xProjC"], conv: ["conv.weight", "conv.bias"] }[
      component
    ]!;
  }
  const convs = scope === "x" ? ["convX"] : ["convX", "convB", "convC"];
  return {
    delta: ["inDt", "dtBias"],
    qk: ["inC"],
    conv: convs.flatMap((c) => [`${c}.weight`, `${c}.bias`]),
  }[component]!;
}

Deno.test({
  name: "fig3 inits: each run's initial model differs from the default in exactly its components' tensors",
  ignore: noGpu,
  async fn() {
    const layers = 2; // every layer gets the components
    for (const mixer of ["mamba1", "mamba2"]) {
      const runs = fig3.definition.plan(valuesAt("smoke", { layers, mixers: [mixer] }));
      assert.ok(runs.every((g) => g.spec.seed === runs[0].spec.seed), "one seed: differences are the init's");
      const cfg = runs[0].spec.model;
      const { params, consts } = initLM(
        runs.map((g) => runKeys(g.spec.seed).init),
        cfg,
        (k, layer) => initRule(runs[k].spec.init).layer(runs[k].spec.init as never, layer),
      );
      const tensors = new Map([...await readTree(params, "params"), ...await readTree(consts, "consts")]);
      disposeTree([params, consts]);
      const K = runs.length;
      const slice = (a: Float32Array, k: number) => a.subarray((k * a.length) / K, ((k + 1) * a.length) / K);
      const base = runs.findIndex((g) => g.spec.init.kind === "default");
      const changedSets = new Set<string>();
      for (const [k, g] of runs.entries()) {
        const changed = [...tensors].filter(([, a]) => slice(a, k).some((x, i) => x !== slice(a, base)[i]))
          .map(([path]) => path).sort();
        const c = comboOf(g);
        const expected = Object.entries(c).filter(([, on]) => on).flatMap(([comp]) =>
          expectedTensors(mixer, comp, g.labels.conv_scope as string).flatMap((name) =>
            Array.from(
              { length: layers },
              (_, l) =>
                name === "aScale" ? `consts.layers[${l}].aScale` : `params.layers[${l}].mixer.${name}`,
            )
          )
        ).sort();
        assert.deepEqual(changed, expected, `${mixer} ${g.labels.combo} (${g.labels.conv_scope})`);
        changedSets.add(changed.join(","));
      }
      console.log(`${mixer}: ${K} runs, ${changedSets.size} distinct sets of changed tensors`);
      assert.equal(changedSets.size, K, `${mixer}: two inits change the same tensors`);
    }
  },
});

Deno.test({
  name: "fig3 --scale smoke writes runs.csv, summaries, charts and index.html",
  ignore: noGpu,
  async fn() {
    const out = await Deno.makeTempDir();
    const t0 = performance.now();
    const r = await runScript(script, ["--scale", "smoke", "--out", out]);
    console.log(`fig3 --scale smoke: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(r.code, 0, r.stderr);
    const rows = readCsv(join(out, "runs.csv"));
    assert.equal(rows.length, 40 * 3, "40 inits × 3 evaluated lengths");
    assert.equal(new Set(rows.map((row) => row.run_id)).size, 40);
    assert.deepEqual([...new Set(rows.map((row) => row.eval_len))], ["6", "12", "36"]);
    for (const row of rows) {
      const acc = Number(row.exact_acc);
      assert.ok(acc >= 0 && acc <= 1, `exact_acc ${row.exact_acc}`);
      assert.equal(row["spec.train.steps"], "20");
    }
    const summary = readCsv(join(out, "summary_accuracy.csv"));
    assert.equal(summary.length, 40 * 3);
    for (const col of ["mixer", "combo", "conv_scope", "A", "delta", "qk", "conv", "mean", "stderr", "n"]) {
      assert.ok(col in summary[0], `summary_accuracy lacks ${col}`);
    }
    const effects = readCsv(join(out, "summary_effects.csv"));
    assert.equal(effects.length, 3 * 3 * 4, "(Mamba 1, Mamba 2 × 2 readings) × 3 lengths × 4 components");
    for (const f of ["fig3", "fig3_effects"]) {
      for (const ext of ["png", "svg", "vl.json"]) {
        assert.ok((await Deno.stat(join(out, `${f}.${ext}`))).size > 0, `${f}.${ext} missing`);
      }
    }
    const svg = await Deno.readTextFile(join(out, "fig3.svg"));
    for (const text of ["A+Δ+qk+conv", "none", "Mamba 1", "identity conv over x only"]) {
      assert.ok(svg.includes(text), `fig3.svg lacks "${text}"`);
    }
    const html = await Deno.readTextFile(join(out, "index.html"));
    for (const s of ['src="fig3.svg"', 'src="fig3_effects.svg"', 'href="summary_effects.csv"']) {
      assert.ok(html.includes(s), `index.html lacks ${s}`);
    }
    await Deno.remove(out, { recursive: true });
  },
});
