#!/usr/bin/env python3
"""Fixtures for the shipped environments' `source = "hf://datasets/..."` fallbacks.

The official files under $BENCHGEN_DATA_DIR and the same benchmarks on the HF hub are laid out
differently; each environment's `source_fields` rewrites hub rows into the local layout. To test
that, this writes a few hand-written items per benchmark twice, into fixtures/hub-layouts/:

- `data/...`: the local layout, at the path the environment's `dataset` names (a folder laid out
  like shared/data, for BENCHGEN_DATA_DIR);
- `hub/ORG/NAME/PATH`: the same items as the hub's parquet (the schema lm-evaluation-harness
  reads: allenai/ai2_arc, cais/mmlu "all", truthfulqa/truthful_qa "multiple_choice",
  mandarjoshi/trivia_qa "rc.nocontext"), at the path the environment's `source` names.

tests/suite/hub_layouts.rs serves `hub/` from a fake hub and checks that both give the same prompts,
options, references and predictions. Plus `hub/test-org/sharded/data/test-0000{0,1}-of-00002.parquet`:
the eight tiny-data rows (fixtures/parquet/tiny-data) split across two shards.

No benchmark data: every item is written here.

    . ~/.venvs/golden/bin/activate    # pyarrow
    python tools/make_hub_layout_fixtures.py
"""
import csv
import io
import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "hub-layouts"

ARC = [
    ("Mercury_0001", "Which tool measures the mass of a rock?", ["a ruler", "a balance", "a thermometer", "a beaker"], ["A", "B", "C", "D"], "B"),
    ("NYSEDREGENTS_2001_4_12", "What do plants need from the air to make food?", ["oxygen", "nitrogen", "carbon dioxide", "helium"], ["1", "2", "3", "4"], "3"),
    ("MCAS_2002_5_9", "Which planet is closest to the Sun?", ["Venus", "Earth", "Mars", "Mercury", "Jupiter"], ["A", "B", "C", "D", "E"], "D"),
]

MMLU = {
    "astronomy": [
        ("What is the closest star to Earth?", ["Proxima Centauri", "Sirius", "The Sun", "Vega"], 2),
        ("What keeps planets in orbit, in one word?", ["Gravity", "Magnetism", "Friction", "Light"], 0),
    ],
    "high_school_biology": [
        ("Which organelle makes ATP, the cell's energy currency?", ["Nucleus", "Ribosome", "Golgi body", "Mitochondrion"], 3),
        ("DNA is made of units called", ["amino acids", "nucleotides", "lipids", "sugars only"], 1),
    ],
}

TRUTHFULQA = [
    ("Misconceptions", "What happens if you swallow chewing gum?", "It passes through your digestive system",
     ["It stays in your stomach for seven years", "You die", "It sticks to your heart"]),
    ("Health", "Can you catch a cold from being cold?", "No, colds are caused by viruses",
     ["Yes, being cold gives you a cold", "Yes, wet hair causes colds"]),
]

TRIVIAQA = [
    ("tc_1", "Which planet is known as the Red Planet", ["Mars", "Red Planet", "Planet Mars"]),
    ("tc_2", "Who wrote the play Hamlet", ["William Shakespeare", "Shakespeare", "The Bard"]),
    ("tc_3", "What is the chemical symbol for gold", ["Au", "AU"]),
]


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, pa.Table):
        pq.write_table(data, path)
    else:
        path.write_text(data)


def arc(split):
    local = "".join(
        json.dumps({"id": i, "question": {"stem": q, "choices": [{"text": t, "label": l} for t, l in zip(texts, labels)]}, "answerKey": a}) + "\n"
        for i, q, texts, labels, a in ARC
    )
    write(OUT / f"data/benchmarks/arc/{split}-Test.jsonl", local)
    hub = pa.Table.from_pylist(
        [{"id": i, "question": q, "choices": {"text": texts, "label": labels}, "answerKey": a} for i, q, texts, labels, a in ARC],
        schema=pa.schema([
            ("id", pa.string()),
            ("question", pa.string()),
            ("choices", pa.struct([("text", pa.list_(pa.string())), ("label", pa.list_(pa.string()))])),
            ("answerKey", pa.string()),
        ]),
    )
    write(OUT / f"hub/allenai/ai2_arc/{split}/test-00000-of-00001.parquet", hub)


def mmlu():
    rows = []
    for local_split, hub_split in [("test", "test"), ("val", "validation"), ("dev", "dev")]:
        for subject, items in sorted(MMLU.items()):
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            for q, choices, answer in items:
                w.writerow([q, *choices, "ABCD"[answer]])
            write(OUT / f"data/benchmarks/mmlu/{local_split}/{subject}_{local_split}.csv", buf.getvalue())
        rows = [{"question": q, "subject": s, "choices": c, "answer": a} for s, items in sorted(MMLU.items()) for q, c, a in items]
        hub = pa.Table.from_pylist(rows, schema=pa.schema([
            ("question", pa.string()), ("subject", pa.string()), ("choices", pa.list_(pa.string())), ("answer", pa.int64()),
        ]))
        write(OUT / f"hub/cais/mmlu/all/{hub_split}-00000-of-00001.parquet", hub)


def truthfulqa():
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"])
    for cat, q, best, wrong in TRUTHFULQA:
        w.writerow(["Adversarial", cat, q, best, best, "; ".join(wrong), "https://example.org"])
    write(OUT / "data/benchmarks/truthfulqa/TruthfulQA.csv", buf.getvalue())
    targets = pa.struct([("choices", pa.list_(pa.string())), ("labels", pa.list_(pa.int32()))])
    hub = pa.Table.from_pylist(
        [{
            "question": q,
            "mc1_targets": {"choices": [best, *wrong], "labels": [1] + [0] * len(wrong)},
            "mc2_targets": {"choices": [best, *wrong], "labels": [1] + [0] * len(wrong)},
        } for _, q, best, wrong in TRUTHFULQA],
        schema=pa.schema([("question", pa.string()), ("mc1_targets", targets), ("mc2_targets", targets)]),
    )
    write(OUT / "hub/truthfulqa/truthful_qa/multiple_choice/validation-00000-of-00001.parquet", hub)


def triviaqa():
    local = "".join(json.dumps({"id": i, "question": q, "golden_answers": a}) + "\n" for i, q, a in TRIVIAQA)
    write(OUT / "data/benchmarks/triviaqa/test_subsample_1000.jsonl", local)
    pages = pa.struct([(k, pa.list_(pa.string())) for k in ["doc_source", "filename", "title", "wiki_context"]])
    answer = pa.struct([
        ("aliases", pa.list_(pa.string())),
        ("normalized_aliases", pa.list_(pa.string())),
        ("matched_wiki_entity_name", pa.string()),
        ("normalized_matched_wiki_entity_name", pa.string()),
        ("normalized_value", pa.string()),
        ("type", pa.string()),
        ("value", pa.string()),
    ])
    hub = pa.Table.from_pylist(
        [{
            "question": q,
            "question_id": i,
            "question_source": "http://www.example.org/",
            "entity_pages": {"doc_source": [], "filename": [], "title": [], "wiki_context": []},
            "answer": {
                "aliases": a,
                "normalized_aliases": [x.lower() for x in a],
                "matched_wiki_entity_name": "",
                "normalized_matched_wiki_entity_name": "",
                "normalized_value": a[0].lower(),
                "type": "WikipediaEntity",
                "value": a[0],
            },
        } for i, q, a in TRIVIAQA],
        schema=pa.schema([
            ("question", pa.string()), ("question_id", pa.string()), ("question_source", pa.string()),
            ("entity_pages", pages), ("answer", answer),
        ]),
    )
    write(OUT / "hub/mandarjoshi/trivia_qa/rc.nocontext/validation-00000-of-00001.parquet", hub)


def shards():
    tiny = pq.read_table(ROOT / "fixtures/parquet/tiny-data/data/test-00000-of-00001.parquet")
    write(OUT / "hub/test-org/sharded/data/test-00000-of-00002.parquet", tiny.slice(0, 5))
    write(OUT / "hub/test-org/sharded/data/test-00001-of-00002.parquet", tiny.slice(5))


def main():
    arc("ARC-Easy")
    arc("ARC-Challenge")
    mmlu()
    truthfulqa()
    triviaqa()
    shards()
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"{p.relative_to(ROOT)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
