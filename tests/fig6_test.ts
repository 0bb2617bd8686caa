/**
 * `deno task fig6` as a user runs it: bad flags exit 2 with one line; the grid crosses mixers, inits, vocabulary
 * sizes and training lengths, with each mixer's mimetic init and a context that holds the longest training string;
 * `--scale smoke` end to end writes its CSVs, charts and index.html.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { noGpu } from "./harness.ts";
import { assertRejected, runScript } from "./cli_util.ts";
import fig6 from "../experiments/fig6.ts";
import { readCsv } from "../lib/study/csv.ts";
import { runId } from "../lib/study/spec.ts";
import type { ScaleName } from "../lib/study/study.ts";
import { copyVocab } from "../tasks/copy.ts";
import { MIMETIC_ALL } from "../lib/nn/inits.ts";

const script = new URL("../experiments/fig6.ts", import.meta.url).pathname;
type Values = Parameters<typeof fig6.definition.plan>[0];

/** The merged flag values of a scale (flag defaults, then the scale's values, then `over`). */
function valuesAt(scale: ScaleName, over: Partial<Values> = {}): Values {
  const def = fig6.definition;
  const v: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(def.flags)) {
    v[name] = (def.scales[scale] as Record<string, unknown>)[name] ??
      ("default" in spec ? spec.default : undefined);
  }
  return { ...v, ...over } as Values;
}

Deno.test("fig6: bad flags exit 2 with a one-line message naming the problem", async () => {
  const cases: [string[], RegExp][] = [
    [["--vocabs", "1"], /--vocabs: expected a value ≥ 2, got 1/],
    [["--vocabs", "8,8"], /--vocabs: 8 is listed twice/],
    [["--train-lens", "1"], /--train-lens 1 shorter than --min-train-len 2/],
    [["--eval-factors", "0"], /--eval-factors: expected positive multiples, got 0/],
    [["--eval-factors", "1,1.01"], /--eval-factors 1,1.01 give the same length twice at training length 4/],
    [["--inits", "fancy"], /--inits: expected values from default, mimetic, got "fancy"/],
    [["--conv-scope", "xy"], /--conv-scope: expected one of xBC, x, got "xy"/],
    [["--mixers", ""], /--mixers: expected a comma-separated list/],
  ];
  await assertRejected(script, cases);
});

Deno.test("fig6 grid: mixers × inits × vocabularies × training lengths, each mixer's mimetic init, contexts", () => {
  for (const scale of ["smoke", "quick", "paper"] as const) {
    const v = valuesAt(scale);
    const grid = fig6.definition.plan(v);
    assert.equal(
      grid.length,
      v.mixers.length * v.inits.length * v.vocabs.length * v.trainLens.length * v.lrs.length * v.seeds,
    );
    assert.equal(new Set(grid.map((g) => runId(g.spec))).size, grid.length, `${scale}: two runs share an id`);
    for (const g of grid) {
      const { mixer, init, vocab, train_len } = g.labels as Record<string, string & number>;
      assert.ok(g.spec.model.layers.every((l) => l.kind === mixer));
      assert.equal(g.spec.model.vocab, copyVocab(vocab).size);
      assert.equal(g.spec.task.vocab, vocab);
      assert.equal(g.spec.task.maxLen, train_len);
      assert.deepEqual(g.spec.eval.lengths, [train_len, 2 * train_len]);
      const T = g.spec.task.context as number;
      assert.ok(2 * train_len + 3 <= T + 1, `context ${T} cannot hold a string of length ${train_len}`);
      assert.equal(T, Math.max(v.context, 2 * train_len + 2));
      if (init === "default") assert.deepEqual(g.spec.init, { kind: "default" });
      else if (mixer === "mamba1") assert.deepEqual(g.spec.init, { ...MIMETIC_ALL, c: v.c, conv: false });
      else assert.deepEqual(g.spec.init, { ...MIMETIC_ALL, c: v.c, convScope: "xBC" });
    }
  }
  // A training length longer than the context allows trains at T = 2L + 2.
  const long = fig6.definition.plan(valuesAt("smoke", { trainLens: [4, 30] }));
  assert.deepEqual([...new Set(long.map((g) => g.spec.task.context))], [24, 62]);
});

Deno.test({
  name: "fig6 --scale smoke writes runs.csv, summaries, charts and index.html",
  ignore: noGpu,
  async fn() {
    const out = await Deno.makeTempDir();
    const t0 = performance.now();
    const r = await runScript(script, ["--scale", "smoke", "--out", out]);
    console.log(`fig6 --scale smoke: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(r.code, 0, r.stderr);
    const rows = readCsv(join(out, "runs.csv"));
    assert.equal(rows.length, 16 * 2, "2 mixers × 2 inits × 2 V × 2 L, at 1× and 2× L");
    for (const row of rows) {
      const acc = Number(row.exact_acc);
      assert.ok(acc >= 0 && acc <= 1, `exact_acc ${row.exact_acc}`);
      assert.ok([1, 2].includes(Number(row.eval_len) / Number(row.train_len)));
    }
    const summary = readCsv(join(out, "summary_accuracy.csv"));
    assert.equal(summary.length, 16 * 2);
    assert.deepEqual([...new Set(summary.map((s) => s.factor))].sort(), ["1", "2"]);
    for (const f of ["fig6_2x", "fig6_1x"]) {
      for (const ext of ["png", "svg", "vl.json"]) {
        assert.ok((await Deno.stat(join(out, `${f}.${ext}`))).size > 0, `${f}.${ext} missing`);
      }
    }
    const svg = await Deno.readTextFile(join(out, "fig6_2x.svg"));
    for (
      const text of ["Mamba 1, trained on L ≤ 4", "Mamba 2, trained on L ≤ 8", "mimetic", "vocabulary size"]
    ) {
      assert.ok(svg.includes(text), `fig6_2x.svg lacks "${text}"`);
    }
    const html = await Deno.readTextFile(join(out, "index.html"));
    for (const s of ['src="fig6_2x.svg"', 'src="fig6_1x.svg"', 'href="summary_accuracy.csv"']) {
      assert.ok(html.includes(s), `index.html lacks ${s}`);
    }
    await Deno.remove(out, { recursive: true });
  },
});
