#!/usr/bin/env python3
"""Reference outputs from HuggingFace transformers for benchgen's model tests.

1. Creates small random-weight checkpoints, one per supported architecture and head layout
   (GQA, MQA, bias, q/k norm, explicit head_dim, llama3 rope scaling, sliding window, tied and
   untied embeddings, bf16 weights, sharded weights), in fixtures/models/<name>/, with the byte-level
   tokenizer of the embedded model.
2. For those and for the embedded model (fixtures/embedded/model), records with transformers:
   the prompts' token ids, the logits of every prompt position (f32), 32 greedy tokens, and the
   logits of the same prompts run as one left-padded batch, in fixtures/goldens/<name>.json
   (ids, tokens) and fixtures/goldens/<name>.safetensors (logits).
3. Log-likelihoods of (context, continuation) pairs, split into tokens the way
   lm-evaluation-harness does, with whether the continuation is the greedy one.

benchgen's tests compare against these; they never compare benchgen with itself.

    . ~/.venvs/golden/bin/activate    # torch 2.15 + transformers 5.24, see ../shared/docs/tooling.md
    python tools/make_goldens.py
"""
import json
import pathlib
import shutil

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json"]
NEW_TOKENS = 32
PROMPTS = [
    "12+34=",
    "7-3=",
    "Hello, <world> & 東京!",
    "5",
    "A longer prompt, so that sliding windows and padding both matter: 999+1=",
]
LOGLIK_PAIRS = [
    ("12+34=", "46"),
    ("7-3=", "4"),
    ("999+1=", "1000"),
    ("20+5=", "25"),
    ("Question: what is 2+2?\nAnswer:", " 4"),
    ("The capital of France is ", "Paris"),
    ("", "Hello world"),
    ("A", " long continuation, with several tokens in it."),
    # The embedded model was trained with BOS; with it, these are its own greedy answers.
    ("<s>12+34=", "45"),
    ("<s>7-3=", "4"),
]
COMMON = dict(vocab_size=260, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              max_position_embeddings=256, rms_norm_eps=1e-5, bos_token_id=256, eos_token_id=257,
              rope_theta=10000.0)

# name: (config class, overrides, save options)
RANDOM_MODELS = {
    "llama-gqa-untied": ("LlamaConfig", dict(num_attention_heads=4, num_key_value_heads=2,
                                             tie_word_embeddings=False), {}),
    "llama-9heads-tied": ("LlamaConfig", dict(hidden_size=72, num_attention_heads=9, num_key_value_heads=3,
                                              tie_word_embeddings=True), {}),
    "llama3-rope-mqa": ("LlamaConfig", dict(num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=True,
                                            rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                              high_freq_factor=4.0,
                                                              original_max_position_embeddings=32)), {}),
    "mistral-window": ("MistralConfig", dict(num_attention_heads=4, num_key_value_heads=2, sliding_window=6,
                                             tie_word_embeddings=False), {}),
    "qwen2-bias-bf16": ("Qwen2Config", dict(num_attention_heads=4, num_key_value_heads=2,
                                            tie_word_embeddings=True), dict(dtype=torch.bfloat16)),
    "qwen3-qknorm-sharded": ("Qwen3Config", dict(num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                                                 tie_word_embeddings=False), dict(max_shard_size="150KB")),
}


def make_random_model(name, config_class, overrides, save):
    out = ROOT / "fixtures/models" / name
    if out.exists():
        shutil.rmtree(out)
    torch.manual_seed(sum(map(ord, name)))
    config = getattr(transformers, config_class)(**{**COMMON, **overrides})
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():
        # Larger than HF's init (std 0.02) so that logits and greedy paths are not flat.
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.15)
    dtype = save.get("dtype", torch.float32)
    model.to(dtype).save_pretrained(out, max_shard_size=save.get("max_shard_size", "50GB"))
    for f in TOKENIZER_FILES:
        shutil.copy(ROOT / "fixtures/embedded/model" / f, out / f)
    return out


def lm_eval_split(tok, context, continuation):
    """lm-evaluation-harness's _encode_pair, with its empty-context rule."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok(context + continuation, add_special_tokens=False).input_ids
    if context == "":
        prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        return [prefix], whole
    ctx = tok(context, add_special_tokens=False).input_ids
    return ctx, whole[len(ctx):]


def loglikelihoods(tok, model):
    out = []
    for context, continuation in LOGLIK_PAIRS:
        ctx, cont = lm_eval_split(tok, context, continuation)
        ids = torch.tensor([ctx + cont])
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
        rows = logp[len(ctx) - 1:len(ctx) - 1 + len(cont)]
        target = torch.tensor(cont)
        out.append({"context": context, "continuation": continuation, "context_ids": ctx,
                    "continuation_ids": cont,
                    "logprob": float(rows[torch.arange(len(cont)), target].sum()),
                    "is_greedy": bool((rows.argmax(-1) == target).all())})
    return out


def greedy_ids(model, ids):
    """NEW_TOKENS greedy tokens after `ids`, by a plain argmax loop rather than generate(): no
    EOS handling or logits processors, so every position is compared and nothing depends on
    generation_config."""
    out = ids
    for _ in range(NEW_TOKENS):
        nxt = model(out).logits[0, -1].argmax().view(1, 1)
        out = torch.cat([out, nxt], dim=1)
    return out[0, ids.shape[1]:].tolist()


def golden(path):
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    cases, tensors = [], {}
    with torch.no_grad():
        encoded = [tok(p, return_tensors="pt").input_ids for p in PROMPTS]
        for i, (prompt, ids) in enumerate(zip(PROMPTS, encoded)):
            tensors[f"case{i}.logits"] = model(ids).logits[0].contiguous()
            cases.append({"prompt": prompt, "input_ids": ids[0].tolist(), "greedy_ids": greedy_ids(model, ids)})
        # The same prompts as one left-padded batch, with explicit positions.
        longest = max(e.shape[1] for e in encoded)
        ids = torch.zeros(len(encoded), longest, dtype=torch.long)
        mask = torch.zeros(len(encoded), longest, dtype=torch.long)
        for i, e in enumerate(encoded):
            ids[i, longest - e.shape[1]:] = e[0]
            mask[i, longest - e.shape[1]:] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        for i, e in enumerate(encoded):
            tensors[f"case{i}.batch_logits"] = logits[i, longest - e.shape[1]:].contiguous()
        loglik = loglikelihoods(tok, model)
    meta = {"generated_by": f"transformers {transformers.__version__}, torch {torch.__version__}",
            "checkpoint": str(path.relative_to(ROOT)), "cases": cases, "loglikelihood": loglik}
    return meta, tensors


def main():
    torch.set_num_threads(2)
    out_dir = ROOT / "fixtures/goldens"
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = {"embedded": ROOT / "fixtures/embedded/model"}
    for name, (cls, overrides, save) in RANDOM_MODELS.items():
        checkpoints[name] = make_random_model(name, cls, overrides, save)
    for name, path in checkpoints.items():
        meta, tensors = golden(path)
        (out_dir / f"{name}.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n")
        save_file(tensors, out_dir / f"{name}.safetensors")
        print(f"{name}: {len(meta['cases'])} cases")


if __name__ == "__main__":
    main()
