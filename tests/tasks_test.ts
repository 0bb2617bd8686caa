import assert from "node:assert/strict";
import { foldIn, key } from "../lib/core/random.ts";
import {
  type CopyBatch,
  type CopyVariant,
  copyVocab,
  decodeCopyTokens,
  makeCopyEvalBatch,
  makeCopyTrainBatch,
  makeMqarBatch,
  MQAR_TASK,
  mqarContext,
  mqarPairs,
} from "../tasks/mod.ts";

/** Row b as its T+1 tokens: the inputs, then the last target. */
function rowTokens(batch: CopyBatch, b: number): Int32Array {
  const { inputs, targets, T } = batch;
  const row = new Int32Array(T + 1);
  row.set(inputs.subarray(b * T, (b + 1) * T));
  row[T] = targets[b * T + T - 1];
  return row;
}

function expectedPaste(variant: CopyVariant, s: number[]): number[] {
  if (variant === "copy") return s;
  if (variant === "stack") return [...s].reverse();
  return [...s].sort((a, b) => a - b);
}

/**
 * Parses a packed training row independently of the generator; returns the mask over row tokens it implies
 * (1 on answers and the `.` of complete examples) and the lengths of complete examples.
 */
function parseRow(row: Int32Array, vocab: number, variant: CopyVariant) {
  const v = copyVocab(vocab);
  const R = row.length;
  const tokenMask = new Uint8Array(R);
  const complete: number[] = [];
  let cut = 0;
  let p = 0;
  while (p < R) {
    assert.equal(row[p], v.bos, `expected $ at ${p}`);
    const s: number[] = [];
    let q = p + 1;
    while (q < R && row[q] !== v.delim) {
      assert.ok(row[q] >= 0 && row[q] < vocab, `letter out of range at ${q}: ${row[q]}`);
      s.push(row[q++]);
    }
    const L = s.length;
    const end = p + 2 * L + 3;
    const want = [v.bos, ...s, v.delim, ...expectedPaste(variant, s), v.eos];
    if (variant === "sort" && end <= R) assert.equal(new Set(s).size, L, "sort letters repeat");
    for (let i = 0; i < want.length && p + i < R; i++) assert.equal(row[p + i], want[i], `token ${p + i}`);
    if (end <= R) {
      complete.push(L);
      for (let i = p + L + 2; i < end; i++) tokenMask[i] = 1;
    } else cut++;
    p = end;
  }
  return { tokenMask, complete, cut };
}

Deno.test("copyVocab: letters, then $ | . *", () => {
  assert.deepEqual(copyVocab(26), { letters: 26, bos: 26, delim: 27, eos: 28, pad: 29, size: 30 });
  assert.throws(() => copyVocab(0), (e: unknown) => e instanceof RangeError && /vocab/.test(e.message));
});

Deno.test("eval batch: decoded rows read `$ s | s' .`, mask only on the L answer characters", () => {
  const L = 6;
  for (const variant of ["copy", "stack", "sort"] as const) {
    const vocab = variant === "sort" ? 26 : 5;
    const ev = makeCopyEvalBatch(key(1), { variant, batch: 8, length: L, vocab });
    assert.equal(ev.T, 2 * L + 2);
    assert.equal(ev.answerStart, L + 1);
    assert.equal(ev.L, L);
    for (let b = 0; b < ev.B; b++) {
      const text = decodeCopyTokens(rowTokens(ev, b), vocab);
      const m = text.match(/^\$ ((?:[a-z] ){6})\| ((?:[a-z] ){6})\.$/);
      assert.ok(m, `row ${b}: ${text}`);
      const s = m[1].trim().split(" ");
      const paste = m[2].trim().split(" ");
      if (variant === "copy") assert.deepEqual(paste, s);
      if (variant === "stack") assert.deepEqual(paste, [...s].reverse());
      if (variant === "sort") {
        assert.deepEqual(paste, [...s].sort());
        assert.equal(new Set(s).size, L, `sort draws without replacement: ${text}`);
      }
      const o = b * ev.T;
      for (let t = 0; t < ev.T; t++) {
        const isAnswer = t >= ev.answerStart && t < ev.answerStart + L;
        assert.equal(ev.mask[o + t], isAnswer ? 1 : 0, `mask at t=${t}`);
      }
      // The answer targets are s' letter by letter, and the `.` right after is not scored.
      for (let i = 0; i < L; i++) {
        assert.equal(decodeCopyTokens([ev.targets[o + ev.answerStart + i]], vocab), paste[i]);
      }
      assert.equal(ev.targets[o + ev.answerStart + L], copyVocab(vocab).eos);
    }
  }
});

Deno.test("eval batch: right-padding to a longer context keeps the example and masks the pad", () => {
  const L = 4, T = 20;
  const v = copyVocab(26);
  const short = makeCopyEvalBatch(key(2), { variant: "copy", batch: 3, length: L });
  const ev = makeCopyEvalBatch(key(2), { variant: "copy", batch: 3, length: L, context: T });
  assert.equal(ev.T, T);
  for (let b = 0; b < 3; b++) {
    for (let t = 0; t < short.T; t++) {
      assert.equal(ev.inputs[b * T + t], short.inputs[b * short.T + t]);
      assert.equal(ev.targets[b * T + t], short.targets[b * short.T + t]);
      assert.equal(ev.mask[b * T + t], short.mask[b * short.T + t]);
    }
    for (let t = short.T; t < T; t++) {
      assert.equal(ev.inputs[b * T + t], t === short.T ? v.eos : v.pad);
      assert.equal(ev.targets[b * T + t], v.pad);
      assert.equal(ev.mask[b * T + t], 0);
    }
  }
  assert.equal(ev.mask.reduce((a, m) => a + m, 0), 3 * L);
});

Deno.test("training batch: packed rows parse, masks are exactly answers + `.` of complete examples", () => {
  for (const variant of ["copy", "stack", "sort"] as const) {
    const cfg = { variant, batch: 16, vocab: variant === "sort" ? 64 : 6, minLen: 3, maxLen: 20 };
    const batch = makeCopyTrainBatch(key(3), cfg);
    assert.equal(batch.T, 220);
    assert.equal(batch.inputs.length, 16 * 220);
    let cuts = 0;
    const seen = new Set<number>();
    for (let b = 0; b < batch.B; b++) {
      const row = rowTokens(batch, b);
      const { tokenMask, complete, cut } = parseRow(row, cfg.vocab, variant);
      cuts += cut;
      for (const L of complete) {
        assert.ok(L >= cfg.minLen && L <= cfg.maxLen, `length ${L}`);
        seen.add(L);
      }
      let count = 0;
      for (let t = 0; t < batch.T; t++) {
        const m: number = batch.mask[b * batch.T + t];
        assert.equal(m, tokenMask[t + 1], `${variant} row ${b}: mask at t=${t}`);
        count += m;
      }
      assert.equal(count, complete.reduce((a, L) => a + L + 1, 0));
      // inputs and targets are the same row shifted by one
      for (let t = 0; t + 1 < batch.T; t++) {
        assert.equal(batch.targets[b * batch.T + t], batch.inputs[b * batch.T + t + 1]);
      }
    }
    assert.ok(cuts > 0, "some row should end in a cut example");
    assert.ok(seen.size > 8, `lengths should vary, saw ${[...seen]}`);
  }
});

Deno.test("training batch: the cut example is masked out, whole", () => {
  // Lengths fixed at 4: examples of 11 tokens; a row of 25 tokens holds 2 complete ones and 3 tokens of a third.
  const batch = makeCopyTrainBatch(key(4), {
    variant: "copy",
    batch: 2,
    vocab: 26,
    context: 24,
    minLen: 4,
    maxLen: 4,
  });
  const v = copyVocab(26);
  for (let b = 0; b < 2; b++) {
    const row = rowTokens(batch, b);
    assert.equal(row[22], v.bos);
    assert.ok(row[23] < 26 && row[24] < 26);
    const m = batch.mask.subarray(b * 24, (b + 1) * 24);
    assert.deepEqual([...m.subarray(20)], [1, 0, 0, 0]); // target `.`, then `$` and two letters of the cut one
    assert.equal(m.reduce((a, x) => a + x, 0), 2 * 5);
  }
});

Deno.test("training batch: edge lengths minLen = maxLen = 1, and 2L+3 = T+1 exactly", () => {
  const one = makeCopyTrainBatch(key(5), { variant: "stack", batch: 3, context: 19, minLen: 1, maxLen: 1 });
  for (let b = 0; b < 3; b++) {
    const text = decodeCopyTokens(rowTokens(one, b), 26);
    assert.match(text, /^(\$ ([a-z]) \| \2 \. ){3}\$ ([a-z]) \| \3 \.$/);
    assert.deepEqual(
      [...one.mask.subarray(b * 19, (b + 1) * 19)].map((x, t) => x ? t : -1).filter((t) => t >= 0),
      [
        2,
        3,
        7,
        8,
        12,
        13,
        17,
        18,
      ],
    );
  }
  const L = 50;
  const exact = makeCopyTrainBatch(key(6), {
    variant: "copy",
    batch: 2,
    context: 2 * L + 2,
    minLen: L,
    maxLen: L,
  });
  for (let b = 0; b < 2; b++) {
    const { complete, cut } = parseRow(rowTokens(exact, b), 26, "copy");
    assert.deepEqual(complete, [L]);
    assert.equal(cut, 0);
    const m = exact.mask.subarray(b * exact.T, (b + 1) * exact.T);
    assert.equal(m.reduce((a, x) => a + x, 0), L + 1);
    assert.equal(m[exact.T - 1], 1);
    assert.equal(exact.targets[b * exact.T + exact.T - 1], copyVocab(26).eos);
  }
});

Deno.test("sort variant: default vocab 512, strings sorted and without replacement", () => {
  const batch = makeCopyTrainBatch(key(7), { variant: "sort", batch: 8, maxLen: 50, minLen: 40 });
  for (let b = 0; b < 8; b++) {
    const row = rowTokens(batch, b);
    const { complete } = parseRow(row, 512, "sort"); // asserts sortedness and distinct letters
    assert.ok(complete.length >= 2);
    assert.ok(row.some((x) => x >= 26 && x < 512), "letters beyond 26 should appear with vocab 512");
  }
});

Deno.test("copy batches are a pure function of the key", () => {
  const cfg = { variant: "copy" as const, batch: 4 };
  const a = makeCopyTrainBatch(key(8), cfg);
  const b = makeCopyTrainBatch(key(8), cfg);
  const c = makeCopyTrainBatch(foldIn(key(8), 1), cfg);
  assert.deepEqual(a.inputs, b.inputs);
  assert.deepEqual(a.mask, b.mask);
  assert.notDeepEqual(a.inputs, c.inputs);
});

Deno.test("invalid copy configs throw RangeError naming the field", () => {
  const cases: [() => unknown, RegExp][] = [
    [
      () => makeCopyTrainBatch(key(0), { variant: "copy", batch: 1, minLen: 5, maxLen: 3 }),
      /maxLen=3 minLen=5/,
    ],
    [
      () => makeCopyTrainBatch(key(0), { variant: "copy", batch: 1, context: 100, maxLen: 50 }),
      /maxLen.*context/,
    ],
    [() => makeCopyTrainBatch(key(0), { variant: "copy", batch: 0 }), /batch=0/],
    [() => makeCopyTrainBatch(key(0), { variant: "copy", batch: 1, minLen: 0 }), /minLen=0/],
    [() => makeCopyTrainBatch(key(0), { variant: "copy", batch: 1, vocab: 2.5 }), /vocab=2.5/],
    [() => makeCopyTrainBatch(key(0), { variant: "reverse" as CopyVariant, batch: 1 }), /variant=reverse/],
    [() => makeCopyTrainBatch(key(0), { variant: "sort", batch: 1, vocab: 26 }), /vocab=26 maxLen=50/],
    [() => makeCopyEvalBatch(key(0), { variant: "copy", batch: 1, length: 10, context: 21 }), /context=21/],
    [
      () => makeCopyEvalBatch(key(0), { variant: "sort", batch: 1, length: 30, vocab: 20 }),
      /vocab=20 length=30/,
    ],
    [() => makeCopyEvalBatch(key(0), { variant: "copy", batch: 1, length: 0 }), /length=0/],
  ];
  for (const [f, re] of cases) {
    assert.throws(f, (e: unknown) => e instanceof RangeError && re.test(e.message), String(re));
  }
  // exactly fitting is allowed
  makeCopyTrainBatch(key(0), { variant: "copy", batch: 1, context: 102, maxLen: 50 });
});

Deno.test("MQAR: key/value ranges, each key queried once, labels are the paired values, masks at queries only", () => {
  for (const cfg of [{ batch: 32 }, { batch: 16, vocab: 40, context: 37, numPairs: 8, alpha: 1 }]) {
    const { inputs, targets, mask, B, T } = makeMqarBatch(key(9), cfg);
    const V = cfg.vocab ?? 8192, K = cfg.numPairs ?? 8, half = V / 2;
    assert.equal(T, cfg.context ?? 64);
    assert.equal(B, cfg.batch);
    for (let b = 0; b < B; b++) {
      const o = b * T;
      const pairs = new Map<number, number>();
      const values = new Set<number>();
      for (let i = 0; i < K; i++) {
        const k = inputs[o + 2 * i], v = inputs[o + 2 * i + 1];
        assert.ok(k >= 1 && k < half, `key ${k}`);
        assert.ok(v >= half && v < V, `value ${v}`);
        assert.ok(!pairs.has(k), `key ${k} repeats`);
        assert.ok(!values.has(v), `value ${v} repeats`);
        pairs.set(k, v);
        values.add(v);
      }
      const queried = new Set<number>();
      for (let t = 0; t < T; t++) {
        const x = inputs[o + t];
        assert.ok(x >= 0 && x < V);
        if (mask[o + t] === 1) {
          assert.ok(
            t >= 2 * K && (t - 2 * K) % 2 === 0 && t < 2 * K + 2 * Math.floor((T - 2 * K) / 2),
            `query at ${t}`,
          );
          assert.ok(pairs.has(x), `query ${x} at ${t} is not a key`);
          assert.ok(!queried.has(x), `key ${x} queried twice`);
          queried.add(x);
          assert.equal(targets[o + t], pairs.get(x));
        } else {
          assert.equal(mask[o + t], 0);
          assert.equal(targets[o + t], 0);
        }
      }
      assert.equal(queried.size, K);
    }
  }
});

Deno.test("MQAR: alpha = 0.01 puts queries earlier than alpha = 1; T = 4K fills every slot", () => {
  const meanSlot = (alpha: number) => {
    const { mask, B, T } = makeMqarBatch(key(10), { batch: 256, alpha });
    let s = 0;
    for (let b = 0; b < B; b++) for (let t = 16; t < T; t++) s += mask[b * T + t] * (t - 16) / 2;
    return s / (B * 8);
  };
  const early = meanSlot(0.01), flat = meanSlot(1);
  // Uniform over 24 slots, 8 drawn: mean slot 11.5. With alpha 0.01 the law ∝ 1/(g+1) pulls it far lower.
  assert.ok(Math.abs(flat - 11.5) < 0.5, `alpha 1: mean slot ${flat}`);
  assert.ok(early < 8.5, `alpha 0.01: mean slot ${early}`);
  const full = makeMqarBatch(key(11), { batch: 4, context: 32, numPairs: 8 });
  for (let b = 0; b < 4; b++) {
    for (let t = 16; t < 32; t++) assert.equal(full.mask[b * 32 + t], (t - 16) % 2 === 0 ? 1 : 0);
  }
});

Deno.test("invalid MQAR configs throw RangeError naming the field", () => {
  const cases: [() => unknown, RegExp][] = [
    [() => makeMqarBatch(key(0), { batch: 1, context: 31 }), /context=31 numPairs=8/],
    [() => makeMqarBatch(key(0), { batch: 1, vocab: 16 }), /vocab=16 numPairs=8/],
    [() => makeMqarBatch(key(0), { batch: 1, numPairs: 0 }), /numPairs=0/],
    [() => makeMqarBatch(key(0), { batch: 0 }), /batch=0/],
    [() => makeMqarBatch(key(0), { batch: 1, alpha: Number.NaN }), /alpha=NaN/],
  ];
  for (const [f, re] of cases) {
    assert.throws(f, (e: unknown) => e instanceof RangeError && re.test(e.message), String(re));
  }
});

Deno.test("speed: a 64×220 copy batch and a 64×64 MQAR batch take a few ms at most", () => {
  for (let i = 0; i < 5; i++) makeCopyTrainBatch(foldIn(key(12), i), { variant: "copy", batch: 64 }); // warm-up
  const time = (f: (i: number) => unknown) => {
    const n = 50;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) f(i);
    return (performance.now() - t0) / n;
  };
  const copyMs = time((i) => makeCopyTrainBatch(foldIn(key(13), i), { variant: "copy", batch: 64 }));
  const sortMs = time((i) => makeCopyTrainBatch(foldIn(key(14), i), { variant: "sort", batch: 64 }));
  const mqarMs = time((i) => makeMqarBatch(foldIn(key(15), i), { batch: 64 }));
  console.log(
    `copy ${copyMs.toFixed(3)} ms, sort ${sortMs.toFixed(3)} ms, mqar ${mqarMs.toFixed(3)} ms per batch`,
  );
  // Generous bounds so a loaded CI machine does not flake; typical numbers are printed above.
  assert.ok(copyMs < 10 && sortMs < 20 && mqarMs < 20);
});

Deno.test("MQAR task: lengthUnit tokens counts the sequence, pairs counts the key–value pairs", () => {
  const tokens = { vocab: 512, length: 64, tokensPerPair: 8, alpha: 0.01, lengthUnit: "tokens" } as const;
  const pairs = { ...tokens, length: 50, tokensPerPair: 4, lengthUnit: "pairs" } as const;
  MQAR_TASK.validate(tokens);
  MQAR_TASK.validate(pairs);
  // tokens: T = length, ⌊T / tokensPerPair⌋ pairs; pairs: K = length, T = K · tokensPerPair.
  assert.deepEqual([mqarContext(tokens, 100), mqarPairs(tokens, 100)], [100, 12]);
  assert.deepEqual([mqarContext(pairs, 100), mqarPairs(pairs, 100)], [400, 100]);
  assert.equal(MQAR_TASK.trainContext(pairs), 200);
  assert.equal(MQAR_TASK.evalContext(pairs, 100), 400);
  const count = (mask: Float32Array, B: number) => mask.reduce((a, m) => a + m, 0) / B;
  const train = MQAR_TASK.trainBatch(key(20), pairs, 3);
  assert.equal(train.T, 200);
  assert.equal(count(train.mask, 3), 50);
  const ev = MQAR_TASK.evalRows(key(21), pairs, 100, 2);
  assert.equal(ev.T, 400);
  assert.equal(count(ev.mask, 2), 100);
  const evTokens = MQAR_TASK.evalRows(key(21), tokens, 100, 2);
  assert.equal(evTokens.T, 100);
  assert.equal(count(evTokens.mask, 2), 12);
  const bad: [unknown, RegExp][] = [
    [{ ...pairs, lengthUnit: "chars" }, /lengthUnit must be "tokens" or "pairs", got "chars"/],
    [{ ...pairs, length: 0 }, /length \(key–value pairs\) must be an integer ≥ 1, got 0/],
    [{ ...pairs, vocab: 100 }, /vocab too small/], // 50 keys need vocab/2 − 1 ≥ 50
    [{ ...tokens, length: 7 }, /length must be an integer ≥ tokensPerPair = 8, got 7/],
  ];
  for (const [cfg, re] of bad) {
    assert.throws(
      () => MQAR_TASK.validate(cfg as typeof pairs),
      (e: unknown) => e instanceof RangeError && re.test(e.message),
      String(re),
    );
  }
});
