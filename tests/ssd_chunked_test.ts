/**
 * The chunked Mamba 2 scan (`ssdScan(…, { algorithm: "chunked" })`, lib/ops/ssd_chunked.ts): forward and every
 * gradient against the float64 reference on fresh random inputs (the harness prints each gradient's max error
 * before asserting it), over the shapes that reach every code path: one step, T not a multiple of the block,
 * several blocks per chunk, many chunks, one long chunk, groups, runs, several tiles along P and N (on the general
 * and the 16-byte path), scratch split over batch rows, fast and slow decay. Tiny shapes, so llvmpipe is quick; blocks of 4–16 steps stand in for 64.
 * Tolerance: max |GPU − float64| ≤ 1e-4 · max(1, max |float64|) for y and each gradient (the harness's measure);
 * measured on llvmpipe: ≤ 3e-6 everywhere over several runs (each draws fresh inputs), most below 5e-7.
 */
import assert from "node:assert/strict";
import { noGpu, type OpCase, opTests, randomInputs } from "./harness.ts";
import {
  type SsdDims,
  ssdScan,
  ssdScanGrads,
  type SsdScanOptions,
  ssdScanRef,
  ssdScanVjpRef,
} from "../lib/ops/ssd_scan.ts";
import { chunkCost, chunkPlan, ssdChunkedKernels, ssdChunkedLayout } from "../lib/ops/ssd_chunked.ts";
import { readTensors, tensor, tidy } from "../lib/core/tensor.ts";
import { gpu, gpuInfo } from "../lib/core/runtime.ts";

interface Ranges {
  dt?: [number, number];
  A?: [number, number];
}

/** One case; dt in [0.01, 1] and A in [−2, −0.1] unless `ranges` says otherwise. */
function chunkedCase(
  name: string,
  dims: SsdDims,
  options: SsdScanOptions = {},
  ranges: Ranges = {},
  tol = 1e-4,
): OpCase {
  const { K, Bt, T, H, P, G, N } = dims;
  const arrays = ([x, dt, A, B, C, D]: Float64Array[]) => ({ x, dt, A, B, C, D });
  const opts: SsdScanOptions = { ...options, algorithm: "chunked" };
  const plan = chunkPlan(dims, opts);
  return {
    name:
      `ssdScan chunked ${name} (K ${K}, Bt ${Bt}, T ${T}, H ${H}, P ${P}, G ${G}, N ${N}; blocks of ${plan.QB}, ` +
      `${plan.NB} per chunk, ${plan.nC} chunks)`,
    inputs: [
      { shape: [K, Bt, T, H, P] },
      { shape: [K, Bt, T, H], range: ranges.dt ?? [0.01, 1] },
      { shape: [K, H], range: ranges.A ?? [-2, -0.1] },
      { shape: [K, Bt, T, G, N] },
      { shape: [K, Bt, T, G, N] },
      { shape: [K, H] },
    ],
    gpu: ([x, dt, A, B, C, D]) => ssdScan({ x, dt, A, B, C, D }, opts),
    ref: (xs) => ssdScanRef(arrays(xs), dims),
    refVjp: (xs, ct) => {
      const g = ssdScanVjpRef(arrays(xs), ct, dims);
      return [g.dx, g.ddt, g.dA, g.dB, g.dC, g.dD];
    },
    tol,
  };
}

const fast: Ranges = { dt: [0.5, 2], A: [-8, -2] }; // exp(dt·A) from e^−16 to e^−1
const slow: Ranges = { dt: [0.01, 1], A: [-1e-4, -1e-6] }; // exp(dt·A) ≈ 1, the mimetic init

opTests([
  chunkedCase("T = 1", { K: 1, Bt: 2, T: 1, H: 2, P: 3, G: 1, N: 5 }),
  chunkedCase("one block per chunk, T not a multiple of it", { K: 1, Bt: 1, T: 37, H: 2, P: 5, G: 2, N: 6 }, {
    block: 4,
    chunk: 4,
  }),
  chunkedCase("3 blocks per chunk, last chunk partial", { K: 1, Bt: 2, T: 37, H: 2, P: 5, G: 1, N: 6 }, {
    block: 4,
    chunk: 12,
  }),
  chunkedCase("one chunk of 8 blocks", { K: 1, Bt: 1, T: 30, H: 2, P: 6, G: 1, N: 7 }, {
    block: 4,
    chunk: 32,
  }),
  chunkedCase("G = 2, H = 4, K = 2, default plan", { K: 2, Bt: 2, T: 21, H: 4, P: 8, G: 2, N: 12 }),
  chunkedCase("G = 1, H = 4, K = 2, 3 chunks", { K: 2, Bt: 1, T: 19, H: 4, P: 8, G: 1, N: 16 }, {
    block: 8,
    chunk: 8,
  }),
  chunkedCase("fast decay, 2 blocks per chunk", { K: 1, Bt: 1, T: 40, H: 2, P: 4, G: 1, N: 8 }, {
    block: 8,
    chunk: 16,
  }, fast),
  chunkedCase("fast decay, one chunk", { K: 1, Bt: 1, T: 40, H: 2, P: 4, G: 1, N: 8 }, {
    block: 8,
    chunk: 40,
  }, fast),
  chunkedCase("slow decay, one block per chunk", { K: 1, Bt: 1, T: 40, H: 2, P: 4, G: 2, N: 8 }, {
    block: 8,
    chunk: 8,
  }, slow),
  chunkedCase("slow decay, one chunk", { K: 1, Bt: 1, T: 40, H: 2, P: 4, G: 1, N: 8 }, {
    block: 8,
    chunk: 40,
  }, slow),
  chunkedCase("64 chunks", { K: 1, Bt: 1, T: 256, H: 2, P: 2, G: 1, N: 3 }, { block: 4, chunk: 4 }),
  chunkedCase("T = 2048, 128 chunks", { K: 1, Bt: 1, T: 2048, H: 2, P: 2, G: 1, N: 3 }, {
    block: 16,
    chunk: 16,
  }),
  chunkedCase("T = 2048, slow decay", { K: 1, Bt: 1, T: 2048, H: 1, P: 2, G: 1, N: 3 }, {
    block: 16,
    chunk: 16,
  }, slow),
  // P 68 and N 130: two state tiles along P and along N, two output tiles along P, three dB/dC tiles along N
  chunkedCase("several tiles along P and N", { K: 1, Bt: 1, T: 13, H: 2, P: 68, G: 1, N: 130 }, {
    block: 4,
    chunk: 4,
  }),
  // the same on the 16-byte path (P % 4 = 0 and N % 4 = 0): two output tiles along P (the second partial), two
  // dB/dC tiles along N, with cross block pairs and state terms
  chunkedCase(
    "several tiles along P and N, 16-byte loads",
    { K: 1, Bt: 1, T: 20, H: 2, P: 72, G: 1, N: 68 },
    {
      block: 4,
      chunk: 8,
    },
  ),
  // scratch of one batch row: the dispatches run in three groups of rows
  chunkedCase("scratch split over batch rows", { K: 1, Bt: 3, T: 9, H: 4, P: 4, G: 2, N: 8 }, {
    block: 4,
    chunk: 4,
    partialBytes: 1,
  }),
  // the backward's R products over parts of a group's heads, their W summed after: parts of 4 and 2 heads (the
  // last part short), and one head per part in two groups
  chunkedCase("heads in parts of 4", { K: 1, Bt: 2, T: 23, H: 6, P: 4, G: 1, N: 8 }, {
    block: 4,
    chunk: 8,
    rHeads: 4,
  }),
  chunkedCase("one head per part, G = 2", { K: 2, Bt: 1, T: 17, H: 4, P: 4, G: 2, N: 4 }, {
    block: 8,
    rHeads: 1,
  }),
  // the other register tiles and slice lengths (tuning knobs): 8×8 and 4×4 outputs per thread
  chunkedCase("8×8 outputs per thread, slices of 8", { K: 1, Bt: 1, T: 70, H: 2, P: 36, G: 1, N: 40 }, {
    block: 32,
    chunk: 32,
    threadTile: [8, 8],
    slice: 8,
  }),
  chunkedCase("4×4 outputs per thread, slices of 32", { K: 1, Bt: 1, T: 70, H: 2, P: 36, G: 1, N: 40 }, {
    block: 32,
    chunk: 64,
    threadTile: [4, 4],
    slice: 32,
  }),
  // the tiles of real sizes (blocks of 64, 128–256 threads) only on a GPU: llvmpipe takes minutes to compile
  // their workgroup memory
  ...(noGpu || gpuInfo().isCpu ? [] : [
    chunkedCase("GPU tiles, one chunk", { K: 1, Bt: 2, T: 70, H: 2, P: 64, G: 1, N: 128 }),
    chunkedCase("GPU tiles, 2 chunks", { K: 1, Bt: 2, T: 70, H: 2, P: 64, G: 1, N: 128 }, { chunk: 64 }),
    chunkedCase("GPU tiles, N 256", { K: 1, Bt: 1, T: 45, H: 4, P: 64, G: 2, N: 256 }, {
      chunk: 32,
      block: 32,
    }),
    chunkedCase("GPU tiles, N 8", { K: 2, Bt: 1, T: 133, H: 2, P: 64, G: 1, N: 8 }),
    chunkedCase("GPU tiles, T = 2048", { K: 1, Bt: 1, T: 2048, H: 1, P: 64, G: 1, N: 128 }),
    chunkedCase("GPU tiles, T = 512, 8 blocks", { K: 1, Bt: 1, T: 512, H: 2, P: 64, G: 1, N: 128 }),
  ]),
]);

Deno.test("chunkPlan: one chunk where that costs less, else one block per chunk; never looks at K or Bt", () => {
  const d: SsdDims = { K: 1, Bt: 64, T: 512, H: 32, P: 64, G: 1, N: 128 };
  assert.deepEqual(chunkPlan(d), { QB: 64, NB: 8, Q: 512, nC: 1, NP: 36 });
  assert.equal(chunkPlan({ ...d, T: 2048 }).NB, 1);
  assert.equal(chunkPlan({ ...d, N: 8 }).NB, 1);
  assert.ok(chunkCost({ ...d, N: 8 }, 64, 1) < chunkCost({ ...d, N: 8 }, 64, 8));
  assert.deepEqual(chunkPlan({ ...d, K: 4, Bt: 3 }), chunkPlan(d));
  assert.deepEqual(chunkPlan({ ...d, T: 7 }), { QB: 8, NB: 1, Q: 8, nC: 1, NP: 1 });
  assert.throws(() => chunkPlan(d, { block: 6 }), RangeError);
  assert.throws(() => chunkPlan(d, { block: 8, chunk: 12 }), RangeError);
  assert.throws(() => chunkPlan(d, { block: 4, chunk: 256 }), RangeError); // 64 blocks in a chunk
  assert.equal(chunkPlan({ ...d, T: 40 }, { block: 4, chunk: 4096 }).NB, 10); // no chunk longer than T
  assert.throws(() => ssdChunkedLayout(d, { threadTile: [2, 8] }), RangeError);
  assert.throws(() => ssdChunkedLayout(d, { slice: 128 }), RangeError);
  assert.throws(() => ssdChunkedLayout(d, { rHeads: 0 }), RangeError);
  assert.equal(ssdChunkedLayout(d, { rHeads: 64 }).rHeads, 32); // at most the heads of a group
  // by default parts of 4 heads where a row has fewer than 16 block pairs, whatever K and Bt are
  assert.equal(ssdChunkedLayout(d).rHeads, 32); // one chunk of 8 blocks: 36 pairs a row
  assert.equal(ssdChunkedLayout({ ...d, T: 128 }).rHeads, 4); // the D 1024 model: 3 pairs
  assert.equal(ssdChunkedLayout({ ...d, K: 4, Bt: 32, T: 220, H: 8, N: 64 }).rHeads, 4); // fig7 quick: 4 chunks
  assert.equal(ssdChunkedLayout({ ...d, T: 1024 }).rHeads, 32); // 16 chunks of one block
  assert.equal(ssdChunkedLayout({ ...d, Bt: 1, T: 128 }).rHeads, 4);
});

const shapesOf = ({ K, Bt, T, H, P, G, N }: SsdDims) => [
  [K, Bt, T, H, P],
  [K, Bt, T, H],
  [K, H],
  [K, Bt, T, G, N],
  [K, Bt, T, G, N],
  [K, H],
  [K, Bt, T, H, P],
];

function gradsOf(xs: Float64Array[], dims: SsdDims, opts: SsdScanOptions) {
  const shapes = shapesOf(dims);
  return tidy(() => {
    const [x, dt, A, B, C, D, dy] = xs.map((v, i) => tensor(v, shapes[i]));
    const g = ssdScanGrads({ x, dt, A, B, C, D }, dy, opts);
    return [ssdScan({ x, dt, A, B, C, D }, opts), g.dx, g.ddt, g.dA, g.dB, g.dC, g.dD];
  });
}

function draw(dims: SsdDims): Float64Array[] {
  return randomInputs(
    shapesOf(dims).map((shape, i) => ({
      shape,
      range: i === 1 ? [0.01, 1] as [number, number] : i === 2 ? [-2, -0.1] as [number, number] : undefined,
    })),
  );
}

Deno.test({
  name: "ssdScan chunked: y and gradients are bit-identical run to run",
  ignore: noGpu,
  fn: async () => {
    const dims: SsdDims = { K: 1, Bt: 2, T: 33, H: 4, P: 8, G: 2, N: 8 };
    // (one head per part: the parts' W are summed by a separate pass)
    const opts: SsdScanOptions = { algorithm: "chunked", block: 4, chunk: 8, rHeads: 1 };
    const xs = draw(dims);
    const a = gradsOf(xs, dims, opts), b = gradsOf(xs, dims, opts);
    const [ra, rb] = [await readTensors(a), await readTensors(b)];
    [...a, ...b].forEach((t) => t.dispose());
    ra.forEach((v, i) =>
      assert.deepEqual(new Uint32Array(v.buffer), new Uint32Array(rb[i].buffer), `output ${i}`)
    );
  },
});

Deno.test({
  name: "ssdScan chunked: a run's bits do not depend on the runs packed with it on K",
  ignore: noGpu,
  fn: async () => {
    const two: SsdDims = { K: 2, Bt: 2, T: 21, H: 2, P: 4, G: 1, N: 8 };
    const one: SsdDims = { ...two, K: 1 };
    const opts: SsdScanOptions = { algorithm: "chunked", block: 4, chunk: 8 };
    const xs = draw(two);
    // run 0 of the pair alone: the first half of every input (K is the leading axis of each)
    const first = xs.map((v) => v.slice(0, v.length / 2));
    const a = gradsOf(xs, two, opts), b = gradsOf(first, one, opts);
    const [ra, rb] = [await readTensors(a), await readTensors(b)];
    [...a, ...b].forEach((t) => t.dispose());
    ra.forEach((v, i) => {
      const head = new Uint32Array(v.buffer).slice(0, v.length / 2);
      assert.deepEqual(head, new Uint32Array(rb[i].buffer), `output ${i}`);
    });
  },
});

Deno.test({
  name:
    "ssdScan chunked: the kernels of real sizes are valid WGSL (both plans, N 8 to 256, P 64 and 128, G 1 and 4)",
  ignore: noGpu,
  fn: async () => {
    const base: SsdDims = { K: 1, Bt: 64, T: 512, H: 32, P: 64, G: 1, N: 128 };
    const sizes: [SsdDims, SsdScanOptions][] = [];
    for (const N of [8, 32, 64, 128, 256]) {
      sizes.push([{ ...base, N }, {}], [{ ...base, N }, { chunk: 64 }]);
    }
    sizes.push([{ ...base, P: 128, H: 16, G: 4 }, {}], [{ ...base, T: 2048 }, { block: 32 }], [base, {
      rHeads: 1,
    }]);
    for (const threadTile of [[8, 8], [4, 4], [8, 4]] as [number, number][]) {
      sizes.push([base, { threadTile, slice: 32 }], [base, { threadTile, chunk: 64 }]);
    }
    let checked = 0;
    for (const [d, o] of sizes) {
      for (const k of ssdChunkedKernels(d, o)) {
        const info = await gpu().createShaderModule({ code: k.code }).getCompilationInfo();
        const errors = info.messages.filter((m) => m.type === "error").map((m) =>
          `${m.lineNum}: ${m.message}`
        );
        assert.deepEqual(errors, [], `${k.name} at ${JSON.stringify(d)} ${JSON.stringify(o)}`);
        checked++;
      }
    }
    console.log(`${checked} kernels valid`);
  },
});
