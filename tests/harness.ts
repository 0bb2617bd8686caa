/**
 * The op-test harness: every op is checked three ways from one table entry.
 * 1. GPU forward against the float64 reference on fresh random inputs.
 * 2. The reference VJP by the dot-product test: <t, vjp(c)> against <(f(x+εt) - f(x-εt)) / 2ε, c>, in float64.
 * 3. The GPU gradients (through the autodiff tape) against the reference VJP with the same random cotangent;
 *    the max error of every gradient is printed before it is asserted.
 * GPU tests run on whatever adapter exists and are skipped, with the reason, where there is none.
 */
import assert from "node:assert/strict";
import { initGpu } from "../lib/core/runtime.ts";
import { vjp } from "../lib/ops/autodiff.ts";
import { type Tensor, tensor, tidy } from "../lib/core/tensor.ts";
import { key, normal, split, uniform } from "../lib/core/random.ts";

let gpuReason: string | null | undefined;
/** Null when a GPU adapter is usable, else why not. */
export async function gpuUnavailableReason(): Promise<string | null> {
  if (gpuReason === undefined) {
    try {
      await initGpu();
      gpuReason = null;
    } catch (e) {
      gpuReason = (e as Error).message;
    }
  }
  return gpuReason;
}
const reason = await gpuUnavailableReason();
/** `ignore` for Deno.test: true (with a printed reason) when there is no GPU adapter. */
export const noGpu = reason !== null;
if (noGpu) console.warn(`GPU tests skipped: ${reason}`);

/** How to draw one input: its shape, and a sampler (uniform range, or positive, or integer ids). */
export interface InputSpec {
  shape: number[];
  /** Uniform range [lo, hi); default [-1, 1). */
  range?: [number, number];
  /** Integer ids in [0, int) (not differentiated). */
  int?: number;
  /** Not differentiated (e.g. a mask); drawn from `range`. */
  constant?: boolean;
}

/** One op under test. */
export interface OpCase {
  name: string;
  inputs: InputSpec[];
  /** The op on the GPU. */
  gpu: (xs: Tensor[]) => Tensor;
  /** The float64 reference forward. */
  ref: (xs: Float64Array[]) => Float64Array;
  /** The float64 reference VJP: one gradient per differentiable input (null for the others). */
  refVjp?: (xs: Float64Array[], ct: Float64Array) => (Float64Array | null)[];
  /** Max abs error allowed, relative to max(1, max |reference|); default 1e-4. */
  tol?: number;
  /** Tolerance for gradients; default `tol`. */
  gradTol?: number;
  /** Finite-difference step; default 1e-6. */
  eps?: number;
}

let counter = 0;
/** Fresh random inputs per call (a new key each time, recorded in failure messages). */
export function randomInputs(specs: InputSpec[], seed = 1000 + counter++): Float64Array[] {
  const keys = split(key(seed), specs.length + 1);
  return specs.map((s, i) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (s.int !== undefined) {
      const u = uniform(keys[i], n, 0, s.int);
      return Float64Array.from(u, Math.floor);
    }
    const [lo, hi] = s.range ?? [-1, 1];
    return uniform(keys[i], n, lo, hi);
  });
}

/** Max |a - b| / max(1, max |b|). */
export function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "length mismatch");
  let err = 0, scale = 1;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  if (a.length > 0 && !Number.isFinite(err)) return Infinity;
  return err / scale;
}

function toTensor(x: Float64Array, spec: InputSpec): Tensor {
  return spec.int !== undefined ? tensor(Int32Array.from(x), spec.shape, "i32") : tensor(x, spec.shape);
}

const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i], 0);

/** Check 1: GPU forward against the reference. */
export async function checkForward(c: OpCase): Promise<number> {
  const xs = randomInputs(c.inputs);
  const y = tidy(() => c.gpu(xs.map((x, i) => toTensor(x, c.inputs[i]))));
  const got = await y.toArray();
  y.dispose();
  const err = maxRelError(got, c.ref(xs));
  console.log(`${c.name} forward: max rel error ${err.toExponential(2)}`);
  assert.ok(err <= (c.tol ?? 1e-4), `${c.name} forward error ${err} > ${c.tol ?? 1e-4}`);
  return err;
}

/** Check 2: the reference VJP against central differences of the reference forward (float64). */
export function checkRefVjp(c: OpCase): void {
  if (!c.refVjp) return;
  const xs = randomInputs(c.inputs);
  const y = c.ref(xs);
  const ct = normal(key(counter++), y.length);
  const grads = c.refVjp(xs, ct);
  const diffIdx = c.inputs.map((s, i) => (s.int === undefined && !s.constant ? i : -1)).filter((i) => i >= 0);
  const tangents = xs.map((x, i) => (diffIdx.includes(i) ? normal(key(counter++), x.length) : null));
  let lhs = 0;
  for (const i of diffIdx) {
    assert.ok(grads[i], `${c.name}: reference VJP gave no gradient for input ${i}`);
    lhs += dot(tangents[i]!, grads[i]!);
  }
  const eps = c.eps ?? 1e-6;
  const shifted = (sign: number) =>
    c.ref(xs.map((x, i) => (tangents[i] ? x.map((v, j) => v + sign * eps * tangents[i]![j]) : x)));
  const fp = shifted(1), fm = shifted(-1);
  const fd = dot(fp.map((v, j) => (v - fm[j]) / (2 * eps)), ct);
  const rel = Math.abs(lhs - fd) / Math.max(1, Math.abs(fd));
  console.log(`${c.name} reference VJP vs central differences: rel error ${rel.toExponential(2)}`);
  assert.ok(rel < 1e-5, `${c.name}: <t, vjp(c)> = ${lhs} but finite differences give ${fd}`);
}

/** Check 3: GPU gradients (through the tape) against the reference VJP with the same random cotangent. */
export async function checkGradients(c: OpCase): Promise<void> {
  if (!c.refVjp) return;
  const xs = randomInputs(c.inputs);
  const yRef = c.ref(xs);
  const ct = normal(key(counter++), yRef.length);
  const grads = tidy(() => {
    const ts = xs.map((x, i) => toTensor(x, c.inputs[i]));
    const diff = ts.filter((_, i) => c.inputs[i].int === undefined && !c.inputs[i].constant);
    const { out, backward } = vjp((ds) => {
      let k = 0;
      return c.gpu(ts.map((t, i) => (c.inputs[i].int === undefined && !c.inputs[i].constant ? ds[k++] : t)));
    }, diff);
    return backward(tensor(ct, out.shape));
  });
  const got = await Promise.all(grads.map((g) => g.toArray()));
  grads.forEach((g) => g.dispose());
  const want = c.refVjp(xs, ct);
  const tol = c.gradTol ?? c.tol ?? 1e-4;
  let k = 0;
  for (let i = 0; i < c.inputs.length; i++) {
    if (c.inputs[i].int !== undefined || c.inputs[i].constant) continue;
    const err = maxRelError(got[k++], want[i]!);
    console.log(`${c.name} grad of input ${i}: max rel error ${err.toExponential(2)}`);
    assert.ok(err <= tol, `${c.name}: gradient of input ${i} error ${err} > ${tol}`);
  }
}

/** Registers the three tests of each case. */
export function opTests(cases: OpCase[]): void {
  for (const c of cases) {
    Deno.test({
      name: `${c.name}: forward matches float64 reference`,
      ignore: noGpu,
      fn: () => checkForward(c).then(() => {}),
    });
    if (c.refVjp) {
      Deno.test(`${c.name}: reference VJP passes the dot-product check`, () => checkRefVjp(c));
      Deno.test({
        name: `${c.name}: GPU gradients match reference VJP`,
        ignore: noGpu,
        fn: () => checkGradients(c),
      });
    }
  }
}
