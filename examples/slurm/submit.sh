#!/usr/bin/env bash
# Submits one benchgen evaluation as a Slurm job array of N shards plus a merge job that runs
# once every shard has succeeded. Usage (from the directory that holds the runs folder, on a
# filesystem every node mounts):
#
#   SHARDS=4 EVAL_ENV=gsm8k EVAL_MODEL=hf:HuggingFaceTB/SmolLM2-135M examples/slurm/submit.sh
#
# Check the merged run (`benchgen runs list`), not sbatch's exit code: a merge cancelled because
# a shard failed does not make the submission fail.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
shards="${SHARDS:-4}"
export GROUP="${GROUP:-eval-$(date +%Y%m%d-%H%M%S)}"
export RUNS_DIR="${RUNS_DIR:-$PWD/runs}"
# SBATCH_ARGS: more sbatch options for the shards (e.g. "--cpus-per-task=2 --gres=gpu:1").
# shellcheck disable=SC2086
array=$(sbatch --parsable --array="0-$((shards - 1))" --export=ALL ${SBATCH_ARGS:-} \
    "$here/eval-array.sbatch")
# --kill-on-invalid-dep: without it, a merge whose shards failed would wait forever.
sbatch --parsable --dependency="afterok:${array}" --kill-on-invalid-dep=yes --export=ALL \
    "$here/merge.sbatch"
echo "group $GROUP: shards in array job $array, runs in $RUNS_DIR"
