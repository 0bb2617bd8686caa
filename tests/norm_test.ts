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
import { runtimeStats } from "../lib/core/runtime.ts";
import { readTensors, type Tensor, tensor, tidy } from "../lib/core/tensor.ts";
import { type BindingLimits, bindingLimits, rowChunks, withBindingLimits } from "../lib/ops/split.ts";

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

function layerCase(shape: number[], eps = 1e-5, range: [number, number] = [-2, 3]): OpCase {
  const K = shape[0], D = shape[shape.length - 1];
  return {
    name: `layerNorm [${shape}] eps ${eps} x in [${range}]`,
    inputs: [{ shape, range }, { shape: [K, D], range: [-1.5, 1.5] }, { shape: [K, D] }],
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

// The row kernels' layouts (lib/ops/norm.ts `rowLayout`): vec4 elements when D % 4 == 0, TPR threads a row and
// 256 / TPR rows a workgroup, the row in registers up to 2048 elements and walked in chunks beyond. Each case
// below has rows that are not a multiple of the rows per workgroup, and (but the last two) K > 1 runs.
opTests([
  rmsCase([2, 3, 4]), // vec4, one element a row: 1 thread a row, 256 rows a workgroup
  layerCase([2, 5, 8]), // vec4, 2 elements held by one thread
  rmsCase([2, 5, 7, 64]), // vec4, 4 threads a row, 64 rows a workgroup: 70 rows over 2 workgroups
  layerCase([3, 13, 36]), // vec4, 9 elements over 4 threads of 3 (lanes past the row's end masked)
  rmsCase([2, 3, 1024]), // vec4, 64 threads of 4 elements (the D-1024 model's norm)
  layerCase([2, 4, 128], 1e-5, [20, 21]), // |μ| ≫ σ: the two-pass variance (E[x²] − E[x]² would lose ~1e-3)
  rmsCase([1, 2, 2051]), // scalar, 2051 > 2048 elements: chunks of 256 · 8 (2048, then 3)
  layerCase([1, 3, 2051]),
  rmsCase([2, 1, 8200]), // vec4, 2050 elements: chunks again
  layerCase([2, 1, 8196]),
]);

/** Runs norm forward and backward (y, dx, dw[, db]) on the GPU, at the binding limits `limits` if given. */
function normOutputs(center: boolean, shape: number[], seed: number, limits?: BindingLimits): Tensor[] {
  const K = shape[0], D = shape.at(-1)!;
  const [x, w, b, g] = randomInputs([{ shape }, { shape: [K, D] }, { shape: [K, D] }, { shape }], seed);
  const run = () =>
    tidy(() => {
      const params = [tensor(x, shape), tensor(w, [K, D]), ...(center ? [tensor(b, [K, D])] : [])];
      const { out, backward } = vjp(
        ([xs, ws, bs]) => (center ? layerNorm(xs, ws, bs) : rmsNorm(xs, ws)),
        params,
      );
      return [out, ...backward(tensor(g, shape))];
    });
  return limits ? withBindingLimits(limits, run) : run();
}

Deno.test({
  name: "norms over several dispatches (rows in binding-sized chunks) give the same bits as one dispatch",
  ignore: noGpu,
  fn: async () => {
    const { align } = bindingLimits();
    // [shape, max bytes a binding]: 96 rows of 33 (scalar) or 48 of 36 (vec4), 1.5× the fewest rows whose slices
    // start at aligned offsets (64 and 32 with 256-byte alignment: the row kernels take chunks of those, 3 for 2
    // runs of 70 or 37 rows; the dw stage's row blocks need the half more, as they do not start aligned)
    const cases: [number[], number][] = [[[2, 70, 33], 96 * 33 * 4], [[2, 37, 36], 48 * 36 * 4]];
    for (const [shape, maxBytes] of cases) {
      for (const center of [false, true]) {
        const limits = { maxBytes, align };
        const rows = shape[0] * shape[1];
        assert.ok(rowChunks("t", rows, [shape[2], 2], "rows", limits).length > 2, "expected several chunks");
        const d0 = runtimeStats().dispatches;
        const whole = normOutputs(center, shape, 77);
        const d1 = runtimeStats().dispatches;
        const split = normOutputs(center, shape, 77, limits);
        const extra = runtimeStats().dispatches - d1 - (d1 - d0);
        // forward and dx take 3 dispatches each instead of 1; the dw stage 2 instead of 1
        assert.equal(extra, 5, "expected the forward, dx and dw stages to split");
        const [a, c] = [await readTensors(whole), await readTensors(split)];
        [...whole, ...split].forEach((t) => t.dispose());
        const what = `${center ? "layerNorm" : "rmsNorm"} [${shape}]`;
        a.forEach((v, i) => assert.deepEqual(c[i], v, `${what}: output ${i} differs when split`));
        console.log(`${what}: ${a.length} outputs bit-identical over ${rows} rows, ${extra} more dispatches`);
      }
    }
  },
});

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
