/**
 * `concat`, `splitAlong` and `matmulParts` (lib/ops/concat.ts, lib/ops/matmul.ts) against float64 references on
 * fresh random inputs, with their VJPs: along the first, a middle and the last axis; more pieces than one dispatch
 * binds (4); an output of the split left unused (its cotangent is zero); and the fused products against separate
 * ones. The copies are exact, so the tolerance of the copy cases is 1e-7 (f32 rounding of the inputs only).
 */
import assert from "node:assert/strict";
import { maxRelError, noGpu, type OpCase, opTests } from "./harness.ts";
import { concat, concatRef, splitAlong, splitRef } from "../lib/ops/concat.ts";
import { matmul, matmulParts, matmulRef, matmulVjpRef } from "../lib/ops/matmul.ts";
import { vjp } from "../lib/ops/autodiff.ts";
import { sizeOf, tensor, tidy } from "../lib/core/tensor.ts";
import { key, normal } from "../lib/core/random.ts";

/** (outer, n, inner) of `shape` around `axis`. */
const view = (shape: number[], axis: number): [number, number, number] => [
  sizeOf(shape.slice(0, axis)),
  shape[axis],
  sizeOf(shape.slice(axis + 1)),
];

/** concat of pieces that differ in `axis` only. */
function concatCase(shape: number[], axis: number, sizes: number[]): OpCase {
  const shapes = sizes.map((s) => shape.map((d, i) => (i === axis ? s : d)));
  const [outer, , inner] = view(shape, axis);
  return {
    name: `concat of ${sizes.length} pieces along axis ${axis} of [${shape.join(", ")}] (sizes ${
      sizes.join(", ")
    })`,
    inputs: shapes.map((s) => ({ shape: s })),
    gpu: (xs) => concat(xs, axis),
    ref: (xs) => concatRef(xs, outer, sizes, inner),
    refVjp: (_, ct) => splitRef(ct, outer, sizes, inner),
    tol: 1e-7,
  };
}

/** splitAlong, its pieces concatenated again in reverse order (one output that depends on every piece). */
function splitCase(shape: number[], axis: number, sizes: number[]): OpCase {
  const [outer, , inner] = view(shape, axis);
  const rev = [...sizes].reverse();
  return {
    name: `splitAlong [${shape.join(", ")}] along axis ${axis} into ${sizes.join(", ")}, pieces reversed`,
    inputs: [{ shape }],
    gpu: ([x]) => concat(splitAlong(x, sizes, axis).reverse(), axis),
    ref: ([x]) => concatRef(splitRef(x, outer, sizes, inner).reverse(), outer, rev, inner),
    refVjp: (_, ct) => [concatRef(splitRef(ct, outer, rev, inner).reverse(), outer, sizes, inner)],
    tol: 1e-7,
  };
}

/** x (K, M, Kd) times ws (K, Kd, N_j) by matmulParts, the products concatenated along their last axis. */
function partsCase(K: number, M: number, Kd: number, widths: number[]): OpCase {
  return {
    name: `matmulParts K ${K}, M ${M}, Kd ${Kd}, widths ${widths.join(", ")}`,
    inputs: [{ shape: [K, M, Kd] }, ...widths.map((n) => ({ shape: [K, Kd, n] }))],
    gpu: ([x, ...ws]) => concat(matmulParts(x, ws), 2),
    ref: ([x, ...ws]) =>
      concatRef(
        widths.map((n, j) => matmulRef(x, [K, M, Kd], ws[j], [K, Kd, n]).data),
        K * M,
        widths,
        1,
      ),
    refVjp: ([x, ...ws], ct) => {
      const cts = splitRef(ct, K * M, widths, 1);
      const grads = widths.map((n, j) => matmulVjpRef(x, [K, M, Kd], ws[j], [K, Kd, n], cts[j]));
      const dx = new Float64Array(x.length);
      for (const [da] of grads) da.forEach((v, i) => (dx[i] += v));
      return [dx, ...grads.map(([, db]) => db)];
    },
  };
}

opTests([
  concatCase([2, 3], 1, [3, 1, 2]),
  concatCase([3, 2, 5], 0, [1, 2]),
  concatCase([2, 4, 3], 1, [1, 2, 1, 3, 2, 4]), // 6 pieces: two dispatches, the second covering columns 7..
  splitCase([2, 7], 1, [2, 4, 1]),
  splitCase([3, 5, 2], 1, [1, 1, 1, 1, 1]), // 5 pieces: two dispatches
  splitCase([6, 3], 0, [4, 2]),
  splitCase([2, 5], 1, [2, 0, 3]), // a piece of no columns
  partsCase(2, 7, 5, [3, 1, 4]),
  partsCase(1, 33, 16, [8, 8, 2]),
]);

Deno.test({
  name: "splitAlong: an unused piece gets a zero gradient, the others their cotangents",
  ignore: noGpu,
  fn: async () => {
    const xs = normal(key(5), 2 * 6);
    const ct = normal(key(6), 2 * 3);
    const [g] = tidy(() => {
      const { backward } = vjp(([x]) => splitAlong(x, [2, 3, 1], 1)[1], [tensor(xs, [2, 6])]);
      return backward(tensor(ct, [2, 3]));
    });
    const got = await g.toArray();
    g.dispose();
    const want = [0, 0, ct[0], ct[1], ct[2], 0, 0, 0, ct[3], ct[4], ct[5], 0];
    assert.ok(maxRelError(got, want) <= 1e-7, `got ${got}`);
  },
});

Deno.test({
  name: "matmulParts equals separate products within 1e-6",
  ignore: noGpu,
  fn: async () => {
    const x = tensor(normal(key(1), 2 * 40 * 24), [2, 40, 24]);
    const ws = [12, 5, 3].map((n, j) => tensor(normal(key(2 + j), 2 * 24 * n), [2, 24, n]));
    const fused = matmulParts(x, ws), apart = ws.map((w) => matmul(x, w));
    for (let j = 0; j < ws.length; j++) {
      assert.deepEqual(fused[j].shape, apart[j].shape);
      const err = maxRelError(await fused[j].toArray(), await apart[j].toArray());
      assert.ok(err <= 1e-6, `part ${j}: ${err}`);
    }
    [x, ...ws, ...fused, ...apart].forEach((t) => t.dispose());
  },
});

Deno.test({
  name: "concat and splitAlong reject mismatched shapes and sizes with RangeError",
  ignore: noGpu,
  fn: () => {
    const a = tensor([1, 2, 3, 4], [2, 2]), b = tensor([1, 2, 3], [3, 1]);
    assert.throws(() => concat([a, b], 1), /differ outside axis 1/);
    assert.throws(() => concat([], 0), RangeError);
    assert.throws(() => splitAlong(a, [1, 2], 1), /do not sum to axis 1's length 2/);
    assert.throws(() => splitAlong(a, [-1, 3], 1), /integer sizes ≥ 0/);
    assert.throws(() => splitAlong(a, [1.5, 0.5], 1), /integer sizes ≥ 0/);
    assert.throws(() => concat([a], 2), RangeError);
    [a, b].forEach((t) => t.dispose());
  },
});
