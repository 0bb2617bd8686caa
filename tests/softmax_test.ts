import assert from "node:assert/strict";
import { noGpu, type OpCase, opTests } from "./harness.ts";
import { softmax, softmaxRef, softmaxVjpRef } from "../lib/ops/softmax.ts";
import { tensor, tidy } from "../lib/core/tensor.ts";

function softmaxCase(shape: number[], range: [number, number] = [-3, 3], note = ""): OpCase {
  const V = shape.at(-1)!;
  return {
    name: `softmax [${shape}]${note}`,
    inputs: [{ shape, range }],
    gpu: ([x]) => softmax(x),
    ref: ([x]) => softmaxRef(x, V),
    refVjp: ([x], ct) => [softmaxVjpRef(x, ct, V)],
  };
}

opTests([
  softmaxCase([3, 7]),
  softmaxCase([2, 3, 300], [-3, 3], " (V > 256, not a multiple of 256)"),
  softmaxCase([4, 256]),
  softmaxCase([5, 1], [-3, 3], " (V = 1)"),
  softmaxCase([1, 1, 9]),
  softmaxCase([3, 40], [-80, 80], " (large logits)"),
]);

Deno.test({
  name: "softmax is stable for huge logits and rejects bad input",
  ignore: noGpu,
  fn: async () => {
    const y = tidy(() => softmax(tensor([1e30, 1e30, -1e30, 3e38, 0, -3e38], [2, 3])));
    const got = await y.toArray();
    y.dispose();
    assert.deepEqual([...got], [0.5, 0.5, 0, 1, 0, 0]);
    tidy(() => {
      assert.throws(() => softmax(tensor(new Int32Array(4), [2, 2], "i32")), RangeError);
      assert.throws(() => softmax(tensor(new Float32Array(0), [2, 0])), /V ≥ 1/);
    });
  },
});
