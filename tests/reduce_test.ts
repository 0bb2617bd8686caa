import { type OpCase, opTests } from "./harness.ts";
import { max, mean, reduceRef, sum } from "../lib/ops/reduce.ts";

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
