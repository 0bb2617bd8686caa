/**
 * Tests of the Mamba 1 selective scan (lib/ops/selective_scan.ts): GPU forward against the float64 reference,
 * the reference VJP against central differences, GPU gradients of u, Δ, A, B, C, D, z against the reference VJP.
 * Inputs in their valid ranges: Δ in [0.01, 1], A in [-2, -0.1]. The harness prints the error of each gradient
 * by input index: 0 u, 1 Δ, 2 A, 3 B, 4 C, 5 D, 6 z.
 */
import assert from "node:assert/strict";
import { noGpu, type OpCase, opTests, randomInputs } from "./harness.ts";
import { readTensors, tensor, tidy } from "../lib/core/tensor.ts";
import {
  selectiveScan,
  selectiveScanBackward,
  type SelectiveScanDims,
  type SelectiveScanOptions,
  selectiveScanRef,
  type SelectiveScanRefInputs,
  selectiveScanVjpRef,
} from "../lib/ops/selective_scan.ts";

function scanCase(
  name: string,
  d: SelectiveScanDims,
  withZ: boolean,
  options: SelectiveScanOptions = {},
): OpCase {
  const { K, Bt, T, E, N } = d;
  const act = [K, Bt, T, E];
  const arrays = (xs: Float64Array[]): SelectiveScanRefInputs => {
    const [u, delta, A, B, C, D, z] = xs;
    return { u, delta, A, B, C, D, z };
  };
  return {
    name: `selectiveScan ${name} (K ${K}, Bt ${Bt}, T ${T}, E ${E}, N ${N}${withZ ? ", z" : ""})`,
    inputs: [
      { shape: act },
      { shape: act, range: [0.01, 1] },
      { shape: [K, E, N], range: [-2, -0.1] },
      { shape: [K, Bt, T, N] },
      { shape: [K, Bt, T, N] },
      { shape: [K, E] },
      ...(withZ ? [{ shape: act, range: [-3, 3] as [number, number] }] : []),
    ],
    gpu: ([u, delta, A, B, C, D, z]) => selectiveScan({ u, delta, A, B, C, D, z }, options),
    ref: (xs) => selectiveScanRef(arrays(xs), d),
    refVjp: (xs, ct) => {
      const g = selectiveScanVjpRef(arrays(xs), d, ct);
      return [g.du, g.ddelta, g.dA, g.dB, g.dC, g.dD, ...(g.dz ? [g.dz] : [])];
    },
    tol: 1e-4,
    gradTol: 2e-4,
  };
}

opTests([
  // T = 1; odd E (one channel per thread); N < 4 (padded states)
  scanCase("T=1", { K: 1, Bt: 2, T: 1, E: 5, N: 3 }, true, { chunk: 16 }),
  // T not a multiple of the chunk (16) nor of the tile; K = 2; several chunks; vec4 channels
  scanCase("T=37 chunk 16", { K: 2, Bt: 2, T: 37, E: 8, N: 16 }, true, { chunk: 16 }),
  // without z; E even (vec2 channels); N not a multiple of 4
  scanCase("T=37 no z", { K: 2, Bt: 1, T: 37, E: 6, N: 5 }, false, { chunk: 16 }),
  // several state slices (N = 20 with 4 states per thread: 5 slices), a chunk of 7 steps, several channel groups
  scanCase("slices", { K: 1, Bt: 2, T: 19, E: 36, N: 20 }, true, { chunk: 7, statesPerThread: 4 }),
  // tiles of 4 steps (the GPU default; CPU runs default to 2), T not a multiple of them, chunks of 6
  scanCase("tile 4", { K: 1, Bt: 2, T: 23, E: 8, N: 16 }, true, { chunk: 6, tile: 4 }),
  // one long sequence: 16 chunks of the default length 128
  scanCase("T=2048", { K: 1, Bt: 1, T: 2048, E: 4, N: 4 }, true),
]);

Deno.test({
  name: "selectiveScan: forward and gradients are bit-identical run to run (no atomics, fixed-order sums)",
  ignore: noGpu,
  fn: async () => {
    const [K, Bt, T, E, N] = [2, 2, 37, 8, 16];
    const act = [K, Bt, T, E], bn = [K, Bt, T, N];
    const xs = randomInputs([
      { shape: act },
      { shape: act, range: [0.01, 1] },
      { shape: [K, E, N], range: [-2, -0.1] },
      { shape: bn },
      { shape: bn },
      { shape: [K, E] },
      { shape: act },
      { shape: act },
    ]);
    const run = async () => {
      const outs = tidy(() => {
        const [u, delta, A, B, C, D, z, dout] = xs.map((x, i) =>
          tensor(x, [act, act, [K, E, N], bn, bn, [K, E], act, act][i])
        );
        const g = selectiveScanBackward({ u, delta, A, B, C, D, z }, dout, { chunk: 16 });
        return [selectiveScan({ u, delta, A, B, C, D, z }), g.du, g.ddelta, g.dA, g.dB, g.dC, g.dD, g.dz!];
      });
      const got = await readTensors(outs);
      outs.forEach((t) => t.dispose());
      return got;
    };
    const [a, b] = [await run(), await run()];
    a.forEach((x, i) => assert.deepEqual(x, b[i], `output ${i} differs between runs`));
  },
});
