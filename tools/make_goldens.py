#!/usr/bin/env python3
"""Reference outputs from HuggingFace transformers for benchgen's model tests.

For each checkpoint below: token ids of a few prompts (HF tokenizer), the logits of every prompt
position (f32), and 32 greedy tokens (`generate(do_sample=False)`), written to
fixtures/goldens/<name>.json. benchgen's tests compare against these; they never compare
benchgen with itself.

    python3 -m venv ~/.venvs/golden && . ~/.venvs/golden/bin/activate   # see shared/docs/tooling.md
    python tools/make_goldens.py
"""
import json
import pathlib

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHECKPOINTS = {
    # name: (checkpoint dir, prompts)
    "embedded": (
        ROOT / "fixtures/embedded/model",
        ["12+34=", "7-3=", "999+1=", "Hello, <world> & 東京!", "5"],
    ),
}
NEW_TOKENS = 32


def golden(path, prompts):
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    cases = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tok(prompt, return_tensors="pt").input_ids
            logits = model(ids).logits[0]
            # A plain argmax loop rather than generate(): no EOS handling or logits processors,
            # so all 32 positions are compared and nothing depends on generation_config.
            out = ids
            for _ in range(NEW_TOKENS):
                nxt = model(out).logits[0, -1].argmax().view(1, 1)
                out = torch.cat([out, nxt], dim=1)
            cases.append(
                {
                    "prompt": prompt,
                    "input_ids": ids[0].tolist(),
                    "logits": [[round(float(x), 6) for x in row] for row in logits],
                    "greedy_ids": out[0, ids.shape[1]:].tolist(),
                }
            )
    return {
        "generated_by": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}",
        "checkpoint": str(path.relative_to(ROOT)),
        "cases": cases,
    }


def main():
    torch.set_num_threads(2)
    out_dir = ROOT / "fixtures/goldens"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (path, prompts) in CHECKPOINTS.items():
        data = golden(path, prompts)
        (out_dir / f"{name}.json").write_text(json.dumps(data, separators=(",", ":")) + "\n")
        print(f"wrote {out_dir / (name + '.json')}")


if __name__ == "__main__":
    main()
