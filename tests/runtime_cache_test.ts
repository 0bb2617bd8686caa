/**
 * The runtime's per-dispatch caches: bind groups (by pipeline layout and buffer identity) and uniform slots (by
 * content, within a chunk). Each test checks results, not only counters: a stale bind group or a shared uniform
 * slot that should not have been shared shows up as a wrong number.
 */
import assert from "node:assert/strict";
import { noGpu } from "./harness.ts";
import { add, affine } from "../lib/ops/elementwise.ts";
import { flush, runtimeStats, sync, trimPool } from "../lib/core/runtime.ts";
import { readTensors, tensor } from "../lib/core/tensor.ts";

Deno.test({
  name: "bind group cache: a repeated dispatch on the same buffers creates its bind group once",
  ignore: noGpu,
  async fn() {
    const a = tensor([1, 2, 3, 4]), b = tensor([10, 20, 30, 40]);
    const out = [add(a, b)];
    const created = runtimeStats().bindGroupsCreated;
    // The output buffer differs each time until the pool recycles one; a flush between makes it recycle.
    out[0].dispose();
    flush();
    for (let i = 0; i < 5; i++) {
      const y = add(a, b);
      assert.deepEqual(Array.from(await y.toArray()), [11, 22, 33, 44]);
      y.dispose();
      flush();
    }
    assert.ok(
      runtimeStats().bindGroupsCreated - created <= 1,
      `${runtimeStats().bindGroupsCreated - created} bind groups created for 5 identical dispatches`,
    );
    a.dispose();
    b.dispose();
  },
});

Deno.test({
  name: "bind group cache: a pooled buffer handed to another tensor binds that tensor's data",
  ignore: noGpu,
  async fn() {
    // Round 1 fills x and y; both are freed and return to the pool; round 2 takes the same buffers (LIFO pool)
    // for new tensors with other contents, and the cached bind group must read the new contents.
    for (let round = 0; round < 3; round++) {
      const x = tensor([1, 2, 3].map((v) => v + 100 * round));
      const y = tensor([4, 5, 6].map((v) => v * (round + 1)));
      const z = add(x, y);
      const expected = [1, 2, 3].map((v, i) => v + 100 * round + [4, 5, 6][i] * (round + 1));
      assert.deepEqual(Array.from(await z.toArray()), expected);
      x.dispose();
      y.dispose();
      z.dispose();
      flush();
    }
  },
});

Deno.test({
  name: "bind group cache: trimPool destroys buffers and forgets their bind groups; later work is right",
  ignore: noGpu,
  async fn() {
    const a = tensor([1, 2, 3, 4]);
    const t = add(a, a);
    assert.deepEqual(Array.from(await t.toArray()), [2, 4, 6, 8]);
    t.dispose();
    const before = runtimeStats().bindGroupsCached;
    trimPool(); // t's buffer is destroyed; the bind group naming it must go with it
    assert.ok(runtimeStats().bindGroupsCached < before, "trimPool left bind groups of destroyed buffers");
    for (let i = 0; i < 3; i++) {
      const u = add(a, a);
      assert.deepEqual(Array.from(await u.toArray()), [2, 4, 6, 8]);
      u.dispose();
      trimPool();
    }
    await sync();
    a.dispose();
  },
});

Deno.test({
  name: "uniform slots: identical uniforms share a slot within a chunk; different ones do not",
  ignore: noGpu,
  async fn() {
    flush();
    const x = tensor([1, 2, 3, 4]);
    const slots0 = runtimeStats().uniformSlots;
    // The same (n, alpha, beta) four times, then four different alphas, all in one chunk.
    const same = Array.from({ length: 4 }, () => affine(x, 2, 1));
    const slotsSame = runtimeStats().uniformSlots - slots0;
    const different = [3, 4, 5, 6].map((alpha) => affine(x, alpha, 1));
    const slotsDifferent = runtimeStats().uniformSlots - slots0 - slotsSame;
    // Values that differ only in their f32 bits (a u32 comparison of the words sees them apart).
    const close = [0.5, 0.5000001].map((alpha) => affine(x, alpha));
    const values = await readTensors([...same, ...different, ...close]);
    for (const v of values.slice(0, 4)) assert.deepEqual(Array.from(v), [3, 5, 7, 9]);
    [3, 4, 5, 6].forEach((alpha, i) =>
      assert.deepEqual(Array.from(values[4 + i]), [1, 2, 3, 4].map((v) => alpha * v + 1))
    );
    assert.equal(values[8][3], Math.fround(2));
    assert.equal(values[9][3], Math.fround(Math.fround(0.5000001) * 4));
    assert.equal(slotsSame, 1);
    assert.equal(slotsDifferent, 4);
    for (const t of [x, ...same, ...different, ...close]) t.dispose();
  },
});

Deno.test({
  name: "uniform slots: more dispatches than a chunk's slots, each with its own uniforms, all right",
  ignore: noGpu,
  async fn() {
    const x = tensor([1, 2]);
    const submits = runtimeStats().submits;
    const ys = Array.from({ length: 1200 }, (_, i) => affine(x, 1, i));
    assert.ok(runtimeStats().submits > submits, "1200 distinct slots did not start a new chunk");
    const values = await readTensors(ys);
    values.forEach((v, i) => assert.deepEqual(Array.from(v), [1 + i, 2 + i]));
    for (const t of [x, ...ys]) t.dispose();
  },
});
