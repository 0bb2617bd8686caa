/**
 * The vocabulary of memory schedules: what a mixer allocates in a training step, in the form its `memory` entry
 * (lib/nn/mixers.ts) returns and lib/train/memory.ts simulates. Glossary: K runs, B batch, T length, D width.
 * @module
 */
import { matmulScratchElements } from "../ops/matmul.ts";

/** Sizes a memory schedule is computed for: K runs, B batch rows, T length, D model width. */
export interface MemoryDims {
  K: number;
  B: number;
  T: number;
  D: number;
}

/**
 * One allocation of a memory schedule: its 4-byte elements, a name for reports, and whether some op binds it whole
 * (so that it must fit one storage binding; tensors every reader splits have `whole` false).
 */
export interface TensorSize {
  name: string;
  elements: number;
  whole: boolean;
}

/** One step of a backward schedule: the rule allocates `alloc` (its scratch included), then frees `free`. */
export interface BackwardStep {
  alloc: TensorSize[];
  free: TensorSize[];
}

/**
 * What one block's mixer allocates, for memory estimates (lib/train/memory.ts), derived from what its ops
 * allocate: the forward's outputs (with a tape each is kept until the backward step that frees it), and the
 * backward as steps in tape-reverse order, with releases as `valueAndGrad` does them. The cotangent of the
 * mixer's output aliases the block's and is not listed; the schedule ends with the cotangent of the mixer's input
 * x (K, B, T, D) allocated, named in `inputGrad`. Param gradients are counted with the state, not here.
 */
export interface MixerMemory {
  /** The mixer's parameter tensors (each with its leading K). */
  params: TensorSize[];
  /** The forward's allocations, in order. */
  forward: TensorSize[];
  /**
   * Scratch held only inside one op of the forward (as the chunked scan's): allocated with `after` (an entry of
   * `forward`, the op's output) and freed when the op ends.
   */
  forwardScratch?: { after: TensorSize; tensors: TensorSize[] };
  /** The backward's steps, in order. */
  backward: BackwardStep[];
  /** The allocation of `backward` that is the cotangent of the input, left allocated at the end. */
  inputGrad: TensorSize;
}

/** Shorthand for a schedule entry. */
export function sized(name: string, elements: number, whole = false): TensorSize {
  return { name, elements, whole };
}

/**
 * The backward step of a weight product y = x·W (x (K, BT, Din), W (K, Din, Dout)): it allocates dx and the
 * split-K scratch of both gradient products (freed in the step; dW itself is a parameter gradient), then frees y
 * and its cotangent `gy`.
 */
export function weightProductStep(
  name: string,
  K: number,
  BT: number,
  Din: number,
  Dout: number,
  y: TensorSize,
  gy: TensorSize,
): { step: BackwardStep; dx: TensorSize } {
  const dx = sized(`d ${name} input`, K * BT * Din);
  const scratch = [
    sized(`${name} dx split-K`, matmulScratchElements(K, BT, Din, Dout)),
    sized(`${name} dW split-K`, matmulScratchElements(K, Din, Dout, BT)),
  ].filter((t) => t.elements > 0);
  return { step: { alloc: [dx, ...scratch], free: [y, gy, ...scratch] }, dx };
}

/**
 * The schedule of `matmulParts(x, ws)` (lib/ops/matmul.ts) for x (K, BT, Din) and parts of `widths` columns:
 * `forward` is what it allocates in order (the concatenated weights, the joint product, then its parts, which
 * `parts` names for the caller's later steps). `backward(cotangents)` gives the steps of its backward in tape
 * order: the split's (the parts' cotangents concatenated, then freed with the parts), the product's (dx, the
 * concatenated weights' gradient and split-K scratch; the joint product freed), the concat's (that gradient split
 * into the parameters', which are counted with the state, and freed with the concatenated weights); and dx.
 */
export function matmulPartsSchedule(
  name: string,
  K: number,
  BT: number,
  Din: number,
  parts: readonly { name: string; width: number }[],
): {
  forward: TensorSize[];
  parts: TensorSize[];
  backward: (cotangents: readonly TensorSize[]) => { steps: BackwardStep[]; dx: TensorSize };
} {
  const Dout = parts.reduce((s, q) => s + q.width, 0);
  const weights = sized(`${name} weights, concatenated`, K * Din * Dout, true);
  const joint = sized(name, K * BT * Dout);
  const outs = parts.map((q) => sized(q.name, K * BT * q.width, true));
  return {
    forward: [weights, joint, ...outs],
    parts: outs,
    backward: (cotangents) => {
      const gJoint = sized(`d ${name}`, K * BT * Dout);
      const product = weightProductStep(name, K, BT, Din, Dout, joint, gJoint);
      const gWeights = sized(`d ${name} weights, concatenated`, K * Din * Dout);
      product.step.alloc.push(gWeights);
      return {
        steps: [
          { alloc: [gJoint], free: [...cotangents, ...outs] },
          product.step,
          { alloc: [], free: [gWeights, weights] },
        ],
        dx: product.dx,
      };
    },
  };
}

/**
 * Folds a new cotangent `g` of a tensor into its running sum `acc` (autodiff adds them, then frees both), or
 * starts the sum with it. Returns the new sum and the step (none for the first).
 */
export function accumulate(
  acc: TensorSize | null,
  g: TensorSize,
): { acc: TensorSize; steps: BackwardStep[] } {
  if (!acc) return { acc: g, steps: [] };
  const total = sized(g.name, g.elements, g.whole);
  return { acc: total, steps: [{ alloc: [total], free: [acc, g] }] };
}

/**
 * The forward's allocations in order, with its one-op scratch allocated after its `after` entry and freed at once:
 * for a timeline that adds each group and frees the scratch (`[tensors, scratch]` pairs).
 */
export function forwardSteps(m: Pick<MixerMemory, "forward" | "forwardScratch">): BackwardStep[] {
  const s = m.forwardScratch;
  const at = s ? m.forward.indexOf(s.after) + 1 : 0;
  if (!s || at === 0) return [{ alloc: m.forward, free: [] }];
  return [
    { alloc: m.forward.slice(0, at), free: [] },
    { alloc: s.tensors, free: s.tensors },
    { alloc: m.forward.slice(at), free: [] },
  ];
}
