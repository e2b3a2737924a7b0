#!/usr/bin/env python3
"""Reference outputs from HuggingFace transformers for benchgen's model tests.

1. Creates small random-weight checkpoints, one per supported architecture and head layout
   (GQA, MQA, bias, q/k norm, explicit head_dim, llama3 rope scaling, sliding window, tied and
   untied embeddings, bf16 weights, sharded weights), in fixtures/models/<name>/, with the byte-level
   tokenizer of the embedded model. Other families, each with what sets it apart: Gemma 2 (attention
   and final logit softcapping, query_pre_attn_scalar, head_dim != hidden/heads, alternating
   sliding/full layers, (1+w) norms around both blocks, embeddings scaled by sqrt(hidden)), Gemma 3
   (q/k norms, local/global layers with per-layer-type rope: theta 1e4 on sliding layers, theta 1e6
   with linear factor 8 on full ones), Phi-3 (fused qkv_proj and gate_up_proj, longrope with short
   and long factors, partial rotary), OLMo 2 (norms after each block, q/k norm over the whole
   projection), GPT-NeoX (fused per-head qkv, parallel residual, partial rotary, LayerNorm with bias,
   untied embed_out), GPT-2 (learned positions, Conv1D weights, gelu_new), and the mixtures of
   experts Mixtral, Qwen2-MoE (shared expert with a sigmoid gate), Qwen3-MoE (top-k renormalised)
   and OLMoE. transformers saves the experts one tensor per expert, as hub checkpoints have them
   (`...experts.E.w1.weight`, `...experts.E.gate_proj.weight`); every checkpoint is loaded back and
   must give the in-memory model's logits. Weights are drawn with std 0.15; norm weights as
   1 + 0.1*randn, except Gemma's, which compute x*(1+w) and are drawn as 0.1*randn; LayerNorm biases
   as 0.1*randn.
2. For those and for the embedded model (fixtures/embedded/model), records with transformers:
   the prompts' token ids, the logits of every prompt position (f32), 32 greedy tokens, and the
   logits of the same prompts run as one left-padded batch, in fixtures/goldens/<name>.json
   (ids, tokens) and fixtures/goldens/<name>.safetensors (logits).
3. Log-likelihoods of (context, continuation) pairs, split into tokens the way
   lm-evaluation-harness does, with whether the continuation is the greedy one.

benchgen's tests compare against these; they never compare benchgen with itself.

    . ~/.venvs/golden/bin/activate    # torch 2.15 + transformers 5.24, see ../shared/docs/tooling.md
    python tools/make_goldens.py                  # every checkpoint and golden
    python tools/make_goldens.py --only gpt2-learned-pos mixtral-top2   # only these ("embedded": its golden)

It prints, per golden, the largest |batch logits - alone logits| over the cases: left padding must not
change a row's logits (pad keys are masked; MoE routing is per token).
"""
import argparse
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

# The other families. Their overrides are complete configs (the `base` save option replaces COMMON), so
# that no key of another family's config lands in their config.json. No pad token, as for Llama (some
# families default to one outside this vocabulary).
BASE = dict(COMMON, pad_token_id=None)
NO_THETA = {k: v for k, v in BASE.items() if k != "rope_theta"}
LAYERNORM = {k: v for k, v in BASE.items() if k not in ("rms_norm_eps", "rope_theta")}
GPT2 = dict(vocab_size=260, n_embd=64, n_layer=2, n_head=4, n_positions=256, bos_token_id=256, eos_token_id=257)
MOE = dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
# Gemma multiplies its embeddings by sqrt(hidden) = 8 and ties them to the output: drawn with std 0.15, the
# current token's own embedding dominates the last hidden state and greedy decoding repeats one token.
# With std 0.05 (0.4 once scaled) the greedy paths vary, as the other families' do.
GEMMA_SAVE = dict(base=BASE, embed_std=0.05)
RANDOM_MODELS.update({
    # Scaled scores of these weights reach about 7 and logits about 1.7, so both caps bend them.
    "gemma2-softcap-window": ("Gemma2Config", dict(
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=24,
        attn_logit_softcapping=3.0, final_logit_softcapping=4.0, sliding_window=6,
        layer_types=["sliding_attention", "full_attention"] * 2, hidden_activation="gelu_pytorch_tanh",
        tie_word_embeddings=True), GEMMA_SAVE),
    # Per-layer-type rope, as transformers 5 writes it: rope_parameters keyed by layer type.
    "gemma3-local-global": ("Gemma3TextConfig", dict(
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
        sliding_window=6, layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"full_attention": dict(rope_type="linear", factor=8.0, rope_theta=1_000_000.0),
                         "sliding_attention": dict(rope_type="default", rope_theta=10_000.0)},
        hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True), dict(GEMMA_SAVE, base=NO_THETA)),
    # Every golden sequence is shorter than original_max_position_embeddings (128), so transformers uses the
    # short factors; the attention factor sqrt(1 + ln(512/128) / ln(128)) scales cos and sin.
    "phi3-longrope-partial": ("Phi3Config", dict(
        num_attention_heads=4, num_key_value_heads=2, partial_rotary_factor=0.5, max_position_embeddings=512,
        original_max_position_embeddings=128,
        rope_scaling=dict(type="longrope", short_factor=[1.0, 1.6, 3.2, 7.5], long_factor=[1.3, 2.9, 6.1, 15.0]),
        tie_word_embeddings=False), dict(base=BASE)),
    "olmo2-postnorm": ("Olmo2Config", dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False),
                       dict(base=BASE)),
    "gptneox-parallel-partial": ("GPTNeoXConfig", dict(
        num_attention_heads=4, rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=True, hidden_act="gelu",
        layer_norm_eps=1e-5, attention_bias=True, tie_word_embeddings=False), dict(base=LAYERNORM)),
    "gpt2-learned-pos": ("GPT2Config", dict(activation_function="gelu_new", tie_word_embeddings=True), dict(base=GPT2)),
    "mixtral-top2": ("MixtralConfig", dict(MOE, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2,
                                           sliding_window=None), dict(base=BASE)),
    "qwen2moe-shared": ("Qwen2MoeConfig", dict(MOE, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48,
                                               shared_expert_intermediate_size=96, norm_topk_prob=False,
                                               decoder_sparse_step=1, mlp_only_layers=[]), dict(base=BASE)),
    "qwen3moe-normtopk": ("Qwen3MoeConfig", dict(MOE, head_dim=32, num_experts=4, num_experts_per_tok=2,
                                                 moe_intermediate_size=48, norm_topk_prob=True, decoder_sparse_step=1,
                                                 mlp_only_layers=[]), dict(base=BASE)),
    "olmoe-top2": ("OlmoeConfig", dict(MOE, intermediate_size=48, num_experts=4, num_experts_per_tok=2,
                                       norm_topk_prob=False), dict(base=BASE)),
})
# Norms computing x * (1 + w) (initialised to 0 by transformers).
ZERO_CENTRED_NORMS = ("gemma2", "gemma3_text")


def make_random_model(name, config_class, overrides, save):
    out = ROOT / "fixtures/models" / name
    if out.exists():
        shutil.rmtree(out)
    torch.manual_seed(sum(map(ord, name)))
    config = getattr(transformers, config_class)(**{**save.get("base", COMMON), **overrides})
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    zero_centred = config.model_type in ZERO_CENTRED_NORMS
    # Parameters of norm modules whose names lack "norm" (GPT-2's ln_1, ln_2, ln_f).
    norm_modules = {m for m, module in model.named_modules() if isinstance(module, torch.nn.LayerNorm)}
    with torch.no_grad():
        # Larger than HF's init (std 0.02) so that logits and greedy paths are not flat.
        for pname, p in model.named_parameters():
            owner, _, leaf = pname.rpartition(".")
            if "norm" in pname or owner in norm_modules:
                if zero_centred or leaf == "bias":
                    p.copy_(0.1 * torch.randn_like(p))
                else:
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif pname == "model.embed_tokens.weight" and "embed_std" in save:
                p.normal_(0.0, save["embed_std"])
            else:
                p.normal_(0.0, 0.15)
    dtype = save.get("dtype", torch.float32)
    # What is written (per-expert tensors for the MoE families, under hub names) must load back to this model,
    # its weights rounded to the saved dtype (rounded here, in f32, as the rotary buffers must stay f32).
    ids = torch.tensor([[256, 49, 50, 43, 51, 52, 61, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100]])
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype))
        want = model(ids).logits
    model.to(dtype).save_pretrained(out, max_shard_size=save.get("max_shard_size", "50GB"))
    for f in TOKENIZER_FILES:
        shutil.copy(ROOT / "fixtures/embedded/model" / f, out / f)
    with torch.no_grad():
        got = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()(ids)
        diff = (want - got.logits).abs().max().item()
    assert diff < 1e-5, f"{name}: reloaded checkpoint differs from the saved model by {diff}"
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
    names = ["embedded", *RANDOM_MODELS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=names,
                        help="(re)generate only these checkpoints and goldens; default: all of " + ", ".join(names))
    only = parser.parse_args().only or names
    torch.set_num_threads(2)
    out_dir = ROOT / "fixtures/goldens"
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = {"embedded": ROOT / "fixtures/embedded/model"} if "embedded" in only else {}
    for name, (cls, overrides, save) in RANDOM_MODELS.items():
        if name in only:
            checkpoints[name] = make_random_model(name, cls, overrides, save)
    for name, path in checkpoints.items():
        meta, tensors = golden(path)
        (out_dir / f"{name}.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n")
        save_file(tensors, out_dir / f"{name}.safetensors")
        batch_diff = max((tensors[f"case{i}.batch_logits"] - tensors[f"case{i}.logits"]).abs().max().item()
                         for i in range(len(meta["cases"])))
        print(f"{name}: {len(meta['cases'])} cases, max |batch - alone| {batch_diff:.2e}")


if __name__ == "__main__":
    main()
