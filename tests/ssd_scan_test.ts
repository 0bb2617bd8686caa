import assert from "node:assert/strict";
import { noGpu, type OpCase, opTests, randomInputs } from "./harness.ts";
import {
  defaultSsdAlgorithm,
  type SsdDims,
  ssdScan,
  ssdScanGrads,
  type SsdScanOptions,
  ssdScanRef,
  ssdScanVjpRef,
} from "../lib/ops/ssd_scan.ts";
import { readTensors, tensor, tidy } from "../lib/core/tensor.ts";
import { gpuInfo } from "../lib/core/runtime.ts";

const SEQUENTIAL: SsdScanOptions = { algorithm: "sequential" };

/** One scan case in its valid input ranges: dt in [0.01, 1], A in [−2, −0.1]. */
function ssdCase(name: string, dims: SsdDims, options: SsdScanOptions = {}, tol?: number): OpCase {
  const { K, Bt, T, H, P, G, N } = dims;
  const arrays = ([x, dt, A, B, C, D]: Float64Array[]) => ({ x, dt, A, B, C, D });
  return {
    name: `ssdScan ${name} (K ${K}, Bt ${Bt}, T ${T}, H ${H}, P ${P}, G ${G}, N ${N})`,
    inputs: [
      { shape: [K, Bt, T, H, P] },
      { shape: [K, Bt, T, H], range: [0.01, 1] },
      { shape: [K, H], range: [-2, -0.1] },
      { shape: [K, Bt, T, G, N] },
      { shape: [K, Bt, T, G, N] },
      { shape: [K, H] },
    ],
    gpu: ([x, dt, A, B, C, D]) => ssdScan({ x, dt, A, B, C, D }, options),
    ref: (xs) => ssdScanRef(arrays(xs), dims),
    refVjp: (xs, ct) => {
      const g = ssdScanVjpRef(arrays(xs), ct, dims);
      return [g.dx, g.ddt, g.dA, g.dB, g.dC, g.dD];
    },
    tol: tol ?? 1e-4,
  };
}

opTests([
  ssdCase("T = 1", { K: 1, Bt: 2, T: 1, H: 2, P: 3, G: 1, N: 5 }),
  // states saved every 4 steps: many re-anchors of s_t, the last chunk partial
  ssdCase("T not a multiple of the tile, odd P and N", { K: 1, Bt: 1, T: 37, H: 2, P: 5, G: 2, N: 6 }, {
    stateEvery: 4,
  }),
  ssdCase("G = 1, H = 4, K = 2", { K: 2, Bt: 2, T: 19, H: 4, P: 8, G: 1, N: 16 }),
  ssdCase("G = 2, H = 4, K = 2", { K: 2, Bt: 2, T: 21, H: 4, P: 8, G: 2, N: 12 }),
  ssdCase("several threads per row and column", { K: 1, Bt: 1, T: 40, H: 2, P: 12, G: 1, N: 20 }),
  // scratch of one batch row: the per-head gradient sums run in three chunks
  ssdCase("chunked head sums", { K: 1, Bt: 3, T: 9, H: 4, P: 4, G: 2, N: 8 }, {
    partialBytes: 1,
    stateEvery: 2,
  }),
  ssdCase("T = 2048", { K: 1, Bt: 1, T: 2048, H: 2, P: 2, G: 1, N: 3 }),
  // 16 row threads and 5 column slices: the backward's sums run in two levels (dB, dC in 4 parts; q, r in 2)
  ssdCase("two-level sums", { K: 1, Bt: 2, T: 11, H: 2, P: 16, G: 1, N: 20 }, {
    rowsPerThread: 1,
    colsPerThread: 4,
  }),
  // N ≥ 64: the forward's wide layout (8 vec4 columns per thread), and the default (chunked) algorithm there
  ssdCase("N 64, sequential", { K: 1, Bt: 1, T: 9, H: 2, P: 8, G: 1, N: 64 }, SEQUENTIAL),
  ssdCase("N 64, default algorithm", { K: 1, Bt: 1, T: 9, H: 2, P: 8, G: 1, N: 64 }),
  // T 52, one block: fig7's evaluation at length 25 (a 52-step block was wrong; now rounded up to 56)
  ssdCase("N 64, T 52, default algorithm", { K: 2, Bt: 1, T: 52, H: 2, P: 16, G: 1, N: 64 }),
  // the layouts of real sizes (256 threads, tiles of 8–16 steps) only on a GPU: llvmpipe takes minutes to
  // compile their workgroup memory
  ...(noGpu || gpuInfo().isCpu ? [] : [
    // (the sequential algorithm named: at these N and T the default would be the chunked one)
    ssdCase("GPU layout", { K: 1, Bt: 2, T: 70, H: 2, P: 64, G: 1, N: 128 }, SEQUENTIAL),
    ssdCase("GPU layout, N 64", { K: 1, Bt: 2, T: 70, H: 2, P: 64, G: 1, N: 64 }, SEQUENTIAL),
    ssdCase("GPU layout, N 256", { K: 1, Bt: 1, T: 45, H: 4, P: 64, G: 2, N: 256 }, SEQUENTIAL),
    ssdCase("GPU layout, N 8", { K: 2, Bt: 1, T: 33, H: 2, P: 64, G: 1, N: 8 }),
    ssdCase("GPU layout, T = 2048", { K: 1, Bt: 1, T: 2048, H: 1, P: 64, G: 1, N: 128 }),
    ssdCase("GPU layout, default algorithm at N 128, T 70", {
      K: 1,
      Bt: 2,
      T: 70,
      H: 2,
      P: 64,
      G: 1,
      N: 128,
    }),
  ]),
]);

Deno.test({
  name: "ssdScan: gradients are bit-identical run to run",
  ignore: noGpu,
  fn: async () => {
    const dims: SsdDims = { K: 1, Bt: 2, T: 33, H: 4, P: 8, G: 2, N: 8 };
    const { K, Bt, T, H, P, G, N } = dims;
    const shapes = [[K, Bt, T, H, P], [K, Bt, T, H], [K, H], [K, Bt, T, G, N], [K, Bt, T, G, N], [K, H]];
    const xs = randomInputs([
      { shape: shapes[0] },
      { shape: shapes[1], range: [0.01, 1] },
      { shape: shapes[2], range: [-2, -0.1] },
      { shape: shapes[3] },
      { shape: shapes[4] },
      { shape: shapes[5] },
      { shape: shapes[0] },
    ]);
    const run = () =>
      tidy(() => {
        const [x, dt, A, B, C, D, dy] = xs.map((v, i) => tensor(v, shapes[i] ?? shapes[0]));
        const g = ssdScanGrads({ x, dt, A, B, C, D }, dy);
        return [g.dx, g.ddt, g.dA, g.dB, g.dC, g.dD];
      });
    const a = run(), b = run();
    const [ra, rb] = [await readTensors(a), await readTensors(b)];
    [...a, ...b].forEach((t) => t.dispose());
    ra.forEach((v, i) =>
      assert.deepEqual(new Uint32Array(v.buffer), new Uint32Array(rb[i].buffer), `gradient ${i}`)
    );
  },
});

Deno.test({
  name: "ssdScan: rejects mismatched shapes with a RangeError",
  ignore: noGpu,
  fn: () => {
    tidy(() => {
      const x = tensor(new Float32Array(12), [1, 1, 3, 2, 2]);
      const dt = tensor(new Float32Array(6), [1, 1, 3, 2]);
      const hd = tensor(new Float32Array(2), [1, 2]);
      const B = tensor(new Float32Array(18), [1, 1, 3, 3, 2]); // G = 3 does not divide H = 2
      assert.throws(() => ssdScan({ x, dt, A: hd, B, C: B, D: hd }), RangeError);
      assert.throws(() => ssdScan({ x, dt: x, A: hd, B, C: B, D: hd }), /expected dt of shape/);
    });
  },
});

Deno.test("ssdScan's default algorithm depends on T and N only: chunked for N ≥ 16 and T ≤ 4096", () => {
  assert.equal(defaultSsdAlgorithm({ T: 128, N: 128 }), "chunked");
  assert.equal(defaultSsdAlgorithm({ T: 1024, N: 64 }), "chunked");
  assert.equal(defaultSsdAlgorithm({ T: 4096, N: 16 }), "chunked");
  assert.equal(defaultSsdAlgorithm({ T: 4097, N: 64 }), "sequential");
  assert.equal(defaultSsdAlgorithm({ T: 220, N: 8 }), "sequential");
  assert.equal(defaultSsdAlgorithm({ T: 8003, N: 128 }), "sequential");
});

Deno.test({
  name: "ssdScan chunked: blocks above 32 steps that are not multiples of 8 are refused",
  ignore: noGpu,
  fn() {
    const d: SsdDims = { K: 1, Bt: 1, T: 52, H: 1, P: 4, G: 1, N: 4 };
    const [x, dt, A, B, C, D] = randomInputs([
      { shape: [1, 1, 52, 1, 4] },
      { shape: [1, 1, 52, 1], range: [0.01, 1] },
      { shape: [1, 1], range: [-2, -0.1] },
      { shape: [1, 1, 52, 1, 4] },
      { shape: [1, 1, 52, 1, 4] },
      { shape: [1, 1] },
    ]);
    const t = (a: Float64Array, shape: number[]) => tensor(Float32Array.from(a), shape);
    const inputs = {
      x: t(x, [1, 1, d.T, 1, 4]),
      dt: t(dt, [1, 1, d.T, 1]),
      A: t(A, [1, 1]),
      B: t(B, [1, 1, d.T, 1, 4]),
      C: t(C, [1, 1, d.T, 1, 4]),
      D: t(D, [1, 1]),
    };
    for (const block of [36, 44, 52, 60]) {
      assert.throws(
        () => ssdScan(inputs, { algorithm: "chunked", block }),
        /block must be a multiple of 4 up to 32/,
      );
    }
  },
});
