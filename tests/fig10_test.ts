/**
 * Figure 10 and the pretrained init, on tiny checkpoints written here (tests/tiny_checkpoint.ts):
 * 1. Without --weights, or with a folder that is not a usable checkpoint: exit 2 with one line saying what to put
 *    where.
 * 2. The pretrained init loads the weights: through trainLM (one step at warmup lr 0), the pretrained run's
 *    parameters are the checkpoint's (the embedding rows of the symbols' tokens, read straight from the file), while
 *    the runs it shares the run axis with keep their own draws, bit for bit.
 * 3. The spec (and run id) covers the weights: changing a byte of model.safetensors changes the pretrained runs'
 *    ids and nothing else, and a run planned on the old bytes refuses to load the new ones.
 * 4. `--scale smoke` end to end: runs.csv, summaries, charts, index.html; after one step at lr 0 the pretrained
 *    run's accuracy is the checkpoint's own on the same evaluation rows.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { noGpu } from "./harness.ts";
import { messageLines, runScript } from "./cli_util.ts";
import { tinyTokenId, tinyTokenizer, writeTinyCheckpoint } from "./tiny_checkpoint.ts";
import { readCsv } from "../lib/study/csv.ts";
import { foldIn, key } from "../lib/core/random.ts";
import { disposeTree, mapTree, readTensors, type Tensor } from "../lib/core/tensor.ts";
import { readSafetensors } from "../lib/core/safetensors.ts";
import { MIMETIC_MAMBA1 } from "../lib/nn/init.ts";
import { initRule, type PretrainedInitSpec } from "../lib/nn/inits.ts";
import { applyLM, initLM, type LMConfig } from "../lib/nn/lm.ts";
import { checkpointDigest, loadPretrained, readPretrainedConfig } from "../lib/nn/pretrained.ts";
import { evaluateRows } from "../lib/train/eval.ts";
import { runKeys, trainLM } from "../lib/train/train.ts";
import { TASKS } from "../tasks/registry.ts";

const FIG10 = new URL("../experiments/fig10.ts", import.meta.url).pathname;
const COPY = { variant: "copy" as const, vocab: 8, context: 24, minLen: 2, maxLen: 6 };
const SYMBOLS = TASKS.copy.symbols!(COPY); // a..h $ | . *

async function leavesOf(tree: unknown): Promise<Map<string, Float32Array>> {
  const ts: [string, Tensor][] = [];
  mapTree(tree, (t, path) => ts.push([path, t]));
  const data = await readTensors(ts.map(([, t]) => t));
  return new Map(ts.map(([p], i) => [p, data[i] as Float32Array]));
}

/** Run k's slice of a (K, ...) array, with −0 read as 0 (a step at lr 0 may flip the sign of a zero). */
const runOf = (a: Float32Array, K: number, k: number) =>
  a.slice((k * a.length) / K, ((k + 1) * a.length) / K).map((v) => v + 0);
const zeroSigned = (a: Float32Array | undefined) => a?.map((v) => v + 0);

function assertOneLine(r: { code: number; stderr: string }, pattern: RegExp) {
  assert.equal(r.code, 2, `exit code ${r.code}: ${r.stderr}`);
  const lines = messageLines(r.stderr).filter((l) => !/CPU adapter/.test(l));
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/, "printed a stack trace");
}

Deno.test("fig10: without --weights, exit 2 with one line saying what to put there", async () => {
  const r = await runScript(FIG10, ["--scale", "smoke"]);
  assertOneLine(
    r,
    /^fig10: --weights DIR is needed: .*state-spaces\/mamba-130m-hf.*config\.json.*nothing is downloaded/,
  );
  assertOneLine(
    await runScript(FIG10, ["--scale", "smoke", "--weights", "/nonexistent/mamba"]),
    /^fig10: --weights: \/nonexistent\/mamba: no such folder \(expected .*mamba-130m-hf/,
  );
});

Deno.test({
  name: "fig10: a folder without tokenizer.json, or whose tokenizer lacks a symbol, exits 2 with one line",
  ignore: noGpu,
  async fn() {
    const dir = Deno.makeTempDirSync();
    await writeTinyCheckpoint(dir, { layers: 2, dModel: 16 });
    Deno.removeSync(`${dir}/tokenizer.json`);
    assertOneLine(
      await runScript(FIG10, ["--scale", "smoke", "--weights", dir, "--list"]),
      /--weights: .*tokenizer\.json: not found; symbols need the folder's tokenizer\.json/,
    );
    Deno.writeTextFileSync(`${dir}/tokenizer.json`, JSON.stringify(tinyTokenizer(["|"])));
    assertOneLine(
      await runScript(FIG10, ["--scale", "smoke", "--weights", dir, "--list"]),
      /--weights: .*tokenizer\.json: no single-character token for symbol "\|"/,
    );
    Deno.writeTextFileSync(`${dir}/tokenizer.json`, JSON.stringify(tinyTokenizer()));
    Deno.removeSync(`${dir}/model.safetensors`);
    assertOneLine(
      await runScript(FIG10, ["--scale", "smoke", "--weights", dir, "--list"]),
      /--weights: .*model\.safetensors: not found/,
    );
    Deno.removeSync(dir, { recursive: true });
  },
});

Deno.test({
  name:
    "pretrained init: the run starts from the checkpoint, the runs beside it on the run axis keep their draws",
  ignore: noGpu,
  async fn() {
    const dir = Deno.makeTempDirSync();
    await writeTinyCheckpoint(dir, { layers: 2, dModel: 16, mimeticLayers: [1] });
    const { cfg } = readPretrainedConfig(dir, { symbols: SYMBOLS });
    assert.equal(cfg.vocab, SYMBOLS.length);
    const spec: PretrainedInitSpec = {
      kind: "pretrained",
      dir,
      sha256: checkpointDigest(dir),
      symbols: SYMBOLS,
    };
    const rule = initRule(spec);
    rule.validate(spec, cfg);
    // Three runs on the run axis: mimetic (seed 0), pretrained (seed 5), default (seed 1). One step whose lr is 0
    // (the first step of the warmup) leaves every parameter as it started.
    const trained = await trainLM(
      cfg,
      [
        { seed: 0, lr: 1e-3, mimetic: () => MIMETIC_MAMBA1 },
        { seed: 5, lr: 1e-3, mimetic: () => MIMETIC_MAMBA1, initial: () => rule.params!(spec, cfg) },
        { seed: 1, lr: 1e-3, mimetic: (l) => initRule({ kind: "default" }).layer({ kind: "default" }, l) },
      ],
      (k, b) => TASKS.copy.trainBatch(k, COPY, b),
      { steps: 1, batch: 2, warmup: 10, logEvery: 1 },
    );
    const got = await leavesOf(trained.params);
    const loaded = await loadPretrained(dir, { symbols: SYMBOLS });
    const want = await leavesOf(loaded.params);
    const drawn0 = initLM([runKeys(0).init], cfg, () => MIMETIC_MAMBA1);
    const drawn2 = initLM([runKeys(1).init], cfg);
    const [d0, d2] = [await leavesOf(drawn0.params), await leavesOf(drawn2.params)];
    assert.equal(got.size, want.size);
    for (const [path, a] of got) {
      assert.deepEqual(
        runOf(a, 3, 1),
        zeroSigned(want.get(path)),
        `pretrained run: ${path} is not the checkpoint's`,
      );
      assert.deepEqual(runOf(a, 3, 0), zeroSigned(d0.get(path)), `mimetic run: ${path} is not its own draw`);
      assert.deepEqual(runOf(a, 3, 2), zeroSigned(d2.get(path)), `default run: ${path} is not its own draw`);
    }
    // Independently of the loader: the embedding rows are those of the symbols' tokens in the file.
    const file = await readSafetensors(`${dir}/model.safetensors`);
    const emb = file.f32("backbone.embeddings.weight"), D = cfg.dModel;
    const rows = new Float32Array(
      SYMBOLS.flatMap((s) => Array.from(emb.subarray(tinyTokenId(s) * D, (tinyTokenId(s) + 1) * D))),
    );
    assert.deepEqual(runOf(got.get("embedding")!, 3, 1), zeroSigned(rows));
    const consts = await leavesOf(trained.consts);
    assert.deepEqual(
      Array.from(consts.get("layers[1].aScale")!),
      [-8, 1, 1],
      "A scale: mimetic, pretrained, default",
    );
    disposeTree([trained.params, trained.consts, loaded.params, loaded.consts, drawn0, drawn2]);
    Deno.removeSync(dir, { recursive: true });
  },
});

/** `--list` lines as id → labels. */
async function listed(args: string[]): Promise<Map<string, string>> {
  const r = await runScript(FIG10, [...args, "--list"]);
  assert.equal(r.code, 0, r.stderr);
  return new Map(r.stdout.trim().split("\n").map((l) => [l.split(" ")[0], l.slice(l.indexOf("{"))]));
}

Deno.test({
  name: "fig10: the run id covers the checkpoint's bytes; a run planned on other bytes refuses to load",
  ignore: noGpu,
  async fn() {
    const dir = Deno.makeTempDirSync(), out = Deno.makeTempDirSync();
    await writeTinyCheckpoint(dir, { layers: 2, dModel: 16 });
    const args = ["--scale", "smoke", "--weights", dir, "--out", out];
    const before = await listed(args);
    assert.equal(before.size, 6);
    const sha = checkpointDigest(dir);
    // One byte of the last tensor's data (norm_f is written last: its last float).
    const path = `${dir}/model.safetensors`;
    const bytes = Deno.readFileSync(path);
    bytes[bytes.length - 1] ^= 0x01;
    Deno.writeFileSync(path, bytes);
    assert.notEqual(checkpointDigest(dir), sha);
    const after = await listed(args);
    const moved = [...before].filter(([id]) => !after.has(id)).map(([, labels]) => labels).sort();
    assert.deepEqual(moved, ['{"task":"copy","init":"pretrained"}', '{"task":"mqar","init":"pretrained"}']);
    const cfg: LMConfig = readPretrainedConfig(dir, { symbols: SYMBOLS }).cfg;
    const stale: PretrainedInitSpec = { kind: "pretrained", dir, sha256: sha, symbols: SYMBOLS };
    await assert.rejects(
      () => initRule(stale).params!(stale, cfg),
      /init: .* has changed since the run was planned .*plan the grid again/,
    );
    // A model that is not the checkpoint's is refused, naming the field.
    const fresh: PretrainedInitSpec = { ...stale, sha256: checkpointDigest(dir) };
    await assert.rejects(
      () => initRule(fresh).params!(fresh, { ...cfg, dModel: 32 }),
      /differs from the checkpoint's \(model\.dModel: 32 ≠ 16\)/,
    );
    for (const d of [dir, out]) Deno.removeSync(d, { recursive: true });
  },
});

Deno.test({
  name:
    "fig10 --scale smoke: writes runs.csv, summaries, charts and index.html; lr 0 keeps the checkpoint's accuracy",
  ignore: noGpu,
  async fn() {
    const dir = Deno.makeTempDirSync(), out = Deno.makeTempDirSync(), out1 = Deno.makeTempDirSync();
    await writeTinyCheckpoint(dir, { layers: 4, dModel: 16, mimeticLayers: [2] });
    const t0 = performance.now();
    const r = await runScript(FIG10, ["--scale", "smoke", "--weights", dir, "--out", out]);
    console.log(`fig10 smoke: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(r.code, 0, r.stderr);
    const rows = readCsv(join(out, "runs.csv"));
    assert.equal(rows.length, 3 * 2 * 2, "3 inits × 2 tasks × 2 lengths");
    assert.deepEqual([...new Set(rows.map((x) => x["spec.init.kind"]))].sort(), [
      "default",
      "mimetic",
      "pretrained",
    ]);
    assert.ok(
      rows.every((x) => x["spec.model.layers.*.kind"] === "mamba1" && x["spec.model.dModel"] === "16"),
    );
    for (const f of ["fig10.png", "fig10.svg", "fig10_loss.png", "summary_accuracy.csv", "index.html"]) {
      assert.ok(Deno.statSync(join(out, f)).size > 0, `${f} missing`);
    }

    // One step at lr 0: the pretrained run's accuracy is the checkpoint's own on the same rows.
    const one = await runScript(FIG10, [
      "--scale=smoke",
      `--weights=${dir}`,
      `--out=${out1}`,
      "--steps=1",
      "--warmup=10",
      "--log-every=1",
      "--tasks=copy",
      "--inits=pretrained,default",
    ]);
    assert.equal(one.code, 0, one.stderr);
    const got = readCsv(join(out1, "runs.csv")).filter((x) => x.init === "pretrained");
    const m = await loadPretrained(dir, { symbols: SYMBOLS });
    for (const row of got) {
      const L = Number(row.eval_len);
      const evalRows = TASKS.copy.evalRows(foldIn(key(1234567), L), COPY, L, 16);
      const [acc] = await evaluateRows((ids) => applyLM(m.params, m.consts, ids, m.cfg), 1, evalRows, 16);
      console.log(`length ${L}: checkpoint char accuracy ${acc.token}, run ${row.token_acc}`);
      assert.equal(Number(row.token_acc), acc.token);
      assert.equal(Number(row.exact_acc), acc.exact);
    }
    disposeTree([m.params, m.consts]);
    for (const d of [dir, out, out1]) Deno.removeSync(d, { recursive: true });
  },
});
