#!/usr/bin/env python3
"""PEFT LoRA adapter fixtures and the logits of their merged models, for benchgen's LoRA tests.

1. With PyPI `peft`, puts a LoRA adapter on fixture base models made by make_goldens.py
   (run that first) and saves it as peft does, in fixtures/models/lora-<name>/
   (adapter_config.json + adapter_model.safetensors). `init_lora_weights=False` makes B non-zero,
   so each adapter really changes the logits. `base_model_name_or_path` is rewritten to the
   relative path `../<base>` so the fixtures work from any clone.
   - lora-llama-gqa-untied: r=4, lora_alpha=8, the seven projections as a list.
   - lora-qwen2-rslora: on the bf16 qwen2 base; rsLoRA, target_modules as a regex string, and a
     rank_pattern and an alpha_pattern that give some modules their own r and alpha.
2. Loads each saved adapter back with `PeftModel.from_pretrained`, merges it with
   `merge_and_unload()` and records with transformers what make_goldens.py records (the prompts'
   token ids, every prompt position's logits in f32, 32 greedy tokens) in
   fixtures/goldens/lora-<name>.json and fixtures/goldens/lora-<name>.safetensors.

benchgen must merge the adapter at load and reproduce these; it is never compared with itself.

    . ~/.venvs/golden/bin/activate    # torch + transformers 5, plus `pip install peft` (0.21)
    python tools/make_lora.py
"""
import json
import pathlib
import shutil
import sys

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_goldens import PROMPTS, ROOT, greedy_ids  # noqa: E402  (the same prompts as the other goldens)

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# name: (base fixture, LoraConfig arguments)
ADAPTERS = {
    "lora-llama-gqa-untied": ("llama-gqa-untied", dict(r=4, lora_alpha=8, target_modules=PROJECTIONS)),
    "lora-qwen2-rslora": ("qwen2-bias-bf16", dict(
        r=4, lora_alpha=8, use_rslora=True,
        target_modules=r".*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
        # Keys are regexes matched against the end of the module name, as peft matches them.
        rank_pattern={"layers.1.mlp.down_proj": 8, "q_proj": 2},
        alpha_pattern={"v_proj": 32, "layers.0.self_attn.o_proj": 2})),
}


def load_base(base):
    return AutoModelForCausalLM.from_pretrained(ROOT / "fixtures/models" / base, dtype=torch.float32,
                                                attn_implementation="eager").eval()


def make_adapter(name, base, lora_args):
    out = ROOT / "fixtures/models" / name
    if out.exists():
        shutil.rmtree(out)
    torch.manual_seed(sum(map(ord, name)))
    config = LoraConfig(task_type="CAUSAL_LM", init_lora_weights=False, lora_dropout=0.0, **lora_args)
    model = get_peft_model(load_base(base), config)
    model.save_pretrained(out)
    (out / "README.md").unlink(missing_ok=True)
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = f"../{base}"
    # peft keeps a list of target modules as a set: sorted, reruns write the same file.
    if isinstance(cfg["target_modules"], list):
        cfg["target_modules"] = sorted(cfg["target_modules"])
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return out


def golden(name, base, adapter_dir):
    tok = AutoTokenizer.from_pretrained(ROOT / "fixtures/models" / base)
    unmerged = PeftModel.from_pretrained(load_base(base), adapter_dir).eval()
    base_model = load_base(base)
    cases, tensors = [], {}
    with torch.no_grad():
        encoded = [tok(p, return_tensors="pt").input_ids for p in PROMPTS]
        unmerged_logits = [unmerged(ids).logits[0] for ids in encoded]
        base_logits = [base_model(ids).logits[0] for ids in encoded]
        model = unmerged.merge_and_unload().eval()
        for i, (prompt, ids) in enumerate(zip(PROMPTS, encoded)):
            logits = model(ids).logits[0].contiguous()
            # Merging must not change the adapted model; the adapter must change the base.
            assert (logits - unmerged_logits[i]).abs().max() < 1e-4, name
            assert (logits - base_logits[i]).abs().max() > 0.1, name
            tensors[f"case{i}.logits"] = logits
            cases.append({"prompt": prompt, "input_ids": ids[0].tolist(), "greedy_ids": greedy_ids(model, ids)})
    meta = {"generated_by": f"peft {peft.__version__}, transformers {transformers.__version__}, "
                            f"torch {torch.__version__}",
            "adapter": str(adapter_dir.relative_to(ROOT)), "base": f"fixtures/models/{base}",
            "cases": cases}
    return meta, tensors


def main():
    torch.set_num_threads(2)
    out_dir = ROOT / "fixtures/goldens"
    for name, (base, lora_args) in ADAPTERS.items():
        adapter_dir = make_adapter(name, base, lora_args)
        meta, tensors = golden(name, base, adapter_dir)
        (out_dir / f"{name}.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n")
        save_file(tensors, out_dir / f"{name}.safetensors")
        print(f"{name}: {len(meta['cases'])} cases")


if __name__ == "__main__":
    main()
