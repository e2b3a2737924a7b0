#!/usr/bin/env bash
# Validates examples/k8s/*.yaml against Kubernetes' own OpenAPI schemas (kubernetes-validate from
# PyPI, strict: unknown fields are errors), and checks what a schema cannot: the Indexed Job's
# BENCHGEN_SHARDS equals its completions, and `--shard auto` and the merge Job name one group.
# A real cluster cannot start here. Exits 3 when the validator cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.37.0
venv="${XDG_CACHE_HOME:-$HOME/.cache}/benchgen-ci/kubernetes-validate-$VERSION"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q "kubernetes-validate==$VERSION" \
        || { echo "k8s_validate: kubernetes-validate could not be installed from PyPI"; exit 3; }
fi
"$venv/bin/kubernetes-validate" --strict --kubernetes-version 1.33.0 examples/k8s/*.yaml
"$venv/bin/python" - <<'PY'
import yaml
eval_job = yaml.safe_load(open("examples/k8s/eval-indexed-job.yaml"))
merge_job = yaml.safe_load(open("examples/k8s/merge-job.yaml"))
spec = eval_job["spec"]
assert spec["completionMode"] == "Indexed", spec
shard = spec["template"]["spec"]["containers"][0]
env = {e["name"]: e["value"] for e in shard["env"]}
assert int(env["BENCHGEN_SHARDS"]) == spec["completions"], (env, spec["completions"])
cmd = shard["command"]
assert cmd[cmd.index("--shard") + 1] == "auto", cmd
group = cmd[cmd.index("--group") + 1]
merge = merge_job["spec"]["template"]["spec"]["containers"][0]["command"]
assert merge[merge.index("--group") + 1] == group, (merge, group)
print(f"k8s_validate: {spec['completions']} indexed shards of group {group}, merged by the merge Job")
PY
