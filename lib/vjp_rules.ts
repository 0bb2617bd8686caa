/**
 * The VJP rule of every primitive, in one table typed so that a primitive without a rule fails `deno check`.
 * @module
 */
import { addVjp, affineVjp, broadcastVjp, divVjp, mulVjp, subVjp, unaryVjp } from "./ops/elementwise.ts";
import { maxVjp, sumVjp } from "./ops/reduce.ts";
import { selectiveScanVjp } from "./ops/selective_scan.ts";
import { ssdScanVjp } from "./ops/ssd_scan.ts";
import { layerNormVjp, rmsNormVjp } from "./ops/norm.ts";
import { causalConv1dVjp } from "./ops/conv1d.ts";
import { embeddingVjp } from "./ops/embedding.ts";
import { softmaxVjp } from "./ops/softmax.ts";
import { crossEntropyVjp } from "./ops/cross_entropy.ts";
import { matmulVjp } from "./ops/matmul.ts";
import type { Primitive, VjpRule } from "./tape.ts";

// deno-lint-ignore no-explicit-any
export const VJP_RULES: { readonly [P in Primitive]: VjpRule<any> } = {
  reshape: ({ inputs: [x] }, [g]) => [g!.reshape(x.shape)],
  add: addVjp,
  sub: subVjp,
  mul: mulVjp,
  div: divVjp,
  affine: affineVjp,
  unary: unaryVjp,
  broadcast: broadcastVjp,
  sum: sumVjp,
  max: maxVjp,
  selectiveScan: selectiveScanVjp,
  ssdScan: ssdScanVjp,
  rmsNorm: rmsNormVjp,
  layerNorm: layerNormVjp,
  conv1d: causalConv1dVjp,
  matmul: matmulVjp,
  embedding: embeddingVjp,
  softmax: softmaxVjp,
  crossEntropy: crossEntropyVjp,
};
