//! Which option letter a free-text response gives (the `choice` metric and the `choice_label`
//! extractor): explicit statements first, then a leading label, then a marked one, never an
//! article or pronoun.

use std::sync::LazyLock;

use regex::Regex;

pub use crate::env::scoring::option_letter;

/// "Answer: B", "answer is (B)", "**Answer:** **B**": an explicit statement.
/// Group 1 is what opens the letter (brackets, bold), group 2 the letter.
static STATED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i:answer|option|choice)\W{0,3}(?i:is|:)?\s*(?i:option|choice)?\s*([*_(\[]*)([A-Z])(?:\W|$)")
        .expect("constant pattern is valid")
});
/// A label opening the response, followed by a delimiter: "B", "B.", "(B) x", "**B**: x".
static LEADING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[*_]*(?:\(([A-Z])\)|\[([A-Z])\]|([A-Z])(?:[*_]*[.:)]|[*_]*$|[*_]+\s))")
        .expect("constant pattern is valid")
});
/// A formatted label anywhere: "(B)", "[B]", "**B**".
static MARKED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\(([A-Z])\)|\[([A-Z])\]|\*\*([A-Z])\*\*").expect("constant pattern is valid")
});
/// After a bare "A" or "I": a lowercase word means prose ("answer is A dog").
static PROSE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s+[a-z]").expect("constant pattern is valid"));

/// The option letter a response gives. Labels are single UPPERCASE letters
/// A–Z standing alone (not inside a word); tried in order:
/// 1. the last explicit statement: "answer"/"option"/"choice", optionally
///    "is" or ":", then the letter, optionally in `()`, `[]` or `**`; a bare
///    "A" or "I" followed by a lowercase word is prose, not a statement;
/// 2. a letter opening the response and followed by `.`, `:`, `)`, bold
///    markers or the end ("B", "B.", "B) Paris", "(B)", "**B**");
/// 3. the last letter in `()`, `[]` or `**…**` anywhere.
///
/// A bare capital followed by a space at the start ("A dog…", "I think") is
/// never a label, and lowercase letters never are, so articles and pronouns
/// do not count.
pub(crate) fn choice_label(text: &str) -> Option<&str> {
    let text = text.trim();
    let stated = STATED
        .captures_iter(text)
        .filter(|c| {
            let (open, letter) = (&c[1], &c[2]);
            let after = &text[c.get(2).map_or(0, |m| m.end())..];
            !(open.is_empty() && matches!(letter, "A" | "I") && PROSE.is_match(after))
        })
        .last()
        .and_then(|c| c.get(2).map(|m| m.as_str()));
    stated
        .or_else(|| LEADING.captures(text).and_then(first_group))
        .or_else(|| MARKED.captures_iter(text).last().and_then(first_group))
}

/// The one group that took part (the patterns above are alternations of one-group branches).
fn first_group(c: regex::Captures<'_>) -> Option<&str> {
    (1..c.len()).find_map(|i| c.get(i)).map(|m| m.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_lettered_a_to_z_and_no_further() {
        assert_eq!(option_letter(0), Some('A'));
        assert_eq!(option_letter(25), Some('Z'));
        assert_eq!(option_letter(26), None);
        assert_eq!(option_letter(256), None, "no wrap through u8");
        // A label the metric reads back is the letter the option was shown with.
        for i in 0..26 {
            let shown = format!("Answer: {}", option_letter(i).unwrap());
            assert_eq!(choice_label(&shown), Some(&*option_letter(i).unwrap().to_string()));
        }
    }
}
