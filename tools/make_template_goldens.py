"""Regenerate fixtures/goldens/templates/*.json: llama.cpp's collection of real chat templates
(models/templates/*.jinja) rendered by Python transformers' own renderer.

benchgen's renderer (src/model/chat/) is tested against these files by
tests/suite/template_goldens.rs, so they must come from transformers itself, never be edited by
hand. Rendering needs only transformers and jinja2 (no torch):

    python3 -m venv ~/.venvs/tmpl && ~/.venvs/tmpl/bin/pip install transformers==5.24.0 jinja2
    BENCHGEN_LLAMA_TEMPLATES_DIR=~/.cache/benchgen-ci/llama-cpp-python-0.3.36/models/templates \
        ~/.venvs/tmpl/bin/python tools/make_template_goldens.py

(.ci/run fetches that folder from the llama-cpp-python 0.3.36 sdist.) The goldens hold no template
text, only each template's sha256, so the test can tell a different file from the one rendered.

Each conversation goes through what `tokenizer.apply_chat_template(conversation, tokenize=False)`
does before rendering (`_normalize_chat_messages`: keys whose value is None dropped), then through
`render_jinja_template`, which aliases reasoning fields and renders in transformers' sandboxed
Jinja2 environment. A template that raises on a conversation is recorded as an expected error
(the exception's type and message); benchgen must fail on it too. `strftime_now` is pinned to
NOW so the goldens do not depend on the day they were made.
"""

import hashlib
import json
import os
import sys
from datetime import datetime
from pathlib import Path

import transformers
import transformers.utils.chat_template_utils as ctu
from transformers.utils.chat_template_utils import _normalize_chat_messages, render_jinja_template

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "goldens" / "templates"
DEFAULT_DIR = Path.home() / ".cache/benchgen-ci/llama-cpp-python-0.3.36/models/templates"
TEMPLATES = Path(os.environ.get("BENCHGEN_LLAMA_TEMPLATES_DIR") or DEFAULT_DIR)

# The time strftime_now reports (naive local time, as datetime.now() gives).
NOW = datetime(2025, 6, 5, 14, 7, 9)


class FixedDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW


# transformers' strftime_now reads the module's `datetime` when called.
ctu.datetime = FixedDatetime


def msg(role, content, **extra):
    return {"role": role, "content": content, **extra}


SYSTEM = msg("system", "You are a concise assistant.")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "The city, e.g. Paris"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["location"],
            },
        },
    }
]
TOOL_CALL = {
    "id": "call00001",  # nine alphanumerics: Mistral's templates insist
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"location": "Paris", "unit": "celsius"}},
}

CONVERSATIONS = {
    "user": [msg("user", "What is 2+2?")],
    "system_user": [SYSTEM, msg("user", "Name a prime number.")],
    "multi_turn": [
        SYSTEM,
        msg("user", "Hi!"),
        msg("assistant", "Hello! How can I help?"),
        msg("user", "Tell me a joke about café 東京 🚀."),
    ],
    "prefill": [msg("user", "Write a haiku."), msg("assistant", "Autumn moonlight")],
    "tool_call": [
        SYSTEM,
        msg("user", "What is the weather in Paris?"),
        # content "" rather than None: several templates read .content unguarded
        msg("assistant", "", tool_calls=[TOOL_CALL]),
        msg("tool", '{"temperature": 21}', tool_call_id="call00001", name="get_weather"),
        msg("assistant", "It is 21°C in Paris."),
        msg("user", "Thanks!"),
    ],
    "reasoning": [
        msg("user", "2+3?"),
        msg("assistant", "5", reasoning_content="Add them: 2+3 is 5."),
        msg("user", "And 2*3?"),
    ],
    # Whitespace, quotes and braces around the text: strip/trim and escaping differ here first.
    "spacing": [
        msg("system", "  Answer in French.\n"),
        msg("user", "\n  Say \"hi\" and 'bye' {x} — naïve? \n\n"),
        msg("assistant", "\n\n Très bien:  {\"a\": 1} \n"),
        msg("user", "\tÜber\r\nstraße\t"),
    ],
    # OpenAI's shape: arguments as a JSON string, content null, two calls in one turn.
    "tool_call_openai": [
        msg("user", "Weather in Paris and Rome?"),
        msg(
            "assistant",
            None,
            tool_calls=[
                {**TOOL_CALL, "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}},
                {"id": "call00002", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"location": "Rome"}'}},
            ],
        ),
        msg("tool", '{"temperature": 21}', tool_call_id="call00001", name="get_weather"),
        msg("tool", '{"temperature": 25}', tool_call_id="call00002", name="get_weather"),
    ],
    # A reasoning turn last, continued by the model (no generation prompt).
    "reasoning_prefill": [
        msg("user", "2+3?"),
        msg("assistant", "The answer is", reasoning_content="Add them."),
    ],
}


def special_tokens(name):
    """Plausible special tokens for the template's family (recorded with the goldens)."""
    n = name.lower()
    if "llama-3" in n or "hermes-3" in n or "hermes-2-pro" in n or "firefunction" in n or "functionary" in n:
        return {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    if "gemma" in n:
        return {"bos_token": "<bos>", "eos_token": "<eos>"}
    if "deepseek" in n:
        return {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}
    if "qwen" in n or "qwq" in n:
        return {"eos_token": "<|im_end|>"}
    if "phi-3" in n:
        return {"bos_token": "<s>", "eos_token": "<|endoftext|>"}
    if "gpt-oss" in n:
        return {"eos_token": "<|return|>"}
    return {"bos_token": "<s>", "eos_token": "</s>"}


def cases_for(text):
    """(conversation, with tools, add_generation_prompt, extra variables) to render."""
    takes_tools = "tool" in text
    takes_reasoning = any(k in text for k in ("reasoning_content", "thinking", "reasoning"))
    out = []
    for name in CONVERSATIONS:
        if name.startswith("tool_call") and not takes_tools:
            continue
        if name.startswith("reasoning") and not takes_reasoning:
            continue
        prompts = (False,) if name.endswith("prefill") else (False, True)
        for gen in prompts:
            out.append((name, name.startswith("tool_call"), gen, {}))
    if takes_tools:
        # Tools offered, none called yet.
        out.append(("system_user", True, True, {}))
    if "enable_thinking" in text:
        out.append(("multi_turn", False, True, {"enable_thinking": False}))
        out.append(("multi_turn", False, True, {"enable_thinking": True}))
    return out


def render(text, conversation, tools, gen, variables):
    messages = _normalize_chat_messages(json.loads(json.dumps(conversation)))
    try:
        rendered, _ = render_jinja_template(
            [messages], tools=tools, chat_template=text, add_generation_prompt=gen, **variables
        )
        return {"rendered": rendered[0]}
    except Exception as e:  # any refusal, as apply_chat_template would raise it
        return {"error": f"{type(e).__name__}: {e}"}


def compact_json(golden):
    """One top-level field, conversation or case a line: small files whose diffs still read."""
    dump = lambda v: json.dumps(v, ensure_ascii=False)
    lines = []
    for key, value in golden.items():
        if key in ("conversations", "cases"):
            items = value.items() if key == "conversations" else enumerate(value)
            inner = [(f"  {dump(k)}: " if key == "conversations" else "  ") + dump(v) for k, v in items]
            open_, close = ("{", "}") if key == "conversations" else ("[", "]")
            lines.append(f" {dump(key)}: {open_}\n" + ",\n".join(inner) + f"\n {close}")
        else:
            lines.append(f" {dump(key)}: {dump(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main():
    if not TEMPLATES.is_dir():
        sys.exit(f"{TEMPLATES} not found: set BENCHGEN_LLAMA_TEMPLATES_DIR to llama.cpp's models/templates")
    OUT.mkdir(parents=True, exist_ok=True)
    for path in sorted(TEMPLATES.glob("*.jinja")):
        text = path.read_text(encoding="utf-8")
        tokens = special_tokens(path.name)
        cases = []
        used = set()
        for name, with_tools, gen, extra in cases_for(text):
            variables = {**tokens, **extra}
            result = render(text, CONVERSATIONS[name], TOOLS if with_tools else None, gen, variables)
            used.add(name)
            case = {"conversation": name, "tools": with_tools, "add_generation_prompt": gen}
            if extra:
                case["vars"] = extra
            cases.append({**case, **result})
        golden = {
            "generated_by": f"transformers {transformers.__version__}",
            "template": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "now": NOW.strftime("%Y-%m-%dT%H:%M:%S"),
            "special_tokens": tokens,
            "conversations": {k: v for k, v in CONVERSATIONS.items() if k in used},
            "tools": TOOLS,
            "cases": cases,
        }
        (OUT / f"{path.stem}.json").write_text(compact_json(golden), encoding="utf-8")
        errors = sum("error" in c for c in cases)
        print(f"{path.name}: {len(cases)} cases, {errors} expected errors")


if __name__ == "__main__":
    main()
