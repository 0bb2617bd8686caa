/**
 * `deno task fig9` as a user runs it: bad flags exit 2 with one line; the grid trains each task at each training
 * length with rows per step capped by --batch-tokens, and every run of the quick and paper scales fits an H200
 * by the memory estimate; a run that cannot fit on the adapter is refused before anything trains, in one line
 * naming the memory it needs and the flag to lower; `--scale smoke` end to end writes its CSVs, charts and
 * index.html.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { noGpu } from "./harness.ts";
import { assertRejected, messageLines, runScript } from "./cli_util.ts";
import fig9 from "../experiments/fig9.ts";
import {
  copyVocab,
  estimateEvalMemory,
  estimateTrainingMemory,
  evalChunkRows,
  MIMETIC_ALL,
  readCsv,
  runId,
  type ScaleName,
} from "../mod.ts";

const script = new URL("../experiments/fig9.ts", import.meta.url).pathname;
/** The H200's maxBufferSize through Vulkan (measured: "exceeds the device's maxBufferSize 4292870144"). */
const H200_MAX_BUFFER = 4292870144;
type Values = Parameters<typeof fig9.definition.plan>[0];

/** The merged flag values of a scale (flag defaults, then the scale's values, then `over`). */
function valuesAt(scale: ScaleName, over: Partial<Values> = {}): Values {
  const def = fig9.definition;
  const v: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(def.flags)) {
    v[name] = (def.scales[scale] as Record<string, unknown>)[name] ??
      ("default" in spec ? spec.default : undefined);
  }
  return { ...v, ...over } as Values;
}

const GiB = 2 ** 30;

Deno.test("fig9: bad flags exit 2 with a one-line message naming the problem", async () => {
  const cases: [string[], RegExp][] = [
    [["--eval-factors", "2"], /--eval-factors 2 lacks 1 \(the training length itself.*add 1/],
    [["--eval-factors", "1,0"], /--eval-factors: expected positive multiples, got 1,0/],
    [["--eval-factors", "1,1.1"], /--eval-factors 1,1\.1 give the same length twice at copy length 4/],
    [["--copy-lens", "1,8"], /--copy-lens 1 shorter than --min-train-len 2: lower --min-train-len/],
    [
      ["--mqar-vocab", "12"],
      /--mqar-vocab 12 has 5 keys, but the longest MQAR evaluation needs 8 .*raise --mqar-vocab to 18/,
    ],
    [["--batch-tokens", "-1"], /--batch-tokens: expected a value ≥ 0, got -1/],
    [["--fit-threshold", "2"], /--fit-threshold: expected a value ≤ 1, got 2/],
    [["--mixer", "mamba3"], /--mixer: expected one of mamba1, mamba2, got "mamba3"/],
  ];
  await assertRejected(script, cases);
});

Deno.test("fig9 grid: tasks × lengths × inits, rows per step under --batch-tokens, contexts, MQAR in pairs", () => {
  for (const scale of ["smoke", "quick", "paper"] as const) {
    const v = valuesAt(scale);
    const grid = fig9.definition.plan(v);
    assert.equal(
      grid.length,
      (v.copyLens.length + v.mqarLens.length) * v.inits.length * v.lrs.length * v.seeds,
    );
    assert.equal(new Set(grid.map((g) => runId(g.spec))).size, grid.length, `${scale}: two runs share an id`);
    for (const g of grid) {
      const { task, init, train_len: L } = g.labels as Record<string, string & number>;
      const m = g.spec.model;
      assert.equal(m.dModel, v.dModel);
      assert.equal(m.layers.length, v.layers);
      assert.ok(
        m.layers.every((l) => l.kind === "mamba2" && (l as { dState: number }).dState === v.mamba2State),
      );
      assert.deepEqual(g.spec.init, init === "default" ? { kind: "default" } : { ...MIMETIC_ALL, c: v.c });
      assert.deepEqual(g.spec.eval.lengths, v.evalFactors.map((f) => Math.round(f * L)));
      const T = task === "mqar" ? L * v.tokensPerPair : 2 * L + 2;
      if (task === "mqar") {
        assert.equal(m.vocab, v.mqarVocab);
        assert.equal(g.spec.task.length, L);
        assert.equal(g.spec.task.lengthUnit, "pairs");
      } else {
        assert.equal(m.vocab, copyVocab(v.vocab).size);
        assert.equal(g.spec.task.maxLen, L);
        assert.equal(g.spec.task.context, T, "copy rows of 2L + 2 tokens: one longest string each");
      }
      const rows = g.spec.train.batch;
      if (v.batchTokens > 0) {
        assert.equal(rows, Math.max(1, Math.min(v.batch, Math.floor(v.batchTokens / T))));
        assert.ok(rows * T <= v.batchTokens || rows === 1);
      } else assert.equal(rows, v.batch);
      if (scale !== "smoke") {
        // Every run fits the H200 by the estimate (90% of its 140.4 GiB; bindings of at most 2 GiB through
        // Vulkan): the sweep will not refuse the quick or paper scale there.
        const train = estimateTrainingMemory(m, 1, rows, T);
        assert.ok(train.peakBytes < 0.9 * 140.4 * GiB, `${scale} ${task} ${L}: ${train.peakBytes / GiB} GiB`);
        assert.ok(train.largestTensorBytes <= 2 * GiB, `${scale} ${task} ${L}: ${train.largestTensor}`);
        // and no tensor, split bindings or not, above the H200's maxBufferSize (4 GiB less 2 MiB, Vulkan)
        assert.ok(
          train.largestBufferBytes <= H200_MAX_BUFFER,
          `${scale} ${task} ${L}: ${train.largestBuffer} takes ${train.largestBufferBytes} bytes`,
        );
        for (const n of g.spec.eval.lengths) {
          const evalT = task === "mqar" ? n * v.tokensPerPair : 2 * n + 2;
          assert.ok(estimateEvalMemory(m, 1, 1, evalT).largestTensorBytes <= 2 * GiB);
        }
      }
    }
  }
  // The evaluation that ended the first H200 run of this figure: MQAR logits of 2 runs × 64 rows × T 1800 × V 8192
  // are 7.5 GB, past the H200's 4 GiB maxBufferSize though far inside its memory. Evaluation chunks now keep
  // every tensor under that limit.
  const mqar = fig9.definition.plan(valuesAt("paper")).find((g) => g.labels.task === "mqar")!.spec.model;
  assert.ok(estimateEvalMemory(mqar, 2, 64, 1800).largestBufferBytes > 4 * GiB);
  const rows = evalChunkRows(mqar, 2, 1800, 0.9 * 140.4 * GiB, 2 * GiB, 64, 4 * GiB);
  assert.ok(rows >= 1 && rows < 64 && estimateEvalMemory(mqar, 2, rows, 1800).largestBufferBytes <= 4 * GiB);
  // Lengths train shortest first within a task, so that the longest (the one that may not fit) comes last.
  const grid = fig9.definition.plan(valuesAt("quick", { copyLens: [1000, 250] }));
  assert.deepEqual(
    [...new Set(grid.filter((g) => g.labels.task === "copy").map((g) => g.labels.train_len))],
    [250, 1000],
  );
});

Deno.test({
  name: "fig9: a run that cannot fit is refused before anything trains, naming the memory and --batch",
  ignore: noGpu,
  async fn() {
    // Under a 1 GiB budget, copy at L 4 (rows of 10 tokens) fits at batch 256 and L 2000 (rows of 4002) does
    // not: the sweep must refuse the grid before it trains the first (fitting) group.
    const v = valuesAt("smoke");
    const model = fig9.definition.plan(v)[0].spec.model;
    assert.ok(estimateTrainingMemory(model, 1, 256, 10).peakBytes < 0.5 * GiB);
    assert.ok(estimateTrainingMemory(model, 1, 256, 4002).peakBytes > GiB);
    const out = await Deno.makeTempDir();
    const args = [
      "--scale",
      "smoke",
      "--out",
      out,
      "--tasks",
      "copy",
      "--copy-lens",
      "4,2000",
      "--batch",
      "256",
    ];
    const r = await runScript(script, args, { MIMETIC_GPU_MEMORY: "1" });
    assert.equal(r.code, 2, r.stderr);
    const lines = messageLines(r.stderr);
    assert.match(
      lines[lines.length - 1],
      /^fig9: run \(copy default 2000\): needs \d+\.\d GiB for 1 run at batch 256 × T 4002 \(activations \d+\.\d GiB\); the adapter has ~1\.0 GiB: lower --batch$/,
    );
    assert.equal(lines.filter((l) => /needs/.test(l)).length, 1);
    assert.doesNotMatch(
      r.stderr,
      /training runs|\bat .*\.ts:\d+/,
      "trained something, or printed a stack trace",
    );
    assert.deepEqual([...Deno.readDirSync(join(out, "runs"))], [], "a result was written");
    await Deno.remove(out, { recursive: true });
  },
});

Deno.test({
  name: "fig9 --scale smoke writes runs.csv, summaries, charts and index.html",
  ignore: noGpu,
  async fn() {
    const out = await Deno.makeTempDir();
    const t0 = performance.now();
    const r = await runScript(script, ["--scale", "smoke", "--out", out]);
    console.log(`fig9 --scale smoke: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(r.code, 0, r.stderr);
    const rows = readCsv(join(out, "runs.csv"));
    assert.equal(rows.length, 8 * 3, "2 tasks × 2 lengths × 2 inits, at 1×, 1.5×, 2× L");
    for (const row of rows) {
      for (const col of ["exact_acc", "token_acc"]) {
        const acc = Number(row[col]);
        assert.ok(acc >= 0 && acc <= 1, `${col} ${row[col]}`);
      }
      assert.ok([1, 1.5, 2].includes(Number(row.eval_len) / Number(row.train_len)));
    }
    const summary = readCsv(join(out, "summary_accuracy.csv"));
    assert.equal(summary.length, 8 * 3);
    for (const s of summary) {
      assert.equal(s.metric, s.task === "mqar" ? "token_acc" : "exact_acc");
      assert.equal(Number(s.batch_rows), 4);
    }
    const fit = readCsv(join(out, "summary_fit.csv"));
    assert.deepEqual(fit.map((f) => `${f.task} ${f.init}`), [
      "copy default",
      "copy mimetic",
      "mqar default",
      "mqar mimetic",
    ]);
    // The fitted length follows from the summary: the longest L whose mean accuracy at L reaches the threshold.
    for (const f of fit) {
      const at1 = summary.filter((s) => s.task === f.task && s.init === f.init && s.factor === "1");
      const fitted = at1.filter((s) => Number(s.mean) >= 0.9).map((s) => Number(s.train_len));
      assert.equal(Number(f.fitted_len), Math.max(0, ...fitted));
    }
    for (const name of ["fig9_fit", "fig9_beyond"]) {
      for (const ext of ["png", "svg", "vl.json"]) {
        assert.ok((await Deno.stat(join(out, `${name}.${ext}`))).size > 0, `${name}.${ext} missing`);
      }
    }
    const svg = await Deno.readTextFile(join(out, "fig9_fit.svg"));
    for (const text of ["copy (L = longest string)", "MQAR (L in pairs)", "mimetic", "fit threshold 0.9"]) {
      assert.ok(svg.includes(text), `fig9_fit.svg lacks "${text}"`);
    }
    const html = await Deno.readTextFile(join(out, "index.html"));
    for (const s of ['src="fig9_fit.svg"', 'src="fig9_beyond.svg"', 'href="summary_fit.csv"']) {
      assert.ok(html.includes(s), `index.html lacks ${s}`);
    }
    await Deno.remove(out, { recursive: true });
  },
});
