/**
 * Reverse-mode autodiff of pure functions over trees of tensors: `vjp`, `grad`, `valueAndGrad`.
 *
 * The forward runs with a tape that records each primitive application; the backward walks the tape in reverse,
 * calling one VJP rule per primitive (`VJP_RULES`) and summing cotangents that meet at a tensor. Nothing is
 * retained after a call: the tape is dropped, and the caller's `tidy` frees the intermediates. `valueAndGrad`
 * frees them sooner: each forward activation and each cotangent is disposed during the backward as soon as no
 * remaining rule reads it (what stays is the result and the gradients), so a training step's memory is the
 * forward's activations plus one rule's working set (lib/train/memory.ts counts both).
 * @module
 */
import { add } from "./elementwise.ts";
import { Tape, type TapeNode, withTape } from "../core/tape.ts";
import { full, leaves, mapTree, Tensor, zeros } from "../core/tensor.ts";
import { VJP_RULES } from "./vjp_rules.ts";

/** What a differentiated function may return: a scalar loss, or the loss with auxiliary outputs (metrics). */
export type LossOutput = Tensor | { loss: Tensor; aux: unknown };

/**
 * Walks the tape in reverse. With `release` (the whole-step path, `valueAndGrad`), memory is freed as the walk
 * goes: after node i's rule ran, nothing earlier reads node i's outputs or saved tensors (an output is made by its
 * node, so only that node and later ones can read it), so they are disposed, except the tensors in `keepAlive`
 * (the function's result); and the cotangents of those outputs are disposed too. Peak memory is then the forward's
 * activations plus the largest rule's working set, instead of every forward and backward tensor of the step.
 * A cotangent object is owned by one tensor id at a time: where a rule hands back an object that is already
 * someone's cotangent (`add`'s VJP returns g for both inputs), it is stored as a new view of the same storage.
 */
function backward(
  tape: Tape,
  seeds: Map<number, Tensor>,
  release = false,
  keepAlive: ReadonlySet<Tensor> = new Set(),
): Map<number, Tensor> {
  const cts = seeds;
  const owned = new Set<Tensor>(cts.values());
  const free = (node: TapeNode<Record<string, unknown>>) => {
    for (const t of [...node.outputs, ...node.saved]) if (!keepAlive.has(t)) t.dispose();
  };
  for (let i = tape.nodes.length - 1; i >= 0; i--) {
    const node = tape.nodes[i] as TapeNode<Record<string, unknown>>;
    const outCts = node.outputs.map((o) => cts.get(o.id) ?? null);
    if (outCts.every((c) => c === null)) {
      if (release) free(node);
      continue;
    }
    const rule = VJP_RULES[node.prim] as (n: typeof node, c: typeof outCts) => readonly (Tensor | null)[];
    const grads = withTape(null, () => rule(node, outCts));
    const outSet = new Set(outCts.filter((c): c is Tensor => c !== null));
    const stored = new Set<Tensor>(); // cotangents stored by this node
    const consumed = new Set<Tensor>(); // gradients folded into a sum (freed once the node is done)
    node.inputs.forEach((input, j) => {
      let g = grads[j];
      if (!g || !tape.tracked.has(input.id)) return;
      if (g.size !== input.size) {
        throw new Error(`VJP of ${node.prim}: gradient ${g} does not match input ${input}`);
      }
      if (release && (stored.has(g) || (owned.has(g) && !outSet.has(g)))) g = g.reshape(g.shape);
      const prev = cts.get(input.id);
      if (prev) {
        const total = withTape(null, () => add(prev, g!));
        if (release) {
          owned.delete(prev);
          prev.dispose();
          consumed.add(g);
        }
        g = total;
      }
      stored.add(g);
      owned.add(g);
      cts.set(input.id, g);
    });
    if (!release) continue;
    // The outputs' cotangents, the gradients folded into sums and those of untracked inputs are dead now.
    for (const o of node.outputs) {
      const c = cts.get(o.id);
      if (c) {
        cts.delete(o.id);
        if (!stored.has(c)) owned.delete(c);
      }
    }
    const dead = new Set([...outSet, ...consumed, ...grads.filter((g): g is Tensor => g !== null)]);
    for (const t of dead) if (!stored.has(t) && !owned.has(t) && !keepAlive.has(t)) t.dispose();
    free(node);
  }
  return cts;
}

/**
 * Evaluates `f(primals)` and returns its output with a function mapping an output cotangent to input gradients.
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { mul } from "./elementwise.ts";
 * import { vjp } from "./autodiff.ts";
 * await initGpu();
 * const x = tensor([1, 2, 3]);
 * const { out, backward } = vjp((xs) => mul(xs[0], xs[0]), [x]);
 * const [dx] = backward(tensor([1, 1, 1]));
 * console.log(await out.toArray(), await dx.toArray()); // [1,4,9] [2,4,6]
 * ```
 */
export function vjp(
  f: (primals: Tensor[]) => Tensor,
  primals: Tensor[],
): { out: Tensor; backward: (cotangent: Tensor) => Tensor[] } {
  const tape = new Tape();
  for (const p of primals) tape.tracked.add(p.id);
  const out = withTape(tape, () => f(primals));
  return {
    out,
    backward: (ct: Tensor) => {
      if (ct.size !== out.size) throw new RangeError(`vjp: cotangent ${ct} does not match output ${out}`);
      const cts = backward(tape, new Map([[out.id, ct]]));
      return primals.map((p) => cts.get(p.id) ?? zeros(p.shape));
    },
  };
}

/**
 * Returns a function computing `f(params, ...args)` and the gradient of its scalar loss with respect to every
 * tensor in `params` (a tree of the same structure; zeros for tensors the loss does not depend on).
 * @example
 * ```ts
 * import { initGpu } from "../core/runtime.ts";
 * import { tensor } from "../core/tensor.ts";
 * import { mul } from "./elementwise.ts";
 * import { sum } from "./reduce.ts";
 * import { valueAndGrad } from "./autodiff.ts";
 * await initGpu();
 * const f = (p: { w: ReturnType<typeof tensor> }) => sum(mul(p.w, p.w), 0);
 * const { value, grads } = valueAndGrad(f)({ w: tensor([3, 4]) });
 * console.log(await value.item(), await grads.w.toArray()); // 25 [6, 8]
 * ```
 */
export function valueAndGrad<P, A extends unknown[]>(
  f: (params: P, ...args: A) => LossOutput,
): (params: P, ...args: A) => { value: Tensor; aux: unknown; grads: P } {
  return (params: P, ...args: A) => {
    const tape = new Tape();
    const ps = leaves(params);
    for (const p of ps) tape.tracked.add(p.id);
    const result = withTape(tape, () => f(params, ...args));
    const loss = result instanceof Tensor ? result : result.loss;
    const aux = result instanceof Tensor ? undefined : result.aux;
    if (loss.size !== 1) throw new RangeError(`valueAndGrad: the loss must be a scalar, got ${loss}`);
    const keepAlive = new Set([...leaves(result), ...ps]);
    const cts = backward(tape, new Map([[loss.id, full(loss.shape, 1)]]), true, keepAlive);
    const grads = mapTree(params, (p) => cts.get(p.id) ?? zeros(p.shape)) as P;
    return { value: loss, aux, grads };
  };
}

/** Like `valueAndGrad`, returning only the gradients. */
export function grad<P, A extends unknown[]>(
  f: (params: P, ...args: A) => LossOutput,
): (params: P, ...args: A) => P {
  const vg = valueAndGrad(f);
  return (params: P, ...args: A) => vg(params, ...args).grads;
}
