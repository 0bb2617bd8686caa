/**
 * Whole-layer gradient checks of both mixers: the GPU gradients of <ct, layer(x)> with respect to every parameter
 * and the input, through the autodiff tape and every kernel, against central differences of a float64 reference
 * of the whole layer composed from the ops' float64 references (dot-product test in a random direction per
 * tensor). Run for default and mimetic init (K = 2 runs, one of each). The references live in ./layer_refs.ts.
 */
import { noGpu } from "./harness.ts";
import { attentionRef, checkLayer, mamba1Ref, mamba2Ref } from "./layer_refs.ts";
import { DEFAULT_INIT, MIMETIC_MAMBA1, MIMETIC_MAMBA2 } from "../lib/nn/init.ts";
import {
  applyMamba1,
  initMamba1,
  MAMBA1_DEFAULTS,
  type Mamba1Config,
  type Mamba1Params,
} from "../lib/nn/mamba1.ts";
import {
  applyMamba2,
  initMamba2,
  MAMBA2_DEFAULTS,
  type Mamba2Config,
  type Mamba2Params,
} from "../lib/nn/mamba2.ts";
import {
  applyAttention,
  type AttentionConfig,
  type AttentionParams,
  initAttention,
} from "../lib/nn/attention.ts";
import { key } from "../lib/core/random.ts";

const runKeys = [key(1), key(2)];

for (
  const [nGroups, scanAlgorithm] of [[1, undefined], [2, undefined], [1, "chunked"], [2, "chunked"]] as const
) {
  Deno.test({
    name: `Mamba 2 layer, G = ${nGroups}${scanAlgorithm ? `, ${scanAlgorithm} scan` : ""}: every gradient ` +
      "matches central differences of the float64 layer (default + mimetic runs)",
    ignore: noGpu,
    async fn() {
      // G = 2: two groups of B and C, and the gated RMSNorm over each half of the channels
      const cfg: Mamba2Config = { ...MAMBA2_DEFAULTS, dState: 4, headDim: 4, nGroups, scanAlgorithm };
      const D = 8;
      const { params, consts } = initMamba2(runKeys, "m2", cfg, D, 2, [DEFAULT_INIT, MIMETIC_MAMBA2]);
      const aScale = [1, -MIMETIC_MAMBA2.c];
      await checkLayer<Mamba2Params>(
        `mamba2 G=${nGroups}${scanAlgorithm ? ` ${scanAlgorithm}` : ""}`,
        params,
        [2, 2, 7, D],
        (p, x) => applyMamba2(p, consts, x, cfg),
        (p, x) => mamba2Ref(p, aScale, x, [2, 2, 7, D], cfg),
        2e-3,
      );
    },
  });
}

Deno.test({
  name:
    "Mamba 1 layer: every gradient matches central differences of the float64 layer (default + mimetic runs)",
  ignore: noGpu,
  async fn() {
    const cfg: Mamba1Config = { ...MAMBA1_DEFAULTS, dState: 4 };
    const D = 8;
    const { params, consts } = initMamba1(runKeys, "m1", cfg, D, 2, [DEFAULT_INIT, MIMETIC_MAMBA1]);
    const aScale = [1, -MIMETIC_MAMBA1.c];
    await checkLayer<Mamba1Params>(
      "mamba1",
      params,
      [2, 2, 7, D],
      (p, x) => applyMamba1(p, consts, x, cfg),
      (p, x) => mamba1Ref(p, aScale, x, [2, 2, 7, D], cfg),
      2e-3,
    );
  },
});

for (const variant of ["softmax", "linear"] as const) {
  Deno.test({
    name:
      `${variant} attention layer (2 heads): every gradient matches central differences of the float64 layer`,
    ignore: noGpu,
    async fn() {
      const cfg: AttentionConfig = { kind: "attention", variant, heads: 2, headDim: 4 };
      const D = 8;
      const params = initAttention(runKeys, "attn", cfg, D, 2);
      await checkLayer<AttentionParams>(
        `${variant} attention`,
        params,
        [2, 2, 7, D],
        (p, x) => applyAttention(p, x, cfg),
        (p, x) => attentionRef(p, x, [2, 2, 7, D], cfg),
        2e-3,
      );
    },
  });
}
