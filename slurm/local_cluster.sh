#!/usr/bin/env bash
# A single-node Slurm cluster on loopback, for testing the sweep's Slurm path on one machine (CI, a laptop, a
# container). No systemd needed: munged, slurmctld and slurmd are started as plain daemons and tracked by their
# pid files.
#
#   slurm/local_cluster.sh start    # install slurm-wlm + munge when missing, write the config, start, wait for idle
#   slurm/local_cluster.sh status   # daemons, sinfo, and the SLURM_CONF line to use the cluster from a shell
#   slurm/local_cluster.sh stop     # cancel this cluster's jobs, stop the three daemons (by their pids)
#   slurm/local_cluster.sh env      # prints `export SLURM_CONF=...` (eval "$(slurm/local_cluster.sh env)")
#
# Needs root (apt-get, munged runs as the munge user, the Slurm daemons as root). Everything it writes lives under
# $MIMETIC_SLURM_DIR (default /tmp/mimetic-slurm): the config (etc/slurm.conf, handed to the client commands
# through SLURM_CONF, so /etc/slurm is left alone), spool and state dirs, logs, pid files, and the job completion
# log. munged uses Debian's defaults (/etc/munge/munge.key, socket in /run/munge), which is where libslurm looks.
#
# By default the config fits a box without systemd or a writable cgroup tree: ProctrackType=proctrack/linuxproc
# (tracks a job's processes through /proc parent links), TaskPlugin=task/none (no CPU binding, no device
# constraint), select/cons_tres over the machine's cores (`slurmd -C`), one partition `debug`, no GRES. With
# MIMETIC_SLURM_FAKE_GPUS it uses proctrack/cgroup, task/cgroup and ConstrainDevices=yes instead (below). No accounting daemon
# (slurmdbd): sacct has nothing to read, so job states come from `scontrol show job` (finished jobs are kept
# MinJobAge=3600 s) and from the jobcomp/filetxt log ($MIMETIC_SLURM_DIR/log/jobcomp.txt).
#
# Environment: MIMETIC_SLURM_DIR (state dir), MIMETIC_SLURM_PORT (slurmctld port, default 6817; slurmd uses +1),
# MIMETIC_SLURM_FAKE_GPUS=N (default 0): declare N fake GPUs as GRES and confine each job to its own through the
# cgroup plugins and ConstrainDevices=yes, as on a GPU cluster (needs writable cgroup v1 hierarchies; see
# check_cgroup_v1). Changing a setting and running start again restarts the daemons with the new config.
# On failure it prints one line starting with "local_cluster: " and exits 1; 3 when it cannot run here at all
# (not root, slurm-wlm/munge missing and no Debian mirror reachable, or fake GPUs asked for without writable
# cgroup v1 hierarchies; CI counts that as a skip); 2 for a bad argument. munged is stopped only if this script
# started it (a system munged already running is reused).
set -uo pipefail

BASE=${MIMETIC_SLURM_DIR:-/tmp/mimetic-slurm}
CTLD_PORT=${MIMETIC_SLURM_PORT:-6817}
SLURMD_PORT=$((CTLD_PORT + 1))
CONF="$BASE/etc/slurm.conf"
NODE=$(hostname -s)
MUNGE_PID=/run/munge/munged.pid
CTLD_PID="$BASE/run/slurmctld.pid"
SLURMD_PID="$BASE/run/slurmd.pid"
FAKE_GPUS=${MIMETIC_SLURM_FAKE_GPUS:-0}
[[ "$FAKE_GPUS" =~ ^[0-9]+$ ]] || {
  echo "local_cluster: MIMETIC_SLURM_FAKE_GPUS must be a whole number, got '$FAKE_GPUS'" >&2
  exit 2
}
export SLURM_CONF="$CONF"
export PATH="$PATH:/usr/sbin:/sbin" # the daemons live in /usr/sbin, not on a plain user's PATH

fail() {
  echo "local_cluster: $*" >&2
  exit 1
}

# True when the pid file names a live process whose command is $2.
running() {
  local pidfile=$1 name=$2 pid
  [ -r "$pidfile" ] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]
}

# Stops the process named by a pid file: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
  local pidfile=$1 name=$2 pid i
  running "$pidfile" "$name" || return 0
  pid=$(tr -dc '0-9' <"$pidfile")
  kill "$pid" 2>/dev/null
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null
    sleep 0.2
  fi
  rm -f "$pidfile"
  echo "stopped $name (pid $pid)"
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null &&
    command -v munged >/dev/null; then
    return 0
  fi
  command -v apt-get >/dev/null || fail "slurm-wlm and munge are not installed and there is no apt-get; install them by hand"
  echo "installing slurm-wlm and munge with apt-get..."
  local log="$BASE/log/apt.log" t0=$SECONDS
  mkdir -p "$BASE/log"
  export DEBIAN_FRONTEND=noninteractive
  # Always update first: lists left from an image build may name versions the mirror no longer has. apt-get
  # update exits 0 when it cannot reach a mirror (warnings only), so its output is read too.
  apt-get update -q >"$log" 2>&1
  local update_status=$?
  local unreachable=0
  if [ "$update_status" -ne 0 ] || grep -qE '^(W: Failed to fetch|E: )' "$log"; then unreachable=1; fi
  if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$log" 2>&1; then
    if [ "$unreachable" -eq 1 ] || grep -qE 'Could not (connect|resolve)|Unable to connect|Temporary failure resolving|Failed to fetch' "$log"; then
      echo "local_cluster: cannot install slurm-wlm and munge: no Debian mirror reachable (see $log)" >&2
      exit 3
    fi
    fail "apt-get install slurm-wlm munge failed; see $log"
  fi
  echo "installed in $((SECONDS - t0)) s"
}

start_munge() {
  mkdir -p "$BASE/run"
  if running "$MUNGE_PID" munged; then return 0; fi
  local key=/etc/munge/munge.key
  if [ ! -s "$key" ]; then
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile="$key" >/dev/null 2>&1 || fail "mungekey could not create $key"
    else
      dd if=/dev/urandom of="$key" bs=1 count=1024 status=none || fail "could not create $key"
    fi
    echo "created munge key $key"
  fi
  # munged insists on these owners and modes.
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /etc/munge "$key" /run/munge /var/lib/munge /var/log/munge
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  chmod 0400 "$key"
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged >>"$BASE/log/munged.out" 2>&1 ||
    fail "munged did not start; see $BASE/log/munged.out and /var/log/munge/munged.log"
  touch "$BASE/run/munged.ours"
  local i
  for i in $(seq 1 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "munged started but a munge/unmunge round trip fails; see /var/log/munge/munged.log"
}

# Fake GPUs (MIMETIC_SLURM_FAKE_GPUS=N): N character devices with NVIDIA's major number 195 under $BASE/dev,
# declared as GRES gpu, with the cgroup plugins and ConstrainDevices=yes, as a GPU cluster is set up. No driver
# answers them: opening one the task was given fails with ENXIO ("No such device or address"); opening one the
# task's cgroup denies fails with EPERM ("Operation not permitted"). slurm/test_constrain.sh checks that.
check_cgroup_v1() {
  local probe=/sys/fs/cgroup/devices/mimetic-probe.$$
  { [ -f /sys/fs/cgroup/devices/devices.allow ] && [ -d /sys/fs/cgroup/freezer ] && mkdir "$probe" 2>/dev/null &&
    rmdir "$probe"; } || {
    echo "local_cluster: MIMETIC_SLURM_FAKE_GPUS needs writable cgroup v1 devices and freezer hierarchies under /sys/fs/cgroup (Slurm 22.05's cgroup/v2 plugin needs systemd)" >&2
    exit 3
  }
}

# Writes slurm.conf (and in fake-GPU mode cgroup.conf and gres.conf); returns 0 when any of them changed.
write_config() {
  mkdir -p "$BASE/etc" "$BASE/spool/ctld" "$BASE/spool/d" "$BASE/log" "$BASE/run"
  # The node's real layout (CPUs, sockets, cores, threads, RealMemory) as slurmd sees it: a node configured with
  # more than it has is set to INVALID.
  local hw
  hw=$(slurmd -C 2>/dev/null | head -1) || true
  [[ "$hw" == NodeName=* ]] || fail "slurmd -C did not print the node's layout"
  hw=${hw#NodeName=* }
  local proctrack=proctrack/linuxproc task=task/none gres_types="" node_gres="" i
  local new="$BASE/etc/new"
  rm -rf "$new"
  mkdir -p "$new"
  if [ "$FAKE_GPUS" -gt 0 ]; then
    check_cgroup_v1
    proctrack=proctrack/cgroup
    task=task/cgroup
    gres_types="GresTypes=gpu"
    node_gres=" Gres=gpu:$FAKE_GPUS"
    mkdir -p "$BASE/dev"
    {
      echo "# Written by slurm/local_cluster.sh: fake GPUs, device nodes no driver answers."
      echo "AutoDetect=off"
      for ((i = 0; i < FAKE_GPUS; i++)); do
        [ -c "$BASE/dev/nvidia$i" ] || mknod "$BASE/dev/nvidia$i" c 195 "$i" || fail "mknod $BASE/dev/nvidia$i failed"
        echo "NodeName=$NODE Name=gpu File=$BASE/dev/nvidia$i"
      done
    } >"$new/gres.conf"
    cat >"$new/cgroup.conf" <<EOF
# Written by slurm/local_cluster.sh: cgroup v1, only the device constraint (what keeps a task on its GPU).
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainDevices=yes
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainSwapSpace=no
EOF
  fi
  cat >"$new/slurm.conf" <<EOF
# Written by slurm/local_cluster.sh: a single-node cluster on loopback.
ClusterName=mimetic-loopback
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=$proctrack
TaskPlugin=$task
$gres_types
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=3600
KillWait=10
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$BASE/log/jobcomp.txt
StateSaveLocation=$BASE/spool/ctld
SlurmdSpoolDir=$BASE/spool/d
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE $hw$node_gres State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  local changed=1 f
  for f in slurm.conf cgroup.conf gres.conf; do
    if [ -f "$new/$f" ]; then
      cmp -s "$new/$f" "$BASE/etc/$f" || changed=0
      mv "$new/$f" "$BASE/etc/$f"
    elif [ -f "$BASE/etc/$f" ]; then
      rm -f "$BASE/etc/$f"
      changed=0
    fi
  done
  rmdir "$new"
  return $changed
}

node_state() {
  sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -1
}

wait_idle() {
  local i state=""
  for i in $(seq 1 300); do
    state=$(node_state)
    case "$state" in
    idle | mixed | allocated | completing) return 0 ;;
    down* | drain* | fail* | invalid*)
      # A node left down by an earlier stop, or drained: a registered slurmd may be returned to service.
      [ "$i" -gt 20 ] && [ $((i % 20)) -eq 1 ] && scontrol update nodename="$NODE" state=resume >/dev/null 2>&1
      ;;
    esac
    sleep 0.2
  done
  fail "node $NODE did not become idle in 60 s (sinfo says '${state:-nothing}'); see $BASE/log/slurmctld.log and $BASE/log/slurmd.log"
}

do_start() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "local_cluster: start needs root (apt-get; munged runs as munge, slurmd as root)" >&2
    exit 3
  fi
  mkdir -p "$BASE/log"
  install_packages
  if write_config && { running "$CTLD_PID" slurmctld || running "$SLURMD_PID" slurmd; }; then
    echo "config changed: restarting slurmctld and slurmd"
    stop_pid "$SLURMD_PID" slurmd
    stop_pid "$CTLD_PID" slurmctld
  fi
  start_munge
  if ! running "$CTLD_PID" slurmctld; then
    # -i: ignore state files that do not match this config (an older run with another layout).
    slurmctld -f "$CONF" -i >>"$BASE/log/slurmctld.out" 2>&1 ||
      fail "slurmctld did not start; see $BASE/log/slurmctld.out and $BASE/log/slurmctld.log"
  fi
  local i
  for i in $(seq 1 100); do
    scontrol ping 2>/dev/null | grep -q 'is UP' && break
    sleep 0.1
  done
  scontrol ping 2>/dev/null | grep -q 'is UP' || fail "slurmctld does not answer; see $BASE/log/slurmctld.log"
  if ! running "$SLURMD_PID" slurmd; then
    slurmd -f "$CONF" -N "$NODE" >>"$BASE/log/slurmd.out" 2>&1 ||
      fail "slurmd did not start; see $BASE/log/slurmd.out and $BASE/log/slurmd.log"
  fi
  wait_idle
  echo "cluster up: node $NODE $(node_state) ($(sinfo -h -N -n "$NODE" -o '%c CPUs, %m MB')); use it with: export SLURM_CONF=$CONF"
}

do_stop() {
  if running "$CTLD_PID" slurmctld; then
    # This cluster's jobs only (SLURM_CONF points the client at it); then give them KillWait to end.
    if [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
      scancel --partition=debug 2>/dev/null
      local i
      for i in $(seq 1 150); do
        [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.1
      done
    fi
  fi
  stop_pid "$SLURMD_PID" slurmd
  stop_pid "$CTLD_PID" slurmctld
  if [ -f "$BASE/run/munged.ours" ]; then
    stop_pid "$MUNGE_PID" munged
    rm -f "$BASE/run/munged.ours"
  fi
}

do_status() {
  local ok=0
  local daemon name pidfile
  for daemon in "munged:$MUNGE_PID" "slurmctld:$CTLD_PID" "slurmd:$SLURMD_PID"; do
    name=${daemon%%:*} pidfile=${daemon#*:}
    if running "$pidfile" "$name"; then echo "$name: running (pid $(cat "$pidfile"))"; else
      echo "$name: not running"
      ok=1
    fi
  done
  if [ "$ok" -eq 0 ]; then
    sinfo
    echo "export SLURM_CONF=$CONF"
  fi
  return $ok
}

case "${1:-}" in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
env) echo "export SLURM_CONF=$CONF" ;;
*)
  echo "local_cluster: usage: slurm/local_cluster.sh start|stop|status|env" >&2
  exit 2
  ;;
esac
