#!/usr/bin/env bash
# A short fuzzing run of every target, seeded from the repository's own files.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      # default 60 s, all five targets
#
# Needs a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`). Crashes land in fuzz/artifacts/TARGET/; reproduce one with
# `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-…`. With BENCHGEN_DATA_DIR set, the
# GGUF corpus also gets the head of a real llama.cpp file (stories260K).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(manifest dataset scoring safetensors gguf)

corpus=fuzz/corpus
mkdir -p "$corpus"/{manifest,dataset,scoring,safetensors,gguf}
for f in environments/*/environment.toml fixtures/embedded/env/environment.toml fixtures/envs/*/environment.toml; do
  cp "$f" "$corpus/manifest/$(echo "$f" | tr / _)"
done
n=0
for f in fixtures/envs/*/data/* fixtures/scoring/truthfulqa.csv fixtures/parquet/*.parquet; do
  # The first byte picks the reader: 0 JSONL, 1 JSON, 2 CSV, 3 parquet.
  case "$f" in *.jsonl) b='\x00' ;; *.json) b='\x01' ;; *.parquet) b='\x03' ;; *) b='\x02' ;; esac
  { printf "$b"; head -c 4000 "$f"; } > "$corpus/dataset/seed$((n++))"
done
printf 'The answer is 42.\0#### 42' > "$corpus/scoring/numeric"
printf 'so \\boxed{\\frac{1}{2}} is it\0\\dfrac12' > "$corpus/scoring/math"
printf '<think>hmm</think> The answer is (C)\0C' > "$corpus/scoring/choice"
printf 'Paris, France\0paris' > "$corpus/scoring/text"
python3 - "$corpus/safetensors" <<'PY'
import json, struct, sys, pathlib
out = pathlib.Path(sys.argv[1])
def write(name, tensors):
    header, data = {}, b""
    for t, (dtype, shape, size) in tensors.items():
        header[t] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + size]}
        data += bytes(size)
    h = json.dumps({"__metadata__": {"format": "pt"}, **header}).encode()
    (out / name).write_bytes(struct.pack("<Q", len(h)) + h + data)
write("two", {"a.weight": ("F32", [2, 3], 24), "b": ("BF16", [4], 8)})
write("one", {"model.norm.weight": ("F16", [8], 16)})
PY
if [ -n "${BENCHGEN_DATA_DIR:-}" ] && [ -f "$BENCHGEN_DATA_DIR/models/stories260K/stories260K.gguf" ]; then
  head -c 32768 "$BENCHGEN_DATA_DIR/models/stories260K/stories260K.gguf" > "$corpus/gguf/stories260K-head"
fi
printf 'GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00' > "$corpus/gguf/empty"

for t in "${targets[@]}"; do
  echo "== $t: ${secs}s"
  cargo +nightly fuzz run "$t" "$corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -timeout=10 2>&1 \
    | grep -E "^(#[0-9]+ +DONE|Done|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)" || true
done
