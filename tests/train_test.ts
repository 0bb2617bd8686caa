/**
 * Training end to end on a tiny Mamba 2 copy model: resuming after a simulated interruption reproduces the
 * uninterrupted run bit for bit; a diverging run is recorded (with its step) while the others go on.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { noGpu } from "./harness.ts";
import { DEFAULT_INIT, MIMETIC_MAMBA2 } from "../lib/nn/init.ts";
import { MAMBA2_DEFAULTS } from "../lib/nn/mamba2.ts";
import { MAMBA1_DEFAULTS } from "../lib/nn/mamba1.ts";
import { ATTENTION_DEFAULTS } from "../lib/nn/attention.ts";
import type { LMConfig } from "../lib/nn/lm.ts";
import { disposeModel, trainLM, type TrainRun } from "../lib/train/train.ts";
import { leaves, readTensors } from "../lib/core/tensor.ts";
import { copyVocab, makeCopyTrainBatch } from "../tasks/mod.ts";

const VOCAB = 6;
const cfg: LMConfig = {
  vocab: copyVocab(VOCAB).size,
  dModel: 16,
  normEps: 1e-5,
  layers: [{ ...MAMBA2_DEFAULTS, dState: 4, headDim: 8 }],
};
const makeBatch = (k: readonly [number, number], batch: number) => {
  const b = makeCopyTrainBatch(k, {
    variant: "copy",
    batch,
    vocab: VOCAB,
    context: 24,
    minLen: 2,
    maxLen: 5,
  });
  return { inputs: b.inputs, targets: b.targets, mask: b.mask, T: b.T };
};
const runs: TrainRun[] = [
  { seed: 1, lr: 3e-3, mimetic: () => DEFAULT_INIT },
  { seed: 2, lr: 3e-3, mimetic: () => MIMETIC_MAMBA2 },
];
const opts = { steps: 12, batch: 3, warmup: 2, logEvery: 2, checkpointEvery: 4 };

Deno.test({
  name: "resume after a simulated interruption gives the same final numbers as an uninterrupted run",
  ignore: noGpu,
  async fn() {
    const dir = await Deno.makeTempDir();
    const full = await trainLM(cfg, runs, makeBatch, { ...opts, checkpointPath: join(dir, "a.ckpt") });
    const fullParams = await readTensors(leaves(full.params));
    disposeModel(full);

    const ckpt = join(dir, "b.ckpt");
    const first = await trainLM(cfg, runs, makeBatch, { ...opts, checkpointPath: ckpt, haltAfterStep: 6 });
    assert.equal(first.stepsDone, 6);
    disposeModel(first);
    const resumed = await trainLM(cfg, runs, makeBatch, { ...opts, checkpointPath: ckpt });
    assert.ok(resumed.resumed, "the second call did not resume from the checkpoint");
    assert.equal(resumed.stepsDone, 12);
    const resumedParams = await readTensors(leaves(resumed.params));
    disposeModel(resumed);

    console.log(`final losses: uninterrupted ${full.finalLoss}, resumed ${resumed.finalLoss}`);
    assert.deepEqual(resumed.finalLoss, full.finalLoss);
    assert.deepEqual(resumed.history, full.history);
    fullParams.forEach((p, i) => assert.deepEqual(resumedParams[i], p, `param ${i} differs after resume`));
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "a diverging run is recorded with its step and the other runs go on",
  ignore: noGpu,
  async fn() {
    const result = await trainLM(
      cfg,
      [{ seed: 3, lr: 3e-3, mimetic: () => DEFAULT_INIT }, {
        seed: 4,
        lr: 1e30,
        mimetic: () => DEFAULT_INIT,
      }],
      makeBatch,
      { steps: 10, batch: 3, warmup: 1, logEvery: 1, clipNorm: 0 },
    );
    disposeModel(result);
    console.log(`diverged: ${JSON.stringify(result.diverged)}, final losses ${result.finalLoss}`);
    assert.equal(result.diverged[0], null);
    assert.ok(
      typeof result.diverged[1] === "number" && result.diverged[1] <= 10,
      "the lr 1e30 run was not flagged",
    );
    assert.ok(Number.isFinite(result.finalLoss[0]), "the healthy run was harmed");
    assert.ok(
      result.history.filter((h) => h.run === 0).length === 10,
      "training did not go on after the divergence",
    );
  },
});

Deno.test("invalid training options are rejected with a RangeError naming the option", async () => {
  await assert.rejects(
    () => trainLM(cfg, runs, makeBatch, { steps: 0, batch: 2 }),
    /steps must be a positive integer/,
  );
  await assert.rejects(
    () => trainLM(cfg, [{ seed: 0, lr: -1, mimetic: () => DEFAULT_INIT }], makeBatch, { steps: 1, batch: 2 }),
    /lr must be positive/,
  );
});

Deno.test({
  name: "a hybrid (Mamba 2, softmax attention, Mamba 1) LM trains and its loss falls",
  ignore: noGpu,
  async fn() {
    const hybrid: LMConfig = {
      vocab: copyVocab(VOCAB).size,
      dModel: 16,
      normEps: 1e-5,
      layers: [
        { ...MAMBA2_DEFAULTS, dState: 4, headDim: 8 },
        { ...ATTENTION_DEFAULTS, headDim: 8 },
        { ...MAMBA1_DEFAULTS, dState: 4 },
      ],
    };
    const result = await trainLM(hybrid, [{ seed: 9, lr: 1e-2, mimetic: () => MIMETIC_MAMBA2 }], makeBatch, {
      steps: 40,
      batch: 4,
      warmup: 5,
      logEvery: 5,
    });
    disposeModel(result);
    const losses = result.history.map((h) => h.loss);
    console.log(`hybrid losses: ${losses.map((l) => l.toFixed(3)).join(" ")}`);
    assert.ok(losses.every(Number.isFinite));
    assert.ok(losses.at(-1)! < losses[0] - 0.3, `loss did not fall: ${losses[0]} → ${losses.at(-1)}`);
  },
});

Deno.test({
  name:
    "a run's bits do not depend on the runs packed with it on the run axis (split-K and column parts active)",
  ignore: noGpu,
  async fn() {
    // D 256 and batch 86 × T 24 = 2064 tokens per run: the weight gradients dW = Xᵀ·dY (Kd = tokens, outputs
    // 256 × 512) are split-K products whose number of parts, when it was chosen from the whole batch, was 8 for
    // one run and 6 for three; the per-channel sums over the tokens take the two-pass path.
    const wide: LMConfig = {
      vocab: copyVocab(VOCAB).size,
      dModel: 256,
      normEps: 1e-5,
      layers: [{ ...MAMBA2_DEFAULTS, dState: 4, headDim: 64 }],
    };
    const target: TrainRun = { seed: 5, lr: 3e-3, mimetic: () => MIMETIC_MAMBA2 };
    const o = { steps: 2, batch: 86, warmup: 1, logEvery: 1 };
    const alone = await trainLM(wide, [target], makeBatch, o);
    const packed = await trainLM(
      wide,
      [
        { seed: 6, lr: 1e-3, mimetic: () => DEFAULT_INIT },
        target,
        { seed: 7, lr: 5e-3, weightDecay: 0, mimetic: () => MIMETIC_MAMBA2 },
      ],
      makeBatch,
      o,
    );
    const a = await readTensors(leaves(alone.params));
    const p = await readTensors(leaves(packed.params));
    disposeModel(alone);
    disposeModel(packed);
    assert.deepEqual(
      packed.history.filter((h) => h.run === 1).map((h) => h.loss),
      alone.history.map((h) => h.loss),
    );
    a.forEach((x, i) => {
      const n = x.length; // run 1's slice of the packed (3, ...) tensor
      assert.deepEqual(p[i].subarray(n, 2 * n), x, `param ${i} differs when packed with other runs`);
    });
  },
});

Deno.test({
  name: "evaluations during training are kept across a resume, and training seconds count every segment",
  ignore: noGpu,
  async fn() {
    const dir = await Deno.makeTempDir();
    const ckpt = join(dir, "e.ckpt");
    let calls = 0;
    const onEval = (step: number) => {
      calls++;
      return Promise.resolve({ step, twice: 2 * step });
    };
    const o = { ...opts, checkpointPath: ckpt, evalSteps: [2, 5, 8, 12], onEval };
    const first = await trainLM(cfg, runs, makeBatch, { ...o, haltAfterStep: 6 });
    disposeModel(first);
    assert.deepEqual(first.evals.map((e) => e.step), [2, 5]);
    const rest = await trainLM(cfg, runs, makeBatch, o);
    disposeModel(rest);
    assert.ok(rest.resumed);
    assert.deepEqual(rest.evals, [2, 5, 8, 12].map((s) => ({ step: s, value: { step: s, twice: 2 * s } })));
    assert.equal(calls, 4, "an evaluation before the checkpoint ran again after the resume");
    assert.ok(rest.seconds > first.seconds, `${rest.seconds} s after resume, ${first.seconds} s before`);
    await Deno.remove(dir, { recursive: true });
  },
});
