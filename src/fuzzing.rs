//! Entry points for the cargo-fuzz targets in `fuzz/`. Always compiled, so the unit tests below
//! keep them (and the manifests they embed) working without nightly.
//! Each takes arbitrary bytes and must return, never panic, hang or allocate without bound.

use std::sync::OnceLock;

use crate::env::manifest::Manifest;
use crate::score::Scorer;

/// `environment.toml` parsing and validation.
pub fn manifest(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Manifest::parse(text);
    }
}

/// The phase-file readers: the first byte picks JSONL, JSON, CSV or parquet; the fields mapping is a
/// multiple-choice one with dotted paths, so the choice and path code runs too.
pub fn dataset(data: &[u8]) {
    static FIELDS: OnceLock<Manifest> = OnceLock::new();
    let manifest = FIELDS.get_or_init(|| {
        Manifest::parse(
            r#"name = "f"
version = "1"
[[phases]]
name = "test"
data = "data/test.jsonl"
[fields]
id = "meta.id"
input = "question"
target = "answerKey"
choices = "question.choices"
[prompt]
template = "{{ question.stem }}"
[scoring]
method = "loglikelihood"
"#,
        )
        .expect("the fuzz manifest is valid")
    });
    let Some((&which, bytes)) = data.split_first() else { return };
    let name = ["test.jsonl", "test.json", "test.csv", "test.parquet"][usize::from(which % 4)];
    let _ = crate::env::parse_items("fuzz", name, bytes, &manifest.fields, None);
}

/// Answer extraction and normalisation, with the scorers of the shipped environments: the
/// input is `prediction \0 target`.
pub fn scoring(data: &[u8]) {
    static SCORERS: OnceLock<Vec<Scorer>> = OnceLock::new();
    let scorers = SCORERS.get_or_init(|| {
        [
            include_str!("../fixtures/embedded/env/environment.toml"),
            include_str!("../environments/math500/environment.toml"),
            include_str!("../environments/triviaqa/environment.toml"),
            include_str!("../environments/mmlu/environment.toml"),
            include_str!("../environments/gsm8k/environment.toml"),
        ]
        .iter()
        .map(|t| {
            Manifest::parse(t)
                .expect("shipped manifests parse")
                .scoring
                .compile()
                .expect("and compile")
        })
        .collect()
    });
    let text = String::from_utf8_lossy(data);
    let (prediction, target) = text.split_once('\0').unwrap_or((&text, ""));
    for s in scorers {
        let _ = s.score_refs(prediction, &[target, prediction]);
    }
}

/// The safetensors header check that runs before a file is memory-mapped.
pub fn safetensors(data: &[u8]) {
    let _ = crate::model::safetensors::check_safetensors_header(&mut &data[..], data.len() as u64);
}

/// The GGUF reader (header, metadata, tensor index, tokenizer, config). It reads files, so the
/// bytes go to one scratch file per process.
pub fn gguf(data: &[u8]) {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("benchgen-fuzz-{}.gguf", std::process::id()))
    });
    if std::fs::write(path, data).is_ok() {
        let _ = crate::model::gguf::checkpoint(path);
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_entry_point_takes_real_and_broken_input() {
        let arc = br#"{"meta":{"id":"q1"},"question":{"stem":"Why?","choices":[{"text":"a","label":"A"},{"text":"b","label":"B"}]},"answerKey":"B"}"#;
        for data in [
            &b""[..],
            b"\x00",
            &[&[0u8][..], arc].concat(),
            &[&[2u8][..], b"a,b\n1,2\n"].concat(),
            b"\x01[{}]",
        ] {
            super::dataset(data);
        }
        super::dataset(&[&[3u8][..], include_bytes!("../fixtures/parquet/mixed.parquet")].concat());
        super::dataset(b"\x03PAR1\x00\x00\x00\x00PAR1");
        super::manifest(include_bytes!("../fixtures/embedded/env/environment.toml"));
        super::manifest(b"name = 3");
        super::scoring(b"The answer is 42.\0#### 42");
        super::safetensors(b"\x10\x00\x00\x00\x00\x00\x00\x00{}");
        super::gguf(b"GGUF\x03\x00\x00\x00");
    }
}
