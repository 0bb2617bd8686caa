/**
 * Pretrained checkpoints in the Hugging Face layout (lib/core/safetensors.ts, lib/nn/pretrained.ts):
 * 1. safetensors: encode/parse round trip, F16/BF16/F64 → f32 conversion on known bit patterns, and every way a
 *    file can break the format gives one line naming the file (and tensor).
 * 2. Loading against a float64 reference of transformers' computation written from the checkpoint's own tensors
 *    (tests/hf_reference.ts): random Mamba 1 and Mamba 2 (G = 2) checkpoints, in F32, BF16 and F64.
 * 3. The Mamba 2 gated-norm switch: "all" (transformers) and "group" (mamba_ssm) each match their float64 reference
 *    and differ from each other when G > 1.
 * 4. savePretrained → loadPretrained: bit-identical parameters (A scale 1), bit-identical logits for a mimetic run
 *    (its A scale folded into A_log).
 * 5. The real library's format: checkpoints made by transformers' save_pretrained with their float64 logits
 *    (tests/fixtures/hf/, made by tests/fixtures/hf/make_fixtures.py); skipped, with the reason, where absent.
 * 6. Bad folders: one line, naming the file or tensor and what was expected; a script through runMain exits 2.
 * 7. Task symbols mapped onto a tokenizer's single-character tokens.
 */
import assert from "node:assert/strict";
import { noGpu } from "./harness.ts";
import {
  encodeSafetensors,
  f16ToNumber,
  parseSafetensors,
  type SafetensorsEntry,
  SafetensorsError,
} from "../lib/core/safetensors.ts";
import {
  loadPretrained,
  parsePythonJson,
  PretrainedError,
  savePretrained,
  tokenIdsForSymbols,
} from "../lib/nn/pretrained.ts";
import { applyLM, initLM, type LMConfig, type LMParams } from "../lib/nn/lm.ts";
import { DEFAULT_INIT, MIMETIC_MAMBA1, MIMETIC_MAMBA2 } from "../lib/nn/init.ts";
import { MAMBA1_DEFAULTS } from "../lib/nn/mamba1.ts";
import { applyMamba2, initMamba2, MAMBA2_DEFAULTS, type Mamba2Config } from "../lib/nn/mamba2.ts";
import { disposeTree, mapTree, readTensors, type Tensor, tensor } from "../lib/core/tensor.ts";
import { key, normal, randint } from "../lib/core/random.ts";
import {
  hfLogitsRef,
  perturbed,
  randomHfCheckpoint,
  type RandomHfDims,
  writeHfFolder,
} from "./hf_reference.ts";

type Json = Record<string, unknown>;
const FIXTURES = new URL("./fixtures/hf/", import.meta.url).pathname;

// ---------------------------------------------------------------------------------------------------------------
// Helpers

/** Max |a − b| relative to max(1, max |b|). */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let err = 0, scale = 1;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return err / scale;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function readTree(tree: unknown): Promise<Map<string, Float32Array>> {
  const entries: [string, Tensor][] = [];
  mapTree(tree, (t, path) => entries.push([path, t]));
  const data = await readTensors(entries.map(([, t]) => t));
  return new Map(entries.map(([path], i) => [path, data[i] as Float32Array]));
}

/** Our logits (B·T·V) of run 0 of a model for ids (B, T), tiled over the model's K runs. */
async function ourLogits(
  m: { cfg: LMConfig; params: LMParams; consts: unknown },
  ids: Int32Array,
  B: number,
  T: number,
  run = 0,
): Promise<Float32Array> {
  const K = m.params.embedding.shape[0];
  const tiled = new Int32Array(K * B * T);
  for (let k = 0; k < K; k++) tiled.set(ids, k * B * T);
  const idsT = tensor(tiled, [K, B, T], "i32");
  const logits = applyLM(m.params, m.consts as never, idsT, m.cfg);
  const all = (await logits.toArray()) as Float32Array;
  idsT.dispose();
  logits.dispose();
  const n = B * T * m.cfg.vocab;
  return all.slice(run * n, (run + 1) * n);
}

const tensorsOf = (t: Record<string, SafetensorsEntry>) => (name: string) => {
  const e = t[name];
  if (!e) throw new Error(`no tensor ${name}`);
  return e.data as Float32Array;
};

/** Asserts `fn` throws a RangeError whose message is one line and contains every `parts`. */
async function assertOneLine(fn: () => Promise<unknown> | unknown, parts: string[]): Promise<Error> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof RangeError, `expected a RangeError, got ${caught}`);
  const msg = (caught as Error).message;
  console.log(`  ${msg}`);
  assert.ok(!msg.includes("\n"), `message is not one line: ${msg}`);
  for (const p of parts) assert.ok(msg.includes(p), `message lacks "${p}": ${msg}`);
  return caught as Error;
}

const M1_DIMS: RandomHfDims = { V: 13, D: 16, L: 2, N: 4, W: 4 };
const M2_DIMS: RandomHfDims = { V: 13, D: 16, L: 2, N: 4, W: 4, P: 8, G: 2 };

// ---------------------------------------------------------------------------------------------------------------
// 1. safetensors

Deno.test("safetensors: encode → parse keeps names, shapes, dtypes, metadata and elements", () => {
  const w = new Float32Array([1.5, -2, 3.25, 0, 1e-30, -7]);
  const bytes = encodeSafetensors(
    {
      "a.weight": { dtype: "F32", shape: [2, 3], data: w },
      "b": { dtype: "F64", shape: [2], data: new Float64Array([Math.PI, -1 / 3]) },
      "empty": { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
    },
    { format: "pt" },
  );
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(headerLen % 8, 0, "the header is padded to a multiple of 8");
  const st = parseSafetensors(bytes, "x.safetensors");
  assert.deepEqual(st.metadata, { format: "pt" });
  assert.deepEqual([...st.tensors.keys()], ["a.weight", "b", "empty"]);
  assert.deepEqual(st.tensors.get("a.weight"), { dtype: "F32", shape: [2, 3], dataOffsets: [0, 24] });
  assert.deepEqual(Array.from(st.f32("a.weight")), Array.from(w));
  assert.deepEqual(Array.from(st.f32("b")), [Math.fround(Math.PI), Math.fround(-1 / 3)]);
  assert.equal(st.f32("empty").length, 0);
});

Deno.test("safetensors: F16 and BF16 bit patterns convert exactly; F64 rounds to nearest f32", () => {
  const f16: [number, number][] = [
    [0x3c00, 1],
    [0xc000, -2],
    [0x7bff, 65504],
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x3555, 0.333251953125],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
    [0x8000, -0],
  ];
  for (const [bits, v] of f16) assert.ok(Object.is(f16ToNumber(bits), v), `f16 0x${bits.toString(16)}`);
  assert.ok(Number.isNaN(f16ToNumber(0x7e00)));
  const bytes = encodeSafetensors({
    h: { dtype: "F16", shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0x3555]) },
    bf: { dtype: "BF16", shape: [3], data: new Uint16Array([0x3f80, 0x4049, 0xbf00]) },
  });
  const st = parseSafetensors(bytes);
  assert.deepEqual(Array.from(st.f32("h")), [1, -2, 0.333251953125]);
  assert.deepEqual(Array.from(st.f32("bf")), [1, 3.140625, -0.5]);
});

/** A valid file and its parts, for breaking. */
function sampleFile() {
  const tensors = {
    a: { dtype: "F32", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
    b: { dtype: "F32", shape: [3], data: new Float32Array([5, 6, 7]) },
  };
  return encodeSafetensors(tensors);
}

/** Rewrites a file's header (JSON object) and keeps its data bytes. */
function withHeader(bytes: Uint8Array, edit: (h: Json) => void): Uint8Array {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  edit(header);
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + (bytes.length - 8 - n));
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(bytes.subarray(8 + n), 8 + json.length);
  return out;
}

Deno.test("safetensors: malformed files give one line naming the file and the tensor", async () => {
  const good = sampleFile();
  const parse = (b: Uint8Array) => () => parseSafetensors(b, "m.safetensors");
  await assertOneLine(parse(good.subarray(0, 5)), ["m.safetensors", "too short"]);
  await assertOneLine(parse(good.subarray(0, 20)), ["m.safetensors", "truncated", "header"]);
  await assertOneLine(parse(good.subarray(0, good.length - 4)), [
    "truncated",
    "tensor b",
    "runs past the end",
  ]);
  await assertOneLine(parse(new Uint8Array([...good, 0, 0, 0, 0])), ["4 bytes after the last tensor"]);
  const badJson = good.slice();
  badJson[9] = 0x7b; // "{{..."
  await assertOneLine(parse(badJson), ["not valid UTF-8 JSON"]);
  await assertOneLine(
    parse(withHeader(good, (h) => ((h.a as Json).data_offsets = [0, 20]))),
    ["tensor a", "data_offsets [0, 20]", "span 20 bytes", "F32 [2, 2] needs 16"],
  );
  await assertOneLine(
    parse(withHeader(good, (h) => ((h.b as Json).data_offsets = [20, 32]))),
    ["tensor b", "hole"],
  );
  await assertOneLine(
    parse(withHeader(good, (h) => ((h.b as Json).data_offsets = [12, 24]))),
    ["tensor b", "overlapping"],
  );
  await assertOneLine(parse(withHeader(good, (h) => ((h.a as Json).dtype = "Q4"))), [
    "tensor a",
    "unknown dtype",
  ]);
  await assertOneLine(parse(withHeader(good, (h) => ((h.a as Json).shape = [2, -2]))), ["tensor a", "shape"]);
  await assertOneLine(parse(withHeader(good, (h) => (h.__metadata__ = { n: 3 }))), ["__metadata__.n"]);
  const ints = parseSafetensors(
    encodeSafetensors({ i: { dtype: "I32", shape: [1], data: new Int32Array([3]) } }),
    "i.safetensors",
  );
  await assertOneLine(() => ints.f32("i"), ["i.safetensors", "tensor i", "dtype I32", "F32, F64, F16, BF16"]);
  assert.throws(
    () => encodeSafetensors({ x: { dtype: "F32", shape: [3], data: new Float32Array(2) } }),
    SafetensorsError,
  );
});

Deno.test("parsePythonJson: bare Infinity/-Infinity/NaN as Python writes them; strings untouched", () => {
  const v = parsePythonJson(
    '{"limit": [0.0, Infinity], "low": -Infinity, "x": NaN, "s": "Infinity NaN"}',
  ) as Json;
  assert.deepEqual(v, { limit: [0, Infinity], low: -Infinity, x: null, s: "Infinity NaN" });
});

Deno.test('parsePythonJson: transformers 5\'s {"__float__": "Infinity"} objects become numbers', () => {
  const v = parsePythonJson(
    '{"time_step_limit": [0.0, {"__float__": "Infinity"}], "m": {"__float__": "-Infinity"}, "o": {"__float__": 1}}',
  ) as Json;
  assert.deepEqual(v, { time_step_limit: [0, Infinity], m: -Infinity, o: { __float__: 1 } });
});

// ---------------------------------------------------------------------------------------------------------------
// 2–3. Loading against the float64 reference of transformers' computation

function randomIds(seed: number, B: number, T: number, V: number): Int32Array {
  return randint(key(seed), B * T, 0, V);
}

for (const modelType of ["mamba", "mamba2"] as const) {
  for (const dtype of ["F32", "BF16", "F64"] as const) {
    Deno.test({
      name:
        `loadPretrained ${modelType} (${dtype}): logits match a float64 reference of transformers' forward`,
      ignore: noGpu,
      async fn() {
        const dims = modelType === "mamba" ? M1_DIMS : M2_DIMS;
        const { config, tensors } = randomHfCheckpoint(key(modelType === "mamba" ? 11 : 12), modelType, dims);
        // Store in `dtype`; the reference runs on the values as stored (BF16 truncated, F64 exact).
        const stored: Record<string, SafetensorsEntry> = {};
        const values: Record<string, SafetensorsEntry> = {};
        for (const [name, t] of Object.entries(tensors)) {
          const f = t.data as Float32Array;
          if (dtype === "BF16") {
            const bits = new Uint32Array(f.buffer.slice(0));
            const half = Uint16Array.from(bits, (b) => b >>> 16);
            stored[name] = { ...t, dtype: "BF16", data: half };
            values[name] = { ...t, data: new Float32Array(Uint32Array.from(half, (h) => h << 16).buffer) };
          } else if (dtype === "F64") {
            const d = Float64Array.from(f, (v, i) => v + 1e-9 * Math.sin(i)); // not f32-representable
            stored[name] = { ...t, dtype: "F64", data: d };
            values[name] = { ...t, data: Float32Array.from(d) };
          } else {
            stored[name] = t;
            values[name] = t;
          }
        }
        const dir = Deno.makeTempDirSync();
        writeHfFolder(dir, config, stored);
        const B = 2, T = 7;
        const ids = randomIds(3, B, T, dims.V);
        const m = await loadPretrained(dir, { runs: 2 });
        assert.equal(m.modelType, modelType);
        assert.equal(m.cfg.vocab, dims.V);
        if (modelType === "mamba2") assert.equal((m.cfg.layers[0] as Mamba2Config).gatedNorm, "all");
        const ref = hfLogitsRef(config, tensorsOf(values), ids, B, T);
        for (const run of [0, 1]) {
          const ours = await ourLogits(m, ids, B, T, run);
          const err = relErr(ours, ref);
          console.log(
            `${modelType} ${dtype} run ${run}: max error ${err.toExponential(2)} (relative to max |logit|)`,
          );
          assert.ok(err < 1e-5, `${modelType} ${dtype}: logits off by ${err}`);
        }
        disposeTree(m.params);
        disposeTree(m.consts);
      },
    });
  }
}

Deno.test({
  name: "Mamba 2 gatedNorm: 'all' and 'group' each match their float64 reference and differ when G = 2",
  ignore: noGpu,
  async fn() {
    const { config, tensors } = randomHfCheckpoint(key(21), "mamba2", M2_DIMS);
    const dir = Deno.makeTempDirSync();
    writeHfFolder(dir, config, tensors);
    const B = 2, T = 6;
    const ids = randomIds(4, B, T, M2_DIMS.V);
    const out: Record<string, Float32Array> = {};
    for (const mode of ["all", "group"] as const) {
      const m = await loadPretrained(dir, { gatedNorm: mode });
      out[mode] = await ourLogits(m, ids, B, T);
      const ref = hfLogitsRef(config, tensorsOf(tensors), ids, B, T, mode);
      const err = relErr(out[mode], ref);
      console.log(`gatedNorm ${mode}: max error against its reference ${err.toExponential(2)}`);
      assert.ok(err < 1e-5);
      disposeTree(m.params);
      disposeTree(m.consts);
    }
    const gap = relErr(out.all, out.group);
    console.log(`'all' vs 'group': ${gap.toExponential(2)}`);
    assert.ok(gap > 1e-2, `the two groupings should differ at G = 2, got ${gap}`);
  },
});

Deno.test({
  name: "Mamba 2 mixer: gatedNorm is the same function for both modes when G = 1, and defaults to 'group'",
  ignore: noGpu,
  async fn() {
    const D = 16;
    const xs = tensor(normal(key(5), 2 * 2 * 5 * D), [2, 2, 5, D]);
    for (const G of [1, 2]) {
      const base: Mamba2Config = { ...MAMBA2_DEFAULTS, dState: 4, headDim: 8, nGroups: G };
      const { params, consts } = initMamba2([key(1), key(2)], "m", base, D, 2);
      const read = async (cfg: Mamba2Config) =>
        (await applyMamba2(params, consts, xs, cfg).toArray()) as Float32Array;
      const unset = await read(base), group = await read({ ...base, gatedNorm: "group" });
      const all = await read({ ...base, gatedNorm: "all" });
      assert.deepEqual(unset, group, "unset is 'group'");
      const d = maxAbsDiff(all, group);
      console.log(`G = ${G}: max |all − group| = ${d.toExponential(2)}`);
      if (G === 1) assert.deepEqual(all, group);
      else assert.ok(d > 1e-3);
      disposeTree(params);
      disposeTree(consts);
    }
    assert.throws(
      () =>
        applyMamba2({} as never, {} as never, xs, {
          ...MAMBA2_DEFAULTS,
          dState: 4,
          headDim: 8,
          gatedNorm: "both" as never,
        }),
      /gatedNorm must be "group" or "all"/,
    );
  },
});

// ---------------------------------------------------------------------------------------------------------------
// 4. savePretrained → loadPretrained

const SAVE_CASES: { name: string; cfg: LMConfig; mimetic: typeof MIMETIC_MAMBA1 }[] = [
  {
    name: "Mamba 1",
    cfg: {
      vocab: 11,
      dModel: 16,
      normEps: 1e-5,
      layers: [0, 1].map(() => ({ ...MAMBA1_DEFAULTS, dState: 4 })),
    },
    mimetic: MIMETIC_MAMBA1,
  },
  {
    name: "Mamba 2, G = 1",
    cfg: {
      vocab: 11,
      dModel: 16,
      normEps: 1e-5,
      layers: [0, 1].map(() => ({ ...MAMBA2_DEFAULTS, dState: 4, headDim: 8 })),
    },
    mimetic: MIMETIC_MAMBA2,
  },
  {
    name: "Mamba 2, G = 2, gatedNorm 'all'",
    cfg: {
      vocab: 11,
      dModel: 16,
      normEps: 1e-5,
      layers: [0, 1].map(() => ({
        ...MAMBA2_DEFAULTS,
        dState: 4,
        headDim: 8,
        nGroups: 2,
        gatedNorm: "all" as const,
      })),
    },
    mimetic: MIMETIC_MAMBA2,
  },
];

for (const c of SAVE_CASES) {
  Deno.test({
    name:
      `savePretrained → loadPretrained, ${c.name}: default run bit-identical, mimetic run same logits bits`,
    ignore: noGpu,
    async fn() {
      // Run 0 default init, run 1 mimetic (A scale −8, folded into A_log on save).
      const init = initLM([key(7), key(8)], c.cfg, (run) => (run === 1 ? c.mimetic : DEFAULT_INIT));
      const model = { params: await perturbed(init.params, 1), consts: init.consts };
      disposeTree(init.params);
      const original = await readTree(model.params);
      const B = 2, T = 6;
      const ids = randomIds(9, B, T, c.cfg.vocab);
      for (const run of [0, 1]) {
        const dir = Deno.makeTempDirSync();
        await savePretrained(dir, c.cfg, model.params, model.consts, run);
        const config = parsePythonJson(Deno.readTextFileSync(`${dir}/config.json`)) as Json;
        const loaded = await loadPretrained(dir);
        assert.deepEqual(
          loaded.cfg.layers.map((l) => l.kind),
          c.cfg.layers.map((l) => l.kind),
        );
        const back = await readTree(loaded.params);
        for (const [path, data] of original) {
          const n = data.length / 2;
          const mine = data.slice(run * n, (run + 1) * n);
          const theirs = back.get(path)!;
          if (run === 1 && path.endsWith("aLog")) {
            const s = -c.mimetic.c;
            assert.deepEqual(
              theirs,
              mine.map((v) => Math.fround(s * v)),
              `${path}: A_log' = fround(s·A_log)`,
            );
          } else {
            assert.deepEqual(
              new Uint32Array(theirs.buffer),
              new Uint32Array(mine.buffer),
              `run ${run}: ${path} is not bit-identical`,
            );
          }
        }
        const ours = await ourLogits({ ...model, cfg: c.cfg }, ids, B, T, run);
        const reloaded = await ourLogits(loaded, ids, B, T);
        assert.deepEqual(
          new Uint32Array(reloaded.buffer),
          new Uint32Array(ours.buffer),
          `run ${run}: logits bits`,
        );
        // The saved folder, read by the float64 reference of transformers' forward, computes the same.
        const st = parseSafetensors(Deno.readFileSync(`${dir}/model.safetensors`));
        assert.equal(st.metadata?.format, "pt");
        const err = relErr(ours, hfLogitsRef(config, (n) => st.f32(n), ids, B, T));
        console.log(
          `${c.name} run ${run}: saved folder vs float64 transformers reference ${err.toExponential(2)}`,
        );
        assert.ok(err < 1e-4);
        disposeTree(loaded.params);
        disposeTree(loaded.consts);
      }
      disposeTree(model.params);
      disposeTree(model.consts);
    },
  });
}

Deno.test({
  name: "savePretrained refuses what the layout cannot hold, in one line",
  ignore: noGpu,
  async fn() {
    const dir = Deno.makeTempDirSync();
    const grouped: LMConfig = {
      vocab: 11,
      dModel: 16,
      normEps: 1e-5,
      layers: [{ ...MAMBA2_DEFAULTS, dState: 4, headDim: 8, nGroups: 2 }],
    };
    const m = initLM([key(1)], grouped);
    await assertOneLine(() => savePretrained(dir, grouped, m.params, m.consts), [
      "nGroups 2",
      'gatedNorm "group"',
    ]);
    await assertOneLine(() => savePretrained(dir, grouped, m.params, m.consts, 1), ["run 1", "1 runs"]);
    const hybrid: LMConfig = {
      ...grouped,
      layers: [{ ...MAMBA1_DEFAULTS, dState: 4 }, { ...MAMBA1_DEFAULTS }],
    };
    const h = initLM([key(1)], hybrid);
    await assertOneLine(() => savePretrained(dir, hybrid, h.params, h.consts), [
      "layer 1 differs from layer 0",
    ]);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing written");
    disposeTree([m.params, m.consts, h.params, h.consts]);
  },
});

// ---------------------------------------------------------------------------------------------------------------
// 5. Fixtures made by transformers itself

for (const name of ["mamba1", "mamba2"]) {
  const dir = `${FIXTURES}${name}`;
  let reason: string | null = null;
  try {
    Deno.statSync(`${dir}/logits.json`);
  } catch {
    reason = `${dir}/logits.json is absent: run python3 tests/fixtures/hf/make_fixtures.py where torch and ` +
      "transformers are installed";
    console.warn(`skipping the ${name} transformers fixture: ${reason}`);
  }
  Deno.test({
    name: `transformers fixture ${name}: our logits match transformers' float64 logits within f32 error`,
    ignore: noGpu || reason !== null,
    async fn() {
      const fx = JSON.parse(Deno.readTextFileSync(`${dir}/logits.json`)) as {
        ids: number[][];
        shape: [number, number, number];
        logits: number[];
        transformers_version: string;
      };
      const [B, T, V] = fx.shape;
      const ids = Int32Array.from(fx.ids.flat());
      const m = await loadPretrained(dir);
      assert.equal(m.cfg.vocab, V);
      const ours = await ourLogits(m, ids, B, T);
      const err = relErr(ours, fx.logits);
      // Our independent float64 reference against transformers': checks the reference itself.
      const config = parsePythonJson(Deno.readTextFileSync(`${dir}/config.json`)) as Json;
      const st = parseSafetensors(Deno.readFileSync(`${dir}/model.safetensors`));
      const refErr = relErr(hfLogitsRef(config, (n) => st.f32(n), ids, B, T), fx.logits);
      console.log(
        `${name} (transformers ${fx.transformers_version}): ours ${
          err.toExponential(2)
        }, float64 reference ` +
          `${refErr.toExponential(2)} (relative to max |logit|)`,
      );
      assert.ok(err < 1e-4, `ours vs transformers: ${err}`);
      assert.ok(refErr < 1e-5, `float64 reference vs transformers: ${refErr}`);
      // And our save of it loads back bit-identically.
      const again = Deno.makeTempDirSync();
      await savePretrained(again, m.cfg, m.params, m.consts);
      const m2 = await loadPretrained(again);
      const [p1, p2] = [await readTree(m.params), await readTree(m2.params)];
      for (const [path, a] of p1) {
        assert.deepEqual(new Uint32Array(p2.get(path)!.buffer), new Uint32Array(a.buffer));
      }
      disposeTree([m.params, m.consts, m2.params, m2.consts]);
    },
  });
}

for (const name of ["ours_mamba1", "ours_mamba2"]) {
  Deno.test({
    name:
      `committed ${name} (our savePretrained, for transformers to check): still gives its committed logits`,
    ignore: noGpu,
    async fn() {
      const dir = `${FIXTURES}${name}`;
      const fx = JSON.parse(Deno.readTextFileSync(`${dir}/logits.json`)) as {
        ids: number[][];
        shape: [number, number, number];
        logits: number[];
      };
      const [B, T] = fx.shape;
      const ids = Int32Array.from(fx.ids.flat());
      const m = await loadPretrained(dir);
      const err = relErr(await ourLogits(m, ids, B, T), fx.logits);
      const config = parsePythonJson(Deno.readTextFileSync(`${dir}/config.json`)) as Json;
      const st = parseSafetensors(Deno.readFileSync(`${dir}/model.safetensors`));
      const refErr = relErr(hfLogitsRef(config, (n) => st.f32(n), ids, B, T), fx.logits);
      console.log(`${name}: now ${err.toExponential(2)}, float64 reference ${refErr.toExponential(2)}`);
      assert.ok(err < 1e-5 && refErr < 1e-5);
      disposeTree([m.params, m.consts]);
    },
  });
}

// ---------------------------------------------------------------------------------------------------------------
// 6. Bad folders

/** A good Mamba 2 folder with tensors edited by `edit` (and config by `editConfig`). */
function badFolder(
  edit: (t: Record<string, SafetensorsEntry>) => void = () => {},
  editConfig: (c: Json) => void = () => {},
  modelType: "mamba" | "mamba2" = "mamba2",
): string {
  const { config, tensors } = randomHfCheckpoint(
    key(31),
    modelType,
    modelType === "mamba" ? M1_DIMS : M2_DIMS,
  );
  edit(tensors);
  editConfig(config);
  const dir = Deno.makeTempDirSync();
  writeHfFolder(dir, config, tensors);
  return dir;
}

const BAD_FOLDERS: { what: string; make: () => string; expect: (dir: string) => string[] }[] = [
  {
    what: "no such folder",
    make: () => `${Deno.makeTempDirSync()}/nope`,
    expect: (d) => [d, "no such folder"],
  },
  {
    what: "missing config.json",
    make: () => {
      const d = badFolder();
      Deno.removeSync(`${d}/config.json`);
      return d;
    },
    expect: (d) => [`${d}/config.json: not found`],
  },
  {
    what: "missing model.safetensors",
    make: () => {
      const d = badFolder();
      Deno.removeSync(`${d}/model.safetensors`);
      return d;
    },
    expect: (d) => [`${d}/model.safetensors: not found`],
  },
  {
    what: "truncated model.safetensors",
    make: () => {
      const d = badFolder();
      const b = Deno.readFileSync(`${d}/model.safetensors`);
      Deno.writeFileSync(`${d}/model.safetensors`, b.subarray(0, b.length - 100));
      return d;
    },
    expect: (d) => [`${d}/model.safetensors`, "truncated", "backbone.layers.1.mixer.out_proj.weight"],
  },
  {
    what: "header lying about offsets",
    make: () => {
      const d = badFolder();
      const b = Deno.readFileSync(`${d}/model.safetensors`);
      Deno.writeFileSync(
        `${d}/model.safetensors`,
        withHeader(b, (h) => {
          const e = h["backbone.layers.0.mixer.D"] as { data_offsets: number[] };
          e.data_offsets = [e.data_offsets[0], e.data_offsets[1] + 8];
        }),
      );
      return d;
    },
    expect: (d) => [`${d}/model.safetensors`, "backbone.layers.0.mixer.D", "data_offsets", "needs 16"],
  },
  {
    what: "unsupported dtype",
    make: () =>
      badFolder((t) => {
        t["backbone.layers.1.mixer.A_log"] = { dtype: "I32", shape: [4], data: new Int32Array([1, 2, 3, 4]) };
      }),
    expect: () => ["backbone.layers.1.mixer.A_log", "dtype I32", "expected a float dtype"],
  },
  {
    what: "a tensor of the wrong shape",
    make: () =>
      badFolder((t) => {
        t["backbone.layers.0.mixer.out_proj.weight"] = {
          dtype: "F32",
          shape: [32, 16],
          data: new Float32Array(512),
        };
      }),
    expect: () => [
      "backbone.layers.0.mixer.out_proj.weight",
      "shape [32, 16]",
      "expected [16, 32]",
      "hidden × intermediate",
    ],
  },
  {
    what: "a missing tensor",
    make: () => badFolder((t) => delete t["backbone.layers.1.mixer.D"]),
    expect: () => ["missing tensor backbone.layers.1.mixer.D", "expected [4]", "num_heads"],
  },
  {
    what: "an unexpected tensor",
    make: () =>
      badFolder((t) => {
        t["backbone.layers.0.mixer.in_proj.bias"] = { dtype: "F32", shape: [2], data: new Float32Array(2) };
      }),
    expect: () => ["unexpected tensor backbone.layers.0.mixer.in_proj.bias"],
  },
  {
    what: "a Mamba 1 tensor of the wrong shape",
    make: () =>
      badFolder(
        (t) => {
          t["backbone.layers.0.mixer.A_log"] = { dtype: "F32", shape: [32, 5], data: new Float32Array(160) };
        },
        undefined,
        "mamba",
      ),
    expect: () => ["backbone.layers.0.mixer.A_log", "shape [32, 5]", "expected [32, 4]"],
  },
  {
    what: "unknown model_type",
    make: () => badFolder(undefined, (c) => (c.model_type = "llama")),
    expect: (d) => [`${d}/config.json`, 'model_type "llama"', '"mamba" or "mamba2"'],
  },
  {
    what: "use_bias true",
    make: () => badFolder(undefined, (c) => (c.use_bias = true)),
    expect: () => ["use_bias = true is not supported"],
  },
  {
    what: "a Δ clamp",
    make: () => badFolder(undefined, (c) => (c.time_step_limit = [0, 10])),
    expect: () => ["time_step_limit = [0,10]", "no Δ clamp"],
  },
  {
    what: "an untied head that differs from the embedding",
    make: () =>
      badFolder(
        (
          t,
        ) => (t["lm_head.weight"] = {
          dtype: "F32",
          shape: [13, 16],
          data: new Float32Array(13 * 16).fill(0.5),
        }),
        (c) => (c.tie_word_embeddings = false),
      ),
    expect: () => ["lm_head.weight differs", "ties its head"],
  },
  {
    what: "inconsistent heads",
    make: () => badFolder(undefined, (c) => (c.num_heads = 3)),
    expect: () => ["num_heads · head_dim = 3·8 = 24", "= 32"],
  },
];

Deno.test("loadPretrained: each bad folder gives one line naming the file or tensor and what was expected", async () => {
  for (const b of BAD_FOLDERS) {
    console.log(b.what);
    const dir = b.make();
    const e = await assertOneLine(() => loadPretrained(dir), b.expect(dir));
    assert.ok(e instanceof PretrainedError || e instanceof SafetensorsError, `${b.what}: ${e.name}`);
  }
});

Deno.test({
  name:
    "loadPretrained: an untied head equal to the embedding loads; a base model's old embedding name loads",
  ignore: noGpu,
  async fn() {
    const dir = badFolder(
      (t) => {
        t["lm_head.weight"] = { ...t["backbone.embeddings.weight"] };
        t["backbone.embedding.weight"] = t["backbone.embeddings.weight"];
        delete t["backbone.embeddings.weight"];
      },
      (c) => (c.tie_word_embeddings = false),
    );
    const m = await loadPretrained(dir);
    assert.equal(m.cfg.vocab, M2_DIMS.V);
    disposeTree([m.params, m.consts]);
  },
});

Deno.test("a script loading a bad folder through runMain exits 2 with one line on stderr", async () => {
  const script = new URL("./pretrained_cli.ts", import.meta.url).pathname;
  const dir = badFolder((t) => delete t["backbone.layers.0.norm.weight"]);
  const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", script, dir] }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  console.log(`  exit ${out.code}: ${stderr}`);
  assert.equal(out.code, 2);
  assert.equal(stderr.split("\n").length, 1, stderr);
  assert.match(
    stderr,
    /^pretrained_cli: .*missing tensor backbone\.layers\.0\.norm\.weight; expected \[16\]/,
  );
});

// ---------------------------------------------------------------------------------------------------------------
// 7. Task symbols onto a tokenizer's single-character tokens

Deno.test("tokenIdsForSymbols: bare characters of BPE (byte-level) and Unigram vocabularies; one-line errors", async () => {
  const bpe = {
    model: {
      type: "BPE",
      vocab: { "a": 64, "Ġa": 257, "b": 65, "$": 3, "|": 91, ".": 13, "*": 9, "é": 500 },
    },
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false },
    added_tokens: [{ id: 0, content: "<|endoftext|>" }],
  };
  assert.deepEqual(Array.from(tokenIdsForSymbols(bpe, ["a", "b", "$", "|", ".", "*"])), [
    64,
    65,
    3,
    91,
    13,
    9,
  ]);
  // é is two UTF-8 bytes, spelled "Ã©" in the byte alphabet: no single token for it here.
  await assertOneLine(() => tokenIdsForSymbols(bpe, ["é"]), ["tokenizer.json", 'symbol "é"']);
  const unigram = { model: { type: "Unigram", vocab: [["<unk>", 0], ["▁a", -1], ["a", -2], ["b", -3]] } };
  assert.deepEqual(Array.from(tokenIdsForSymbols(unigram, ["b", "a"])), [3, 2]);
  await assertOneLine(() => tokenIdsForSymbols(bpe, ["ab"]), ['"ab" is not a single character']);
  await assertOneLine(() => tokenIdsForSymbols({ model: { vocab: { a: 1, b: 1 } } }, ["a", "b"]), [
    "map to token 1",
  ]);
  await assertOneLine(() => tokenIdsForSymbols({}, ["a"]), ["no model.vocab"]);
});

Deno.test({
  name:
    "loadPretrained with symbols: the vocabulary becomes the symbols, logits are the full model's at them",
  ignore: noGpu,
  async fn() {
    const { config, tensors } = randomHfCheckpoint(key(41), "mamba2", M2_DIMS);
    const dir = Deno.makeTempDirSync();
    writeHfFolder(dir, config, tensors);
    const symbols = ["a", "b", "c", "$", "|", ".", "*"];
    const vocab: Record<string, number> = { "<|endoftext|>": 0 };
    "xyzcab$|.*".split("").forEach((ch, i) => (vocab[ch] = i + 1)); // ids 1..10 < V = 13
    Deno.writeTextFileSync(
      `${dir}/tokenizer.json`,
      JSON.stringify({ model: { type: "BPE", vocab }, pre_tokenizer: { type: "ByteLevel" } }),
    );
    const m = await loadPretrained(dir, { symbols });
    assert.deepEqual(Array.from(m.tokenIds!), [5, 6, 4, 7, 8, 9, 10]);
    assert.equal(m.cfg.vocab, symbols.length);
    const full = await loadPretrained(dir);
    const B = 2, T = 5;
    const ours = randomIds(6, B, T, symbols.length);
    const theirs = Int32Array.from(ours, (i) => m.tokenIds![i]);
    const small = await ourLogits(m, ours, B, T);
    const big = await ourLogits(full, theirs, B, T);
    const picked = new Float32Array(small.length);
    for (let r = 0; r < B * T; r++) {
      m.tokenIds!.forEach((id, j) => (picked[r * symbols.length + j] = big[r * M2_DIMS.V + id]));
    }
    const err = relErr(small, picked);
    console.log(`restricted vs full logits at the symbols' tokens: ${err.toExponential(2)}`);
    assert.ok(err < 1e-6);
    disposeTree([m.params, m.consts, full.params, full.consts]);
    await assertOneLine(
      () => loadPretrained(badFolder(), { symbols: ["a"] }),
      ["tokenizer.json: not found", "symbols need the folder's tokenizer.json"],
    );
  },
});
