import assert from "node:assert/strict";
import {
  choiceWithoutReplacement,
  foldIn,
  key,
  normal,
  permutation,
  philox4x32,
  randint,
  randomBits,
  split,
  uniform,
  weightedChoiceWithoutReplacement,
} from "../lib/core/random.ts";

const hex = (a: Uint32Array) => [...a].map((w) => w.toString(16).padStart(8, "0")).join(" ");

/** Sum of (observed - expected)² / expected over equally likely bins. */
function chiSquare(counts: ArrayLike<number>, total: number): number {
  const e = total / counts.length;
  let s = 0;
  for (let i = 0; i < counts.length; i++) s += (counts[i] - e) ** 2 / e;
  return s;
}

Deno.test("philox4x32-10 matches the Random123 known-answer vectors", () => {
  assert.equal(hex(philox4x32([0, 0], [0, 0, 0, 0])), "6627e8d5 e169c58d bc57ac4c 9b00dbd8");
  const f = 0xffffffff;
  assert.equal(hex(philox4x32([f, f], [f, f, f, f])), "408f276d 41c83b0e a20bc7c6 6d5451fd");
  assert.equal(
    hex(philox4x32([0xa4093822, 0x299f31d0], [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344])),
    "d16cfe09 94fdcceb 5001e420 24126ea1",
  );
});

Deno.test("randomBits: word i is word i%4 of the block at counter (i/4, 0, 0, 0); prefixes agree", () => {
  const k = key(12345);
  const bits = randomBits(k, 11);
  for (let b = 0; b < 3; b++) {
    const block = philox4x32(k, [b, 0, 0, 0]);
    for (let j = 0; j < 4 && 4 * b + j < 11; j++) assert.equal(bits[4 * b + j], block[j]);
  }
  assert.deepEqual(randomBits(k, 7), bits.slice(0, 7));
  assert.equal(randomBits(k, 0).length, 0);
  // Every bit position is fair: over 20000 words each of the 32 bits is set about half the time.
  const many = randomBits(k, 20000);
  for (let bit = 0; bit < 32; bit++) {
    let ones = 0;
    for (const w of many) ones += (w >>> bit) & 1;
    assert.ok(Math.abs(ones - 10000) < 5 * Math.sqrt(5000), `bit ${bit}: ${ones} ones of 20000`);
  }
});

Deno.test("key: [high, low] words of a safe integer, two's complement for negatives", () => {
  assert.deepEqual(key(42), [0, 42]);
  assert.deepEqual(key(2 ** 32 + 5), [1, 5]);
  assert.deepEqual(key(-1), [0xffffffff, 0xffffffff]);
  assert.throws(() => key(1.5), (e: unknown) => e instanceof RangeError && /seed/.test(e.message));
  assert.throws(() => randomBits([1, 2 ** 32] as unknown as [number, number], 1), TypeError);
});

Deno.test("determinism: same key same bits; other seeds, splits and folds differ", () => {
  assert.deepEqual(randomBits(key(7), 64), randomBits(key(7), 64));
  const streams = new Map<string, string>();
  const add = (name: string, k: readonly [number, number]) => {
    const h = hex(randomBits(k, 4));
    assert.ok(!streams.has(h), `${name} repeats the stream of ${streams.get(h)}`);
    streams.set(h, name);
  };
  add("key(7)", key(7));
  add("key(8)", key(8));
  const parts = split(key(7), 4);
  parts.forEach((p, j) => add(`split[${j}]`, p));
  for (let d = 0; d < 4; d++) add(`foldIn(${d})`, foldIn(key(7), d));
  add("foldIn(2^32)", foldIn(key(7), 2 ** 32));
  // split keys are a pure function of (key, j), whatever n is.
  assert.deepEqual(split(key(7), 2), parts.slice(0, 2));
  assert.deepEqual(foldIn(key(7), 3), foldIn(key(7), 3));
  assert.equal(split(key(7), 0).length, 0);
});

Deno.test("uniform: range, mean and variance on [lo, hi)", () => {
  const n = 100000;
  const lo = -3, hi = 5;
  const u = uniform(key(1), n, lo, hi);
  let mean = 0;
  for (const x of u) {
    assert.ok(x >= lo && x < hi);
    mean += x;
  }
  mean /= n;
  let v = 0;
  for (const x of u) v += (x - mean) ** 2;
  v /= n;
  const w = hi - lo;
  // mean of U: w/2 ± sd w/sqrt(12n); variance w²/12 with sd ≈ w² sqrt(1/180n)
  assert.ok(Math.abs(mean - (lo + w / 2)) < 5 * w / Math.sqrt(12 * n), `mean ${mean}`);
  assert.ok(Math.abs(v - w * w / 12) < 5 * w * w * Math.sqrt(1 / (180 * n)), `variance ${v}`);
  // 10 equal bins
  const counts = new Array(10).fill(0);
  for (const x of uniform(key(2), n)) counts[Math.floor(x * 10)]++;
  assert.ok(chiSquare(counts, n) < 40, `chi² ${chiSquare(counts, n)} for df 9`);
  assert.deepEqual(uniform(key(2), 5), uniform(key(2), 9).slice(0, 5));
  assert.throws(
    () => uniform(key(0), 3, 1, 1),
    (e: unknown) => e instanceof RangeError && /lo/.test(e.message),
  );
  assert.throws(
    () => uniform(key(0), -1),
    (e: unknown) => e instanceof RangeError && /\bn\b/.test(e.message),
  );
});

Deno.test("normal: moments and the one-sigma mass", () => {
  const n = 100000;
  const z = normal(key(3), n);
  let m1 = 0, m2 = 0, m3 = 0, m4 = 0, within = 0;
  for (const x of z) {
    m1 += x;
    m2 += x * x;
    m3 += x ** 3;
    m4 += x ** 4;
    if (Math.abs(x) < 1) within++;
  }
  m1 /= n, m2 /= n, m3 /= n, m4 /= n;
  assert.ok(Math.abs(m1) < 5 / Math.sqrt(n), `mean ${m1}`);
  assert.ok(Math.abs(m2 - 1) < 5 * Math.sqrt(2 / n), `E x² ${m2}`);
  assert.ok(Math.abs(m3) < 5 * Math.sqrt(15 / n), `E x³ ${m3}`);
  assert.ok(Math.abs(m4 - 3) < 5 * Math.sqrt(96 / n), `E x⁴ ${m4}`);
  assert.ok(Math.abs(within / n - 0.682689) < 5 * Math.sqrt(0.2166 / n), `P(|x|<1) ${within / n}`);
  const y = normal(key(3), 7, 10, 0.5);
  for (let i = 0; i < 7; i++) assert.ok(Math.abs(y[i] - (10 + 0.5 * z[i])) < 1e-12);
  assert.equal(normal(key(4), 5).length, 5);
  assert.throws(
    () => normal(key(0), 3, 0, -1),
    (e: unknown) => e instanceof RangeError && /std/.test(e.message),
  );
});

Deno.test("randint: range, histogram, exact power-of-two mapping, no modulo bias", () => {
  const n = 70000;
  const r = randint(key(5), n, -3, 4);
  const counts = new Array(7).fill(0);
  for (const x of r) {
    assert.ok(x >= -3 && x < 4, `out of range: ${x}`);
    counts[x + 3]++;
  }
  assert.ok(chiSquare(counts, n) < 35, `chi² ${chiSquare(counts, n)} for df 6`);
  // For r = 2^m Lemire's method never rejects and returns the top m bits.
  const k = key(6);
  const bits = randomBits(k, 1000);
  for (const m of [1, 20, 31]) {
    const x = randint(k, 1000, 0, 2 ** m);
    for (let i = 0; i < 1000; i++) assert.equal(x[i], bits[i] >>> (32 - m));
  }
  const full = randint(k, 1000, -(2 ** 31), 2 ** 31);
  for (let i = 0; i < 1000; i++) assert.equal(full[i], bits[i] - 2 ** 31);
  // r = 3·2^30: multiply-high without rejection would make x mod 3 = 0 twice as likely as 1 or 2.
  const m = 30000;
  const big = randint(key(7), m, -(2 ** 31), 2 ** 30); // range 3·2^30
  const mod3 = [0, 0, 0];
  for (const x of big) mod3[(x + 2 ** 31) % 3]++;
  assert.ok(chiSquare(mod3, m) < 25, `x mod 3 counts ${mod3}`);
  assert.deepEqual(randint(key(8), 4, 5, 6), new Int32Array([5, 5, 5, 5]));
  for (const [lo, hi] of [[3, 3], [0, 2 ** 31 + 1], [0.5, 2]]) {
    assert.throws(
      () => randint(key(0), 1, lo, hi),
      (e: unknown) => e instanceof RangeError && /lo/.test(e.message),
    );
  }
});

Deno.test("permutation: is a permutation, and all 6 orders of 3 are equally likely", () => {
  const p = permutation(key(9), 1000);
  assert.deepEqual([...p].sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i));
  assert.notDeepEqual(p, Int32Array.from({ length: 1000 }, (_, i) => i));
  assert.equal(permutation(key(9), 0).length, 0);
  assert.deepEqual(permutation(key(9), 1), new Int32Array([0]));
  const counts = new Map<string, number>();
  const n = 12000;
  for (let s = 0; s < n; s++) {
    const q = permutation(foldIn(key(10), s), 3).join("");
    counts.set(q, (counts.get(q) ?? 0) + 1);
  }
  assert.equal(counts.size, 6);
  assert.ok(chiSquare([...counts.values()], n) < 30, `counts ${[...counts.entries()]}`);
});

Deno.test("choiceWithoutReplacement: distinct, in range, a prefix of the permutation (dense and sparse)", () => {
  for (const [pop, count] of [[10000, 5], [10000, 600], [1000, 900], [50, 50], [7, 0]]) {
    const k = foldIn(key(11), pop * 7 + count);
    const c = choiceWithoutReplacement(k, pop, count);
    assert.equal(c.length, count);
    assert.equal(new Set(c).size, count, `duplicates for pop=${pop} count=${count}`);
    for (const x of c) assert.ok(x >= 0 && x < pop);
    assert.deepEqual(c, permutation(k, pop).slice(0, count));
  }
  // Sparse path: each element is first with probability 1/pop.
  const firsts = new Array(4).fill(0);
  const n = 8000;
  for (let s = 0; s < n; s++) firsts[choiceWithoutReplacement(foldIn(key(12), s), 4, 1)[0]]++;
  assert.ok(chiSquare(firsts, n) < 25, `first picks ${firsts}`);
  assert.throws(
    () => choiceWithoutReplacement(key(0), 5, 6),
    (e: unknown) => e instanceof RangeError && /count/.test(e.message),
  );
});

Deno.test("weightedChoiceWithoutReplacement: follows sequential weighted sampling, skips weight 0", () => {
  const w = new Float64Array([1, 2, 0, 3, 4]);
  const n = 20000;
  const first = new Array(5).fill(0);
  const pairs = new Map<string, number>();
  for (let s = 0; s < n; s++) {
    const c = weightedChoiceWithoutReplacement(foldIn(key(13), s), w, 2);
    assert.equal(c.length, 2);
    assert.notEqual(c[0], c[1]);
    assert.ok(c[0] !== 2 && c[1] !== 2, "weight 0 was drawn");
    first[c[0]]++;
    pairs.set(`${c[0]}${c[1]}`, (pairs.get(`${c[0]}${c[1]}`) ?? 0) + 1);
  }
  for (const i of [0, 1, 3, 4]) {
    const p = w[i] / 10;
    assert.ok(
      Math.abs(first[i] / n - p) < 5 * Math.sqrt(p * (1 - p) / n),
      `first=${i}: ${first[i] / n} vs ${p}`,
    );
  }
  // P(first = a, second = b) = w_a/W · w_b/(W - w_a)
  for (const [a, b] of [[4, 3], [3, 4], [0, 1], [1, 0], [4, 0]]) {
    const p = (w[a] / 10) * (w[b] / (10 - w[a]));
    const got = (pairs.get(`${a}${b}`) ?? 0) / n;
    assert.ok(Math.abs(got - p) < 5 * Math.sqrt(p * (1 - p) / n), `(${a},${b}): ${got} vs ${p}`);
  }
  const all = weightedChoiceWithoutReplacement(key(14), w, 4);
  assert.deepEqual([...all].sort(), [0, 1, 3, 4]);
  assert.throws(
    () => weightedChoiceWithoutReplacement(key(0), w, 5),
    (e: unknown) => e instanceof RangeError && /count/.test(e.message),
  );
  assert.throws(
    () => weightedChoiceWithoutReplacement(key(0), new Float64Array([1, -1]), 1),
    (e: unknown) => e instanceof RangeError && /weights\[1\]/.test(e.message),
  );
});
