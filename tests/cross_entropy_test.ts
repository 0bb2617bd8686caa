import assert from "node:assert/strict";
import { maxRelError, noGpu, type OpCase, opTests } from "./harness.ts";
import {
  argmaxLastAxis,
  argmaxRef,
  maskedCrossEntropy,
  maskedCrossEntropyRef,
  maskedCrossEntropyVjpRef,
} from "../lib/ops/cross_entropy.ts";
import { vjp } from "../lib/ops/autodiff.ts";
import { type Tensor, tensor, tidy } from "../lib/core/tensor.ts";
import { key, normal, uniform } from "../lib/core/random.ts";

/** logits (K, R, V) in `range`, targets (K, R) in [0, V), mask (K, R) weights in [0, 1) (constant). */
function ceCase(K: number, R: number, V: number, range: [number, number] = [-3, 3], note = ""): OpCase {
  return {
    name: `crossEntropy K=${K} R=${R} V=${V}${note}`,
    inputs: [{ shape: [K, R, V], range }, { shape: [K, R], int: V }, {
      shape: [K, R],
      range: [0, 1],
      constant: true,
    }],
    gpu: ([logits, targets, mask]) => maskedCrossEntropy(logits, targets, mask),
    ref: ([logits, targets, mask]) => maskedCrossEntropyRef(logits, targets, mask, K, V),
    refVjp: ([logits, targets, mask], ct) => [
      maskedCrossEntropyVjpRef(logits, targets, mask, ct, K, V),
      null,
      null,
    ],
  };
}

opTests([
  ceCase(2, 5, 7),
  ceCase(1, 3, 300, [-3, 3], " (V > 256, not a multiple of 256)"),
  ceCase(2, 300, 3, [-3, 3], " (R > 256: strided per-run sum)"),
  ceCase(2, 3, 37, [-80, 80], " (logits ±80)"),
  ceCase(1, 1, 1, [-3, 3], " (V = 1)"),
]);

/** Loss (K) and d logits on the GPU for fixed inputs, with cotangent g (K). */
async function gpuLossAndGrad(
  logits: Float32Array | Float64Array,
  targets: Int32Array,
  mask: Float64Array,
  shape: [number, number, number],
  g: Float64Array,
): Promise<[Float32Array, Float32Array]> {
  const [K, R] = shape;
  const res = tidy(() => {
    const t = tensor(targets, [K, R], "i32"), m = tensor(mask, [K, R]);
    const { out, backward } = vjp(([x]) => maskedCrossEntropy(x, t, m), [tensor(logits, shape)]);
    return [out, backward(tensor(g, [K]))[0]] as Tensor[];
  });
  const got = [await res[0].toArray(), await res[1].toArray()] as [Float32Array, Float32Array];
  res.forEach((t) => t.dispose());
  return got;
}

Deno.test({
  name: "crossEntropy: a run whose mask is all zero has loss 0 and zero gradient; 0/1 masks elsewhere",
  ignore: noGpu,
  fn: async () => {
    const K = 3, R = 4, V = 5;
    const logits = normal(key(10), K * R * V).map((v) => 4 * v);
    const targets = Int32Array.from(uniform(key(11), K * R, 0, V), Math.floor);
    const mask = Float64Array.from([1, 0, 1, 1, /* run 1: all zero */ 0, 0, 0, 0, 0, 1, 0, 0]);
    const g = Float64Array.from([1, -2, 0.5]);
    const [loss, d] = await gpuLossAndGrad(logits, targets, mask, [K, R, V], g);
    assert.equal(loss[1], 0);
    assert.ok(d.subarray(R * V, 2 * R * V).every((v) => v === 0), "zero gradient for the masked-out run");
    assert.ok(d.subarray(R * V * 2, R * V * 2 + V).every((v) => v === 0), "zero gradient for a masked row");
    const eLoss = maxRelError(loss, maskedCrossEntropyRef(logits, targets, mask, K, V));
    const eGrad = maxRelError(d, maskedCrossEntropyVjpRef(logits, targets, mask, g, K, V));
    console.log(
      `zero-mask run: loss error ${eLoss.toExponential(2)}, gradient error ${eGrad.toExponential(2)}`,
    );
    assert.ok(eLoss < 1e-5 && eGrad < 1e-5);
  },
});

Deno.test({
  name: "crossEntropy: non-finite logits in masked rows do not poison the loss or gradient; stable at ±1e30",
  ignore: noGpu,
  fn: async () => {
    const K = 1, R = 3, V = 4;
    const logits = Float32Array.from([
      ...[NaN, Infinity, -Infinity, 0], // masked out
      ...[1e30, -1e30, 0, 1e30], // target 3: ties with index 0, loss ln 2
      ...[80, -80, 80, -80], // target 1: loss 160 + ln 2
    ]);
    const targets = Int32Array.from([0, 3, 1]);
    const mask = Float64Array.from([0, 1, 1]);
    const [loss, d] = await gpuLossAndGrad(logits, targets, mask, [K, R, V], Float64Array.from([1]));
    const want = (Math.LN2 + 160 + Math.LN2) / 2; // the loss is computed as (max - x_t) + log Σ exp(x - max)
    console.log(`extreme logits: loss ${loss[0]} (want ${want})`);
    assert.ok(Math.abs(loss[0] - want) < 1e-4 * want);
    assert.ok(d.every(Number.isFinite), "finite gradient");
    assert.deepEqual([...d.subarray(0, V)], [0, 0, 0, 0]);
    // row 2 at ±80 is still accurate: softmax [0.5, 0, 0.5, 0], target 1, weight 1/2
    const row2 = [...d.subarray(2 * V, 3 * V)];
    const errRow2 = maxRelError(row2, [0.25, -0.5, 0.25, 0]);
    console.log(`extreme logits: gradient error at ±80 ${errRow2.toExponential(2)}`);
    assert.ok(errRow2 < 1e-5);
  },
});

Deno.test({
  name:
    "crossEntropy: the per-run loss is deterministic (bit-identical) and out-of-range targets are clamped",
  ignore: noGpu,
  fn: async () => {
    const K = 2, R = 600, V = 11;
    const logits = normal(key(12), K * R * V);
    const targets = Int32Array.from(uniform(key(13), K * R, -3, V + 3), Math.floor);
    const mask = uniform(key(14), K * R);
    const g = Float64Array.from([0.7, -1.3]);
    const [l1, d1] = await gpuLossAndGrad(logits, targets, mask, [K, R, V], g);
    const [l2, d2] = await gpuLossAndGrad(logits, targets, mask, [K, R, V], g);
    assert.deepEqual(l1, l2);
    assert.deepEqual(d1, d2);
    const eLoss = maxRelError(l1, maskedCrossEntropyRef(logits, targets, mask, K, V));
    const eGrad = maxRelError(d1, maskedCrossEntropyVjpRef(logits, targets, mask, g, K, V));
    console.log(
      `R=600 clamped targets: loss error ${eLoss.toExponential(2)}, gradient error ${eGrad.toExponential(2)}`,
    );
    assert.ok(eLoss < 1e-5 && eGrad < 1e-5);
  },
});

Deno.test({
  name: "crossEntropy rejects mismatched shapes and dtypes with RangeError",
  ignore: noGpu,
  fn: () => {
    tidy(() => {
      const logits = tensor(new Float32Array(2 * 3 * 4), [2, 3, 4]);
      const t = tensor(new Int32Array(6), [2, 3], "i32"), m = tensor(new Float32Array(6), [2, 3]);
      assert.throws(
        () => maskedCrossEntropy(logits, tensor(new Int32Array(6), [3, 2], "i32"), m),
        /targets of shape/,
      );
      assert.throws(
        () => maskedCrossEntropy(logits, t, tensor(new Float32Array(3), [1, 3])),
        /mask of shape/,
      );
      assert.throws(() => maskedCrossEntropy(logits, tensor(new Float32Array(6), [2, 3]), m), /i32 targets/);
    });
  },
});

/** argmax on the GPU of rows of length V. */
async function gpuArgmax(x: Float32Array, shape: number[]): Promise<Int32Array> {
  const out = tidy(() => argmaxLastAxis(tensor(x, shape)));
  const got = await out.toArray() as Int32Array;
  out.dispose();
  return got;
}

Deno.test({
  name: "argmaxLastAxis: ties go to the first index, also across threads; -inf rows give 0",
  ignore: noGpu,
  fn: async () => {
    assert.deepEqual([...await gpuArgmax(Float32Array.from([1, 3, 3, 0, 2, 2, 2, 2]), [2, 4])], [1, 0]);
    assert.deepEqual([...await gpuArgmax(new Float32Array(3).fill(-Infinity), [1, 3])], [0]);
    // V = 300: index 260 is handled by thread 4, index 5 by thread 5, index 3 and 259 by thread 3
    const x = new Float32Array(600);
    x[5] = x[260] = 7; // row 0: first maximum at 5 though thread 4 holds 260
    x[300 + 259] = x[300 + 3] = x[300 + 299] = 7; // row 1: 3 and 259 in the same thread
    assert.deepEqual([...await gpuArgmax(x, [2, 300])], [5, 3]);
  },
});

Deno.test({
  name: "argmaxLastAxis matches the reference on random rows (V not a multiple of 256)",
  ignore: noGpu,
  fn: async () => {
    for (const [shape, seed] of [[[2, 3, 7], 20], [[4, 517], 21], [[3, 1], 22]] as const) {
      const n = shape.reduce((a: number, b: number) => a * b, 1);
      const x = Float32Array.from(normal(key(seed), n));
      assert.deepEqual(await gpuArgmax(x, [...shape]), argmaxRef(x, shape.at(-1)!), `shape [${shape}]`);
    }
    tidy(() => assert.throws(() => argmaxLastAxis(tensor(new Int32Array(2), [2], "i32")), RangeError));
  },
});
