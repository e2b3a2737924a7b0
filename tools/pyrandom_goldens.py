#!/usr/bin/env python3
"""Goldens for src/pyrandom.rs and the `lm_eval` few-shot sampler (src/fewshot.rs), written by
CPython's own `random` module: plain python3, standard library only.

    python3 tools/pyrandom_goldens.py        # rewrites fixtures/pyrandom/goldens.json

Big integers are written as hex strings (JSON numbers stop being exact past 2**53).

`lm_eval_draws` replays lm-evaluation-harness 0.4.x's default (`ContextSampler`) few-shot draw,
as lm_eval/api/samplers.py and lm_eval/api/task.py do it: one `random.Random(seed)` per task
(`set_fewshot_seed`, evaluator's `fewshot_random_seed=1234`), the evaluated documents visited in
dataset order (`build_all_requests`), and per document

    n_samples = num_fewshot + 1 if fewshot_split == test_split else num_fewshot
    fewshotex = self.rnd.sample(self.docs, n_samples)
    selected_docs = [x for x in fewshotex if x != doc][:num_fewshot]

Documents are dicts `{"id": i, ...}`, so `x != doc` compares rows as lm-eval does; the golden
records the pool indices each document gets.
"""
import json
import random
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "pyrandom" / "goldens.json"

SEEDS = [0, 1, 1234, 2**32 - 1, 2**32, 2**40 + 7, 2**64 - 1]
# Widths exercising the 32-bit fast path, k = 0, and the multi-word path (including a partial
# top word).
BITS = [1, 5, 31, 32, 0, 33, 64, 65, 100, 128, 7, 32]
# (population, k), drawn one after the other from one generator: both branches of sample()
# (setsize = 21, plus 4 ** ceil(log(3k, 4)) when k > 5), and their edges.
SAMPLES = [
    (10, 3),     # list branch
    (5, 5),      # the whole population
    (21, 1),     # n == setsize: list branch
    (22, 1),     # n > setsize: set branch
    (7, 0),      # nothing drawn, nothing consumed
    (1, 1),
    (80, 6),     # k > 5: setsize 21 + 4**3 = 85, list branch
    (85, 6),     # n == setsize: list branch
    (86, 6),     # set branch
    (100, 6),
    (200, 50),   # setsize 21 + 4**4 = 277: list branch
    (1000, 50),  # set branch, with rejections
    (7473, 6),   # GSM8K's train split, 5-shot from another split
    (30, 3),
    (2**33, 4),  # randbelow wider than 32 bits
]
RANDBELOW = [1, 2, 3, 7, 8, 9, 1000, 2**31, 2**31 + 1, 2**32 - 1, 2**32, 2**32 + 1, 2**40 + 3, 2**63 + 5]

# (name, seed, pool size, shots, documents, same split): the pool is the few-shot split; the
# documents are the evaluated split, which is the pool itself when `same split`.
LM_EVAL = [
    ("other_split_small", 1234, 4, 2, 3, False),       # fixtures/envs/fewshot: train -> test
    ("same_split_small", 1234, 4, 2, 4, True),         # fixtures/envs/fewshot: train -> train
    ("other_split_set_branch", 1234, 30, 2, 10, False),
    ("same_split_set_branch", 1234, 30, 2, 30, True),  # n + 1 = 3 drawn from 30 > 21
    ("same_split_list_branch", 1234, 30, 5, 30, True), # 6 drawn: setsize 85 >= 30
    ("same_split_big_k", 7, 100, 5, 40, True),         # 6 drawn from 100 > 85: set branch
    ("gsm8k_5shot", 1234, 7473, 5, 20, False),
    ("seed_0", 0, 12, 3, 12, True),
]


def hexint(v: int) -> str:
    return hex(v)


def getrandbits_goldens():
    out = []
    for seed in SEEDS:
        r = random.Random(seed)
        out.append({"seed": hexint(seed), "bits": BITS, "values": [hexint(r.getrandbits(k)) for k in BITS]})
    return out


def randbelow_goldens():
    out = []
    for seed in SEEDS:
        r = random.Random(seed)
        # _randbelow is what sample() calls: _randbelow_with_getrandbits for random.Random.
        out.append({"seed": hexint(seed), "n": [hexint(n) for n in RANDBELOW],
                    "values": [hexint(r._randbelow(n)) for n in RANDBELOW]})
    return out


def sample_goldens():
    out = []
    for seed in [1234, 0, 2**40 + 7]:
        r = random.Random(seed)
        calls = []
        for n, k in SAMPLES:
            calls.append({"n": hexint(n), "k": k, "sample": [hexint(x) for x in r.sample(range(n), k)]})
        out.append({"seed": hexint(seed), "calls": calls})
    return out


def lm_eval_goldens():
    out = []
    for name, seed, pool_size, shots, docs, same in LM_EVAL:
        pool = [{"id": i, "text": f"example {i}"} for i in range(pool_size)]
        evaluated = pool if same else [{"id": f"test-{i}"} for i in range(docs)]
        rnd = random.Random(seed)
        picks = []
        for doc in evaluated[:docs]:
            n_samples = shots + 1 if same else shots
            fewshotex = rnd.sample(pool, n_samples)
            selected = [x for x in fewshotex if x != doc][:shots]
            picks.append([x["id"] for x in selected])
        out.append({"name": name, "seed": seed, "pool": pool_size, "n": shots, "same_split": same, "examples": picks})
    return out


def main():
    goldens = {
        "python": sys.version.split()[0],
        "getrandbits": getrandbits_goldens(),
        "randbelow": randbelow_goldens(),
        "sample": sample_goldens(),
        "lm_eval": lm_eval_goldens(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(goldens, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
