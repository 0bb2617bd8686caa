import assert from "node:assert/strict";
import { noGpu, type OpCase, opTests, randomInputs } from "./harness.ts";
import { max, mean, reduceRef, sum } from "../lib/ops/reduce.ts";
import { tensor } from "../lib/core/tensor.ts";

function sumCase(shape: number[], axis: number): OpCase {
  return {
    name: `sum [${shape}] axis ${axis}`,
    inputs: [{ shape }],
    gpu: ([x]) => sum(x, axis),
    ref: ([x]) => reduceRef("sum", x, shape, axis),
    refVjp: ([x], ct) => {
      const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
      const n = shape[axis];
      return [x.map((_, i) => ct[Math.floor(i / (n * inner)) * inner + (i % inner)])];
    },
  };
}

const cases: OpCase[] = [
  sumCase([5, 300], 1), // rows kernel with a strided loop (n > 256)
  sumCase([4, 6, 3], 1), // cols kernel
  sumCase([2, 700, 3], 1), // cols kernel in parts (n = 700 over 6 outputs: 10 parts of 70), then their sum
  sumCase([7, 5], 0),
  sumCase([3, 27, 5], 1), // cols kernel: three blocks of 8 loads, then 3 one at a time
  sumCase([16, 9], 0), // cols kernel: exactly two blocks of 8
  {
    name: "mean [6,10] axis 1",
    inputs: [{ shape: [6, 10] }],
    gpu: ([x]) => mean(x, 1),
    ref: ([x]) => reduceRef("sum", x, [6, 10], 1).map((v) => v / 10),
    refVjp: ([x], ct) => [x.map((_, i) => ct[Math.floor(i / 10)] / 10)],
  },
  ...[[[8, 40], 1], [[3, 9, 4], 1], [[3, 300, 2], 1]].map(([shape, axis]): OpCase => {
    const s = shape as number[], a = axis as number;
    const inner = s.slice(a + 1).reduce((p, q) => p * q, 1);
    return {
      name: `max [${s}] axis ${a}`,
      inputs: [{ shape: s }],
      gpu: ([x]) => max(x, a),
      ref: ([x]) => reduceRef("max", x, s, a),
      refVjp: ([x], ct) => {
        const y = reduceRef("max", x, s, a);
        return [x.map((v, i) => {
          const j = Math.floor(i / (s[a] * inner)) * inner + (i % inner);
          return v === y[j] ? ct[j] : 0;
        })];
      },
    };
  }),
];

opTests(cases);

Deno.test({
  name: "sum over a middle axis adds in index order: bit-identical to a sequential f32 sum",
  ignore: noGpu,
  fn: async () => {
    // n = 43: five blocks of eight loads and three single ones; values of mixed sign and scale, so that another
    // order would round differently somewhere
    const [outer, n, inner] = [3, 43, 17];
    const [raw] = randomInputs([{ shape: [outer * n * inner], range: [-1, 1] }]);
    const x = Float32Array.from(raw, (v, i) => v * 10 ** ((i % 7) - 3));
    const got = await sum(tensor(x, [outer, n, inner]), 1).toArray();
    const want = new Float32Array(outer * inner);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        let acc = 0;
        for (let k = 0; k < n; k++) acc = Math.fround(acc + x[(o * n + k) * inner + i]);
        want[o * inner + i] = acc;
      }
    }
    assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(want.buffer));
  },
});
