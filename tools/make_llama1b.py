#!/usr/bin/env python3
"""A random-weight model of Llama-3.2-1B's shape, as a Hugging Face checkpoint and as GGUFs for
llama.cpp, for speed comparisons at a realistic size. Nothing is downloaded.

    # numpy alone makes the checkpoint; the GGUF steps need torch + transformers (the converter's
    # needs), e.g. the venv of ../shared/docs/tooling.md, plus a llama.cpp build (same file,
    # 'llama.cpp for side-by-side numbers') with bin/llama-quantize for Q4_K_M.
    python tools/make_llama1b.py --llama-cpp /work/llama-build-native \
        [--out ~/.cache/benchgen-compare/llama1b] [--formats f32,bf16,q8_0,q4_k_m] [--threads 2]
    python tools/make_llama1b.py --hf-only          # just the checkpoint, no torch needed
    python tools/make_llama1b.py --shape smollm2-135m --llama-cpp ...   # SmolLM2-135M's shape

Output, in --out (default ~/.cache/benchgen-compare/llama1b, next to compare_speed.py's cache):

    hf/                          config.json, model.safetensors (f32), tokenizer.json, tokenizer_config.json
    hf-bf16/                     the same weights rounded to bf16 (only with --hf-bf16)
    llama1b-shape-f32.gguf       convert_hf_to_gguf.py --outtype f32
    llama1b-shape-bf16.gguf      convert_hf_to_gguf.py --outtype bf16
    llama1b-shape-q8_0.gguf      convert_hf_to_gguf.py --outtype q8_0
    llama1b-shape-q4_k_m.gguf    llama-quantize of the f32 GGUF to Q4_K_M

Each step is skipped when its output exists (outputs are written under a temporary name and
renamed when complete), so an interrupted run can simply be started again.

The model: Llama-3.2-1B's config (hidden 2048, 16 layers, 32 query / 8 KV heads of 64, SwiGLU
intermediate 8192, RMSNorm eps 1e-5, tied embeddings, rope_theta 500000 with its "llama3"
rope_scaling, max_position_embeddings 131072) except the vocabulary: Llama 3's tokenizer is not
available offline, so the checkpoint carries GPT-2's (../shared/data/tokenizers/gpt2, 50,257 ids,
declared to the converter as GPT-2's pre-tokenizer, as compare_speed.py does) and by default an
embedding of 50,257 rows (1.08 B parameters instead of 1.24 B). `--vocab-size 128256` gives the
real embedding shape; the converter then fills ids past GPT-2's with unused [PAD<i>] tokens.

Weights, as transformers' LlamaForCausalLM initialises them: every matrix (embedding included)
normal with mean 0 and std 0.02, every RMSNorm weight 1. Tensor i (in the order of tensor_specs())
is drawn from numpy's default_rng([seed, i]) in float32, so a given seed gives the same weights on
every run and machine (for a given numpy version) and the checkpoint is written one tensor at a
time (peak memory about one embedding, not the whole model). Speed depends only on the shapes.
"""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "benchgen-compare"
GPT2_TOKENIZER = REPO.parent / "shared/data/tokenizers/gpt2"
GPT2_VOCAB = 50257
EOT = 50256  # GPT-2's <|endoftext|>, its only special token: bos and eos here
CONVERTED = ("f32", "bf16", "q8_0")  # made by convert_hf_to_gguf.py
QUANTIZED = {"q4_k_m": "Q4_K_M"}  # made by llama-quantize from the f32 GGUF


def smollm2_135m_config(vocab_size, max_positions):
    """config.json of SmolLM2-135M (HuggingFaceTB/SmolLM2-135M: hidden 576, 30 layers, 9 query /
    3 KV heads of 64, intermediate 1536, rope_theta 100000, tied embeddings) with our vocabulary
    (GPT-2's 50,257 ids rather than its 49,152: 0.6 M more embedding parameters)."""
    cfg = llama1b_config(vocab_size, max_positions)
    cfg.update(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_hidden_layers=30,
               num_key_value_heads=3, rope_theta=100000.0)
    del cfg["rope_scaling"]
    return cfg


SHAPES = {"llama-3.2-1b": ("llama1b", "llama1b-shape", 131072),
          "smollm2-135m": ("smollm2-135m", "smollm2-135m-shape", 8192)}


def llama1b_config(vocab_size, max_positions):
    """config.json of Llama-3.2-1B (meta-llama/Llama-3.2-1B) with our vocabulary."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": EOT,
        "eos_token_id": EOT,
        "head_dim": 64,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 8192,
        "max_position_embeddings": max_positions,
        "mlp_bias": False,
        "num_attention_heads": 32,
        "num_hidden_layers": 16,
        "num_key_value_heads": 8,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "factor": 32.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "rope_theta": 500000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": vocab_size,
    }


def tensor_specs(cfg):
    """[(name, shape, init)] in Hugging Face LlamaForCausalLM names; init is "normal" or "ones".
    No lm_head.weight: the embedding is tied."""
    h, inter, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    specs = [("model.embed_tokens.weight", (cfg["vocab_size"], h), "normal")]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        specs += [
            (p + "input_layernorm.weight", (h,), "ones"),
            (p + "self_attn.q_proj.weight", (q, h), "normal"),
            (p + "self_attn.k_proj.weight", (kv, h), "normal"),
            (p + "self_attn.v_proj.weight", (kv, h), "normal"),
            (p + "self_attn.o_proj.weight", (h, q), "normal"),
            (p + "post_attention_layernorm.weight", (h,), "ones"),
            (p + "mlp.gate_proj.weight", (inter, h), "normal"),
            (p + "mlp.up_proj.weight", (inter, h), "normal"),
            (p + "mlp.down_proj.weight", (h, inter), "normal"),
        ]
    specs.append(("model.norm.weight", (h,), "ones"))
    return specs


def tensor_values(index, shape, init, seed, std=0.02):
    """The float32 values of tensor `index`: normal(0, std) from default_rng([seed, index]), or ones."""
    if init == "ones":
        return np.ones(shape, dtype=np.float32)
    values = np.random.default_rng([seed, index]).standard_normal(shape, dtype=np.float32)
    values *= np.float32(std)
    return values


def to_bf16_bits(values):
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even (the values are finite)."""
    bits = values.view(np.uint32)
    return ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16).astype(np.uint16)


def write_safetensors(path, specs, seed, dtype):
    """Writes the tensors of `specs` to one .safetensors file, generating and writing one at a time.

    The format: an 8-byte little-endian header length, a JSON header mapping each name to its dtype,
    shape and [begin, end) byte offsets into the data that follows (padded with spaces to a
    multiple of 8), then the tensors' bytes, row-major little-endian."""
    itemsize = {"F32": 4, "BF16": 2}[dtype]
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in specs:
        size = int(np.prod(shape)) * itemsize
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for index, (name, shape, init) in enumerate(specs):
            values = tensor_values(index, shape, init, seed)
            (values.astype("<f4") if dtype == "F32" else to_bf16_bits(values).astype("<u2")).tofile(f)
    tmp.rename(path)


def write_tokenizer(dst, max_positions):
    """GPT-2's tokenizer.json, with the model type the converter reads (GPT-2's file leaves it out)."""
    tok = json.loads((GPT2_TOKENIZER / "tokenizer.json").read_text())
    tok["model"]["type"] = "BPE"
    (dst / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    (dst / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_positions,
        "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}, indent=2) + "\n")


def make_checkpoint(dst, cfg, seed, dtype):
    """The Hugging Face checkpoint in `dst` (weights in `dtype`, F32 or BF16), unless already there.
    An existing one made with another config is an error rather than silently reused."""
    weights = dst / "model.safetensors"
    if weights.exists():
        old = json.loads((dst / "config.json").read_text())
        if old != cfg:
            sys.exit(f"{dst} holds a checkpoint with another config.json: use another --out, or delete it")
        print(f"exists: {dst}")
        return
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    write_tokenizer(dst, cfg["max_position_embeddings"])
    specs = tensor_specs(cfg)
    params = sum(int(np.prod(shape)) for _, shape, _ in specs)
    print(f"writing {weights}: {len(specs)} tensors, {params / 1e9:.3f} B parameters, {dtype}", flush=True)
    write_safetensors(weights, specs, seed, dtype)


def llama_cpp_source(build):
    """The llama.cpp source tree a CMake build folder was configured from."""
    cache = (build / "CMakeCache.txt").read_text()
    return Path(re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$", cache, re.M).group(1))


def convert(build, hf_dir, out, outtype, cfg):
    """`out` made from `hf_dir` by the build's own convert_hf_to_gguf.py with --outtype `outtype`,
    run in this process, as compare_speed.py's gguf_model() does."""
    src = llama_cpp_source(build)
    sys.path[:0] = [p for p in (str(src / "gguf-py"), str(src)) if p not in sys.path]  # the converter, its gguf-py
    import convert_hf_to_gguf
    import conversion.base
    import gguf
    # The converter names the pre-tokenizer by hashing a test string's tokens against a list of
    # known models; ours is GPT-2's, whatever the list says.
    conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
    tmp = out.with_name(out.name + ".part")
    print(f"converting to {out.name}", flush=True)
    argv, sys.argv = sys.argv, ["convert_hf_to_gguf.py", str(hf_dir), "--outtype", outtype, "--outfile", str(tmp)]
    try:
        convert_hf_to_gguf.main()
    finally:
        sys.argv = argv
    tensors = {t.name: list(t.shape) for t in gguf.GGUFReader(tmp).tensors}
    embd = [cfg["hidden_size"], cfg["vocab_size"]]
    assert tensors["token_embd.weight"] == embd and "output.weight" not in tensors, tensors["token_embd.weight"]
    assert sum(n.startswith("blk.") for n in tensors) == 9 * cfg["num_hidden_layers"], sorted(tensors)
    tmp.rename(out)


def quantize(build, src, out, qtype, threads):
    """`out` made from the GGUF `src` by the build's llama-quantize as type `qtype` (e.g. Q4_K_M)."""
    tmp = out.with_name(out.name + ".part")
    cmd = [str(build / "bin/llama-quantize"), str(src), str(tmp), qtype, str(threads)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    tmp.rename(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.2-1b",
                    help="the model's shape (default %(default)s); smollm2-135m is the shape of the "
                         "project's other speed tables")
    ap.add_argument("--out", type=Path,
                    help="output folder (default ~/.cache/benchgen-compare/llama1b or /smollm2-135m)")
    ap.add_argument("--llama-cpp", metavar="BUILD_DIR", type=Path,
                    help="llama.cpp CMake build folder: its source tree's convert_hf_to_gguf.py and its "
                         "bin/llama-quantize make the GGUFs (../shared/docs/tooling.md)")
    ap.add_argument("--formats", default=",".join(CONVERTED + tuple(QUANTIZED)),
                    help="GGUFs to make, comma-separated from %(default)s")
    ap.add_argument("--hf-only", action="store_true", help="make only the Hugging Face checkpoint")
    ap.add_argument("--hf-bf16", action="store_true", help="also write the checkpoint in bf16 (hf-bf16/)")
    ap.add_argument("--vocab-size", type=int, default=GPT2_VOCAB,
                    help="embedding rows (default %(default)s, GPT-2's; Llama 3's is 128256)")
    ap.add_argument("--max-positions", type=int,
                    help="max_position_embeddings (default the shape's: 131072 or 8192)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="llama-quantize's threads")
    args = ap.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    unknown = set(formats) - set(CONVERTED) - set(QUANTIZED)
    if unknown:
        ap.error(f"--formats: unknown {sorted(unknown)}; choose from {', '.join(CONVERTED + tuple(QUANTIZED))}")
    if args.vocab_size < GPT2_VOCAB:
        ap.error(f"--vocab-size must be at least the tokenizer's {GPT2_VOCAB}")
    if not args.hf_only:
        if not args.llama_cpp or not (args.llama_cpp / "CMakeCache.txt").exists():
            ap.error("--llama-cpp BUILD_DIR (a configured llama.cpp build) is needed for GGUFs; or pass --hf-only")
        if set(formats) & set(QUANTIZED) and not (args.llama_cpp / "bin/llama-quantize").exists():
            ap.error(f"no bin/llama-quantize in {args.llama_cpp}: build that target, or leave q4_k_m out of --formats")

    folder, stem, max_positions = SHAPES[args.shape]
    out = (args.out or CACHE / folder).expanduser()
    make_config = smollm2_135m_config if args.shape == "smollm2-135m" else llama1b_config
    cfg = make_config(args.vocab_size, args.max_positions or max_positions)
    make_checkpoint(out / "hf", cfg, args.seed, "F32")
    if args.hf_bf16:
        make_checkpoint(out / "hf-bf16", dict(cfg, torch_dtype="bfloat16"), args.seed, "BF16")
    if args.hf_only:
        return

    gguf = {f: out / f"{stem}-{f}.gguf" for f in CONVERTED + tuple(QUANTIZED)}
    to_quantize = [f for f in formats if f in QUANTIZED and not gguf[f].exists()]
    for f in CONVERTED:
        if f in formats or (f == "f32" and to_quantize):  # the quantized ones are made from the f32 GGUF
            if gguf[f].exists():
                print(f"exists: {gguf[f]}")
            else:
                convert(args.llama_cpp, out / "hf", gguf[f], f, cfg)
    for f in formats:
        if f not in QUANTIZED:
            pass
        elif f in to_quantize:
            quantize(args.llama_cpp, gguf["f32"], gguf[f], QUANTIZED[f], args.threads)
        else:
            print(f"exists: {gguf[f]}")
    for f in formats:
        print(f"{gguf[f]}  {gguf[f].stat().st_size / 2**20:,.1f} MiB")


if __name__ == "__main__":
    main()
