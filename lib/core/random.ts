/**
 * Explicit-key, counter-based random numbers: Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as
 * easy as 1, 2, 3") in 32-bit integer arithmetic, so every result is bit-for-bit the same on every machine.
 *
 * There is no global RNG. A {@link Key} is two uint32 words; {@link split} and {@link foldIn} derive new keys
 * from it, and every sampler is a pure function of (key, arguments). The i-th 32-bit word of a key's stream is
 * word i % 4 of the Philox block at counter (floor(i / 4), 0, 0, 0); {@link split} and {@link foldIn} use
 * counters with a non-zero third word, so derived keys never reuse a block of the sample stream.
 *
 * Stream use per sampler (so results are prefixes of each other when only `n` grows):
 * - {@link randomBits}: word i is output i.
 * - {@link uniform}: output i takes words 2i, 2i+1 (53 bits).
 * - {@link normal}: outputs 2j and 2j+1 take words 4j..4j+3 (Box–Muller pair).
 * - {@link randint}, {@link permutation}, {@link choiceWithoutReplacement}: words consumed in order by Lemire's
 *   exact rejection method, so they are unbiased; `choiceWithoutReplacement(k, n, c)` is the first c entries of
 *   `permutation(k, n)`.
 * - {@link weightedChoiceWithoutReplacement}: item i takes words 2i, 2i+1 (Efraimidis–Spirakis keys).
 * @module
 */

/** A random key: two uint32 words. Derive new keys with {@link split} or {@link foldIn}; never reuse one. */
export type Key = readonly [number, number];

// Philox4x32 constants (Random123): round multipliers and the Weyl sequence that bumps the key.
const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const M0_LO = M0 & 0xffff;
const M0_HI = M0 >>> 16;
const M1_LO = M1 & 0xffff;
const M1_HI = M1 >>> 16;

const TWO_32 = 4294967296;
const TWO_53 = 9007199254740992;

// Third counter word of the derivation domains; the sample stream always has 0 there.
const DOMAIN_SPLIT = 1;
const DOMAIN_FOLD = 2;

/** High 32 bits of the 64-bit product of uint32 `a` with a uint32 given as 16-bit halves (exact in doubles). */
function mulhi(a: number, bLo: number, bHi: number): number {
  const aLo = a & 0xffff;
  const aHi = a >>> 16;
  const ll = aLo * bLo;
  const lh = aLo * bHi;
  const hl = aHi * bLo;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (aHi * bHi + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
}

/**
 * Philox4x32-10 on one counter block; writes the 4 output words to `out[off..off+4)`.
 * Checked against the Random123 known-answer vectors in tests/random_test.ts.
 */
function philoxBlock(
  key0: number,
  key1: number,
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  out: Uint32Array,
  off: number,
): void {
  let k0 = key0 >>> 0;
  let k1 = key1 >>> 0;
  let x0 = c0 >>> 0;
  let x1 = c1 >>> 0;
  let x2 = c2 >>> 0;
  let x3 = c3 >>> 0;
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi(x0, M0_LO, M0_HI);
    const lo0 = Math.imul(x0, M0) >>> 0;
    const hi1 = mulhi(x2, M1_LO, M1_HI);
    const lo1 = Math.imul(x2, M1) >>> 0;
    x0 = (hi1 ^ x1 ^ k0) >>> 0;
    x1 = lo1;
    x2 = (hi0 ^ x3 ^ k1) >>> 0;
    x3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[off] = x0;
  out[off + 1] = x1;
  out[off + 2] = x2;
  out[off + 3] = x3;
}

/**
 * The raw Philox4x32-10 bijection, exposed for known-answer tests: `counter` (4 uint32) under `k`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { philox4x32 } from "./random.ts";
 * // Random123 known-answer vector: zero key, zero counter.
 * assert.deepEqual([...philox4x32([0, 0], [0, 0, 0, 0])], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
 * ```
 */
export function philox4x32(k: Key, counter: readonly [number, number, number, number]): Uint32Array {
  checkKey(k, "philox4x32");
  const out = new Uint32Array(4);
  philoxBlock(k[0], k[1], counter[0], counter[1], counter[2], counter[3], out, 0);
  return out;
}

/** Sequential reader of a key's stream (block b = counter (b, 0, 0, 0)); internal to the samplers. */
class Stream {
  private readonly buf = new Uint32Array(4);
  private block = 0;
  private pos = 4;
  constructor(private readonly k0: number, private readonly k1: number) {}

  next(): number {
    if (this.pos === 4) {
      const b = this.block++;
      philoxBlock(this.k0, this.k1, b >>> 0, Math.floor(b / TWO_32) >>> 0, 0, 0, this.buf, 0);
      this.pos = 0;
    }
    return this.buf[this.pos++];
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  nextUnit(): number {
    const a = this.next() >>> 5;
    const b = this.next() >>> 6;
    return (a * 67108864 + b) / TWO_53;
  }

  /**
   * Unbiased integer in [0, r) for 1 ≤ r ≤ 2^32 (Lemire 2019, "Fast random integer generation in an interval"):
   * take the high word of x·r and reject the x whose low word falls in the (2^32 mod r) surplus.
   */
  bounded(r: number): number {
    if (r === TWO_32) return this.next();
    const rLo = r & 0xffff;
    const rHi = r >>> 16;
    let x = this.next();
    let lo = Math.imul(x, r) >>> 0;
    if (lo < r) {
      const threshold = (TWO_32 - r) % r;
      while (lo < threshold) {
        x = this.next();
        lo = Math.imul(x, r) >>> 0;
      }
    }
    return mulhi(x, rLo, rHi);
  }
}

function checkKey(k: Key, where: string): void {
  if (
    !Array.isArray(k) || k.length !== 2 || !isUint32(k[0]) || !isUint32(k[1])
  ) {
    throw new TypeError(`${where}: key must be a pair of uint32 words [number, number], got ${String(k)}`);
  }
}

function isUint32(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0 && x < TWO_32;
}

function checkCount(n: number, name: string, where: string): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${where}: ${name} must be a non-negative integer, got ${name}=${n}`);
  }
}

/**
 * Makes a key from an integer seed (a safe integer; negatives wrap as 64-bit two's complement), as
 * `[high 32 bits, low 32 bits]`.
 * @throws {RangeError} when `seed` is not a safe integer.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { key } from "./random.ts";
 * assert.deepEqual(key(42), [0, 42]);
 * assert.deepEqual(key(-1), [0xffffffff, 0xffffffff]);
 * ```
 */
export function key(seed: number): Key {
  if (!Number.isSafeInteger(seed)) {
    throw new RangeError(`key: seed must be a safe integer, got seed=${seed}`);
  }
  return [Math.floor(seed / TWO_32) >>> 0, seed >>> 0];
}

/**
 * Derives `n` independent keys from `k`. Key j is a pure function of (k, j), so `split(k, 3)[0]` equals
 * `split(k, 2)[0]`. Do not use `k` itself after splitting it.
 * @throws {RangeError} when `n` is not an integer in [0, 2^32).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { key, split, uniform } from "./random.ts";
 * const [kInit, kData] = split(key(0));
 * assert.notDeepEqual(uniform(kInit, 2), uniform(kData, 2));
 * assert.deepEqual(split(key(0), 3)[1], kData);
 * ```
 */
export function split(k: Key, n = 2): Key[] {
  checkKey(k, "split");
  if (!Number.isInteger(n) || n < 0 || n >= TWO_32) {
    throw new RangeError(`split: n must be an integer in [0, 2^32), got n=${n}`);
  }
  const out: Key[] = [];
  const buf = new Uint32Array(4);
  for (let j = 0; j < n; j++) {
    philoxBlock(k[0], k[1], j, 0, DOMAIN_SPLIT, 0, buf, 0);
    out.push([buf[0], buf[1]]);
  }
  return out;
}

/**
 * Derives a key from `k` and an integer (a step, a row, a layer index); a pure function of both.
 * @throws {RangeError} when `data` is not a safe integer.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { foldIn, key, randint } from "./random.ts";
 * const base = key(7);
 * const step0 = randint(foldIn(base, 0), 8, 0, 10);
 * assert.deepEqual(randint(foldIn(base, 0), 8, 0, 10), step0); // same key, same draw
 * assert.notDeepEqual(randint(foldIn(base, 1), 8, 0, 10), step0);
 * ```
 */
export function foldIn(k: Key, data: number): Key {
  checkKey(k, "foldIn");
  if (!Number.isSafeInteger(data)) {
    throw new RangeError(`foldIn: data must be a safe integer, got data=${data}`);
  }
  const buf = new Uint32Array(4);
  philoxBlock(k[0], k[1], data >>> 0, Math.floor(data / TWO_32) >>> 0, DOMAIN_FOLD, 0, buf, 0);
  return [buf[0], buf[1]];
}

/**
 * The first `n` uint32 words of `k`'s stream.
 * @returns shape (n)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { key, randomBits } from "./random.ts";
 * const bits = randomBits(key(1), 5);
 * assert.equal(bits.length, 5);
 * assert.deepEqual(randomBits(key(1), 3), bits.slice(0, 3)); // a prefix of the same stream
 * ```
 */
export function randomBits(k: Key, n: number): Uint32Array {
  checkKey(k, "randomBits");
  checkCount(n, "n", "randomBits");
  const out = new Uint32Array(n);
  const full = n - (n % 4);
  const tail = new Uint32Array(4);
  for (let i = 0; i < n; i += 4) {
    const b = i / 4;
    if (i < full) philoxBlock(k[0], k[1], b >>> 0, Math.floor(b / TWO_32) >>> 0, 0, 0, out, i);
    else {
      philoxBlock(k[0], k[1], b >>> 0, Math.floor(b / TWO_32) >>> 0, 0, 0, tail, 0);
      for (let j = 0; i + j < n; j++) out[i + j] = tail[j];
    }
  }
  return out;
}

/** Largest double strictly below `x` (finite, non-zero x suffices here). */
function nextDown(x: number): number {
  const f = new Float64Array([x]);
  const u = new BigInt64Array(f.buffer);
  if (x > 0) u[0] -= 1n;
  else if (x < 0) u[0] += 1n;
  else return -Number.MIN_VALUE;
  return f[0];
}

/**
 * `n` doubles uniform on [lo, hi), each with 53 random bits.
 * @throws {RangeError} unless lo < hi and both (and hi - lo) are finite.
 * @returns shape (n)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { key, uniform } from "./random.ts";
 * const u = uniform(key(0), 4, -1, 1);
 * assert.ok(u.every((x) => x >= -1 && x < 1));
 * ```
 */
export function uniform(k: Key, n: number, lo = 0, hi = 1): Float64Array {
  checkKey(k, "uniform");
  checkCount(n, "n", "uniform");
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || !(lo < hi) || !Number.isFinite(hi - lo)) {
    throw new RangeError(`uniform: expected finite lo < hi with finite hi - lo, got lo=${lo} hi=${hi}`);
  }
  const out = new Float64Array(n);
  const s = new Stream(k[0], k[1]);
  const width = hi - lo;
  let top = Number.NaN;
  for (let i = 0; i < n; i++) {
    let x = lo + width * s.nextUnit();
    if (x >= hi) { // rounding can reach hi when width·u is close to it
      if (Number.isNaN(top)) top = nextDown(hi);
      x = top;
    }
    out[i] = x;
  }
  return out;
}

/**
 * `n` normal samples with the given mean and standard deviation (Box–Muller on 53-bit uniforms).
 * @throws {RangeError} unless mean is finite and std is finite and ≥ 0.
 * @returns shape (n)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { key, normal } from "./random.ts";
 * const w = normal(key(0), 1000, 0, 0.02); // e.g. an embedding init
 * assert.ok(Math.abs(Math.sqrt(w.reduce((a, x) => a + x * x, 0) / 1000) - 0.02) < 0.002);
 * ```
 */
export function normal(k: Key, n: number, mean = 0, std = 1): Float64Array {
  checkKey(k, "normal");
  checkCount(n, "n", "normal");
  if (!Number.isFinite(mean) || !Number.isFinite(std) || std < 0) {
    throw new RangeError(`normal: expected finite mean and finite std ≥ 0, got mean=${mean} std=${std}`);
  }
  const out = new Float64Array(n);
  const s = new Stream(k[0], k[1]);
  for (let i = 0; i < n; i += 2) {
    const u1 = 1 - s.nextUnit(); // (0, 1], so the log is finite
    const u2 = s.nextUnit();
    const r = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    out[i] = mean + std * r * Math.cos(theta);
    if (i + 1 < n) out[i + 1] = mean + std * r * Math.sin(theta);
  }
  return out;
}

/**
 * `n` integers uniform on [lo, hi), exactly unbiased (Lemire's multiply-high with rejection).
 * @throws {RangeError} unless lo < hi are integers with -2^31 ≤ lo and hi ≤ 2^31.
 * @returns shape (n)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { key, randint } from "./random.ts";
 * const dice = randint(key(3), 10, 1, 7);
 * assert.ok(dice.every((d) => d >= 1 && d <= 6));
 * ```
 */
export function randint(k: Key, n: number, lo: number, hi: number): Int32Array {
  checkKey(k, "randint");
  checkCount(n, "n", "randint");
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || !(lo < hi) || lo < -2147483648 || hi > 2147483648) {
    throw new RangeError(`randint: expected integers -2^31 ≤ lo < hi ≤ 2^31, got lo=${lo} hi=${hi}`);
  }
  const out = new Int32Array(n);
  const s = new Stream(k[0], k[1]);
  const r = hi - lo;
  for (let i = 0; i < n; i++) out[i] = lo + s.bounded(r);
  return out;
}

/**
 * A uniformly random permutation of 0..n-1 (forward Fisher–Yates).
 * @throws {RangeError} unless n is an integer in [0, 2^31).
 * @returns shape (n)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { key, permutation } from "./random.ts";
 * const p = permutation(key(0), 5);
 * assert.deepEqual([...p].sort(), [0, 1, 2, 3, 4]);
 * ```
 */
export function permutation(k: Key, n: number): Int32Array {
  checkKey(k, "permutation");
  if (!Number.isInteger(n) || n < 0 || n > 2147483647) {
    throw new RangeError(`permutation: n must be an integer in [0, 2^31), got n=${n}`);
  }
  return choiceWithoutReplacement(k, n, n);
}

/**
 * `count` distinct integers from 0..populationSize-1, as a uniformly random ordered sample: the first `count`
 * entries of `permutation(k, populationSize)`. Costs O(count) time and memory when count ≪ populationSize.
 * @throws {RangeError} unless 0 ≤ count ≤ populationSize < 2^31 are integers.
 * @returns shape (count)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { choiceWithoutReplacement, key, permutation } from "./random.ts";
 * const keys = choiceWithoutReplacement(key(0), 4096, 8);
 * assert.equal(new Set(keys).size, 8);
 * assert.deepEqual(keys, permutation(key(0), 4096).slice(0, 8));
 * ```
 */
export function choiceWithoutReplacement(k: Key, populationSize: number, count: number): Int32Array {
  checkKey(k, "choiceWithoutReplacement");
  if (!Number.isInteger(populationSize) || populationSize < 0 || populationSize > 2147483647) {
    throw new RangeError(
      `choiceWithoutReplacement: populationSize must be an integer in [0, 2^31), got populationSize=${populationSize}`,
    );
  }
  if (!Number.isInteger(count) || count < 0 || count > populationSize) {
    throw new RangeError(
      `choiceWithoutReplacement: count must be an integer in [0, populationSize], got count=${count} populationSize=${populationSize}`,
    );
  }
  const out = new Int32Array(count);
  const s = new Stream(k[0], k[1]);
  if (count * 16 >= populationSize) {
    // Dense partial Fisher–Yates.
    const a = new Int32Array(populationSize);
    for (let i = 0; i < populationSize; i++) a[i] = i;
    for (let i = 0; i < count; i++) {
      const j = i + s.bounded(populationSize - i);
      const t = a[j];
      a[j] = a[i];
      a[i] = t;
      out[i] = t;
    }
  } else {
    // The same swaps on a virtual identity array; only displaced entries are stored.
    const moved = new Map<number, number>();
    for (let i = 0; i < count; i++) {
      const j = i + s.bounded(populationSize - i);
      const vi = moved.get(i) ?? i;
      const vj = moved.get(j) ?? j;
      moved.set(j, vi);
      out[i] = vj;
    }
  }
  return out;
}

/**
 * `count` distinct indices into `weights`, drawn like sequential sampling without replacement with
 * p(i) ∝ weights[i] among those not yet drawn, in draw order (Efraimidis & Spirakis 2006: the `count` largest
 * of u_i^(1/w_i), equivalently Gumbel-top-k). Indices with weight 0 are never drawn.
 * @param weights shape (n), finite and ≥ 0; need not sum to 1.
 * @throws {RangeError} on a negative or non-finite weight, or when count exceeds the number of positive weights.
 * @returns shape (count)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { key, weightedChoiceWithoutReplacement } from "./random.ts";
 * const w = new Float64Array([1, 0, 10, 1]);
 * const picked = weightedChoiceWithoutReplacement(key(0), w, 2);
 * assert.ok(!picked.includes(1)); // weight 0 is never drawn
 * ```
 */
export function weightedChoiceWithoutReplacement(k: Key, weights: Float64Array, count: number): Int32Array {
  checkKey(k, "weightedChoiceWithoutReplacement");
  const n = weights.length;
  let positive = 0;
  for (let i = 0; i < n; i++) {
    const w = weights[i];
    if (!(w >= 0) || !Number.isFinite(w)) {
      throw new RangeError(
        `weightedChoiceWithoutReplacement: weights must be finite and ≥ 0, got weights[${i}]=${w}`,
      );
    }
    if (w > 0) positive++;
  }
  if (!Number.isInteger(count) || count < 0 || count > positive) {
    throw new RangeError(
      `weightedChoiceWithoutReplacement: count must be an integer in [0, number of positive weights = ${positive}], got count=${count}`,
    );
  }
  const s = new Stream(k[0], k[1]);
  const score = new Float64Array(n);
  const idx = new Int32Array(positive);
  let m = 0;
  for (let i = 0; i < n; i++) {
    // Draw for every item, even weight 0, so item i always uses words 2i, 2i+1.
    const u = 1 - s.nextUnit(); // (0, 1]
    const w = weights[i];
    if (w > 0) {
      score[i] = Math.log(u) / w; // log of u^(1/w); larger is earlier
      idx[m++] = i;
    }
  }
  idx.sort((a, b) => (score[b] - score[a]) || (a - b));
  return idx.slice(0, count);
}
