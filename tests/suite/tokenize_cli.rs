//! `benchgen tokenize`: ids and pieces against the tokenizers crate on the same tokenizer.json,
//! loading nothing but the tokenizer (a folder with only tokenizer.json, a GGUF holding only a
//! vocabulary of an architecture no model here runs), and its errors.

use std::path::{Path, PathBuf};

use crate::common::{benchgen, ok, repo, stderr};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::QTensor;
use serde_json::{json, Value as Json};

fn embedded_tokenizer_json() -> PathBuf {
    repo().join("fixtures/embedded/model/tokenizer.json")
}

/// What the tokenizers crate itself gives: ids and pieces.
fn reference(tokenizer_json: &[u8], text: &str, add_special: bool, parse_special: bool) -> Json {
    let mut tok = tokenizers::Tokenizer::from_bytes(tokenizer_json).unwrap();
    tok.set_encode_special_tokens(!parse_special);
    let ids = tok.encode(text, add_special).unwrap().get_ids().to_vec();
    let pieces: Vec<String> = ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
    json!({"ids": ids, "pieces": pieces})
}

fn json_lines(out: &str) -> Vec<Json> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

#[test]
fn ids_and_pieces_are_the_tokenizers() {
    let tmp = tempfile::tempdir().unwrap();
    let reference_json = std::fs::read(embedded_tokenizer_json()).unwrap();
    let texts = ["Hello, world!", "<s>x</s>", ""];
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> =
            ["tokenize", "--json"].iter().chain(extra).map(|s| s.to_string()).collect();
        for t in texts {
            a.extend(["--text".to_string(), t.to_string()]);
        }
        a
    };
    for (extra, add, parse) in [
        (&[][..], false, true),
        (&["--add-special"][..], true, true),
        (&["--no-parse-special"][..], false, false),
    ] {
        let a = args(extra);
        let out = json_lines(&ok(&benchgen(
            tmp.path(),
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        )));
        let want: Vec<Json> =
            texts.iter().map(|t| reference(&reference_json, t, add, parse)).collect();
        assert_eq!(out, want, "{extra:?}");
    }
    // Special tokens' text is parsed by default, and only then.
    let parsed = reference(&reference_json, "<s>", false, true);
    assert_eq!(parsed["ids"].as_array().unwrap().len(), 1);
    assert!(reference(&reference_json, "<s>", false, false)["ids"].as_array().unwrap().len() > 1);

    // Plain output: one `id<TAB>piece` line per token, a blank line between texts.
    let plain = ok(&benchgen(tmp.path(), &["tokenize", "--text", "Hi", "--text", "!"]));
    let want = reference(&reference_json, "Hi", false, true);
    let lines: Vec<String> = want["ids"]
        .as_array()
        .unwrap()
        .iter()
        .zip(want["pieces"].as_array().unwrap())
        .map(|(i, p)| format!("{i}\t{}", p.as_str().unwrap()))
        .collect();
    let bang = reference(&reference_json, "!", false, true);
    assert_eq!(
        plain,
        format!(
            "{}\n\n{}\t{}\n",
            lines.join("\n"),
            bang["ids"][0],
            bang["pieces"][0].as_str().unwrap()
        )
    );
}

#[test]
fn files_are_read_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("in.txt");
    std::fs::write(&f, "line\n\n").unwrap();
    let from_file =
        ok(&benchgen(tmp.path(), &["tokenize", "--json", "--file", f.to_str().unwrap()]));
    let from_text = ok(&benchgen(tmp.path(), &["tokenize", "--json", "--text", "line\n\n"]));
    assert_eq!(from_file, from_text);
    let stripped = ok(&benchgen(tmp.path(), &["tokenize", "--json", "--text", "line"]));
    assert_ne!(from_file, stripped);
}

#[test]
fn a_folder_needs_only_its_tokenizer_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tok-only");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(embedded_tokenizer_json(), dir.join("tokenizer.json")).unwrap();
    let out = ok(&benchgen(
        tmp.path(),
        &["tokenize", "--json", "--model", dir.to_str().unwrap(), "--text", "Hello"],
    ));
    let want = reference(&std::fs::read(embedded_tokenizer_json()).unwrap(), "Hello", false, true);
    assert_eq!(json_lines(&out), vec![want]);
}

/// GPT-2's byte-to-unicode alphabet: printable bytes stand for themselves, the others map
/// to U+0100 onwards.
fn byte_alphabet() -> Vec<String> {
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut next = 0x100;
    (0..256u32)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                next += 1;
                next - 1
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

/// A GGUF holding only a byte-level vocabulary (as llama.cpp's `ggml-vocab-*.gguf` files do), of
/// an architecture no model here runs; and the tokenizer.json GPT-2 itself would have.
fn vocab_only_gguf(path: &Path) -> Vec<u8> {
    let merges = ["Ġ t", "h e", "Ġt he", "l l", "ll o", "he llo"];
    let mut tokens = byte_alphabet();
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    tokens.push("<|endoftext|>".into());
    let mut types = vec![1i32; tokens.len()];
    *types.last_mut().unwrap() = 3;
    let strings = |v: &[String]| Value::Array(v.iter().map(|s| Value::String(s.clone())).collect());
    let md = [
        ("general.architecture", Value::String("bert".into())),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt-2".into())),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types.into_iter().map(Value::I32).collect())),
        ("tokenizer.ggml.merges", strings(&merges.map(String::from))),
        ("tokenizer.ggml.eos_token_id", Value::U32(tokens.len() as u32 - 1)),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let no_tensors: Vec<(&str, &QTensor)> = Vec::new();
    gguf_file::write(&mut std::fs::File::create(path).unwrap(), &md_refs, &no_tensors).unwrap();

    let vocab: serde_json::Map<String, Json> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    let end = tokens.len() - 1;
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": end, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "vocab": vocab, "merges": merges.map(|m| m.split_once(' ').map(|(a, b)| json!([a, b])).unwrap())}
    })
    .to_string()
    .into_bytes()
}

#[test]
fn a_vocabulary_only_gguf_tokenizes_like_gpt2() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("vocab.gguf");
    let reference_json = vocab_only_gguf(&gguf);
    let model = gguf.to_str().unwrap();
    let texts = ["hello the world", " the  hello\n\n", "<|endoftext|>the héllo 12"];
    for (flag, parse) in [(None, true), (Some("--no-parse-special"), false)] {
        let mut args = vec!["tokenize", "--json", "--model", model];
        args.extend(flag);
        for t in texts {
            args.extend(["--text", t]);
        }
        let want: Vec<Json> =
            texts.iter().map(|t| reference(&reference_json, t, false, parse)).collect();
        assert_eq!(json_lines(&ok(&benchgen(tmp.path(), &args))), want, "{flag:?}");
    }
    // The model itself cannot be loaded: tokenize read the vocabulary alone.
    let gen = benchgen(tmp.path(), &["generate", "--model", model, "--prompt", "x"]);
    assert!(
        !gen.status.success()
            && stderr(&gen).contains("general.architecture \"bert\" is not supported"),
        "{}",
        stderr(&gen)
    );
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let fails = |args: &[&str], wanted: &[&str]| {
        let o = benchgen(tmp.path(), args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        for w in wanted {
            assert!(e.contains(w), "{args:?}: {e:?} lacks {w:?}");
        }
    };
    fails(&["tokenize", "--file", "missing.txt"], &["missing.txt"]);
    fails(
        &["tokenize", "--model", "nowhere.gguf", "--text", "x"],
        &["nowhere.gguf", "no such file"],
    );
    fails(&["tokenize", "--model", "nowhere", "--text", "x"], &["nowhere", "no such directory"]);
    fails(&["tokenize", "--model", "running:http://127.0.0.1:9", "--text", "x"], &["server"]);
    fails(&["tokenize"], &["--text"]);
    fails(&["tokenize", "--text", "x", "--file", "y"], &["cannot be used with"]);
    std::fs::write(tmp.path().join("latin1.txt"), b"caf\xe9").unwrap();
    fails(&["tokenize", "--file", "latin1.txt"], &["latin1.txt", "not UTF-8", "offset 3"]);
    let empty_dir = tmp.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    fails(
        &["tokenize", "--model", empty_dir.to_str().unwrap(), "--text", "x"],
        &["missing tokenizer.json"],
    );
}
