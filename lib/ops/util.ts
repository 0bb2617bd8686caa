/** Helpers shared by the ops. @module */
import type { Tensor } from "../core/tensor.ts";

/** A 1-D grid of `ceil(n / groupSize)` workgroups folded into (x, y) so that x stays within 65535. */
export function grid1d(n: number, groupSize = 256): [number, number] {
  const groups = Math.ceil(n / groupSize);
  if (groups <= 65535) return [Math.max(groups, 1), 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y];
}

/** Throws a RangeError unless `x` is f32. */
export function expectF32(op: string, x: Tensor): void {
  if (x.dtype !== "f32") throw new RangeError(`${op}: expected an f32 tensor, got ${x}`);
}

/** Normalises a possibly negative axis against a rank. */
export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) {
    throw new RangeError(`${op}: axis ${axis} is out of range for rank ${rank}`);
  }
  return a;
}

/** Equality of shapes. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Expands the repeat blocks of a kernel source: the lines between `//@repeat N` and `//@end` (N a number, or a
 * name looked up in `counts`) are written N times, with `mark` (`$i` unless given) replaced by 0, 1, …, N − 1
 * (so `$iu` becomes the u32 literal `0u`, `1u`, …). Per-thread arrays indexed
 * by these constants stay in registers on every driver; indexed by a loop counter they may live in slow local
 * memory where the compiler does not unroll the loop.
 * @throws {Error} on a count name missing from `counts`.
 * @example
 * ```ts
 * import { repeatBlocks } from "./util.ts";
 * console.log(repeatBlocks("//@repeat NV\ns += v[$i];\n//@end\n", { NV: 2 })); // "s += v[0];\ns += v[1];\n"
 * ```
 */
export function repeatBlocks(src: string, counts: Record<string, number> = {}, mark = "$i"): string {
  return src.replace(
    /^[ \t]*\/\/@repeat (\w+)\n([\s\S]*?)^[ \t]*\/\/@end\n/gm,
    (_, what: string, body: string) => {
      const n = /^\d+$/.test(what) ? Number(what) : counts[what];
      if (n === undefined) throw new Error(`repeatBlocks: no count for //@repeat ${what}`);
      let out = "";
      for (let i = 0; i < n; i++) out += body.replaceAll(mark, String(i));
      return out;
    },
  );
}
