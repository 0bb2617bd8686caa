#!/usr/bin/env bash
# mimetic against PyTorch (and PyTorch + mamba_ssm's Triton SSD) on the same Mamba 2 LM training steps, one table.
#
#   bash bench/side_by_side.sh                        # on the GPU machine
#   MAMBA_REPO=/path/to/mamba_ssm bash bench/side_by_side.sh   # also PyTorch with mamba_ssm's Triton SSD
#   SIDE_TINY=1 bash bench/side_by_side.sh            # tiny shapes: checks the whole path on a CPU adapter
#   SIDE_TRITON_CASES="d1024,fig7 K1" ...               # Triton only for these cases (each shape autotunes ~100 s)
#
# Writes results/side_by_side/ (or $SIDE_OUT): mimetic.json, mimetic.log, torch.jsonl, table.md, and prints the
# table. Shapes: Mamba 2, 2 layers, D 1024, N 128, P 64, B 64 × T 128; the fig7 quick model (D 256, N 64, P 64,
# B 32 × T 220) at K 1 and 4 (PyTorch trains one run); a T sweep 128..4096 at 8192 tokens a run; a K sweep 1..8.
# Without PyTorch (python3 -c "import torch" fails) only mimetic's columns are filled.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${SIDE_OUT:-results/side_by_side}"
mkdir -p "$out"
tiny=()
torch_tiny=()
if [[ "${SIDE_TINY:-0}" == "1" ]]; then
  tiny=(LM_BENCH_TINY=1)
  torch_tiny=(--tiny)
fi
deno_bin="$(command -v deno || echo npx deno)"

echo "== mimetic (tests/lm_step_bench.ts, LM_BENCH=side)"
env "${tiny[@]}" LM_BENCH=side LM_BENCH_JSON="$out/mimetic.json" $deno_bin run -A tests/lm_step_bench.ts \
  | tee "$out/mimetic.log"

echo "== PyTorch (bench/torch_lm_step.py --suite side)"
rm -f "$out/torch.jsonl"
if python3 -c "import torch" 2>/dev/null; then
  triton_cases=()
  if [[ -n "${SIDE_TRITON_CASES:-}" ]]; then triton_cases=(--triton-cases "$SIDE_TRITON_CASES"); fi
  python3 bench/torch_lm_step.py --suite side "${torch_tiny[@]}" "${triton_cases[@]}" --out "$out/torch.jsonl" || \
    echo "(PyTorch side failed with $?; the table shows what it wrote)"
else
  echo "(no PyTorch here: python3 -c 'import torch' fails; the table has mimetic's columns only)"
fi

echo "== table"
$deno_bin run -A bench/side_by_side_table.ts "$out/mimetic.json" "$out/torch.jsonl" | tee "$out/table.md"
