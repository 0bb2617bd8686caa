/**
 * Tests of the fused gated RMSNorm (lib/ops/gated_norm.ts): GPU forward against the float64 reference, the
 * reference VJP against central differences, GPU gradients of y, z and the weight against the reference VJP, and
 * agreement with the unfused composition rmsNorm(y ⊙ silu(z)) that the Mamba 2 mixer used before.
 */
import assert from "node:assert/strict";
import { maxRelError, noGpu, type OpCase, opTests, randomInputs } from "./harness.ts";
import { gatedRmsNorm, gatedRmsNormRef, gatedRmsNormVjpRef } from "../lib/ops/gated_norm.ts";
import { rmsNorm } from "../lib/ops/norm.ts";
import { mul, silu } from "../lib/ops/elementwise.ts";
import { full, readTensors, tensor, tidy } from "../lib/core/tensor.ts";
import { vjp } from "../lib/ops/autodiff.ts";

function gatedCase(shape: number[], groups = 1, eps = 1e-5): OpCase {
  const K = shape[0], E = shape[shape.length - 1];
  return {
    name: `gatedRmsNorm [${shape}] G ${groups} eps ${eps}`,
    inputs: [{ shape, range: [-2, 3] }, { shape, range: [-3, 3] }, { shape: [K, E], range: [-1.5, 1.5] }],
    gpu: ([y, z, w]) => gatedRmsNorm(y, z, w, { groups, eps }),
    ref: ([y, z, w]) => gatedRmsNormRef(y, z, w, shape, groups, eps),
    refVjp: ([y, z, w], g) => gatedRmsNormVjpRef(y, z, w, shape, g, groups, eps),
  };
}

// Widths: 1, odd below a workgroup, above 256 threads (strided loops); groups 1, 2, 3; K = 2 with per-run
// weights; R = 12 rows per run gives several chunks in the dweight stage.
opTests([
  gatedCase([1, 1, 1]),
  gatedCase([2, 3, 33]),
  gatedCase([2, 3, 4, 12], 3),
  gatedCase([2, 600], 2),
  gatedCase([2, 12, 10], 2),
  gatedCase([2, 3, 6], 1, 0.5),
]);

// The row kernels' layouts (lib/ops/norm.ts `rowLayout`, over E/G channels): vec4 elements when E/G % 4 == 0,
// TPR threads a group row and 256 / TPR group rows a workgroup, the group row in registers up to 2048 elements
// and walked in chunks beyond; group rows not a multiple of those per workgroup.
opTests([
  gatedCase([2, 7, 5, 48], 2), // vec4, 6 elements over 2 threads, 128 group rows a workgroup: 140 over 2
  gatedCase([2, 3, 20], 4), // scalar, 5 channels a group, G 4
  gatedCase([2, 9, 512]), // vec4, 32 threads of 4 (fig7 quick's gated norm)
  gatedCase([1, 3, 2048], 2), // vec4, 256 elements a group: 64 threads of 4
  gatedCase([1, 2, 4102], 2), // scalar, 2051 channels a group: chunks of 2048
  gatedCase([2, 1, 8200]), // vec4, 2050 elements: chunks of 2048
]);

Deno.test({
  name: "gatedRmsNorm backward is bit-identical run to run",
  ignore: noGpu,
  async fn() {
    const shape = [2, 5, 3, 40];
    const [y, z, w, g] = randomInputs([{ shape }, { shape, range: [-3, 3] }, { shape: [2, 40] }, { shape }]);
    const run = () =>
      tidy(() => {
        const { out, backward } = vjp(([ys, zs, ws]) => gatedRmsNorm(ys, zs, ws, { groups: 2 }), [
          tensor(y, shape),
          tensor(z, shape),
          tensor(w, [2, 40]),
        ]);
        return [out, ...backward(tensor(g, shape))];
      });
    const [a, c] = [run(), run()];
    const [ra, rc] = [await readTensors(a), await readTensors(c)];
    [...a, ...c].forEach((t) => t.dispose());
    ra.forEach((v, i) => assert.deepEqual(rc[i], v, `output ${i} differs between runs`));
  },
});

Deno.test({
  name: "gatedRmsNorm matches rmsNorm(y ⊙ silu(z)) per group (the unfused Mamba 2 gate)",
  ignore: noGpu,
  async fn() {
    const [K, R, E, G] = [2, 5, 24, 2];
    const [y, z, w] = randomInputs([{ shape: [K, R, E] }, { shape: [K, R, E], range: [-3, 3] }, {
      shape: [K, E],
    }]);
    const outs = tidy(() => {
      const [ty, tz, tw] = [tensor(y, [K, R, E]), tensor(z, [K, R, E]), tensor(w, [K, E])];
      const fused = gatedRmsNorm(ty, tz, tw, { groups: G });
      const unfused = mul(
        rmsNorm(mul(ty, silu(tz)).reshape([K, R * G, E / G]), full([K, E / G], 1)).reshape([K, R, E]),
        tw.reshape([K, 1, E]),
      );
      return [fused, unfused];
    });
    const [a, b] = await readTensors(outs);
    outs.forEach((t) => t.dispose());
    const err = maxRelError(a, b);
    assert.ok(err < 1e-5, `fused and unfused differ by ${err}`);
  },
});
