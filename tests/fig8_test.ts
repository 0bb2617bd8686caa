/**
 * `deno task fig8` as a user runs it: bad flags exit 2 with one line; the grid crosses mixers, tasks, widths,
 * depths and inits, with each mixer's mimetic init and its state size, and evaluates at the multiples of each
 * task's training length; `--scale smoke` end to end writes its CSVs, charts and index.html.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { noGpu } from "./harness.ts";
import { assertRejected, runScript } from "./cli_util.ts";
import fig8 from "../experiments/fig8.ts";
import { copyVocab, MIMETIC_ALL, readCsv, runId, type ScaleName } from "../mod.ts";

const script = new URL("../experiments/fig8.ts", import.meta.url).pathname;
type Values = Parameters<typeof fig8.definition.plan>[0];

/** The merged flag values of a scale (flag defaults, then the scale's values, then `over`). */
function valuesAt(scale: ScaleName, over: Partial<Values> = {}): Values {
  const def = fig8.definition;
  const v: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(def.flags)) {
    v[name] = (def.scales[scale] as Record<string, unknown>)[name] ??
      ("default" in spec ? spec.default : undefined);
  }
  return { ...v, ...over } as Values;
}

Deno.test("fig8: bad flags exit 2 with a one-line message naming the problem", async () => {
  const cases: [string[], RegExp][] = [
    [["--widths", "0"], /--widths: expected a value ≥ 1, got 0/],
    [["--depths", "2,2"], /--depths: 2 is listed twice/],
    [["--eval-factors", "0"], /--eval-factors: expected positive multiples, got 0/],
    [["--eval-factors", "1,1.1"], /--eval-factors 1,1\.1 give the same length twice at copy length 4/],
    [["--train-len", "1"], /--train-len 1 is shorter than --min-train-len 2/],
    [
      ["--mqar-vocab", "20"],
      /--mqar-vocab 20 has 9 keys, but MQAR at 4× the length needs 16 .*raise --mqar-vocab to 34/,
    ],
    [["--tasks", "sort"], /--tasks: expected values from copy, mqar, got "sort"/],
    [["--mixers", ""], /--mixers: expected a comma-separated list/],
  ];
  await assertRejected(script, cases);
});

Deno.test("fig8 grid: mixers × tasks × widths × depths × inits, each mixer's init and state, eval multiples", () => {
  for (const scale of ["smoke", "quick", "paper"] as const) {
    const v = valuesAt(scale);
    const grid = fig8.definition.plan(v);
    assert.equal(
      grid.length,
      v.mixers.length * v.tasks.length * v.widths.length * v.depths.length * v.inits.length * v.lrs.length *
        v.seeds,
    );
    assert.equal(new Set(grid.map((g) => runId(g.spec))).size, grid.length, `${scale}: two runs share an id`);
    for (const g of grid) {
      const { mixer, task, width, depth, init } = g.labels as Record<string, string & number>;
      const m = g.spec.model;
      assert.equal(m.dModel, width);
      assert.equal(m.layers.length, depth);
      for (const l of m.layers) {
        assert.equal(l.kind, mixer);
        assert.equal((l as { dState: number }).dState, mixer === "mamba1" ? v.mamba1State : v.mamba2State);
      }
      if (init === "default") assert.deepEqual(g.spec.init, { kind: "default" });
      else if (mixer === "mamba1") assert.deepEqual(g.spec.init, { ...MIMETIC_ALL, c: v.c, conv: false });
      else assert.deepEqual(g.spec.init, { ...MIMETIC_ALL, c: v.c });
      const L = task === "mqar" ? v.mqarLen : v.trainLen;
      assert.deepEqual(g.spec.eval.lengths, v.evalFactors.map((f) => Math.round(f * L)));
      if (task === "mqar") {
        assert.equal(m.vocab, v.mqarVocab);
        assert.deepEqual(g.spec.task, {
          kind: "mqar",
          vocab: v.mqarVocab,
          length: v.mqarLen,
          tokensPerPair: v.tokensPerPair,
          alpha: v.alpha,
          lengthUnit: "pairs",
        });
      } else {
        assert.equal(m.vocab, copyVocab(v.vocab).size);
        assert.equal(g.spec.task.maxLen, v.trainLen);
        assert.ok(2 * v.trainLen + 2 <= (g.spec.task.context as number));
      }
    }
  }
  // The quick scale is the grid the README's wall-time estimate counts: 24 groups of 4 runs.
  const quick = fig8.definition.plan(valuesAt("quick"));
  assert.equal(quick.length, 96);
});

Deno.test({
  name: "fig8 --scale smoke writes runs.csv, summaries, charts and index.html",
  ignore: noGpu,
  async fn() {
    const out = await Deno.makeTempDir();
    const t0 = performance.now();
    const r = await runScript(script, ["--scale", "smoke", "--out", out]);
    console.log(`fig8 --scale smoke: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(r.code, 0, r.stderr);
    const rows = readCsv(join(out, "runs.csv"));
    assert.equal(rows.length, 32 * 3, "2 mixers × 2 tasks × 2 widths × 2 depths × 2 inits, at 1×, 2×, 4× L");
    for (const row of rows) {
      for (const col of ["exact_acc", "token_acc"]) {
        const acc = Number(row[col]);
        assert.ok(acc >= 0 && acc <= 1, `${col} ${row[col]}`);
      }
      assert.ok([4, 8, 16].includes(Number(row.eval_len)), `eval_len ${row.eval_len}`);
    }
    const summary = readCsv(join(out, "summary_accuracy.csv"));
    assert.equal(summary.length, 32 * 3);
    for (const s of summary) assert.equal(s.metric, s.task === "mqar" ? "token_acc" : "exact_acc");
    // The summary's accuracy is the run's own metric (one seed, one lr: the mean is that run's value).
    const own = rows.find((x) => x.task === "mqar" && x.init === "mimetic" && x.eval_len === "8")!;
    const cell = summary.find((s) =>
      s.task === "mqar" && s.init === "mimetic" && s.mixer === own.mixer && s.width === own.width &&
      s.depth === own.depth && s.eval_len === "8"
    )!;
    assert.equal(Number(cell.mean), Number(own.token_acc));
    const gains = readCsv(join(out, "summary_gain.csv"));
    assert.equal(gains.length, 16 * 3);
    for (const g of gains) {
      assert.ok(Math.abs(Number(g.gain) - (Number(g.mimetic_mean) - Number(g.default_mean))) < 1e-12);
    }
    for (const f of ["fig8_1x", "fig8_2x", "fig8_4x"]) {
      for (const ext of ["png", "svg", "vl.json"]) {
        assert.ok((await Deno.stat(join(out, `${f}.${ext}`))).size > 0, `${f}.${ext} missing`);
      }
    }
    const svg = await Deno.readTextFile(join(out, "fig8_2x.svg"));
    for (const text of ["Mamba 1, copy, D 16", "Mamba 2, MQAR, D 32", "mimetic", "layers (log scale)"]) {
      assert.ok(svg.includes(text), `fig8_2x.svg lacks "${text}"`);
    }
    const html = await Deno.readTextFile(join(out, "index.html"));
    for (const s of ['src="fig8_2x.svg"', 'href="summary_gain.csv"', "the best depth at 4×"]) {
      assert.ok(html.includes(s), `index.html lacks ${s}`);
    }
    await Deno.remove(out, { recursive: true });
  },
});
