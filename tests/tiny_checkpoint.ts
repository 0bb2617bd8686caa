/**
 * A tiny pretrained-looking checkpoint for the tests of the figures that start from weights (fig10, fig11): a
 * random Mamba LM saved by `savePretrained` (the Hugging Face layout transformers reads), with a byte-level BPE
 * `tokenizer.json` in the style of GPT-NeoX's: special tokens first, then every printable ASCII character as a token
 * of its own at a scrambled id, plus space-prefixed and multi-character tokens that must not be picked.
 *
 * As a script, a random checkpoint of a real model's shape, for timing a figure's quick scale without the weights
 * (its accuracies mean nothing):
 *
 *   deno run -A tests/tiny_checkpoint.ts mamba-130m|mamba-370m DIR
 */
import { key } from "../lib/core/random.ts";
import { disposeTree } from "../lib/core/tensor.ts";
import { DEFAULT_INIT, MIMETIC_MAMBA1 } from "../lib/nn/init.ts";
import { initLM, type LMConfig } from "../lib/nn/lm.ts";
import { MAMBA1_DEFAULTS } from "../lib/nn/mamba1.ts";
import { savePretrained } from "../lib/nn/pretrained.ts";
import { SYMBOL_ALPHABET } from "../tasks/registry.ts";

/** Vocabulary of the tiny checkpoints: 2 special tokens, 94 characters, a few decoys, then unused ids. */
export const TINY_VOCAB = 110;

/** The tokenizer's id of each printable ASCII character (a scramble of 2..95). */
export function tinyTokenId(ch: string): number {
  const i = SYMBOL_ALPHABET.indexOf(ch);
  if (i < 0) throw new Error(`no token for ${JSON.stringify(ch)}`);
  return 2 + ((i * 37) % 94); // 37 is coprime with 94: a permutation
}

/** A tokenizer.json with the printable ASCII characters, or all but `omit`. */
export function tinyTokenizer(omit: string[] = []): Record<string, unknown> {
  const vocab: Record<string, number> = { "<|endoftext|>": 0, "<|padding|>": 1 };
  for (const ch of SYMBOL_ALPHABET) if (!omit.includes(ch)) vocab[ch] = tinyTokenId(ch);
  Object.assign(vocab, { "Ġa": 96, "Ġ$": 97, "ab": 98, "|.": 99 });
  return {
    version: "1.0",
    added_tokens: [{ id: 0, content: "<|endoftext|>", special: true }],
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false },
    decoder: { type: "ByteLevel" },
    model: { type: "BPE", vocab, merges: [] },
  };
}

/**
 * Writes a random Mamba 1 checkpoint of `layers` layers, width `dModel`, to `dir` (config.json,
 * model.safetensors, tokenizer.json). Layers in `mimeticLayers` get the mimetic init (correlated W_C and W_B, A ≈ 1,
 * Δ ≈ 1), the others the default, so that a per-layer analysis has something to find. Needs `initGpu()`.
 */
export async function writeTinyCheckpoint(
  dir: string,
  o: {
    layers: number;
    dModel: number;
    dState?: number;
    vocab?: number;
    seed?: number;
    mimeticLayers?: number[];
  },
): Promise<LMConfig> {
  const cfg: LMConfig = {
    vocab: Math.max(o.vocab ?? TINY_VOCAB, TINY_VOCAB),
    dModel: o.dModel,
    normEps: 1e-5,
    layers: Array.from({ length: o.layers }, () => ({ ...MAMBA1_DEFAULTS, dState: o.dState ?? 4 })),
  };
  const mimetic = new Set(o.mimeticLayers ?? []);
  const { params, consts } = initLM(
    [key(o.seed ?? 7)],
    cfg,
    (_k, layer) => (mimetic.has(layer) ? MIMETIC_MAMBA1 : DEFAULT_INIT),
  );
  Deno.mkdirSync(dir, { recursive: true });
  await savePretrained(dir, cfg, params, consts);
  disposeTree([params, consts]);
  Deno.writeTextFileSync(`${dir}/tokenizer.json`, JSON.stringify(tinyTokenizer()));
  return cfg;
}

/** The shapes of the state-spaces checkpoints the figures use (config.json of the -hf folders). */
const REAL_SHAPES: Record<string, { layers: number; dModel: number; dState: number; vocab: number }> = {
  "mamba-130m": { layers: 24, dModel: 768, dState: 16, vocab: 50280 },
  "mamba-370m": { layers: 48, dModel: 1024, dState: 16, vocab: 50280 },
};

if (import.meta.main) {
  const { initGpu } = await import("../lib/core/runtime.ts");
  const [name, dir] = Deno.args;
  const shape = REAL_SHAPES[name];
  if (!shape || !dir) {
    console.error(`usage: deno run -A tests/tiny_checkpoint.ts ${Object.keys(REAL_SHAPES).join("|")} DIR`);
    Deno.exit(2);
  }
  await initGpu();
  const t0 = performance.now();
  await writeTinyCheckpoint(dir, shape);
  console.error(
    `${dir}: random ${name}-shaped checkpoint in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
}
