/**
 * The table of bench/side_by_side.sh: mimetic's LM step times (tests/lm_step_bench.ts with LM_BENCH=side, a JSON
 * array) beside PyTorch's (bench/torch_lm_step.py --suite side, JSON lines), with ratios PyTorch / mimetic per
 * run and step (above 1: mimetic is faster). mimetic trains K runs at once, PyTorch one: rows with K > 1 compare
 * mimetic's step time divided by K.
 *
 *   deno run -A bench/side_by_side_table.ts results/side_by_side/mimetic.json results/side_by_side/torch.jsonl
 */
import { readTextOrNull } from "../lib/core/fs.ts";

interface Row {
  name: string;
  K: number;
  B: number;
  T: number;
  d: number;
  N: number;
  ms_per_step: number;
  ms_per_run_step: number;
  scan?: string;
  error?: string;
}

const [mimPath, torchPath] = Deno.args;
if (!mimPath) {
  console.error("usage: deno run -A bench/side_by_side_table.ts MIMETIC_JSON [TORCH_JSONL]");
  Deno.exit(2);
}
const mimText = readTextOrNull(mimPath);
if (mimText === null) {
  console.error(
    `side_by_side_table: no mimetic results at ${mimPath}; run tests/lm_step_bench.ts with LM_BENCH=side`,
  );
  Deno.exit(2);
}
const mimetic = JSON.parse(mimText) as Row[];
const torch = (torchPath ? readTextOrNull(torchPath) ?? "" : "").split("\n").filter((l) => l.trim())
  .map((l) => JSON.parse(l) as Row);

const mim = (name: string) => mimetic.find((r) => r.name === name);
const pt = (name: string, scan: string) => torch.find((r) => r.name === name && r.scan === scan && !r.error);
const ms = (x?: number) => (x === undefined ? "-" : x.toFixed(2));
const ratio = (a?: number, b?: number) => (a === undefined || b === undefined ? "-" : (a / b).toFixed(2));

const lines = [
  `mimetic on ${(mimetic[0] as unknown as { device?: string })?.device ?? "?"}${
    (mimetic[0] as unknown as { tiny?: boolean })?.tiny ? " (TINY shapes: the times mean nothing)" : ""
  }; ratios are PyTorch / mimetic per run and step (> 1: mimetic faster)`,
  "",
  "| case | shape | mimetic ms/step | K | mimetic ms per run | PyTorch chunked ms | PyTorch + Triton SSD ms | chunked / mimetic | Triton / mimetic |",
  "|---|---|---|---|---|---|---|---|---|",
];
const row = (label: string, m: Row | undefined, torchName: string) => {
  const c = pt(torchName, "chunked"), t = pt(torchName, "triton");
  const shape = m ? `D ${m.d}, N ${m.N}, B ${m.B} × T ${m.T}` : "-";
  lines.push(
    `| ${label} | ${shape} | ${ms(m?.ms_per_step)} | ${m?.K ?? "-"} | ${ms(m?.ms_per_run_step)} | ${
      ms(c?.ms_per_step)
    } | ${ms(t?.ms_per_step)} | ${ratio(c?.ms_per_step, m?.ms_per_run_step)} | ${
      ratio(t?.ms_per_step, m?.ms_per_run_step)
    } |`,
  );
};
row("Mamba 2, D 1024, 2 layers", mim("d1024"), "d1024");
row("fig7 quick, one run", mim("fig7 K1"), "fig7 K1");
row("fig7 quick, 4 runs at once", mim("fig7 K4"), "fig7 K1");
for (const T of [128, 256, 512, 1024, 2048, 4096]) {
  row(`fig7, T ${T} (8192 tokens a run)`, mim(`fig7 T${T} K4`), `fig7 T${T}`);
}
for (const K of [1, 2, 4, 8]) row(`fig7 quick, K ${K} runs at once`, mim(`fig7 K${K} sweep`), "fig7 K1");
for (const r of torch.filter((r) => r.error)) lines.push(`\nPyTorch ${r.name} (${r.scan}): ${r.error}`);
console.log(lines.join("\n"));
