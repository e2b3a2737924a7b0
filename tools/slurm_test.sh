#!/usr/bin/env bash
# Runs examples/slurm on a real, single-node Slurm cluster started here (no systemd): munged,
# slurmctld and slurmd in the background with a minimal slurm.conf, a 4-task job array of
# `benchgen eval --shard auto` and the dependent `benchgen merge`, then checks the merged run
# against the same evaluation run whole, and stops the daemons it started.
#
#   tools/slurm_test.sh [--no-install] [BENCHGEN_BINARY]
#
# Needs root (the daemons run as root; it re-runs itself with sudo when it can) and Debian's
# slurm-wlm and munge (installed unless --no-install). Exits 3 when it cannot have them (no root,
# no package), which .ci/run reports as skipped; any other failure is the test's. .ci/run calls
# it after the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

install=1
if [ "${1:-}" = "--no-install" ]; then install=0; shift; fi
bin="$(realpath "${1:-target/release/benchgen}")"
[ -x "$bin" ] || { echo "slurm_test: no benchgen binary at $bin (cargo build --release)"; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        exec sudo -E bash "$0" "$@"
    fi
    echo "slurm_test: needs root (or passwordless sudo) to start munged, slurmctld and slurmd"
    exit 3
fi
if [ "$install" = 1 ] && ! command -v slurmctld >/dev/null; then
    echo "slurm_test: installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; } \
        || { echo "slurm_test: slurm-wlm and munge could not be installed"; exit 3; }
fi
for tool in munged slurmctld slurmd sbatch squeue sinfo; do
    command -v "$tool" >/dev/null || { echo "slurm_test: $tool not found"; exit 3; }
done

# Unix socket paths must stay under 108 characters: a short folder of its own.
work="$(mktemp -d /tmp/bgslurm.XXXXXX)"
chmod 0755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$work"
}
trap cleanup EXIT

# munge: its own key and socket folder (mode 0755, owned by munge).
mkdir -p "$work/munge"
chown munge:munge "$work/munge" 2>/dev/null || true
dd if=/dev/urandom of="$work/munge/munge.key" bs=1 count=1024 status=none
chown munge:munge "$work/munge/munge.key" 2>/dev/null || true
chmod 0400 "$work/munge/munge.key"
munge_socket="$work/munge/munge.socket"
munged --force --key-file="$work/munge/munge.key" --socket="$munge_socket" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" \
    --seed-file="$work/munge/munged.seed"
for _ in $(seq 50); do [ -s "$work/munge/munged.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$work/munge/munged.pid")")

cpus="$(nproc)"
mkdir -p "$work/state" "$work/spool"
cat > "$work/slurm.conf" <<EOF
ClusterName=benchgen
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$munge_socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
SlurmctldPort=$((20000 + RANDOM % 20000))
SlurmdPort=$((40000 + RANDOM % 20000))
NodeName=localhost CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
# Slurm 23 and later also read cgroup.conf; 22.05 accepts it.
slurm_major="$(slurmctld -V | sed -E 's/[^0-9]*([0-9]+)\..*/\1/')"
if [ "$slurm_major" -ge 23 ]; then
    echo "CgroupPlugin=disabled" > "$work/cgroup.conf"
fi
export SLURM_CONF="$work/slurm.conf"

started=$SECONDS
slurmctld -c -f "$SLURM_CONF"
for _ in $(seq 100); do [ -s "$work/slurmctld.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$work/slurmctld.pid")")
slurmd -N localhost -f "$SLURM_CONF"
for _ in $(seq 100); do [ -s "$work/slurmd.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$work/slurmd.pid")")
for _ in $(seq 100); do
    sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break
    sleep 0.2
done
sinfo -h -o '%N %T' || { echo "slurm_test: the cluster did not come up"; cat "$work"/*.log; exit 1; }

# The evaluation: the embedded environment, 20 items, 4 shards; then the same run whole.
cd "$work"
export BENCHGEN="$bin" GROUP=slurm-ci RUNS_DIR="$work/runs" EVAL_LIMIT=20 SHARDS=4
export SBATCH_ARGS="--cpus-per-task=1"
out="$("$repo/examples/slurm/submit.sh")"
echo "$out"
# sbatch's exit code cannot be trusted (a merge cancelled for a failed shard exits 0): wait for
# the queue to drain and check the merged run itself.
for _ in $(seq 600); do
    [ -z "$(squeue -h -o %i)" ] && break
    sleep 0.2
done
[ -z "$(squeue -h -o %i)" ] || { echo "slurm_test: jobs still queued after 120 s"; squeue; exit 1; }
cat benchgen-merge-*.out
"$bin" eval --limit 20 --runs-dir "$work/whole" >/dev/null

python3 - "$RUNS_DIR" "$work/whole/1" <<'PY'
import json, sys, zipfile, pathlib
runs, whole = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
records = [json.loads((d / "run.json").read_text()) for d in runs.iterdir() if (d / "run.json").exists()]
merged = [r for r in records if r.get("shards")]
assert len(merged) == 1, f"expected one merged run, found {len(merged)}: {records}"
m = merged[0]
assert m["status"] == "Completed", m
shards = sorted(s["shard"] for s in m["shards"])
assert shards == ["0/4", "1/4", "2/4", "3/4"], shards
mdir = runs / str(m["run_id"])
def preds(d):
    return zipfile.ZipFile(d / "submission.zip").read("predictions.jsonl")
def breakdown(d):
    b = json.loads((d / "score_breakdown.json").read_text()); b.pop("duration_s"); return b
assert preds(mdir) == preds(whole), "submission predictions differ"
assert breakdown(mdir) == breakdown(whole), (breakdown(mdir), breakdown(whole))
print(f"merged run {m['run_id']} of shards {[s['run_id'] for s in m['shards']]} "
      f"(machines {sorted({s['machine'] for s in m['shards']})}) equals the whole run: "
      f"Overall Score {m['overall_score']:.2f}, {m['items']} items")
PY
echo "slurm_test: passed in $((SECONDS - started)) s (daemons up, 4-task array, merge, check)"
