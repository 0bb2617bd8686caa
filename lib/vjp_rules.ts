/**
 * The VJP rule of every primitive, in one table typed so that a primitive without a rule fails `deno check`.
 * @module
 */
import { addVjp, affineVjp, broadcastVjp, divVjp, mulVjp, subVjp, unaryVjp } from "./ops/elementwise.ts";
import { maxVjp, sumVjp } from "./ops/reduce.ts";
import type { Primitive, VjpRule } from "./tape.ts";

// deno-lint-ignore no-explicit-any
export const VJP_RULES: { readonly [P in Primitive]: VjpRule<any> } = {
  add: addVjp,
  sub: subVjp,
  mul: mulVjp,
  div: divVjp,
  affine: affineVjp,
  unary: unaryVjp,
  broadcast: broadcastVjp,
  sum: sumVjp,
  max: maxVjp,
};
