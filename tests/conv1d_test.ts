import assert from "node:assert/strict";
import { noGpu, type OpCase, opTests, randomInputs } from "./harness.ts";
import {
  causalConv1d,
  causalConv1dRef,
  causalConv1dSiluRef,
  causalConv1dSiluVjpRef,
  causalConv1dVjpRef,
} from "../lib/ops/conv1d.ts";
import { vjp } from "../lib/ops/autodiff.ts";
import { silu } from "../lib/ops/elementwise.ts";
import { tensor, tidy } from "../lib/core/tensor.ts";

// x (K, B, T, C), weight (K, C, W), bias (K, C); weights and biases differ per run k (random per element).
function convCase(shape: [number, number, number, number], W: number): OpCase {
  const [K, , , C] = shape;
  return {
    name: `causalConv1d [${shape}] W ${W}`,
    inputs: [{ shape }, { shape: [K, C, W] }, { shape: [K, C] }],
    gpu: ([x, w, b]) => causalConv1d(x, w, b),
    ref: ([x, w, b]) => causalConv1dRef(x, w, b, shape),
    refVjp: ([x, w], g) => causalConv1dVjpRef(x, w, shape, g),
  };
}

// The fused conv + SiLU: inputs scaled so that the conv's outputs spread over both sides of SiLU's bend.
function convSiluCase(shape: [number, number, number, number], W: number): OpCase {
  const [K, , , C] = shape;
  return {
    name: `causalConv1d [${shape}] W ${W}, silu`,
    inputs: [{ shape, range: [-2, 2] }, { shape: [K, C, W] }, { shape: [K, C] }],
    gpu: ([x, w, b]) => causalConv1d(x, w, b, { silu: true }),
    ref: ([x, w, b]) => causalConv1dSiluRef(x, w, b, shape),
    refVjp: ([x, w, b], g) => causalConv1dSiluVjpRef(x, w, b, shape, g),
  };
}

const cases: OpCase[] = [
  convSiluCase([1, 1, 1, 3], 4),
  convSiluCase([2, 2, 3, 5], 4),
  convSiluCase([2, 3, 9, 7], 4),
  convSiluCase([2, 1, 4, 6], 1),
  convSiluCase([1, 2, 3, 4], 6),
  convSiluCase([2, 2, 17, 33], 4),
  convCase([1, 1, 1, 3], 4), // T = 1: only the last tap
  convCase([2, 2, 3, 5], 4), // T < W, K = 2
  convCase([2, 3, 9, 7], 4), // B·T = 27: 5 chunks of 6 rows in the dweight stage, chunks span batch rows
  convCase([1, 2, 5, 3], 1), // W = 1: a per-channel scale and shift
  convCase([2, 1, 4, 6], 1),
  convCase([2, 2, 6, 5], 3),
  convCase([1, 2, 3, 4], 6), // W > T
  convCase([2, 2, 17, 33], 4), // C not a multiple of anything, several chunks
];
opTests(cases);

Deno.test({
  name: "causalConv1d backward is bit-identical run to run",
  ignore: noGpu,
  fn: async () => {
    const shape = [2, 3, 11, 9];
    const [x, w, b, g] = randomInputs([{ shape }, { shape: [2, 9, 4] }, { shape: [2, 9] }, { shape }]);
    const run = () =>
      tidy(() => {
        const { backward } = vjp(([xs, ws, bs]) => causalConv1d(xs, ws, bs), [
          tensor(x, shape),
          tensor(w, [2, 9, 4]),
          tensor(b, [2, 9]),
        ]);
        return backward(tensor(g, shape));
      });
    const [a, c] = [run(), run()];
    for (let i = 0; i < 3; i++) assert.deepEqual(await a[i].toArray(), await c[i].toArray());
    [...a, ...c].forEach((t) => t.dispose());
  },
});

Deno.test({
  name: "causalConv1d with silu gives silu(causalConv1d) and its gradients, within 1e-6",
  ignore: noGpu,
  fn: async () => {
    const shape = [2, 3, 11, 9];
    const [x, w, b, g] = randomInputs([{ shape, range: [-2, 2] }, { shape: [2, 9, 4] }, { shape: [2, 9] }, {
      shape,
    }]);
    const run = (fused: boolean) =>
      tidy(() => {
        const { out, backward } = vjp(
          ([xs, ws, bs]) => fused ? causalConv1d(xs, ws, bs, { silu: true }) : silu(causalConv1d(xs, ws, bs)),
          [tensor(x, shape), tensor(w, [2, 9, 4]), tensor(b, [2, 9])],
        );
        return [out, ...backward(tensor(g, shape))];
      });
    const [a, c] = [run(true), run(false)];
    for (let i = 0; i < 4; i++) {
      const [p, q] = [await a[i].toArray(), await c[i].toArray()];
      const scale = Math.max(...q.map(Math.abs));
      const err = Math.max(...p.map((v, j) => Math.abs(v - q[j])));
      assert.ok(scale > 0.1 && err <= 1e-6 * scale, `output ${i}: ${err} against max ${scale}`);
    }
    [...a, ...c].forEach((t) => t.dispose());
  },
});

Deno.test({
  name: "identity conv (weight [0, 0, 0, 1], bias 0) returns x",
  ignore: noGpu,
  fn: async () => {
    const shape = [1, 2, 5, 3];
    const [x] = randomInputs([{ shape }]);
    const w = new Float64Array(3 * 4).map((_, i) => (i % 4 === 3 ? 1 : 0));
    const y = tidy(() =>
      causalConv1d(tensor(x, shape), tensor(w, [1, 3, 4]), tensor(new Float32Array(3), [1, 3]))
    );
    assert.deepEqual(await y.toArray(), Float32Array.from(x));
    y.dispose();
  },
});

Deno.test({
  name: "causalConv1d rejects bad shapes with a RangeError",
  ignore: noGpu,
  fn: () => {
    tidy(() => {
      const x = tensor(new Float32Array(24), [2, 1, 4, 3]);
      const b = tensor(new Float32Array(6), [2, 3]);
      assert.throws(
        () => causalConv1d(x, tensor(new Float32Array(12), [2, 2, 3]), b),
        /expected weight of shape \[2, 3/,
      );
      assert.throws(() => causalConv1d(x, tensor(new Float32Array(0), [2, 3, 0]), b), RangeError);
      assert.throws(
        () => causalConv1d(x, tensor(new Float32Array(24), [2, 3, 4]), tensor([1, 2, 3])),
        /expected bias/,
      );
      assert.throws(
        () => causalConv1d(x.reshape([2, 4, 3]), tensor(new Float32Array(24), [2, 3, 4]), b),
        /\(K, B, T, C\)/,
      );
    });
  },
});
