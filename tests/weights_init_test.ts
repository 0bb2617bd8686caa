/**
 * The pieces that let a run start from weights (the study layer's pretrained and teacherLayer inits):
 * 1. stackRuns: per-run host data and runs of drawn tensors into one (K, ...) tensor.
 * 2. initLMRuns: given runs and drawn runs on one run axis; a preset that does not fit the model is refused with
 *    the run and tensor named; without presets the bits are initLM's.
 * 3. checkpointDigest: content, not place: a renamed copy has the same digest, a changed tokenizer another.
 * 4. The init table's checks of weight-based specs, and the tasks' symbols.
 * 5. Stored analyses: read back only for the inputs they were computed from, and never when tampered with.
 */
import assert from "node:assert/strict";
import { noGpu } from "./harness.ts";
import { writeTinyCheckpoint } from "./tiny_checkpoint.ts";
import { key } from "../lib/core/random.ts";
import {
  disposeTree,
  type HostTensor,
  mapTree,
  readTensors,
  stackRuns,
  type Tensor,
  tensor,
} from "../lib/core/tensor.ts";
import { initRule } from "../lib/nn/inits.ts";
import { initLM, initLMRuns, type LMConfig } from "../lib/nn/lm.ts";
import { MAMBA1_DEFAULTS } from "../lib/nn/mamba1.ts";
import { checkpointDigest, PretrainedError, readPretrainedHost } from "../lib/nn/pretrained.ts";
import { readAnalysis, ResultsFolder, writeAnalysis } from "../lib/study/results.ts";
import { SYMBOL_ALPHABET, TASKS } from "../tasks/registry.ts";

const CFG: LMConfig = {
  vocab: 12,
  dModel: 16,
  normEps: 1e-5,
  layers: [{ ...MAMBA1_DEFAULTS, dState: 4 }, { ...MAMBA1_DEFAULTS, dState: 4 }],
};

async function leavesOf(tree: unknown): Promise<Map<string, Float32Array>> {
  const ts: [string, Tensor][] = [];
  mapTree(tree, (t, path) => ts.push([path, t]));
  const data = await readTensors(ts.map(([, t]) => t));
  return new Map(ts.map(([p], i) => [p, data[i] as Float32Array]));
}

/** One run's host tree of a (K, ...) model: run k of every tensor. */
async function hostRun(m: { params: unknown; consts: unknown }, k: number, K: number) {
  const toHost = async (tree: unknown) => {
    const leaves = await leavesOf(tree);
    return mapTree(tree, (t, path) => {
      const a = leaves.get(path)!, n = a.length / K;
      return { shape: t.shape.slice(1), data: a.slice(k * n, (k + 1) * n) } satisfies HostTensor;
    });
  };
  return { params: await toHost(m.params), consts: await toHost(m.consts) };
}

Deno.test({
  name: "stackRuns: host data and runs of drawn tensors, in run order; a wrong size is refused",
  ignore: noGpu,
  async fn() {
    const drawn = tensor([1, 2, 3, 4, 5, 6], [3, 2]);
    const t = stackRuns([2], [{ tensor: drawn, run: 2 }, new Float32Array([7, 8]), {
      tensor: drawn,
      run: 0,
    }]);
    assert.deepEqual(Array.from(await t.toArray()), [5, 6, 7, 8, 1, 2]);
    assert.throws(() => stackRuns([2], [new Float32Array(3)]), /run 0 has 3 elements, expected 2/);
    assert.throws(() => stackRuns([2], [{ tensor: drawn, run: 3 }]), /has no run 3/);
    disposeTree([drawn, t]);
  },
});

Deno.test({
  name:
    "initLMRuns: presets and draws share the run axis bit for bit; ill-fitting presets are refused by name",
  ignore: noGpu,
  async fn() {
    const keys = [key(1), key(2), key(3)];
    const all = initLM(keys, CFG);
    const allLeaves = await leavesOf(all.params);
    // Runs 0 and 2 given (as run 1 and run 0 of `all`), run 1 drawn from key 2.
    const given1 = await hostRun(all, 1, 3), given0 = await hostRun(all, 0, 3);
    const mixed = initLMRuns(CFG, [{ preset: given1 }, { key: keys[1] }, { preset: given0 }]);
    const got = await leavesOf(mixed.params);
    for (const [path, a] of allLeaves) {
      const n = a.length / 3, run = (x: Float32Array, k: number) => Array.from(x.slice(k * n, (k + 1) * n));
      const g = got.get(path)!;
      assert.deepEqual(run(g, 0), run(a, 1), path);
      assert.deepEqual(run(g, 1), run(a, 1), path);
      assert.deepEqual(run(g, 2), run(a, 0), path);
    }
    // Presets only: the structure comes from the presets.
    const only = initLMRuns(CFG, [{ preset: given0 }]);
    assert.deepEqual(
      await leavesOf(only.params),
      new Map([...allLeaves].map(([p, a]) => [p, a.slice(0, a.length / 3)])),
    );
    // No preset: initLM itself.
    const plain = initLMRuns(CFG, keys.map((k) => ({ key: k })));
    assert.deepEqual(await leavesOf(plain.params), allLeaves);
    // A preset missing a tensor, with a tensor too many, or of another shape.
    const broken = structuredClone(given0) as { params: { layers: { mixer: Record<string, unknown> }[] } };
    delete broken.params.layers[1].mixer.D;
    assert.throws(
      () => initLMRuns(CFG, [{ key: keys[0] }, { preset: broken as never }]),
      /run 1's preset lacks params layers\[1\]\.mixer\.D \[32\]/,
    );
    const extra = structuredClone(given0) as { params: Record<string, unknown> };
    extra.params.lmHead = { shape: [12, 16], data: new Float32Array(192) };
    assert.throws(
      () => initLMRuns(CFG, [{ key: keys[0] }, { preset: extra as never }]),
      /has params lmHead, which/,
    );
    const wide = await hostRun(initLM([key(9)], { ...CFG, vocab: 13 }), 0, 1);
    assert.throws(
      () => initLMRuns(CFG, [{ key: keys[0] }, { preset: wide }]),
      /run 1's preset has params embedding of shape \[13,16\], the model \[12,16\]/,
    );
    disposeTree([all, mixed, only, plain]);
  },
});

Deno.test({
  name:
    "checkpointDigest: a renamed copy has the same digest, another tokenizer another; a bare folder is refused",
  ignore: noGpu,
  async fn() {
    const dir = Deno.makeTempDirSync(), copy = Deno.makeTempDirSync();
    await writeTinyCheckpoint(dir, { layers: 2, dModel: 16 });
    for (const f of ["config.json", "model.safetensors", "tokenizer.json"]) {
      Deno.copyFileSync(`${dir}/${f}`, `${copy}/${f}`);
    }
    const d = checkpointDigest(dir);
    assert.match(d, /^[0-9a-f]{64}$/);
    assert.equal(checkpointDigest(copy), d);
    const tok = JSON.parse(Deno.readTextFileSync(`${copy}/tokenizer.json`));
    [tok.model.vocab.a, tok.model.vocab.b] = [tok.model.vocab.b, tok.model.vocab.a];
    Deno.writeTextFileSync(`${copy}/tokenizer.json`, JSON.stringify(tok));
    assert.notEqual(checkpointDigest(copy), d, "swapping two tokens changes what the symbols load");
    Deno.removeSync(`${copy}/model.safetensors`);
    assert.throws(
      () => checkpointDigest(copy),
      (e) => e instanceof PretrainedError && /model\.safetensors: not found/.test(e.message),
    );
    assert.throws(() => checkpointDigest(`${copy}/nothing`), /no such folder/);
    // The host read keeps the symbols' rows in the symbols' order.
    const m = await readPretrainedHost(dir, { symbols: ["b", "a"] });
    assert.equal(m.cfg.vocab, 2);
    assert.deepEqual((m.params as { embedding: HostTensor }).embedding.shape, [2, 16]);
    for (const p of [dir, copy]) Deno.removeSync(p, { recursive: true });
  },
});

Deno.test("weight-based init specs are checked without reading the folder; the tasks' symbols are single characters", () => {
  const symbols = TASKS.copy.symbols!({ variant: "copy", vocab: 26, context: 60, minLen: 1, maxLen: 5 });
  assert.equal(symbols.join(""), "abcdefghijklmnopqrstuvwxyz$|.*");
  const mqar = TASKS.mqar.symbols!({
    vocab: 94,
    length: 64,
    tokensPerPair: 8,
    alpha: 0.01,
    lengthUnit: "tokens",
  });
  assert.equal(new Set(mqar).size, 94);
  assert.ok(mqar.every((s) => s.length === 1 && s.charCodeAt(0) > 32 && s.charCodeAt(0) < 127));
  assert.equal(mqar.join(""), SYMBOL_ALPHABET);
  assert.throws(
    () => TASKS.mqar.symbols!({ vocab: 95, length: 64, tokensPerPair: 8, alpha: 0.01, lengthUnit: "tokens" }),
    /vocab ≤ 94/,
  );
  assert.throws(
    () => TASKS.copy.symbols!({ variant: "copy", vocab: 63, context: 60, minLen: 1, maxLen: 5 }),
    /≤ 62/,
  );
  const model = { ...CFG, vocab: symbols.length };
  const good = { kind: "pretrained" as const, dir: "/w", sha256: "ab".repeat(32), symbols };
  initRule(good).validate(good, model);
  const bad = (spec: object, pattern: RegExp) =>
    assert.throws(() => initRule(spec as typeof good).validate(spec as typeof good, model), pattern);
  bad({ ...good, sha256: "xyz" }, /sha256 must be 64 hex digits/);
  bad({ ...good, dir: "" }, /dir must name a folder/);
  bad({ ...good, symbols: symbols.slice(1) }, /29 symbols for a model vocab of 30/);
  bad({ ...good, symbols: [...symbols.slice(0, -1), "a"] }, /repeat a character/);
  bad({ ...good, symbols: ["ab", ...symbols.slice(1)] }, /single characters/);
  bad({ ...good, kind: "teacherLayer", layer: -1 }, /teacherLayer layer must be an integer ≥ 0/);
  assert.equal(
    initRule({ ...good, kind: "teacherLayer", layer: 31 }).label(
      { ...good, kind: "teacherLayer", layer: 31 } as never,
    ),
    "teacher layer 31",
  );
});

Deno.test("stored analyses are read back for their own inputs only, and not when tampered with", () => {
  const folder = new ResultsFolder(Deno.makeTempDirSync());
  const inputs = { dir: "/teacher", sha256: "0".repeat(64), ids: [1, 2, 3] };
  assert.equal(readAnalysis(folder, "teacher", inputs), null);
  writeAnalysis(folder, {
    name: "teacher",
    inputs,
    value: { layers: [{ corr: 0.7 }] },
    seconds: 1,
    device: "test",
    finishedAt: "now",
  });
  assert.deepEqual(
    readAnalysis(folder, "teacher", { ids: [1, 2, 3], sha256: "0".repeat(64), dir: "/teacher" })?.value,
    {
      layers: [{ corr: 0.7 }],
    },
  );
  assert.equal(readAnalysis(folder, "teacher", { ...inputs, ids: [1, 2, 4] }), null, "other inputs");
  assert.equal(readAnalysis(folder, "other", inputs), null);
  const path = folder.analysisPath("teacher");
  Deno.writeTextFileSync(path, Deno.readTextFileSync(path).replace("0.7", "0.9"));
  assert.equal(readAnalysis(folder, "teacher", inputs), null, "tampered");
  assert.throws(
    () =>
      writeAnalysis(folder, {
        name: "x",
        inputs: { v: NaN },
        value: 1,
        seconds: 0,
        device: "",
        finishedAt: "",
      }),
    /inputs\.v: NaN is not a finite number/,
  );
  Deno.removeSync(folder.root, { recursive: true });
});
