import assert from "node:assert/strict";
import { maxRelError, noGpu, type OpCase, opTests } from "./harness.ts";
import {
  checkIds,
  embedding,
  embeddingBackwardChunks,
  embeddingRef,
  embeddingVjpRef,
} from "../lib/ops/embedding.ts";
import { vjp } from "../lib/ops/autodiff.ts";
import { type Tensor, tensor, tidy } from "../lib/core/tensor.ts";
import { key, normal } from "../lib/core/random.ts";

/** A case for table (K, V, D) and ids (K, B, T) drawn uniformly from [0, idRange). */
function embeddingCase(
  K: number,
  V: number,
  D: number,
  B: number,
  T: number,
  idRange = V,
  note = "",
): OpCase {
  return {
    name: `embedding K=${K} V=${V} D=${D} B=${B} T=${T}${note}`,
    inputs: [{ shape: [K, V, D] }, { shape: [K, B, T], int: idRange }],
    gpu: ([table, ids]) => embedding(table, ids),
    ref: ([table, ids]) => embeddingRef(table, ids, K, V, D),
    refVjp: ([, ids], ct) => [embeddingVjpRef(ct, ids, K, V, D), null],
  };
}

opTests([
  embeddingCase(1, 7, 5, 2, 3),
  embeddingCase(2, 5, 300, 2, 3, 5, " (D > 256: two columns per thread)"),
  embeddingCase(2, 3, 4, 3, 20, 3, " (repeated ids accumulate)"),
  embeddingCase(1, 9, 3, 3, 100, 2, " (300 positions: two tiles, the last partial)"),
  embeddingCase(1, 1000, 8, 1, 3, 1000, " (large V, few tokens)"),
  embeddingCase(
    2,
    5,
    7,
    3,
    400,
    5,
    " (1200 positions, V 5: the backward in 5 chunks of 256, the last partial)",
  ),
  embeddingCase(1, 1, 1, 1, 1),
]);

Deno.test("checkIds accepts ids in [0, V) and throws RangeError naming the bad id", () => {
  checkIds(new Int32Array([0, 1, 3]), 4);
  assert.throws(() => checkIds(new Int32Array([0, 4]), 4), RangeError);
  assert.throws(() => checkIds(new Int32Array([-1]), 4), /found -1 at flat index 0/);
  assert.throws(() => checkIds([1.5], 4, "targets"), /targets: expected integers in \[0, 4\)/);
});

Deno.test({
  name: "embedding rejects bad shapes and dtypes with RangeError",
  ignore: noGpu,
  fn: () => {
    tidy(() => {
      const table = tensor(new Float32Array(2 * 3 * 4), [2, 3, 4]);
      assert.throws(
        () => embedding(table, tensor(new Int32Array(6), [3, 2], "i32")),
        /shape \(K=2, \.\.\.\)/,
      );
      assert.throws(() => embedding(table, tensor(new Float32Array(4), [2, 2])), /expected i32 ids/);
      assert.throws(
        () => embedding(tensor(new Float32Array(4), [4]), tensor(new Int32Array(1), [1], "i32")),
        RangeError,
      );
    });
  },
});

/** Forward and table gradient on the GPU for fixed inputs, as float arrays. */
async function gpuForwardBackward(
  table: Float64Array,
  tableShape: number[],
  ids: Int32Array,
  idsShape: number[],
  g: Float64Array,
): Promise<[Float32Array, Float32Array]> {
  const [out, dTable] = tidy(() => {
    const ti = tensor(ids, idsShape, "i32");
    const { out, backward } = vjp(([t]) => embedding(t, ti), [tensor(table, tableShape)]);
    return [out, backward(tensor(g, out.shape))[0]] as Tensor[];
  });
  const res = [await out.toArray(), await dTable.toArray()] as [Float32Array, Float32Array];
  out.dispose();
  dTable.dispose();
  return res;
}

Deno.test({
  name: "embedding clamps out-of-range ids to [0, V-1] in the forward and the backward",
  ignore: noGpu,
  fn: async () => {
    const K = 2, V = 4, D = 3;
    const ids = new Int32Array([-5, 0, 9, 3, 4, -1, 2, 100]); // (K=2, B=1, T=4)
    const table = normal(key(1), K * V * D);
    const g = normal(key(2), K * 4 * D);
    const [out, dTable] = await gpuForwardBackward(table, [K, V, D], ids, [K, 1, 4], g);
    const eOut = maxRelError(out, embeddingRef(table, ids, K, V, D));
    const eGrad = maxRelError(dTable, embeddingVjpRef(g, ids, K, V, D));
    console.log(
      `clamped ids: forward error ${eOut.toExponential(2)}, gradient error ${eGrad.toExponential(2)}`,
    );
    assert.ok(eOut < 1e-6 && eGrad < 1e-5);
  },
});

Deno.test({
  name: "embedding runs are independent: run k reads and writes only table[k]",
  ignore: noGpu,
  fn: async () => {
    const V = 6, D = 4, N = 5;
    const ids = new Int32Array([1, 1, 5, 0, 2, 1, 3, 3, 4, 1]); // (K=2, B=1, T=5)
    const table = normal(key(3), 2 * V * D);
    const g = normal(key(4), 2 * N * D);
    const [out2, d2] = await gpuForwardBackward(table, [2, V, D], ids, [2, 1, N], g);
    for (const k of [0, 1]) {
      const [out1, d1] = await gpuForwardBackward(
        table.slice(k * V * D, (k + 1) * V * D),
        [1, V, D],
        ids.slice(k * N, (k + 1) * N),
        [1, 1, N],
        g.slice(k * N * D, (k + 1) * N * D),
      );
      assert.deepEqual(out2.slice(k * N * D, (k + 1) * N * D), out1, `forward of run ${k}`);
      assert.deepEqual(d2.slice(k * V * D, (k + 1) * V * D), d1, `table gradient of run ${k}`);
    }
  },
});

Deno.test({
  name: "embedding backward is deterministic (bit-identical) with many repeated ids",
  ignore: noGpu,
  fn: async () => {
    const K = 1, V = 3, D = 7, N = 700;
    const ids = Int32Array.from({ length: N }, (_, i) => (i * 7) % V);
    const table = normal(key(5), K * V * D);
    const g = normal(key(6), K * N * D);
    const [, a] = await gpuForwardBackward(table, [K, V, D], ids, [K, 1, N], g);
    const [, b] = await gpuForwardBackward(table, [K, V, D], ids, [K, 1, N], g);
    assert.deepEqual(a, b);
    const err = maxRelError(a, embeddingVjpRef(g, ids, K, V, D));
    console.log(`700 positions onto 3 rows: gradient error ${err.toExponential(2)}`);
    assert.ok(err < 1e-5);
  },
});

Deno.test("embedding backward chunks: ~512 / V chunks of ≥ 256 positions covering them all; one when V ≥ 512", () => {
  assert.deepEqual(embeddingBackwardChunks(5, 1200), { chunks: 5, chunkLen: 256 });
  assert.deepEqual(embeddingBackwardChunks(32, 8192), { chunks: 16, chunkLen: 512 });
  assert.deepEqual(embeddingBackwardChunks(8192, 16384), { chunks: 1, chunkLen: 16384 });
  for (const [V, N] of [[30, 7040], [1, 1], [300, 100000], [3, 255]]) {
    const { chunks, chunkLen } = embeddingBackwardChunks(V, N);
    assert.ok(chunkLen % 256 === 0 || chunks === 1, `V ${V} N ${N}`);
    assert.ok(
      chunks * chunkLen >= N && (chunks - 1) * chunkLen < N,
      `V ${V} N ${N}: ${chunks} × ${chunkLen}`,
    );
  }
});
