#!/usr/bin/env bash
# ConstrainDevices on the loopback cluster, with fake GPUs: what keeps each task of a GPU sweep on its own GPU.
# Starts the cluster with MIMETIC_SLURM_FAKE_GPUS=2 (two device nodes with NVIDIA's major number, declared as
# GRES gpu; task/cgroup and proctrack/cgroup; ConstrainDevices=yes), then checks, by opening each node from inside
# jobs (ENXIO: the cgroup let the open through and no driver answered; EPERM: the cgroup denied it):
#   - a 2-task array with --gres=gpu:1: each task can open exactly one node, and the two tasks got different ones;
#   - a job without --gres: can open neither.
# Prints what each job saw (and the CUDA_VISIBLE_DEVICES Slurm set), exits 1 if any check fails, 3 when Slurm is
# not installed and no Debian mirror is reachable (from local_cluster.sh). Needs root and writable cgroup v1
# hierarchies. The cluster is left running in this mode; slurm/local_cluster.sh start (without the variable)
# switches it back.
#
#   slurm/test_constrain.sh
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 1
export MIMETIC_SLURM_FAKE_GPUS=2
slurm/local_cluster.sh start
started=$?
[ "$started" -eq 0 ] || exit "$started"
eval "$(slurm/local_cluster.sh env)"
dev="${MIMETIC_SLURM_DIR:-/tmp/mimetic-slurm}/dev"
logs=$(mktemp -d /tmp/mimetic-constrain.XXXXXX)

# Prints "nvidia0 allowed", "nvidia1 denied", ... and the GPU variables Slurm set.
probe='for d in '"$dev"'/nvidia0 '"$dev"'/nvidia1; do
  err=$( (exec 3<"$d") 2>&1 )
  case "$err" in
  *"No such device or address"*) echo "$(basename "$d") allowed" ;;
  *"Operation not permitted"*) echo "$(basename "$d") denied" ;;
  *) echo "$(basename "$d") unexpected: ${err:-opened}" ;;
  esac
done
echo "SLURM_JOB_GPUS=${SLURM_JOB_GPUS:-} CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-}"'
# The array's two tasks wait for each other (up to 60 s) before probing, so that both hold a GPU at once, whatever
# order the scheduler starts them in (on a 2-CPU node the plain job below may run between them); each says whether
# it saw the other.
barrier='touch '"$logs"'/up_$SLURM_ARRAY_TASK_ID
for i in $(seq 120); do
  if [ -e '"$logs"'/up_0 ] && [ -e '"$logs"'/up_1 ]; then echo together; break; fi
  sleep 0.5
done
'

sbatch --wait --array=0-1 --gres=gpu:1 --output="$logs/gpu1_%a.out" --wrap "$barrier$probe" >/dev/null &
array=$!
sbatch --wait --output="$logs/nogres.out" --wrap "$probe" >/dev/null &
plain=$!
wait "$array"
array_status=$?
wait "$plain"
plain_status=$?

failed=0
check() { # check DESCRIPTION CONDITION...
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else
    echo "FAILED: $what"
    failed=1
  fi
}
for f in "$logs"/gpu1_0.out "$logs"/gpu1_1.out "$logs"/nogres.out; do
  echo "--- $(basename "$f"):"
  sed 's/^/    /' "$f" 2>/dev/null
done
allowed() { grep -c ' allowed$' "$1" 2>/dev/null; }
denied() { grep -c ' denied$' "$1" 2>/dev/null; }
one_of_two() { [ "$(allowed "$1")" = 1 ] && [ "$(denied "$1")" = 1 ]; }
mine0=$(grep ' allowed$' "$logs/gpu1_0.out" 2>/dev/null)
mine1=$(grep ' allowed$' "$logs/gpu1_1.out" 2>/dev/null)
distinct() { [ -n "$mine0" ] && [ -n "$mine1" ] && [ "$mine0" != "$mine1" ]; }
check "the array's jobs ended with exit code 0" [ "$array_status" -eq 0 ]
check "the plain job ended with exit code 0" [ "$plain_status" -eq 0 ]
check "task 0 (--gres=gpu:1) can open 1 of the 2 GPUs" one_of_two "$logs/gpu1_0.out"
check "task 1 (--gres=gpu:1) can open 1 of the 2 GPUs" one_of_two "$logs/gpu1_1.out"
check "the two tasks ran at once" grep -q '^together$' "$logs/gpu1_0.out"
check "the two tasks, running at once, hold different GPUs (${mine0% *} / ${mine1% *})" distinct
check "a job without --gres can open neither GPU" [ "$(denied "$logs/nogres.out")" = 2 ]
[ "$failed" -eq 0 ] && echo "ConstrainDevices confines each task to its GPU; logs in $logs"
exit "$failed"
