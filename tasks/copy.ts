/**
 * The copy task family of Jelassi et al. 2024 ("Repeat after me", sjelassi/transformers_ssm_copy): one example
 * is `$ s | s' .`, with s' = s (copy), s reversed (stack-order copy, "stack") or s sorted ascending ("sort").
 *
 * Letters: B batch, T context (next-token positions per row), V letters in the vocabulary, L string length.
 *
 * Token ids for V letters ({@link copyVocab}): letters 0..V-1, then `$` BOS = V, `|` delimiter = V+1,
 * `.` EOS = V+2, `*` pad = V+3; V+4 ids in all.
 *
 * Every batch is next-token prediction over rows of T+1 tokens: `inputs[b*T + t] = row_b[t]`,
 * `targets[b*T + t] = row_b[t+1]`, and `mask[b*T + t]` says whether the loss (or the score) counts that target.
 * @module
 */

import { choiceWithoutReplacement, foldIn, type Key, randint, split } from "../lib/core/random.ts";

/** Which paste string follows the delimiter: s itself, s reversed, or s sorted ascending. */
export type CopyVariant = "copy" | "stack" | "sort";

const VARIANTS: readonly CopyVariant[] = ["copy", "stack", "sort"];

/** Token ids of the copy vocabulary for V letters. */
export interface CopyVocab {
  /** V: letters are ids 0..V-1. */
  letters: number;
  /** `$`, begins an example: V. */
  bos: number;
  /** `|`, ends the copy string: V+1. */
  delim: number;
  /** `.`, ends the paste string: V+2. */
  eos: number;
  /** `*`, padding: V+3. */
  pad: number;
  /** Vocabulary size the model needs: V+4. */
  size: number;
}

/**
 * The token ids of the copy vocabulary with `v` letters.
 * @throws {RangeError} unless v is a positive integer.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { copyVocab } from "./copy.ts";
 * assert.deepEqual(copyVocab(26), { letters: 26, bos: 26, delim: 27, eos: 28, pad: 29, size: 30 });
 * ```
 */
export function copyVocab(v: number): CopyVocab {
  checkInt("copy task", "vocab", v, 1);
  return { letters: v, bos: v, delim: v + 1, eos: v + 2, pad: v + 3, size: v + 4 };
}

/**
 * Renders token ids as text: letters as `a`..`z` when V ≤ 26 (as their decimal id otherwise), then `$ | . *`;
 * tokens are joined by single spaces. For logs and tests.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeCopyTokens } from "./copy.ts";
 * assert.equal(decodeCopyTokens([26, 0, 1, 27, 0, 1, 28, 29], 26), "$ a b | a b . *");
 * ```
 */
export function decodeCopyTokens(ids: ArrayLike<number>, vocab: number): string {
  const voc = copyVocab(vocab);
  const out: string[] = [];
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id >= 0 && id < vocab) out.push(vocab <= 26 ? String.fromCharCode(97 + id) : String(id));
    else if (id === voc.bos) out.push("$");
    else if (id === voc.delim) out.push("|");
    else if (id === voc.eos) out.push(".");
    else if (id === voc.pad) out.push("*");
    else out.push(`<${id}>`);
  }
  return out.join(" ");
}

/** Configuration of {@link makeCopyTrainBatch}. */
export interface CopyTrainConfig {
  variant: CopyVariant;
  /** B: rows. */
  batch: number;
  /** V: letters. Default 26 for copy and stack (Jelassi's a..z), 512 for sort (the paper). */
  vocab?: number;
  /** T: next-token positions per row (a row holds T+1 tokens). Default 220 (Jelassi). */
  context?: number;
  /** Shortest string length. Default 5. */
  minLen?: number;
  /** Longest string length (the paper's "training length"). Default 50. Needs 2·maxLen+3 ≤ T+1. */
  maxLen?: number;
}

/** A next-token batch; every array has shape (B, T), row-major. */
export interface CopyBatch {
  /** Input ids, shape (B, T). */
  inputs: Int32Array;
  /** Next-token ids, shape (B, T): targets[b*T+t] is the token after inputs[b*T+t]. */
  targets: Int32Array;
  /** 1 where the target counts, else 0; shape (B, T). */
  mask: Float32Array;
  /** B. */
  B: number;
  /** T. */
  T: number;
}

/** An eval batch: one example of length L per row, plus where its answer starts. */
export interface CopyEvalBatch extends CopyBatch {
  /** L, the string length of every row. */
  L: number;
  /**
   * Index t (within a row) of the first answer target: targets[b*T + answerStart + i] is answer character i,
   * for i in [0, L). Always L+1 (the input there is `|`).
   */
  answerStart: number;
}

function checkInt(where: string, name: string, x: number, min: number): void {
  if (!Number.isInteger(x) || x < min) {
    throw new RangeError(`${where}: ${name} must be an integer ≥ ${min}, got ${name}=${x}`);
  }
}

function checkVariant(where: string, variant: unknown): asserts variant is CopyVariant {
  if (!VARIANTS.includes(variant as CopyVariant)) {
    throw new RangeError(
      `${where}: variant must be one of ${VARIANTS.join(", ")}, got variant=${String(variant)}`,
    );
  }
}

function checkVocab(where: string, variant: CopyVariant, vocab: number, lenName: string, len: number): void {
  checkInt(where, "vocab", vocab, 1);
  if (vocab > 2 ** 31 - 5) throw new RangeError(`${where}: vocab must be ≤ 2^31-5, got vocab=${vocab}`);
  if (variant === "sort" && vocab < len) {
    throw new RangeError(
      `${where}: vocab must be ≥ the longest string for sort (letters are drawn without replacement), got vocab=${vocab} ${lenName}=${len}`,
    );
  }
}

/** Draws s into `row[at..at+L)` (all of it, even if a caller later ignores a cut part). */
function drawString(
  variant: CopyVariant,
  vocab: number,
  row: Int32Array,
  at: number,
  L: number,
  letters: Int32Array,
  lettersAt: number,
  sortKey: Key,
): void {
  if (variant === "sort") {
    const s = choiceWithoutReplacement(sortKey, vocab, L);
    row.set(s, at);
  } else {
    row.set(letters.subarray(lettersAt, lettersAt + L), at);
  }
}

/** Writes the paste string s' of `row[sAt..sAt+L)` to `row[pAt..pAt+L)`. */
function writePaste(variant: CopyVariant, row: Int32Array, sAt: number, pAt: number, L: number): void {
  if (variant === "copy") row.copyWithin(pAt, sAt, sAt + L);
  else if (variant === "stack") { for (let i = 0; i < L; i++) row[pAt + i] = row[sAt + L - 1 - i]; }
  else {
    row.copyWithin(pAt, sAt, sAt + L);
    row.subarray(pAt, pAt + L).sort();
  }
}

/**
 * A training batch of packed rows: examples `$ s | s' .` back to back, each with its own length
 * L ~ uniform integer on [minLen, maxLen], until the row's T+1 tokens are full. The last example usually does
 * not fit: it is cut at the end of the row and masked out entirely.
 *
 * s is i.i.d. uniform over the V letters for copy and stack; for sort it is drawn without replacement.
 *
 * Mask (shape (B, T)): 1 exactly where the target is an answer character of s' or the final `.` of a complete
 * example, so a row with complete examples of lengths L_1..L_m has Σ (L_i + 1) ones; 0 where the target is `$`,
 * a letter of s, `|`, or any token of the cut example.
 *
 * Random draws: a pure function of (key, config); fold a step number into the key for a fresh batch every step.
 * @throws {RangeError} naming the field, on an invalid config.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeCopyTokens, makeCopyTrainBatch } from "./copy.ts";
 * import { foldIn, key } from "../lib/core/random.ts";
 * const data = key(0);
 * const step = 0;
 * const cfg = { variant: "stack", batch: 2, vocab: 4, maxLen: 5 } as const;
 * const { inputs, targets, mask, B, T } = makeCopyTrainBatch(foldIn(data, step), cfg);
 * assert.deepEqual([B, T, mask.length], [2, 220, 440]);
 * assert.equal(targets[0], inputs[1]);
 * console.log(decodeCopyTokens(inputs.subarray(0, 16), 4)); // e.g. "$ c a d b a | a b d a c . $ b d c"
 * ```
 */
export function makeCopyTrainBatch(key: Key, cfg: CopyTrainConfig): CopyBatch {
  const where = "copy task";
  checkVariant(where, cfg.variant);
  const variant = cfg.variant;
  const B = cfg.batch;
  const T = cfg.context ?? 220;
  const minLen = cfg.minLen ?? 5;
  const maxLen = cfg.maxLen ?? 50;
  const vocab = cfg.vocab ?? (variant === "sort" ? 512 : 26);
  checkInt(where, "batch", B, 1);
  checkInt(where, "context", T, 1);
  checkInt(where, "minLen", minLen, 1);
  checkInt(where, "maxLen", maxLen, 1);
  if (maxLen < minLen) {
    throw new RangeError(`${where}: maxLen must be ≥ minLen, got maxLen=${maxLen} minLen=${minLen}`);
  }
  if (2 * maxLen + 3 > T + 1) {
    throw new RangeError(
      `${where}: maxLen too long for context: an example of length 2·maxLen+3 must fit in a row of context+1 tokens, got 2·${maxLen}+3=${
        2 * maxLen + 3
      } > context+1=${T + 1}`,
    );
  }
  checkVocab(where, variant, vocab, "maxLen", maxLen);
  const voc = copyVocab(vocab);

  const R = T + 1; // tokens per row
  const maxExamples = Math.ceil(R / (2 * minLen + 3));
  const [kLen, kLetters, kSort] = split(key, 3);
  const lengths = randint(kLen, B * maxExamples, minLen, maxLen + 1);
  // Each row uses at most R letters of s in all, so R letters per row are always enough.
  const letters = variant === "sort" ? new Int32Array(0) : randint(kLetters, B * R, 0, vocab);

  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const mask = new Float32Array(B * T);
  // A full example can run up to 2·maxLen+2 past the end of the row before it is cut.
  const row = new Int32Array(R + 2 * maxLen + 3);
  const rowMask = new Uint8Array(R + 2 * maxLen + 3);

  for (let b = 0; b < B; b++) {
    rowMask.fill(0);
    let pos = 0;
    let used = 0; // letters of this row consumed
    for (let e = 0; pos < R; e++) {
      const L = lengths[b * maxExamples + e];
      row[pos] = voc.bos;
      drawString(variant, vocab, row, pos + 1, L, letters, b * R + used, foldIn(kSort, b * maxExamples + e));
      used += L;
      row[pos + L + 1] = voc.delim;
      writePaste(variant, row, pos + 1, pos + L + 2, L);
      row[pos + 2 * L + 2] = voc.eos;
      const end = pos + 2 * L + 3;
      if (end <= R) rowMask.fill(1, pos + L + 2, end); // answer characters and the final `.`
      pos = end;
    }
    const o = b * T;
    inputs.set(row.subarray(0, T), o);
    targets.set(row.subarray(1, R), o);
    for (let t = 0; t < T; t++) mask[o + t] = rowMask[t + 1];
  }
  return { inputs, targets, mask, B, T };
}

/** Configuration of {@link makeCopyEvalBatch}. */
export interface CopyEvalConfig {
  variant: CopyVariant;
  /** B: rows, one example each. */
  batch: number;
  /** L: string length of every example. */
  length: number;
  /** V: letters. Default 26 for copy and stack, 512 for sort. */
  vocab?: number;
  /** T: next-token positions per row, ≥ 2L+2; rows are right-padded with `*` (mask 0). Default 2L+2. */
  context?: number;
}

/**
 * An evaluation batch: one example `$ s | s' .` of length L per row, right-padded with `*` to T positions.
 * Row positions: `$` at 0, s at 1..L, `|` at L+1, s' at L+2..2L+1, `.` at 2L+2; as next-token pairs the answer
 * targets sit at t in [answerStart, answerStart + L) with answerStart = L+1.
 *
 * Eval mask: 1 only on the L answer characters; 0 on the final `.` (not scored, following Jelassi's string
 * accuracy), on `$`, s, `|` and on padding. An evaluator runs one forward pass, takes the argmax at every
 * position (teacher-forced greedy), and scores a row as correct when all L masked positions match (string
 * accuracy), or averages over masked positions (character accuracy).
 * @throws {RangeError} naming the field, on an invalid config.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeCopyEvalBatch } from "./copy.ts";
 * import { key } from "../lib/core/random.ts";
 * const ev = makeCopyEvalBatch(key(1), { variant: "stack", batch: 4, length: 100 });
 * assert.deepEqual([ev.T, ev.answerStart], [202, 101]);
 * // Row 0's first answer target is the last letter of s (stack order); s sits at inputs 1..L.
 * assert.equal(ev.targets[ev.answerStart], ev.inputs[100]);
 * assert.equal(ev.mask.reduce((a, m) => a + m, 0), 4 * 100);
 * ```
 */
export function makeCopyEvalBatch(key: Key, cfg: CopyEvalConfig): CopyEvalBatch {
  const where = "copy eval";
  checkVariant(where, cfg.variant);
  const variant = cfg.variant;
  const B = cfg.batch;
  const L = cfg.length;
  checkInt(where, "batch", B, 1);
  checkInt(where, "length", L, 1);
  const T = cfg.context ?? 2 * L + 2;
  checkInt(where, "context", T, 1);
  if (T < 2 * L + 2) {
    throw new RangeError(
      `${where}: context must be ≥ 2·length+2 = ${2 * L + 2}, got context=${T} length=${L}`,
    );
  }
  const vocab = cfg.vocab ?? (variant === "sort" ? 512 : 26);
  checkVocab(where, variant, vocab, "length", L);
  const voc = copyVocab(vocab);

  const R = T + 1;
  const [kLetters, kSort] = split(key, 2);
  const letters = variant === "sort" ? new Int32Array(0) : randint(kLetters, B * L, 0, vocab);
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const mask = new Float32Array(B * T);
  const row = new Int32Array(R);
  const answerStart = L + 1;
  for (let b = 0; b < B; b++) {
    row.fill(voc.pad);
    row[0] = voc.bos;
    drawString(variant, vocab, row, 1, L, letters, b * L, foldIn(kSort, b));
    row[L + 1] = voc.delim;
    writePaste(variant, row, 1, L + 2, L);
    row[2 * L + 2] = voc.eos;
    const o = b * T;
    inputs.set(row.subarray(0, T), o);
    targets.set(row.subarray(1, R), o);
    mask.fill(1, o + answerStart, o + answerStart + L);
  }
  return { inputs, targets, mask, B, T, L, answerStart };
}
