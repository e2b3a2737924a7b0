"""Regenerate fixtures/goldens/chat/*.json: chat templates rendered by Python transformers.

The Rust chat-template renderer (src/model/chat.rs) is tested against these files, so they must
come from transformers itself, never be edited by hand. Run from the repository root:

    . ~/.venvs/golden/bin/activate
    BENCHGEN_DATA_DIR=../shared/data python tools/make_chat_goldens.py

BENCHGEN_DATA_DIR defaults to ../shared/data relative to the repository root. Only files under
fixtures/goldens/chat/ are written. Where a tokenizer.json sits beside the tokenizer_config.json,
the tokenizer is loaded and its own apply_chat_template is used; elsewhere (qwen2.5 and qwen3 have
no tokenizer.json, SmolLM3 is a bare .jinja file) transformers' renderer is called directly with
the special tokens a tokenizer would pass (its non-null named special tokens).

SmolLM3's template calls strftime_now("%d %B %Y"); the date used is stored under "today" so the
Rust test can substitute the date of its own run.
"""

import json
import os
from datetime import datetime
from pathlib import Path

import transformers
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BENCHGEN_DATA_DIR") or ROOT.parent / "shared" / "data")
OUT = ROOT / "fixtures" / "goldens" / "chat"
NAMED_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

# name -> (source under DATA, special tokens for a bare template)
TEMPLATES = {
    "tinyllama": ("tokenizers/tinyllama-1.1b-chat-v1.0/tokenizer_config.json", None),
    "phi3": ("tokenizers/phi-3-mini/tokenizer_config.json", None),
    "qwen2.5": ("tokenizers/qwen2.5/tokenizer_config.json", None),
    "qwen3": ("tokenizers/qwen3/tokenizer_config.json", None),
    # SmolLM3 ships eos "<|im_end|>" and no bos; its template reads neither.
    "smollm3": ("tokenizers/smollm3/chat_template.jinja", {"eos_token": "<|im_end|>"}),
}


def msg(role, content):
    return {"role": role, "content": content}


SYSTEM = msg("system", "You are a concise assistant.")
COMMON = [
    [msg("user", "What is 2+2?")],
    [SYSTEM, msg("user", "Name a prime number.")],
    [SYSTEM, msg("user", "Hi!"), msg("assistant", "Hello! How can I help?"), msg("user", "Tell me a joke.")],
    [
        msg("system", "  Answer in French.\n"),
        msg("user", "\n  café 東京 — naïve? 🚀  \n\n"),
        msg("assistant", "\n\n Très bien:  résumé \n"),
        msg("user", "\tÜber\r\nstraße\t"),
    ],
]
EXTRA = {
    "qwen2.5": [[msg("user", "Weather?"), msg("assistant", "Checking."), msg("tool", '{"temp": 21}')]],
    "qwen3": [
        [msg("user", "2+3?"), msg("assistant", "<think>\nAdd them.\n</think>\n\n5"), msg("user", "And 2*3?")],
        [msg("user", "2+3?"), msg("assistant", "<think>reasoning</think>answer")],
        [msg("user", "Weather?"), msg("assistant", "Checking."), msg("tool", '{"temp": 21}')],
    ],
    "smollm3": [
        [msg("system", "Be terse. /no_think"), msg("user", "Hi"), msg("assistant", "\nHello"), msg("user", "Bye")],
        [msg("system", "/system_override Only this.  "), msg("user", "Hi")],
    ],
}


def special_tokens(config):
    tokens = {}
    for key in NAMED_TOKENS:
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if value is not None:
            tokens[key] = str(value)
    return tokens


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (source, bare_tokens) in TEMPLATES.items():
        path = DATA / source
        tokenizer = None
        if bare_tokens is not None:
            template, tokens = path.read_text(encoding="utf-8"), bare_tokens
        else:
            config = json.loads(path.read_text(encoding="utf-8"))
            template, tokens = config["chat_template"], special_tokens(config)
            if (path.parent / "tokenizer.json").exists():
                tokenizer = AutoTokenizer.from_pretrained(path.parent)
                assert tokenizer.special_tokens_map == tokens, (tokenizer.special_tokens_map, tokens)
        cases = []
        for messages in COMMON + EXTRA.get(name, []):
            for add_generation_prompt in (False, True):
                kwargs = dict(tokenize=False, add_generation_prompt=add_generation_prompt)
                if tokenizer is not None:
                    rendered = tokenizer.apply_chat_template(messages, **kwargs)
                else:
                    rendered = render_jinja_template(
                        [messages], chat_template=template, add_generation_prompt=add_generation_prompt, **tokens
                    )[0][0]
                cases.append({"messages": messages, "add_generation_prompt": add_generation_prompt, "rendered": rendered})
        golden = {"generated_by": f"transformers {transformers.__version__}", "template_source": source}
        golden["special_tokens"] = tokens
        if "strftime_now" in template:
            golden["today"] = {"format": "%d %B %Y", "value": datetime.now().strftime("%d %B %Y")}
        golden["cases"] = cases
        (OUT / f"{name}.json").write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"{name}: {len(cases)} cases")


if __name__ == "__main__":
    main()
