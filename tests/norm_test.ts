import assert from "node:assert/strict";
import { noGpu, type OpCase, opTests, randomInputs } from "./harness.ts";
import {
  layerNorm,
  layerNormRef,
  layerNormVjpRef,
  rmsNorm,
  rmsNormRef,
  rmsNormVjpRef,
} from "../lib/ops/norm.ts";
import { vjp } from "../lib/ops/autodiff.ts";
import { tensor, tidy } from "../lib/core/tensor.ts";

// x is drawn with an offset so LayerNorm's centring matters; weights differ per run k (random per element).
function rmsCase(shape: number[], eps = 1e-5): OpCase {
  const K = shape[0], D = shape[shape.length - 1];
  return {
    name: `rmsNorm [${shape}] eps ${eps}`,
    inputs: [{ shape, range: [-2, 3] }, { shape: [K, D], range: [-1.5, 1.5] }],
    gpu: ([x, w]) => rmsNorm(x, w, eps),
    ref: ([x, w]) => rmsNormRef(x, w, shape, eps),
    refVjp: ([x, w], g) => rmsNormVjpRef(x, w, shape, g, eps),
  };
}

function layerCase(shape: number[], eps = 1e-5): OpCase {
  const K = shape[0], D = shape[shape.length - 1];
  return {
    name: `layerNorm [${shape}] eps ${eps}`,
    inputs: [{ shape, range: [-2, 3] }, { shape: [K, D], range: [-1.5, 1.5] }, { shape: [K, D] }],
    gpu: ([x, w, b]) => layerNorm(x, w, b, eps),
    ref: ([x, w, b]) => layerNormRef(x, w, b, shape, eps),
    refVjp: ([x, w], g) => layerNormVjpRef(x, w, shape, g, eps),
  };
}

// D: 1 (degenerate), 5 and 33 (odd, below one workgroup), 300 (> 256 threads: strided loops). Leading dims: none
// (one row per run), one, two. K = 2 with per-run weights. Rows per run R = 12 gives 3 chunks of 4 in the
// dweight stage (R = 1 gives one), so the two-stage fixed-order sum is exercised.
const shapes = [[1, 1, 5], [2, 3, 33], [2, 2, 3, 5], [2, 300], [2, 3, 4, 7], [1, 2, 1]];
const cases: OpCase[] = [
  ...shapes.map((s) => rmsCase(s)),
  ...shapes.filter((s) => s.at(-1)! > 1).map((s) => layerCase(s)),
  rmsCase([2, 4, 300]),
  layerCase([2, 2, 300]),
  rmsCase([2, 3, 6], 0.5), // eps reaches the kernel
  layerCase([2, 3, 6], 0.5),
];
opTests(cases);

Deno.test({
  name: "norm backward is bit-identical run to run",
  ignore: noGpu,
  fn: async () => {
    const shape = [2, 5, 3, 33];
    const [x, w, b, g] = randomInputs([{ shape }, { shape: [2, 33] }, { shape: [2, 33] }, { shape }]);
    const run = () =>
      tidy(() => {
        const { backward } = vjp(([xs, ws, bs]) => layerNorm(xs, ws, bs), [
          tensor(x, shape),
          tensor(w, [2, 33]),
          tensor(b, [2, 33]),
        ]);
        return backward(tensor(g, shape));
      });
    const [a, c] = [run(), run()];
    for (let i = 0; i < 3; i++) assert.deepEqual(await a[i].toArray(), await c[i].toArray());
    [...a, ...c].forEach((t) => t.dispose());
  },
});

Deno.test({
  name: "norms reject bad shapes with a RangeError",
  ignore: noGpu,
  fn: () => {
    tidy(() => {
      const x = tensor(new Float32Array(12), [2, 2, 3]);
      assert.throws(
        () => rmsNorm(x, tensor(new Float32Array(4), [2, 2])),
        /rmsNorm: expected weight of shape \[2, 3\]/,
      );
      assert.throws(() => rmsNorm(x, tensor(new Float32Array(3), [1, 3])), RangeError);
      assert.throws(
        () => layerNorm(x, tensor(new Float32Array(6), [2, 3]), tensor(new Float32Array(3), [3])),
        /layerNorm: expected bias/,
      );
      assert.throws(() => rmsNorm(tensor([1, 2, 3]), tensor([1, 2, 3], [1, 3])), /expected x of shape/);
    });
  },
});
