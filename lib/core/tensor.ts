/**
 * Tensors: contiguous f32 or i32 arrays on the GPU with a shape, and their lifetimes.
 *
 * Lifetimes are explicit: `tidy(fn)` disposes every tensor created inside `fn` except those it returns (and those
 * passed to `keep`). `dispose` frees one at once. Reshaping shares storage, counted by reference.
 * @module
 */
import { record } from "./tape.ts";
import {
  acquireBuffer,
  copyBuffer,
  flush,
  gpu,
  labelBuffer,
  readBuffer,
  releaseBuffer,
  writeBuffer,
} from "./runtime.ts";

/** Element types: f32 for values, i32 for token ids. */
export type DType = "f32" | "i32";

/** A shape: dimension sizes, outermost first. */
export type Shape = readonly number[];

class Storage {
  refs = 1;
  constructor(readonly buffer: GPUBuffer, readonly bytes: number) {}
  release() {
    if (--this.refs === 0) releaseBuffer(this.buffer);
  }
}

let nextId = 1;
const scopes: Set<Tensor>[] = [];

/**
 * A contiguous GPU array. Create with `tensor`, `zeros`, `full`, or as the output of an op.
 * @example
 * ```ts
 * import { initGpu } from "./runtime.ts";
 * import { tensor } from "./tensor.ts";
 * await initGpu();
 * const x = tensor([1, 2, 3, 4], [2, 2]);
 * console.log(x.shape, await x.toArray());
 * x.dispose();
 * ```
 */
export class Tensor {
  /** Unique id (for the autodiff tape). */
  readonly id = nextId++;
  readonly size: number;
  #storage: Storage | null;

  /** @internal use the creation functions instead. */
  constructor(storage: Storage, readonly shape: Shape, readonly dtype: DType) {
    this.#storage = storage;
    this.size = sizeOf(shape);
    scopes.at(-1)?.add(this);
  }

  /** The number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /** The GPU buffer (may be larger than `size` elements). Throws if disposed. */
  get buffer(): GPUBuffer {
    if (!this.#storage) throw new Error(`tensor ${this.id} [${this.shape}] used after dispose`);
    return this.#storage.buffer;
  }

  /** Whether `dispose` has been called. */
  get disposed(): boolean {
    return this.#storage === null;
  }

  /** Frees the tensor (its storage returns to the pool when no other view holds it). Idempotent. */
  dispose(): void {
    if (this.#storage) {
      this.#storage.release();
      this.#storage = null;
      for (const s of scopes) s.delete(this);
    }
  }

  /** A new tensor of another shape with the same elements, sharing storage. */
  reshape(shape: Shape): Tensor {
    const resolved = resolveShape(shape, this.size);
    const storage = this.#storage;
    if (!storage) throw new Error(`tensor ${this.id} used after dispose`);
    storage.refs++;
    const out = new Tensor(storage, resolved, this.dtype);
    // A view is a new tensor to the tape: recording it keeps gradients flowing through reshapes.
    record("reshape", [this], [out], {});
    return out;
  }

  /** Reads the elements back (flushes pending work; ~12 ms on a GPU). */
  async toArray(): Promise<Float32Array | Int32Array> {
    const data = await readBuffer(this.buffer, this.size * 4);
    return this.dtype === "f32" ? new Float32Array(data) : new Int32Array(data);
  }

  /** Reads one element back as a number. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item() needs a tensor of one element, got shape [${this.shape}]`);
    return (await this.toArray())[0];
  }

  toString(): string {
    return `Tensor(${this.dtype}[${this.shape.join(", ")}])`;
  }
}

/** Number of elements of a shape. */
export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function resolveShape(shape: Shape, size: number): number[] {
  const out = [...shape];
  const free = out.indexOf(-1);
  if (free >= 0) {
    const rest = sizeOf(out.filter((_, i) => i !== free));
    out[free] = rest === 0 ? 0 : size / rest;
  }
  if (out.some((d) => !Number.isInteger(d) || d < 0) || sizeOf(out) !== size) {
    throw new RangeError(`cannot reshape ${size} elements to [${shape.join(", ")}]`);
  }
  return out;
}

function checkShape(shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`invalid shape [${shape.join(", ")}]`);
  }
}

/**
 * An uninitialised tensor (every kernel writes all of its outputs, so ops start from this). Its contents must be
 * written by GPU commands (dispatches, copies), not by `writeBuffer`: it may reuse a buffer that unsubmitted
 * commands still read (see lib/core/runtime.ts).
 */
export function empty(shape: Shape, dtype: DType = "f32"): Tensor {
  return allocate(shape, dtype, false);
}

function allocate(shape: Shape, dtype: DType, upload: boolean): Tensor {
  checkShape(shape);
  const bytes = Math.max(sizeOf(shape), 1) * 4;
  const buffer = acquireBuffer(bytes, upload);
  labelBuffer(buffer, `a tensor ${dtype}[${shape.join(", ")}]`, bytes);
  return new Tensor(new Storage(buffer, bytes), [...shape], dtype);
}

/**
 * A tensor with the given elements (row-major).
 * @example
 * ```ts
 * import { initGpu } from "./runtime.ts";
 * import { tensor } from "./tensor.ts";
 * await initGpu();
 * const ids = tensor(new Int32Array([3, 1, 4]), [3], "i32");
 * console.log(ids.dtype);
 * ```
 */
export function tensor(
  data: ArrayLike<number> | Float32Array | Int32Array | Float64Array,
  shape?: Shape,
  dtype?: DType,
): Tensor {
  const dt: DType = dtype ?? (data instanceof Int32Array ? "i32" : "f32");
  const s = shape ?? [data.length];
  if (sizeOf(s) !== data.length) {
    throw new RangeError(`tensor: ${data.length} elements do not fill shape [${s.join(", ")}]`);
  }
  const t = allocate(s, dt, true);
  const typed = dt === "f32"
    ? (data instanceof Float32Array ? data : Float32Array.from(data))
    : (data instanceof Int32Array ? data : Int32Array.from(data));
  if (typed.length > 0) writeBuffer(t.buffer, typed);
  return t;
}

/** A tensor filled with `value`. */
export function full(shape: Shape, value: number, dtype: DType = "f32"): Tensor {
  const n = sizeOf(shape);
  const data = dtype === "f32" ? new Float32Array(n).fill(value) : new Int32Array(n).fill(value);
  return tensor(data, shape, dtype);
}

/** A tensor of zeros. */
export function zeros(shape: Shape, dtype: DType = "f32"): Tensor {
  return full(shape, 0, dtype);
}

/** A copy of a tensor in new storage. */
export function clone(x: Tensor): Tensor {
  const out = empty(x.shape, x.dtype);
  if (x.size > 0) copyBuffer(x.buffer, out.buffer, x.size * 4);
  return out;
}

/** Overwrites `dst`'s elements with `src`'s (same size), recorded in order with other GPU work. */
export function assign(dst: Tensor, src: Tensor): void {
  if (dst.size !== src.size || dst.dtype !== src.dtype) {
    throw new RangeError(`assign: ${dst} and ${src} differ in size or dtype`);
  }
  if (dst.size > 0) copyBuffer(src.buffer, dst.buffer, dst.size * 4);
}

/**
 * Reads several tensors back in one round trip.
 * @returns their elements, in order.
 */
export async function readTensors(ts: readonly Tensor[]): Promise<(Float32Array | Int32Array)[]> {
  const total = ts.reduce((s, t) => s + t.size, 0);
  if (total === 0) return ts.map((t) => (t.dtype === "f32" ? new Float32Array(0) : new Int32Array(0)));
  const staging = gpu().createBuffer({
    size: total * 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  let offset = 0;
  for (const t of ts) {
    if (t.size > 0) copyBuffer(t.buffer, staging, t.size * 4, 0, offset);
    offset += t.size * 4;
  }
  flush();
  await staging.mapAsync(GPUMapMode.READ);
  const range = staging.getMappedRange();
  offset = 0;
  const out = ts.map((t) => {
    const bytes = range.slice(offset, offset + t.size * 4);
    offset += t.size * 4;
    return t.dtype === "f32" ? new Float32Array(bytes) : new Int32Array(bytes);
  });
  staging.unmap();
  staging.destroy();
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Trees of tensors and scopes

/** A tree of tensors: nested plain objects and arrays with tensors at the leaves (params, grads, optimiser state). */
export type Tree = Tensor | readonly Tree[] | { readonly [key: string]: Tree };

/** The tensors of a tree in a fixed order (object keys sorted). */
export function leaves(tree: unknown): Tensor[] {
  const out: Tensor[] = [];
  const walk = (t: unknown) => {
    if (t instanceof Tensor) out.push(t);
    else if (Array.isArray(t)) t.forEach(walk);
    else if (t && typeof t === "object") {
      for (const k of Object.keys(t).sort()) walk((t as Record<string, unknown>)[k]);
    }
  };
  walk(tree);
  return out;
}

/** A tree of the same structure with each tensor leaf replaced by `fn(leaf, path)`. */
export function mapTree<T>(tree: unknown, fn: (leaf: Tensor, path: string) => T, path = ""): unknown {
  if (tree instanceof Tensor) return fn(tree, path);
  if (Array.isArray(tree)) return tree.map((t, i) => mapTree(t, fn, `${path}[${i}]`));
  if (tree && typeof tree === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(tree).sort()) {
      out[k] = mapTree((tree as Record<string, unknown>)[k], fn, path ? `${path}.${k}` : k);
    }
    return out;
  }
  return tree;
}

/** A host-side tensor: one run's f32 elements (no run axis) and their shape; e.g. a parameter read from a file. */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** Whether a value is a {@link HostTensor}. */
export function isHostTensor(x: unknown): x is HostTensor {
  const t = x as HostTensor;
  return typeof x === "object" && x !== null && t.data instanceof Float32Array && Array.isArray(t.shape);
}

/** The host tensors of a tree by path, the paths {@link mapTree} gives (`layers[0].mixer.conv.weight`). */
export function hostLeaves(tree: unknown): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  const walk = (t: unknown, path: string) => {
    if (isHostTensor(t)) out.set(path, t);
    else if (Array.isArray(t)) t.forEach((x, i) => walk(x, `${path}[${i}]`));
    else if (t && typeof t === "object") {
      for (const k of Object.keys(t).sort()) {
        walk((t as Record<string, unknown>)[k], path ? `${path}.${k}` : k);
      }
    }
  };
  walk(tree, "");
  return out;
}

/**
 * One (K, ...shape) f32 tensor from K per-run sources, in run order: host data (one run's elements), or run `run`
 * of a tensor that has the run axis first (copied on the GPU, in order with the work recorded so far).
 * @throws {RangeError} when a source's size is not that of one run of `shape`.
 * @example
 * ```ts
 * import { initGpu } from "./runtime.ts";
 * import { stackRuns, tensor } from "./tensor.ts";
 * await initGpu();
 * const drawn = tensor([1, 2, 3, 4], [2, 2]); // two runs of shape [2]
 * const t = stackRuns([2], [new Float32Array([9, 9]), { tensor: drawn, run: 1 }]);
 * console.log(await t.toArray()); // [9, 9, 3, 4]
 * ```
 */
export function stackRuns(
  shape: Shape,
  sources: readonly (Float32Array | { tensor: Tensor; run: number })[],
): Tensor {
  const n = sizeOf(shape);
  const out = empty([sources.length, ...shape]);
  sources.forEach((s, k) => {
    if (s instanceof Float32Array) {
      if (s.length !== n) {
        throw new RangeError(
          `stackRuns: run ${k} has ${s.length} elements, expected ${n} ([${shape.join(", ")}])`,
        );
      }
      if (n > 0) writeBuffer(out.buffer, s, k * n * 4);
    } else {
      const runs = s.tensor.shape[0];
      if (s.tensor.dtype !== "f32" || s.tensor.size !== runs * n || !(s.run >= 0 && s.run < runs)) {
        throw new RangeError(
          `stackRuns: run ${k}: ${s.tensor} has no run ${s.run} of shape [${shape.join(", ")}]`,
        );
      }
      if (n > 0) copyBuffer(s.tensor.buffer, out.buffer, n * 4, s.run * n * 4, k * n * 4);
    }
  });
  return out;
}

/** Disposes every tensor in a tree. */
export function disposeTree(tree: unknown): void {
  for (const t of leaves(tree)) t.dispose();
}

/**
 * Runs `fn` and disposes every tensor created inside it, except the tensors in its result and those `keep`-ed.
 * `fn` must be synchronous (a training step is: nothing in it waits for the GPU).
 * @example
 * ```ts
 * import { initGpu } from "./runtime.ts";
 * import { tensor, tidy } from "./tensor.ts";
 * await initGpu();
 * const y = tidy(() => tensor([1, 2]).reshape([2, 1]));
 * console.log(y.shape);
 * ```
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    // Nothing made inside a failed scope can be returned: free it all.
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) throw new Error("tidy: fn must be synchronous");
  const kept = new Set(leaves(result));
  const parent = scopes.at(-1);
  for (const t of scope) {
    if (kept.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/** Exempts tensors from the enclosing `tidy` scopes (they must then be disposed by hand). */
export function keep<T>(tree: T): T {
  for (const t of leaves(tree)) for (const s of scopes) s.delete(t);
  return tree;
}
