#!/usr/bin/env python3
"""GGUF files of the family fixtures, written by llama.cpp's own converter.

For each checkpoint in fixtures/models/ named below, runs llama.cpp's `convert_hf_to_gguf.py`
(from the llama-cpp-python sdist, which vendors llama.cpp; see ../shared/docs/tooling.md) and
writes fixtures/gguf/<name>.<type>.gguf. The fixtures share the embedded model's byte-level BPE
tokenizer, which the converter does not know by hash and which Gemma's converter would read as a
SentencePiece model: the vocabulary is therefore always written as a `gpt-2` BPE vocabulary, as
the converter writes GPT-2's. Everything else (tensor names, fused or permuted rows, the +1 the
converter adds to Gemma's norms, 3-D expert tensors, hyper-parameter keys) is the converter's own.
tests/suite/gguf_families.rs loads these through benchgen's GGUF path and holds them to the
transformers goldens of the same checkpoints.

    pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 && tar xzf ...
    . ~/.venvs/golden/bin/activate     # torch + transformers, see tools/make_goldens.py
    python tools/make_gguf_fixtures.py --llama-cpp PATH/vendor/llama.cpp [--only NAME ...]
"""
import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# name: output types
FIXTURES = {
    "gemma2-softcap-window": ["f32"],
    "gemma3-local-global": ["f32"],
    "phi3-longrope-partial": ["f32"],
    "olmo2-postnorm": ["f32"],
    "gptneox-parallel-partial": ["f32"],
    "gpt2-learned-pos": ["f32"],
    "mixtral-top2": ["f32"],
    "qwen2moe-shared": ["f32", "q8_0"],
    "qwen3moe-normtopk": ["f32"],
    "olmoe-top2": ["f32"],
}


def with_hub_keys(set_gguf_parameters):
    """The converter reads some keys only as hub files (transformers 4) spell them, while
    transformers 5 reads them into `rope_parameters` (GPT-NeoX's `rotary_pct` and
    `rotary_emb_base`) or drops them (GPT-2's `n_ctx`): they are put back before it reads them."""
    def wrapped(self):
        rope = self.hparams.get("rope_parameters") or {}
        if self.hparams.get("model_type") == "gpt_neox":
            self.hparams.setdefault("rotary_pct", rope.get("partial_rotary_factor", 0.25))
            self.hparams.setdefault("rotary_emb_base", rope.get("rope_theta", 10000))
        if self.hparams.get("model_type") == "gpt2":
            self.hparams.setdefault("n_ctx", self.hparams["n_positions"])
        set_gguf_parameters(self)
    return wrapped


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", required=True, type=pathlib.Path, help="llama.cpp source tree")
    ap.add_argument("--only", nargs="+", choices=sorted(FIXTURES))
    args = ap.parse_args()
    tree = args.llama_cpp.resolve()
    sys.path.insert(0, str(tree / "gguf-py"))
    sys.path.insert(0, str(tree))
    sys.argv = ["convert_hf_to_gguf.py"]
    import convert_hf_to_gguf as convert
    import gguf

    # An empty array of a given type is valid GGUF (llama.cpp reads it), which gguf-py refuses
    # to write: the one it needs here is the empty merges list.
    pack_val = gguf.GGUFWriter._pack_val

    def empty_arrays(self, val, vtype, add_vtype, sub_type=None):
        if vtype == gguf.GGUFValueType.ARRAY and len(val) == 0 and sub_type is not None:
            head = self._pack("I", vtype) if add_vtype else b""
            return head + self._pack("I", sub_type) + self._pack("Q", 0)
        return pack_val(self, val, vtype, add_vtype, sub_type)

    gguf.GGUFWriter._pack_val = empty_arrays

    def byte_level_vocab(self):
        # Gemma 3's converter cuts the embedding table to the tokenizer's tokens; the token list
        # is cut to match, as a real Gemma 3 tokenizer (as long as its table) would give.
        if self.model_arch == gguf.MODEL_ARCH.GEMMA3:
            tok = json.loads((self.dir_model / "tokenizer.json").read_text())
            self.hparams["vocab_size"] = len(tok["model"]["vocab"]) + len(tok["added_tokens"])
        self._set_vocab_gpt2()
        # A byte-level vocabulary has no merges, but llama.cpp requires the key.
        # (gguf-py drops and refuses empty arrays; see empty_arrays below.)
        if "tokenizer.ggml.merges" not in self.gguf_writer.kv_data[0]:
            self.gguf_writer.add_key_value("tokenizer.ggml.merges", [], gguf.GGUFValueType.ARRAY,
                                           sub_type=gguf.GGUFValueType.STRING)

    # Every model class's own set_vocab (Gemma's reads tokenizer.model) becomes the byte-level
    # one; classes are imported when the converter looks one up.
    lookup = convert.get_model_class

    def get_model_class(name, mmproj=False):
        cls = lookup(name, mmproj)
        cls.set_vocab = byte_level_vocab
        cls.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
        if not getattr(cls.set_gguf_parameters, "hub_keys", False):
            cls.set_gguf_parameters = with_hub_keys(cls.set_gguf_parameters)
            cls.set_gguf_parameters.hub_keys = True
        return cls

    convert.get_model_class = get_model_class
    out_dir = ROOT / "fixtures/gguf"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.only or FIXTURES:
        model_dir = ROOT / "fixtures/models" / name
        for outtype in FIXTURES[name]:
            out = out_dir / f"{name}.{outtype}.gguf"
            sys.argv = ["convert_hf_to_gguf.py", str(model_dir), "--outtype", outtype,
                        "--outfile", str(out)]
            convert.main()
            print(f"{out.relative_to(ROOT)}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
