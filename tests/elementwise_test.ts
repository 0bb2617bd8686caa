import assert from "node:assert/strict";
import { type OpCase, opTests } from "./harness.ts";
import {
  add,
  affine,
  binaryRef,
  broadcastTo,
  div,
  mergeBroadcastAxes,
  mul,
  sub,
  unary,
  UNARY_REF,
  type UnaryOp,
} from "../lib/ops/elementwise.ts";
import { reduceRef } from "../lib/ops/reduce.ts";

type Bin = "add" | "sub" | "mul" | "div";
const BIN = { add, sub, mul, div };

// The reference VJP of a broadcasting binary op: d/da and d/db reduced over broadcast axes.
function binaryCase(op: Bin, aShape: number[], bShape: number[]): OpCase {
  const bRange: [number, number] = op === "div" ? [0.5, 2] : [-1, 1];
  return {
    name: `${op} [${aShape}]∘[${bShape}]`,
    inputs: [{ shape: aShape }, { shape: bShape, range: bRange }],
    gpu: ([a, b]) => BIN[op](a, b),
    ref: ([a, b]) => binaryRef(op, a, aShape, b, bShape).data,
    refVjp: ([a, b], ct) => {
      const ga = new Float64Array(a.length), gb = new Float64Array(b.length);
      // perturbation-free derivation: walk the broadcast index map once
      const ones = (n: number) => new Float64Array(n).fill(1);
      const idxA = binaryRef("mul", Float64Array.from(a, (_, i) => i), aShape, ones(b.length), bShape).data;
      const idxB = binaryRef("mul", ones(a.length), aShape, Float64Array.from(b, (_, i) => i), bShape).data;
      for (let i = 0; i < ct.length; i++) {
        const x = a[idxA[i]], y = b[idxB[i]], g = ct[i];
        const [da, db] = op === "add"
          ? [1, 1]
          : op === "sub"
          ? [1, -1]
          : op === "mul"
          ? [y, x]
          : [1 / y, -x / (y * y)];
        ga[idxA[i]] += g * da;
        gb[idxB[i]] += g * db;
      }
      return [ga, gb];
    },
  };
}

const RANGES: Partial<Record<UnaryOp, [number, number]>> = {
  log: [0.2, 3],
  sqrt: [0.2, 3],
  softplus: [-6, 6],
};

const cases: OpCase[] = [
  ...(["add", "sub", "mul", "div"] as const).flatMap((op) => [
    binaryCase(op, [3, 5], [3, 5]),
    binaryCase(op, [2, 3, 4], [3, 1]),
    binaryCase(op, [4], [2, 3, 4]),
  ]),
  // the broadcasting kernel after merging axes (see mergeBroadcastAxes): a per-run bias, alternating broadcast
  // axes of both operands, rank 6, a scalar
  binaryCase("add", [3, 1, 5], [3, 4, 5]),
  binaryCase("mul", [2, 1, 3, 1], [1, 4, 1, 5]),
  binaryCase("sub", [2, 3, 4, 5, 1, 2], [1, 3, 1, 5, 6, 1]),
  binaryCase("div", [2, 3], [1]),
  ...(Object.keys(UNARY_REF) as (keyof typeof UNARY_REF)[]).map((op): OpCase => ({
    name: op,
    inputs: [{ shape: [7, 9], range: RANGES[op] ?? [-3, 3] }],
    gpu: ([x]) => unary(op, x),
    ref: ([x]) => x.map(UNARY_REF[op].f),
    refVjp: ([x], ct) => [x.map((v, i) => ct[i] * UNARY_REF[op].df(v))],
  })),
  {
    name: "affine",
    inputs: [{ shape: [11] }],
    gpu: ([x]) => affine(x, -1.5, 0.25),
    ref: ([x]) => x.map((v) => -1.5 * v + 0.25),
    refVjp: (_, ct) => [ct.map((v) => -1.5 * v)],
  },
  {
    name: "broadcastTo [3,1]→[2,3,4]",
    inputs: [{ shape: [3, 1] }],
    gpu: ([x]) => broadcastTo(x, [2, 3, 4]),
    ref: ([x]) => binaryRef("add", x, [3, 1], new Float64Array(24), [2, 3, 4]).data,
    refVjp: (_, ct) => [reduceRef("sum", reduceRef("sum", ct, [2, 3, 4], 2), [2, 3], 0)],
  },
];
// relu's kink: keep inputs away from 0 for the finite differences by the default range (measure-zero event).

opTests(cases);

Deno.test("mergeBroadcastAxes fuses axes that step together, keeps those that do not, drops size-1 axes", () => {
  // (K 3, M 4, E 5) + (K 3, 1, E 5): nothing fuses
  assert.deepEqual(mergeBroadcastAxes([3, 4, 5], [20, 5, 1], [5, 0, 1]), {
    shape: [3, 4, 5],
    a: [20, 5, 1],
    b: [5, 0, 1],
  });
  // (1, 4, 5) + (1, 1, 5) → (4, 5)
  assert.deepEqual(mergeBroadcastAxes([1, 4, 5], [20, 5, 1], [0, 0, 1]), {
    shape: [4, 5],
    a: [5, 1],
    b: [0, 1],
  });
  // (2, 3, 4) + (2, 3, 1): the first two axes fuse for both
  assert.deepEqual(mergeBroadcastAxes([2, 3, 4], [12, 4, 1], [3, 1, 0]), {
    shape: [6, 4],
    a: [4, 1],
    b: [1, 0],
  });
  // a row broadcast over two leading axes: (2, 3, 4) + (4)
  assert.deepEqual(mergeBroadcastAxes([2, 3, 4], [12, 4, 1], [0, 0, 1]), {
    shape: [6, 4],
    a: [4, 1],
    b: [0, 1],
  });
  assert.deepEqual(mergeBroadcastAxes([1, 1], [0, 0], [0, 0]), { shape: [1], a: [0], b: [0] });
});
