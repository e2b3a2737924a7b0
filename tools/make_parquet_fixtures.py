#!/usr/bin/env python3
"""Parquet fixtures for benchgen's parquet reader and its `hf://datasets/...` sources.

Writes, with pyarrow (as HF `datasets` does), into fixtures/parquet/:

- mixed.parquet (snappy, pyarrow's default) and mixed-zstd.parquet (zstd): three hand-written
  items with ARC's layout (`question.stem`, `question.choices` as a list of {text, label}
  structs, `answerKey`) plus an int, a float, a list<string>, a nullable string, unicode text
  and a map; mixed.jsonl holds the same rows as JSON lines, the reference the Rust reader's
  output must equal.
- binary.parquet: a binary column (as an HF Image feature stores pixels), which benchgen
  refuses by name.
- tiny-data/data/test-00000-of-00001.parquet: the first eight items of the embedded arithmetic
  environment (fixtures/embedded/env/data/test.jsonl) with `answer` as int64 and a nested
  struct, served by the fake hub in tests/suite/hf_datasets.rs as dataset `test-org/tiny-data`.

No benchmark data: every row is written here or comes from benchgen's own arithmetic fixture.

    . ~/.venvs/golden/bin/activate    # plus `pip install pyarrow` (26)
    python tools/make_parquet_fixtures.py
"""
import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "parquet"

MIXED = [
    {
        "id": "m-1",
        "question": {
            "stem": "Which of these is a fruit?",
            "choices": [{"text": "carrot", "label": "A"}, {"text": "apple", "label": "B"}],
        },
        "answerKey": "B",
        "answer": 1,
        "score": 0.25,
        "tags": ["food", "easy"],
        "note": "plain",
        "attrs": [("lang", "en")],
    },
    {
        "id": "m-2",
        "question": {
            "stem": "Quel mot signifie « thé » en japonais ? 🍵",
            "choices": [
                {"text": "お茶", "label": "A"},
                {"text": "水", "label": "B"},
                {"text": "酒", "label": "C"},
            ],
        },
        "answerKey": "A",
        "answer": -7,
        "score": 1e-3,
        "tags": [],
        "note": None,
        "attrs": [],
    },
    {
        "id": "m-3",
        "question": {
            "stem": "Line one\nline \"two\"",
            "choices": [{"text": "yes", "label": "1"}, {"text": "no", "label": "2"}],
        },
        "answerKey": "2",
        "answer": 9007199254740993,
        "score": -2.5,
        "tags": ["a", "b", "c"],
        "note": "",
        "attrs": [("k", "v"), ("z", "ω")],
    },
]

MIXED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        (
            "question",
            pa.struct(
                [
                    ("stem", pa.string()),
                    ("choices", pa.list_(pa.struct([("text", pa.string()), ("label", pa.string())]))),
                ]
            ),
        ),
        ("answerKey", pa.string()),
        ("answer", pa.int64()),
        ("score", pa.float64()),
        ("tags", pa.list_(pa.string())),
        ("note", pa.string()),
        ("attrs", pa.map_(pa.string(), pa.string())),
    ]
)


def as_json(row):
    """The row as benchgen reads it: maps become objects."""
    out = dict(row)
    out["attrs"] = dict(row["attrs"])
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(MIXED, schema=MIXED_SCHEMA)
    pq.write_table(table, OUT / "mixed.parquet")
    pq.write_table(table, OUT / "mixed-zstd.parquet", compression="zstd")
    with open(OUT / "mixed.jsonl", "w", encoding="utf-8") as f:
        for row in MIXED:
            f.write(json.dumps(as_json(row), ensure_ascii=False) + "\n")

    binary = pa.table({"id": ["b-1"], "image": pa.array([b"\x89PNG\r\n"], type=pa.binary())})
    pq.write_table(binary, OUT / "binary.parquet")

    src = ROOT / "fixtures" / "embedded" / "env" / "data" / "test.jsonl"
    rows = [json.loads(line) for line in src.read_text().splitlines()[:8]]
    tiny = pa.Table.from_pylist(
        [
            {"id": r["id"], "question": r["question"], "answer": int(r["answer"]), "meta": {"source": "embedded", "n": i}}
            for i, r in enumerate(rows)
        ],
        schema=pa.schema(
            [
                ("id", pa.string()),
                ("question", pa.string()),
                ("answer", pa.int64()),
                ("meta", pa.struct([("source", pa.string()), ("n", pa.int32())])),
            ]
        ),
    )
    data = OUT / "tiny-data" / "data"
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(tiny, data / "test-00000-of-00001.parquet")
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"{p.relative_to(ROOT)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
