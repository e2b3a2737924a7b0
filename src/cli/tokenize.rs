//! `benchgen tokenize`: the ids and vocabulary pieces a model's tokenizer gives for texts.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context;
use benchgen::model::spec;
use serde_json::json;

use super::TokenizeArgs;

/// The texts, in order: `--text` values, or each `--file`'s exact content.
fn texts(args: &TokenizeArgs) -> anyhow::Result<Vec<String>> {
    if !args.text.is_empty() {
        return Ok(args.text.clone());
    }
    args.file
        .iter()
        .map(|path| {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{}: not UTF-8 text (invalid byte at offset {})",
                    path.display(),
                    e.utf8_error().valid_up_to()
                )
            })
        })
        .collect()
}

/// A piece on one line: control characters and backslashes escaped as in JSON strings.
fn escaped(piece: &str) -> String {
    let mut out = String::with_capacity(piece.len());
    for c in piece.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

pub fn run(args: TokenizeArgs) -> anyhow::Result<()> {
    // Inputs first, so a missing file fails before any download.
    let texts = texts(&args)?;
    let tokenizer = spec::resolve_tokenizer(args.model.as_deref(), &args.sources.options())?
        .parse_special(!args.no_parse_special);
    let mut out = std::io::stdout().lock();
    for (n, text) in texts.iter().enumerate() {
        let ids = tokenizer.encode(text, args.add_special)?;
        let pieces: Vec<String> =
            ids.iter().map(|&id| tokenizer.id_to_token(id).unwrap_or_default()).collect();
        if args.json {
            writeln!(out, "{}", json!({"ids": ids, "pieces": pieces}))?;
        } else {
            if n > 0 {
                writeln!(out)?;
            }
            for (id, piece) in ids.iter().zip(&pieces) {
                writeln!(out, "{id}\t{}", escaped(piece))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn pieces_stay_on_one_line() {
        assert_eq!(escaped("a\nb\tc\r\\▁\u{0}"), "a\\nb\\tc\\r\\\\▁\\u0000");
        assert_eq!(escaped("Ġhello"), "Ġhello");
    }
}
