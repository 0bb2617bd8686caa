/**
 * A tiny command-line check of a Hugging Face Mamba folder, for the script-level test in pretrained_test.ts (bad
 * folders exit 2 with one line through runMain) and for a quick look at a checkpoint:
 *
 *   deno run -A tests/pretrained_cli.ts <folder>
 *
 * prints the model's kind and sizes.
 */
import { initGpu, loadPretrained, readPretrainedHost, runMain, UsageError } from "../mod.ts";

await runMain("pretrained_cli", async () => {
  const [dir] = Deno.args;
  if (!dir) throw new UsageError("usage: deno run -A tests/pretrained_cli.ts <folder>");
  // The whole folder is read and checked on the host before the GPU starts, so a bad one fails with our line
  // only (a driver may print lines of its own as the GPU starts); then the model is loaded onto the GPU.
  await readPretrainedHost(dir);
  await initGpu();
  const m = await loadPretrained(dir);
  const kinds = [...new Set(m.cfg.layers.map((l) => l.kind))].join(", ");
  console.log(
    `${dir}: ${m.modelType} (${kinds}), ${m.cfg.layers.length} layers, D ${m.cfg.dModel}, V ${m.cfg.vocab}`,
  );
});
