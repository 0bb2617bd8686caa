/**
 * The VJP rule of every primitive, in one table typed so that a primitive without a rule fails `deno check`.
 * @module
 */
import { addVjp, affineVjp, broadcastVjp, divVjp, mulVjp, subVjp, unaryVjp } from "./elementwise.ts";
import { maxVjp, sumVjp } from "./reduce.ts";
import { selectiveScanVjp } from "./selective_scan.ts";
import { ssdScanVjp } from "./ssd_scan.ts";
import { layerNormVjp, rmsNormVjp } from "./norm.ts";
import { gatedRmsNormVjp } from "./gated_norm.ts";
import { causalConv1dVjp } from "./conv1d.ts";
import { embeddingVjp } from "./embedding.ts";
import { softmaxVjp } from "./softmax.ts";
import { crossEntropyVjp } from "./cross_entropy.ts";
import { matmulVjp } from "./matmul.ts";
import { concatVjp, splitAlongVjp } from "./concat.ts";
import type { Primitive, VjpRule } from "../core/tape.ts";

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
  gatedRmsNorm: gatedRmsNormVjp,
  layerNorm: layerNormVjp,
  conv1d: causalConv1dVjp,
  matmul: matmulVjp,
  concat: concatVjp,
  splitAlong: splitAlongVjp,
  embedding: embeddingVjp,
  softmax: softmaxVjp,
  crossEntropy: crossEntropyVjp,
};
