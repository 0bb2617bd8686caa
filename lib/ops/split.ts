/**
 * Splitting a dispatch whose bindings would exceed one storage binding: ops whose work is independent along an
 * outer axis (elements, rows, batch entries) dispatch once per chunk of that axis, binding each tensor's slice of
 * the chunk (lib/core/runtime.ts `BufferSlice`). Every output element is computed by the same kernel code from
 * the same inputs in the same order as unsplit, so the results are the same bit for bit; and where everything
 * fits there is one chunk and the tensors are bound whole, exactly as before.
 *
 * WebGPU has two limits here: `maxStorageBufferBindingSize` (128 MiB on llvmpipe, 2 GiB on an H200 through
 * Vulkan) bounds each binding; `minStorageBufferOffsetAlignment` (256 B by default) constrains where a slice may
 * start, so chunk starts are rounded to a whole number of aligned rows.
 * @module
 */
import { type Binding, formatBytes, gpu } from "../core/runtime.ts";
import type { Tensor } from "../core/tensor.ts";

/** The binding size limit and the offset alignment of the device, in bytes. */
export interface BindingLimits {
  maxBytes: number;
  align: number;
}

let limits: BindingLimits | null = null;

/** The device's binding limits (`initGpu()` must have been awaited; read once: the device is one per process). */
export function bindingLimits(): BindingLimits {
  if (!limits) {
    const l = gpu().limits;
    limits = { maxBytes: l.maxStorageBufferBindingSize, align: l.minStorageBufferOffsetAlignment };
  }
  return limits;
}

/**
 * Runs `fn` with the binding limits replaced by `l`, then restores them: for tests, to split small tensors over
 * several dispatches. Ops record their dispatches synchronously, so `fn` must record everything that should see
 * `l`. Keep `l.align` the device's (or a multiple of it): slices are bound at those offsets.
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { bindingLimits, withBindingLimits } from "./split.ts";
 * await initGpu();
 * const { align } = bindingLimits();
 * console.log(withBindingLimits({ maxBytes: 4096, align }, () => bindingLimits().maxBytes)); // 4096
 * ```
 */
export function withBindingLimits<R>(l: BindingLimits, fn: () => R): R {
  const saved = bindingLimits();
  limits = l;
  try {
    return fn();
  } finally {
    limits = saved;
  }
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
const lcm = (a: number, b: number) => (a / gcd(a, b)) * b;

/** A chunk of an axis: its first index and its length. */
export type Chunk = readonly [start: number, count: number];

/**
 * Splits `rows` rows into consecutive chunks for bindings that hold `rowElements[i]` 4-byte elements per row
 * (row-major, starting at row 0), so that every binding's slice of a chunk fits one binding and starts at an
 * aligned offset. One chunk `[0, rows]` when every binding fits whole.
 * @param op names the op in the error.
 * @param what describes the rows in the error (e.g. "rows of 1024").
 * @throws {RangeError} when even the fewest aligned rows exceed the limit.
 * @example
 * ```ts
 * import { rowChunks } from "./split.ts";
 * // 1000 rows of 64 floats, at most 64 KiB per binding, 256-byte alignment: chunks of 256 rows
 * console.log(rowChunks("demo", 1000, [64], "rows", { maxBytes: 65536, align: 256 }));
 * ```
 */
export function rowChunks(
  op: string,
  rows: number,
  rowElements: readonly number[],
  what = "rows",
  bounds: BindingLimits = bindingLimits(),
): Chunk[] {
  const widest = Math.max(1, ...rowElements);
  if (rows * widest * 4 <= bounds.maxBytes) return [[0, rows]];
  // chunk starts r with r·e·4 a multiple of the alignment for every binding
  let step = 1;
  for (const e of rowElements) if (e > 0) step = lcm(step, bounds.align / gcd(e * 4, bounds.align));
  const per = Math.floor(bounds.maxBytes / (widest * 4) / step) * step;
  if (per < 1) {
    throw new RangeError(
      `${op}: ${step} ${what} (the fewest whose slices start at aligned offsets) take ` +
        `${formatBytes(step * widest * 4)}, more than this adapter's maxStorageBufferBindingSize of ` +
        `${formatBytes(bounds.maxBytes)}`,
    );
  }
  const out: Chunk[] = [];
  for (let r = 0; r < rows; r += per) out.push([r, Math.min(per, rows - r)]);
  return out;
}

/** Elements [start, start + count) of a tensor's buffer as a binding; the whole buffer when that covers it all. */
export function slice(t: Tensor, start: number, count: number): Binding {
  if (start === 0 && count >= t.size) return t.buffer;
  return { buffer: t.buffer, offset: start * 4, size: Math.max(count, 1) * 4 };
}
