/**
 * Tensors larger than one storage binding (`maxStorageBufferBindingSize`, 128 MiB on llvmpipe): ops that split
 * them over slices give the same bits as the unsplit op on pieces that fit (the two halves, each its own tensor),
 * and an op that cannot split refuses with one RangeError naming the kernel, the tensor and the limit, before
 * WebGPU sees the binding. Each case uses tensors of ~140–150 MB (just over the llvmpipe limit); on adapters with
 * larger limits the big cases are skipped (they would not split).
 */
import assert from "node:assert/strict";
import { noGpu } from "./harness.ts";
import { gpu, initGpu } from "../lib/core/runtime.ts";
import { readTensors, type Tensor, tensor, tidy } from "../lib/core/tensor.ts";
import { add, mul, silu } from "../lib/ops/elementwise.ts";
import { rmsNorm } from "../lib/ops/norm.ts";
import { matmul, matmulRef, type MatmulTiles } from "../lib/ops/matmul.ts";
import { causalConv1d } from "../lib/ops/conv1d.ts";
import { vjp } from "../lib/ops/autodiff.ts";
import { rowChunks } from "../lib/ops/split.ts";

const LIMIT = noGpu ? 0 : (await initGpu(), gpu().limits.maxStorageBufferBindingSize);
/** The big cases need a limit they exceed (llvmpipe's 128 MiB) and no more memory than a CPU adapter spares. */
const bigIgnored = noGpu || LIMIT > 128 * 2 ** 20;

/** Fast seeded numbers in [-1, 1) (xorshift32): the big inputs need ~40M values and a float64 draw is slow. */
function noise(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

function assertSameBits(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: lengths differ`);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) assert.fail(`${what}: element ${i} differs: ${got[i]} vs ${want[i]}`);
  }
}

/** Runs `op` on the whole tensor and on each half (along axis 0) as separate tensors; compares the bits. */
async function checkAgainstHalves(
  name: string,
  shape: number[],
  data: Float32Array,
  op: (x: Tensor, half: -1 | 0 | 1) => Tensor[],
) {
  const bytes = data.length * 4;
  console.log(
    `${name}: input ${(bytes / 2 ** 20).toFixed(1)} MiB, binding limit ${(LIMIT / 2 ** 20).toFixed(0)} MiB`,
  );
  assert.ok(bytes > LIMIT, "the input must exceed one binding");
  const whole = await tidy(() => op(tensor(data, shape), -1)).reduce(async (acc, t) => {
    const list = await acc;
    list.push((await t.toArray()) as Float32Array);
    t.dispose();
    return list;
  }, Promise.resolve([] as Float32Array[]));
  const halfShape = [shape[0] / 2, ...shape.slice(1)];
  const n = data.length / 2;
  for (const h of [0, 1] as const) {
    const outs = tidy(() => op(tensor(data.subarray(h * n, (h + 1) * n), halfShape), h));
    const got = (await readTensors(outs)) as Float32Array[];
    outs.forEach((t) => t.dispose());
    got.forEach((g, i) => {
      const w = whole[i];
      // outputs with a leading axis split like the input: compare the matching half; others (per-run
      // gradients of the half's own parameters) are given whole by `op`
      const len = w.length / 2;
      const part = g.length === len ? w.subarray(h * len, (h + 1) * len) : w;
      assertSameBits(g, part, `${name} output ${i}, half ${h}`);
    });
  }
}

Deno.test("rowChunks: aligned chunk starts within the limit, one chunk when everything fits", () => {
  const limits = { maxBytes: 1000 * 4, align: 256 };
  const chunks = rowChunks("t", 10_000, [3, 1], "rows", limits);
  let next = 0;
  for (const [r0, n] of chunks) {
    assert.equal(r0, next);
    assert.ok(n * 3 * 4 <= limits.maxBytes, `chunk of ${n} rows exceeds the limit`);
    assert.equal((r0 * 3 * 4) % 256, 0, `chunk start ${r0} is not aligned`);
    next = r0 + n;
  }
  assert.equal(next, 10_000);
  assert.deepEqual(rowChunks("t", 100, [3], "rows", limits), [[0, 100]]);
  assert.throws(
    () => rowChunks("op", 100, [5000], "rows of 5000", limits),
    /op: 8 rows of 5000 \(the fewest whose slices start at aligned offsets\) take 156\.3 KiB/,
  );
});

Deno.test({
  name: "elementwise ops on a tensor larger than one binding: same bits as on each half",
  ignore: bigIgnored,
  async fn() {
    const shape = [2, 33, 512, 1024]; // 138 MiB
    const n = shape.reduce((a, b) => a * b, 1);
    const x = noise(n, 1);
    const w = noise(1024, 2);
    const y = noise(n, 3);
    await checkAgainstHalves("silu, mul (broadcast), add", shape, x, (t, h) => {
      const yt = tensor(h < 0 ? y : y.subarray(h * (n / 2), (h + 1) * (n / 2)), t.shape);
      const s = silu(t);
      return [s, mul(s, tensor(w, [1024])), add(t, yt)];
    });
  },
});

Deno.test({
  name: "rmsNorm forward and backward on a tensor larger than one binding: same bits as on each run alone",
  ignore: bigIgnored,
  async fn() {
    const [K, R, D] = [2, 17_000, 1024]; // 133 MiB
    const x = noise(K * R * D, 4);
    const w = noise(K * D, 5);
    const g = noise(K * R * D, 6);
    const half = R * D;
    await checkAgainstHalves("rmsNorm (y, dx, dw)", [K, R, D], x, (t, h) => {
      const wt = tensor(h < 0 ? w : w.subarray(h * D, (h + 1) * D), [t.shape[0], D]);
      const gt = tensor(h < 0 ? g : g.subarray(h * half, (h + 1) * half), t.shape);
      const { out, backward } = vjp(([xs, ws]) => rmsNorm(xs, ws), [t, wt]);
      const [dx, dw] = backward(gt);
      return [out, dx, dw];
    });
  },
});

const TILES: MatmulTiles = { TM: 4, TN: 4, BK: 8 };

Deno.test({
  name:
    "batched matmul and its gradients on an A larger than one binding: same bits as on each half of the batch",
  ignore: bigIgnored,
  async fn() {
    const [Z, M, Kd, N] = [34, 1024, 1024, 4]; // A 136 MiB
    const a = noise(Z * M * Kd, 7);
    const b = noise(Z * Kd * N, 8);
    const g = noise(Z * M * N, 9);
    await checkAgainstHalves("matmul (C, dA, dB)", [Z, M, Kd], a, (t, h) => {
      const z = t.shape[0];
      const pick = (
        arr: Float32Array,
        per: number,
      ) => (h < 0 ? arr : arr.subarray(h * z * per, (h + 1) * z * per));
      const bt = tensor(pick(b, Kd * N), [z, Kd, N]);
      const { out, backward } = vjp(([as, bs]) => matmul(as, bs, { tiles: TILES }), [t, bt]);
      const [da, db] = backward(tensor(pick(g, M * N), [z, M, N]));
      return [out, da, db];
    });
  },
});

Deno.test({
  name: "matmul with one entry larger than one binding: by rows of C (same bits as on each half of the rows)",
  ignore: bigIgnored,
  async fn() {
    const [M, Kd, N] = [36_000, 1024, 8]; // A 141 MiB
    const a = noise(M * Kd, 10);
    const b = tensor(noise(Kd * N, 11), [Kd, N]);
    // halves of the rows as batch entries of a shared 2-D b: each row of C sees the same products
    await checkAgainstHalves("matmul rows", [2, M / 2, Kd], a, (t, h) => {
      const rows = h < 0 ? t.reshape([1, M, Kd]) : t;
      const out = matmul(rows, b, { tiles: TILES, splitK: 1 });
      return [h < 0 ? out.reshape([2, M / 2, N]) : out];
    });
    b.dispose();
  },
});

Deno.test({
  name:
    "matmul Aᵀ·B over a long Kd larger than one binding: the Kd sum in parts matches the float64 reference",
  ignore: bigIgnored,
  async fn() {
    const [Kd, M, N] = [36_000, 1024, 4]; // A stored (Kd, M): 141 MiB
    const a = noise(Kd * M, 12), b = noise(Kd * N, 13);
    const out = tidy(() => matmul(tensor(a, [1, Kd, M]), tensor(b, [1, Kd, N]), { transA: true }));
    const got = await out.toArray();
    out.dispose();
    const want = matmulRef(Float64Array.from(a), [1, Kd, M], Float64Array.from(b), [1, Kd, N], {
      transA: true,
    });
    let err = 0, scale = 0;
    want.data.forEach((v, i) => {
      err = Math.max(err, Math.abs(got[i] - v));
      scale = Math.max(scale, Math.abs(v));
    });
    console.log(`Aᵀ·B, Kd ${Kd}: max abs error ${err.toExponential(2)} (max |C| ${scale.toFixed(1)})`);
    assert.ok(err / scale < 1e-5, `relative error ${err / scale}`);
  },
});

Deno.test({
  name:
    "an op that cannot split a tensor larger than one binding refuses with one RangeError, no WebGPU error",
  ignore: bigIgnored,
  async fn() {
    const shape = [1, 2, 17_000, 1024]; // 133 MiB
    const x = tensor(noise(2 * 17_000 * 1024, 14), shape);
    const w = tensor(noise(1024 * 4, 15), [1, 1024, 4]);
    const bias = tensor(noise(1024, 16), [1, 1024]);
    const errors: string[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => errors.push(args.join(" "));
    try {
      assert.throws(
        () => causalConv1d(x, w, bias),
        (e: Error) => {
          console.log(`refused: ${e.message}`);
          assert.ok(e instanceof RangeError);
          assert.match(
            e.message,
            /^conv1d_forward: binding 1 holds a tensor f32\[1, 2, 17000, 1024\] \(132\.8 MiB\)/,
          );
          assert.match(e.message, /maxStorageBufferBindingSize of 128\.0 MiB/);
          return true;
        },
      );
      await x.toArray().then(() => {}); // a round trip: any validation error would be reported by now
    } finally {
      console.error = original;
    }
    assert.deepEqual(errors, [], "WebGPU reported errors");
    for (const t of [x, w, bias]) t.dispose();
  },
});
