import assert from "node:assert/strict";
import { maxRelError, noGpu, type OpCase, opTests, randomInputs } from "./harness.ts";
import {
  matmul,
  matmulRef,
  matmulShapesOf,
  type MatmulTiles,
  type MatmulTuningEntry,
  matmulVjpRef,
  tilesFromTable,
} from "../lib/ops/matmul.ts";
import { readTensors, tensor, tidy } from "../lib/core/tensor.ts";
import { vjp } from "../lib/ops/autodiff.ts";
import { gpuInfo } from "../lib/core/runtime.ts";

const cpu = noGpu || gpuInfo().isCpu;

interface Spec {
  /** Batch axes of a (and of b unless `sharedB`). */
  batch?: number[];
  M: number;
  Kd: number;
  N: number;
  transA?: boolean;
  transB?: boolean;
  /** b is 2-D, shared by every batch entry. */
  sharedB?: boolean;
  tiles?: MatmulTiles;
  /** Split-K parts of the forward product. */
  splitK?: number;
}

function shapes({ batch = [], M, Kd, N, transA, transB, sharedB }: Spec): [number[], number[]] {
  const a = [...batch, ...(transA ? [Kd, M] : [M, Kd])];
  const b = [...(sharedB ? [] : batch), ...(transB ? [N, Kd] : [Kd, N])];
  return [a, b];
}

function matmulCase(s: Spec): OpCase {
  const [aShape, bShape] = shapes(s);
  const flags = { transA: s.transA, transB: s.transB };
  const t = (s.tiles ? ` tiles ${s.tiles.TM}×${s.tiles.TN}×${s.tiles.BK}` : "") +
    (s.splitK ? ` split-K ${s.splitK}` : "");
  return {
    name: `matmul [${aShape}]${s.transA ? "ᵀ" : ""}·[${bShape}]${s.transB ? "ᵀ" : ""}${t}`,
    inputs: [{ shape: aShape }, { shape: bShape }],
    gpu: ([a, b]) => matmul(a, b, { ...flags, tiles: s.tiles, splitK: s.splitK }),
    ref: ([a, b]) => matmulRef(a, aShape, b, bShape, flags).data,
    refVjp: ([a, b], g) => matmulVjpRef(a, aShape, b, bShape, g, flags),
  };
}

// Small problems get 64×64 tiles (4×4 per thread) by default. llvmpipe needs 10-20 s of CPU to compile a larger
// tile shape, so on a CPU adapter only the 64×128 tile (TN = 8: the second column block) is tested besides; the
// 128-row shapes (TM = 8) and BK = 16 are tested where a GPU is present, and by tests/matmul_bench.ts, which checks
// every tile shape against the reference on odd sizes before it times them.
const combos = [[false, false], [true, false], [false, true], [true, true]] as const;

const cases: OpCase[] = combos.flatMap(([transA, transB]) => [
  // size 1 and odd sizes (scalar loads, partial tiles everywhere)
  matmulCase({ M: 1, Kd: 1, N: 1, transA, transB }),
  matmulCase({ M: 3, Kd: 5, N: 7, transA, transB }),
  matmulCase({ M: 67, Kd: 33, N: 129, transA, transB }),
  // multiples of 4 (vec4 loads) with a partial K-step and M, N crossing tile boundaries
  matmulCase({ M: 132, Kd: 20, N: 136, transA, transB }),
  // batched, and b shared by the batch (its gradient sums over the batch)
  matmulCase({ batch: [2, 3], M: 5, Kd: 12, N: 8, transA, transB }),
  matmulCase({ batch: [3], M: 6, Kd: 9, N: 4, transA, transB, sharedB: true }),
  // split-K: the forward in 3 parts (16, 16 and 13 of Kd); a long M makes dB = op(A)ᵀ·G a product over 600 rows
  // with one output tile, which splits itself (2 parts: 304 and 296)
  matmulCase({ batch: [2], M: 5, Kd: 45, N: 9, transA, transB, splitK: 3 }),
  matmulCase({ M: 600, Kd: 12, N: 8, transA, transB }),
]);
// The 128-row and 128-column tiles (crossing them), with vec4 loads for one operand only.
cases.push(
  matmulCase({
    batch: [2],
    M: 9,
    Kd: 7,
    N: 136,
    transA: true,
    sharedB: true,
    tiles: { TM: 4, TN: 8, BK: 8 },
  }),
);
if (!cpu) {
  cases.push(
    matmulCase({ M: 140, Kd: 16, N: 9, tiles: { TM: 8, TN: 4, BK: 8 } }),
    matmulCase({ batch: [2], M: 140, Kd: 40, N: 131, transB: true, tiles: { TM: 8, TN: 8, BK: 8 } }),
    matmulCase({ batch: [2], M: 70, Kd: 40, N: 36, sharedB: true, tiles: { TM: 8, TN: 8, BK: 16 } }),
    matmulCase({ M: 70, Kd: 41, N: 36, transA: true, transB: true, tiles: { TM: 4, TN: 4, BK: 16 } }),
  );
}

opTests(cases);

Deno.test({
  name: "matmul: zero-length inner dimension gives zeros; empty outputs are fine",
  ignore: noGpu,
  fn: async () => {
    const out = tidy(() => matmul(tensor(new Float32Array(0), [3, 0]), tensor(new Float32Array(0), [0, 2])));
    assert.deepEqual([...await out.toArray()], [0, 0, 0, 0, 0, 0]);
    out.dispose();
    const e = tidy(() => matmul(tensor(new Float32Array(0), [0, 4]), tensor(new Float32Array(8), [4, 2])));
    assert.deepEqual(e.shape, [0, 2]);
    e.dispose();
  },
});

Deno.test({
  name: "matmul: the per-run shape x (K, B·T, D) @ W (K, D, E) on every tile configuration",
  ignore: noGpu,
  fn: async () => {
    const [K, BT, D, E] = [2, 37, 24, 20];
    const [x, w] = randomInputs([{ shape: [K, BT, D] }, { shape: [K, D, E] }]);
    const want = matmulRef(x, [K, BT, D], w, [K, D, E]).data;
    const configs: MatmulTiles[] = [{ TM: 4, TN: 4, BK: 8 }, { TM: 4, TN: 8, BK: 8 }];
    if (!cpu) configs.push({ TM: 8, TN: 4, BK: 8 }, { TM: 8, TN: 8, BK: 8 }, { TM: 8, TN: 8, BK: 16 });
    for (const tiles of configs) {
      const y = tidy(() => matmul(tensor(x, [K, BT, D]), tensor(w, [K, D, E]), { tiles }));
      const err = maxRelError(await y.toArray(), want);
      y.dispose();
      assert.ok(err < 1e-5, `tiles ${JSON.stringify(tiles)}: error ${err}`);
    }
  },
});

Deno.test({
  name: "matmul: the unchecked loads (whole K-steps) and the checked ones agree with float64 and bit for bit",
  ignore: noGpu,
  async fn() {
    // Kd = 72 is 9 K-steps of 8 (unchecked loads) and 4.5 of 16 (checked), so the bit comparison sets the two
    // paths against each other; split-K parts (32, 32 and 8) do the same for a partial last part. M and N
    // cross tile boundaries: edge tiles read rows and columns past the matrix, into outputs not stored.
    const [K, M, Kd, N] = [2, 200, 72, 136];
    const configs: MatmulTiles[] = [{ TM: 4, TN: 4, BK: 8 }, { TM: 4, TN: 8, BK: 8 }, {
      TM: 4,
      TN: 4,
      BK: 16,
    }];
    if (!cpu) configs.push({ TM: 8, TN: 8, BK: 8 }, { TM: 8, TN: 4, BK: 16 });
    for (const [transA, transB] of combos) {
      const aShape = [K, ...(transA ? [Kd, M] : [M, Kd])], bShape = [K, ...(transB ? [N, Kd] : [Kd, N])];
      const [a, b] = randomInputs([{ shape: aShape }, { shape: bShape }]);
      const want = matmulRef(a, aShape, b, bShape, { transA, transB }).data;
      for (const splitK of [1, 3]) {
        const outs = await readTensors(
          tidy(() =>
            configs.map((tiles) =>
              matmul(tensor(a, aShape), tensor(b, bShape), { transA, transB, tiles, splitK })
            )
          ),
        );
        const what = `transA ${transA}, transB ${transB}, splitK ${splitK}`;
        assert.ok(maxRelError(outs[0], want) < 1e-5, `${what}: error ${maxRelError(outs[0], want)}`);
        outs.forEach((o, i) => {
          // (the first differing element, not deepEqual: its diff of 54k floats would take minutes to print)
          const at = o.findIndex((v, j) => !Object.is(v, outs[0][j]));
          assert.equal(at, -1, `${what}: tiles ${JSON.stringify(configs[i])} differ at element ${at}`);
        });
      }
    }
  },
});

Deno.test({
  name: "matmul: bad shapes throw RangeErrors naming the op",
  ignore: noGpu,
  fn: () => {
    tidy(() => {
      const a = tensor(new Float32Array(6), [2, 3]);
      assert.throws(() => matmul(a, tensor(new Float32Array(8), [4, 2])), /matmul: inner dimensions differ/);
      assert.throws(
        () => matmul(a, tensor(new Float32Array(3), [3])),
        /matmul: expected a and b of rank ≥ 2/,
      );
      const a3 = tensor(new Float32Array(12), [2, 2, 3]);
      assert.throws(
        () => matmul(a3, tensor(new Float32Array(18), [3, 3, 2])),
        /batch dimensions must be equal/,
      );
      assert.throws(
        () => matmul(a, tensor(new Float32Array(12), [2, 3, 2])),
        /batch dimensions must be equal/,
      );
    });
  },
});

Deno.test("matmul tuning table: exact shape first, else the nearest within a factor of 2, else none", () => {
  const tiles = (TM: 4 | 8, TN: 4 | 8, BK: 8 | 16) => ({ TM, TN, BK });
  const shape = { batch: 1, M: 8192, N: 2048, Kd: 1024, transA: false, transB: false };
  const entries: MatmulTuningEntry[] = [
    { ...shape, tiles: tiles(8, 8, 8) },
    { ...shape, N: 3000, tiles: tiles(8, 4, 8) },
    { ...shape, transB: true, tiles: tiles(4, 4, 16) },
  ];
  assert.deepEqual(tilesFromTable(entries, shape), tiles(8, 8, 8));
  assert.deepEqual(tilesFromTable(entries, { ...shape, N: 2900 }), tiles(8, 4, 8));
  // batch·M counts as one axis: 4 runs of 2048 rows are 8192 rows.
  assert.deepEqual(tilesFromTable(entries, { ...shape, batch: 4, M: 2048 }), tiles(8, 8, 8));
  assert.deepEqual(tilesFromTable(entries, { ...shape, transB: true, Kd: 700 }), tiles(4, 4, 16));
  assert.equal(tilesFromTable(entries, { ...shape, Kd: 100 }), undefined);
  assert.equal(tilesFromTable(entries, { ...shape, transA: true }), undefined);
  assert.equal(tilesFromTable([], shape), undefined);
});

Deno.test({
  name: "matmul: the tile never changes the bits (split-K parts do not depend on BK), and shapes are logged",
  ignore: noGpu,
  async fn() {
    const [K, Kd, M, N] = [2, 300, 20, 12];
    const [a, b] = randomInputs([{ shape: [K, Kd, M] }, { shape: [K, Kd, N] }]);
    for (const splitK of [1, 3]) {
      const outs = tidy(() =>
        [{ TM: 4, TN: 4, BK: 8 } as const, { TM: 4, TN: 4, BK: 16 } as const].map((tiles) =>
          matmul(tensor(a, [K, Kd, M]), tensor(b, [K, Kd, N]), { transA: true, tiles, splitK })
        )
      );
      const [x, y] = await readTensors(outs);
      outs.forEach((t) => t.dispose());
      assert.deepEqual(x, y, `splitK ${splitK}: BK 8 and BK 16 differ`);
    }
    const ta = tensor(a, [K, Kd, M]), tb = tensor(b, [K, Kd, N]);
    const shapes = matmulShapesOf(() => {
      tidy(() => {
        const { out, backward } = vjp(([p, q]) => matmul(p, q, { transA: true }), [ta, tb]);
        backward(tensor(new Float32Array(out.size).fill(1), out.shape));
      });
    });
    assert.deepEqual(shapes[0], { batch: K, M, N, Kd, transA: true, transB: false });
    assert.equal(shapes.length, 3); // the forward and the two gradients
    ta.dispose();
    tb.dispose();
  },
});

Deno.test({
  name:
    "a batch item's product and column sums have the same bits alone and batched with others (split-K, parts)",
  ignore: noGpu,
  async fn() {
    const { sum } = await import("../lib/ops/reduce.ts");
    const { normal, key } = await import("../lib/core/random.ts");
    // dW = Xᵀ·dY over 2064 tokens with 256 × 512 outputs: split-K, whose parts were once chosen from the whole
    // batch (8 parts for one item, 6 for three); the column sum over 2064 tokens takes the two-pass path.
    const [Kd, M, N] = [2064, 256, 512];
    const data = (seed: number, n: number) => Float32Array.from(normal(key(seed), n));
    const x = data(1, 3 * Kd * M), g = data(2, 3 * Kd * N);
    const [alone, batched, colAlone, colBatched] = await readTensors(tidy(() => {
      const x1 = tensor(x.subarray(Kd * M, 2 * Kd * M), [1, Kd, M]);
      const g1 = tensor(g.subarray(Kd * N, 2 * Kd * N), [1, Kd, N]);
      const x3 = tensor(x, [3, Kd, M]), g3 = tensor(g, [3, Kd, N]);
      return [
        matmul(x1, g1, { transA: true }),
        matmul(x3, g3, { transA: true }),
        sum(g1, 1),
        sum(g3, 1),
      ];
    }));
    assert.deepEqual(batched.subarray(M * N, 2 * M * N), alone, "the product of item 1 differs when batched");
    assert.deepEqual(
      colBatched.subarray(N, 2 * N),
      colAlone,
      "the column sums of item 1 differ when batched",
    );
  },
});
