/**
 * The autodiff tape: ops record a node per primitive application while a tape is active and one of their inputs is
 * being differentiated. The VJP rules live in `lib/ops/vjp_rules.ts`; this module knows no op.
 * @module
 */
import type { Tensor } from "./tensor.ts";

/**
 * Every differentiable primitive. Adding a name here without adding its rule to `VJP_RULES` in `lib/ops/vjp_rules.ts`
 * fails `deno check`.
 */
export type Primitive =
  // views (lib/core/tensor.ts)
  | "reshape"
  // elementwise (lib/ops/elementwise.ts)
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "affine"
  | "unary"
  | "broadcast"
  // reductions (lib/ops/reduce.ts)
  | "sum"
  | "max"
  // Mamba 1 selective scan (lib/ops/selective_scan.ts)
  | "selectiveScan"
  // Mamba 2 scan (lib/ops/ssd_scan.ts)
  | "ssdScan"
  // normalisation (lib/ops/norm.ts)
  | "rmsNorm"
  | "gatedRmsNorm"
  | "layerNorm"
  // depthwise causal conv (lib/ops/conv1d.ts)
  | "conv1d"
  // matrix product (lib/ops/matmul.ts)
  | "matmul"
  // concatenation and its inverse (lib/ops/concat.ts)
  | "concat"
  | "splitAlong"
  // embedding, softmax, cross-entropy (lib/ops/embedding.ts, softmax.ts, cross_entropy.ts)
  | "embedding"
  | "softmax"
  | "crossEntropy";

/** One recorded application of a primitive. `saved` holds what the forward kept for the backward. */
export interface TapeNode<A = Record<string, unknown>> {
  prim: Primitive;
  inputs: readonly Tensor[];
  outputs: readonly Tensor[];
  attrs: A;
  saved: readonly Tensor[];
}

/**
 * A VJP rule: given the node and one cotangent per output (null where the output got none), returns one gradient
 * per input (null where the input is not differentiable, e.g. token ids).
 */
export type VjpRule<A = Record<string, unknown>> = (
  node: TapeNode<A>,
  cotangents: readonly (Tensor | null)[],
) => readonly (Tensor | null)[];

/** The tape: nodes in recording order, and the ids of tensors that depend on a differentiated input. */
export class Tape {
  readonly nodes: TapeNode<unknown>[] = [];
  readonly tracked = new Set<number>();
}

let active: Tape | null = null;

/** The active tape, if any. */
export function activeTape(): Tape | null {
  return active;
}

/** Runs `fn` with `tape` active (tapes do not nest: the backward runs with no tape). */
export function withTape<T>(tape: Tape | null, fn: () => T): T {
  const prev = active;
  active = tape;
  try {
    return fn();
  } finally {
    active = prev;
  }
}

/** Whether an op applied to `inputs` now would be recorded (so the op should save what its backward needs). */
export function isRecording(inputs: readonly Tensor[]): boolean {
  return active !== null && inputs.some((t) => active!.tracked.has(t.id));
}

/** Records a primitive application if any input is tracked; marks the outputs tracked. */
export function record<A>(
  prim: Primitive,
  inputs: readonly Tensor[],
  outputs: readonly Tensor[],
  attrs: A,
  saved: readonly Tensor[] = [],
): void {
  if (!isRecording(inputs)) return;
  // Copies of the arrays: an op may return its outputs array to the caller, who is free to reorder it.
  active!.nodes.push({ prim, inputs: [...inputs], outputs: [...outputs], attrs, saved: [...saved] });
  for (const o of outputs) active!.tracked.add(o.id);
}
