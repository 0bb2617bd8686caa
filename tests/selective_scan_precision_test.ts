/**
 * Precision of the Mamba 1 scan's dA (and dΔ) where the decay is fast. With the S4D-real init A_n = -(n + 1) at
 * N = 32, the last state columns have A ≈ -32: over one step of Δ ≈ 0.1 their state decays to e^-3.2 ≈ 4% of
 * itself. The chunked backward (lib/ops/selective_scan.ts) once formed dA as the difference of two large running
 * sums (Σ cΔ·g·C·h from the forward sweep, Σ cΔ·x·dh from the reverse one), each about 1/a times the answer, and
 * lost 1e-2 of it in those columns (some elements with the wrong sign) against a float64 autograd of an LM. The
 * test checks dA column by column against the float64 reference, on inputs in an LM's ranges, at the default
 * chunk length 64 (at chunk length 1 the same inputs give 5e-7 in the fast columns: the rest is what summing
 * cΔ-weighted terms over a chunk costs in f32).
 */
import assert from "node:assert/strict";
import { noGpu, randomInputs } from "./harness.ts";
import { readTensors, tensor, tidy } from "../lib/core/tensor.ts";
import {
  selectiveScanBackward,
  type SelectiveScanDims,
  selectiveScanVjpRef,
} from "../lib/ops/selective_scan.ts";

/** Max |got - ref| / max |ref| over the elements chosen by `pick` (relative to the largest, not per element). */
function relError(got: ArrayLike<number>, ref: ArrayLike<number>, pick: (i: number) => boolean): number {
  let err = 0, scale = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!pick(i)) continue;
    err = Math.max(err, Math.abs(got[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return err / scale;
}

Deno.test({
  name: "selectiveScan backward: dA and dΔ keep their precision in fast-decaying states (A ≈ -32, chunk 64)",
  ignore: noGpu,
  async fn() {
    const d: SelectiveScanDims = { K: 1, Bt: 2, T: 192, E: 8, N: 32 };
    const { K, Bt, T, E, N } = d;
    const act = [K, Bt, T, E], bn = [K, Bt, T, N];
    const [u, delta, B, C, Dv, z, dout] = randomInputs([
      { shape: act },
      { shape: act, range: [0.01, 0.4] }, // softplus of Mamba 1's dt init: Δ in [0.001, 0.1], and growth
      { shape: bn },
      { shape: bn },
      { shape: [K, E] },
      { shape: act, range: [-3, 3] },
      { shape: act },
    ], 4242);
    // S4D-real: A_n = -(n + 1), so columns n >= 28 decay at rates 29..32.
    const A = Float64Array.from({ length: K * E * N }, (_, i) => -((i % N) + 1));
    const ref = selectiveScanVjpRef({ u, delta, A, B, C, D: Dv, z }, d, dout);
    const shapes = [act, act, [K, E, N], bn, bn, [K, E], act, act];
    const [dA, ddelta] = await (async () => {
      const outs = tidy(() => {
        const [tu, td, tA, tB, tC, tD, tz, tg] = [u, delta, A, B, C, Dv, z, dout].map((x, i) =>
          tensor(x, shapes[i])
        );
        const g = selectiveScanBackward({ u: tu, delta: td, A: tA, B: tB, C: tC, D: tD, z: tz }, tg, {
          chunk: 64,
        });
        return [g.dA, g.ddelta];
      });
      const got = await readTensors(outs);
      outs.forEach((t) => t.dispose());
      return got;
    })();
    const whole = relError(dA, ref.dA, () => true);
    const fast = relError(dA, ref.dA, (i) => i % N >= 28);
    // Per column (e, n) with A ≈ -32: the error relative to that column's own value.
    let worstColumn = 0;
    for (let i = 0; i < dA.length; i++) {
      if (i % N >= 28) worstColumn = Math.max(worstColumn, Math.abs(dA[i] - ref.dA[i]) / Math.abs(ref.dA[i]));
    }
    const dDelta = relError(ddelta, ref.ddelta, () => true);
    console.log(
      `dA: ${whole.toExponential(2)} over the tensor, ${fast.toExponential(2)} over the A ≈ -32 columns, ` +
        `${worstColumn.toExponential(2)} worst such element on its own; dΔ: ${dDelta.toExponential(2)}`,
    );
    // Measured on llvmpipe with the sums of h_t·dh_t halves (before): 1.4e-5, 8.8e-4, 1.9e-2, 1.3e-6; with
    // a_t·h_{t-1} and a_{t+1}·dh_{t+1} and compensated dA sums (now): 2.3e-6, 3.4e-5, 3.7e-4, 4.5e-7.
    assert.ok(whole < 6e-6, `dA error ${whole} over the whole tensor`);
    assert.ok(fast < 1.5e-4, `dA error ${fast} over the fast columns`);
    assert.ok(worstColumn < 3e-3, `dA error ${worstColumn} in one fast column`);
    assert.ok(dDelta < 1e-6, `dΔ error ${dDelta}`);
  },
});
