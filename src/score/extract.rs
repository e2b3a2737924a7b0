//! Pulling an answer span out of free text.

use std::sync::LazyLock;

use regex::Regex;

use super::label::choice_label;
use super::math::closing_brace;
pub use crate::env::scoring::Select;

/// Optional sign, digits (with thousands commas when grouped), optional
/// fraction. The grouped form comes first so "1,234" is not cut at the comma.
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?").expect("constant pattern is valid")
});

/// One compiled entry of `extract` / `target_extract`.
#[derive(Debug)]
pub(crate) enum Extractor {
    FirstNumber,
    LastNumber,
    /// Content of the last `\boxed{…}` / `\fbox{…}`, nested braces allowed.
    LastBoxed,
    /// An option letter, by the rule of [`choice_label`].
    ChoiceLabel,
    Pattern(Regex),
    /// A regex with an explicit group (None: 1 if any, else 0) and match.
    Selected(Regex, Option<usize>, Select),
}

impl Extractor {
    /// Reserved names win over regexes; a user wanting the literal text
    /// "last_number" can write `(?:last_number)`.
    pub(crate) fn parse(spec: &str) -> Result<Self, regex::Error> {
        Ok(match spec {
            "first_number" => Self::FirstNumber,
            "last_number" => Self::LastNumber,
            "last_boxed" => Self::LastBoxed,
            "choice_label" => Self::ChoiceLabel,
            pattern => Self::Pattern(Regex::new(pattern)?),
        })
    }

    /// A table extractor; `group` was checked against the regex already.
    pub(crate) fn regex(re: Regex, group: Option<usize>, select: Select) -> Self {
        Self::Selected(re, group, select)
    }

    /// The span this extractor picks from `text`, or `None` when it does not
    /// apply. Blank spans count as misses so a later extractor gets a turn.
    pub(crate) fn apply<'t>(&self, text: &'t str) -> Option<&'t str> {
        let span = match self {
            Self::FirstNumber => number_span(text, NUMBER.find_iter(text).next()?),
            Self::LastNumber => number_span(text, NUMBER.find_iter(text).last()?),
            Self::Pattern(re) => {
                let caps = re.captures(text)?;
                // A group that did not take part (e.g. `(x)?y`) is a miss
                // rather than silently falling back to the whole match.
                let m = if re.captures_len() > 1 { caps.get(1)? } else { caps.get(0)? };
                m.as_str()
            }
            Self::Selected(re, group, select) => {
                let caps = match select {
                    Select::First => re.captures(text)?,
                    Select::Last => re.captures_iter(text).last()?,
                };
                match group {
                    Some(g) => caps.get(*g)?.as_str(),
                    None if re.captures_len() == 1 => caps.get(0)?.as_str(),
                    // As lm-eval's regex filter: the first group that matched something, so
                    // alternatives with a group each (`(a)|(b)`) work.
                    None => caps
                        .iter()
                        .skip(1)
                        .flatten()
                        .map(|m| m.as_str())
                        .find(|m| !m.trim().is_empty())?,
                }
            }
            Self::LastBoxed => last_boxed(text)?,
            Self::ChoiceLabel => choice_label(text)?,
        };
        Some(span.trim()).filter(|s| !s.is_empty())
    }
}

/// Content of the last `\boxed{…}` or `\fbox{…}` (braces balanced, so
/// `\boxed{\frac{1}{2}}` gives `\frac{1}{2}`), or of `\boxed 5` (up to
/// the next `$` or whitespace). An unclosed brace is a miss.
pub(crate) fn last_boxed(text: &str) -> Option<&str> {
    let start = [text.rfind("\\boxed"), text.rfind("\\fbox")].into_iter().flatten().max()?;
    let rest = &text[start..];
    let rest = &rest[rest.find(['{', ' '])?..];
    if let Some(tail) = rest.strip_prefix(' ') {
        let end = tail.find(|c: char| c == '$' || c.is_whitespace()).unwrap_or(tail.len());
        return Some(&tail[..end]);
    }
    closing_brace(rest).map(|end| &rest[1..end])
}

static THINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<think>.*?</think>").expect("constant pattern is valid"));

/// Removes reasoning: every `<think>…</think>` block; then, when a `</think>`
/// is left without its opening (templates that open the block in the prompt),
/// everything up to the last one; then an unterminated `<think>` and all after
/// it (a response cut off mid-thought has no answer yet).
pub(crate) fn strip_think(text: &str) -> std::borrow::Cow<'_, str> {
    let mut out = THINK.replace_all(text, "");
    if let Some(end) = out.rfind("</think>") {
        out = std::borrow::Cow::Owned(out[end + "</think>".len()..].to_owned());
    }
    if let Some(start) = out.find("<think>") {
        out = std::borrow::Cow::Owned(out[..start].to_owned());
    }
    out
}

/// A '-' glued to a preceding word or digit is a hyphen ("pages 3-5",
/// "COVID-19"), not a minus sign, so it is left out of the number.
fn number_span<'t>(text: &'t str, m: regex::Match<'t>) -> &'t str {
    let s = m.as_str();
    let glued = text[..m.start()].chars().next_back().is_some_and(char::is_alphanumeric);
    match s.strip_prefix('-') {
        Some(rest) if glued => rest,
        _ => s,
    }
}

/// First hit of the first extractor that hits.
pub(crate) fn first_hit<'t>(extractors: &[Extractor], text: &'t str) -> Option<&'t str> {
    extractors.iter().find_map(|e| e.apply(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(spec: &str) -> Extractor {
        Extractor::parse(spec).expect("valid spec")
    }

    #[test]
    fn last_and_first_number() {
        let text = "I have 3 apples and 5 pears";
        assert_eq!(ex("last_number").apply(text), Some("5"));
        assert_eq!(ex("first_number").apply(text), Some("3"));
    }

    #[test]
    fn numbers_keep_sign_commas_and_fraction_but_not_dollar() {
        let text = "It fell by -1,234.5 to $1,000.00 today.";
        assert_eq!(ex("first_number").apply(text), Some("-1,234.5"));
        assert_eq!(ex("last_number").apply(text), Some("1,000.00"));
        assert_eq!(ex("last_number").apply("so the answer is 42."), Some("42"));
        assert_eq!(ex("first_number").apply("-7 degrees"), Some("-7"));
    }

    #[test]
    fn ungrouped_commas_do_not_join_numbers() {
        assert_eq!(ex("first_number").apply("1234,567"), Some("1234"));
        assert_eq!(ex("last_number").apply("lists 1,2,3"), Some("3"));
    }

    #[test]
    fn hyphen_after_word_is_not_a_minus() {
        assert_eq!(ex("last_number").apply("read pages 3-5"), Some("5"));
        assert_eq!(ex("first_number").apply("COVID-19"), Some("19"));
        assert_eq!(ex("last_number").apply("from 3 to -5"), Some("-5"));
    }

    #[test]
    fn no_number_is_a_miss() {
        assert_eq!(ex("last_number").apply("no digits here"), None);
        assert_eq!(ex("first_number").apply(""), None);
    }

    #[test]
    fn regex_with_group_takes_first_group_of_first_match() {
        let e = ex(r"#### (\-?[0-9\.\,]+)");
        assert_eq!(e.apply("The answer is #### 1,234"), Some("1,234"));
        assert_eq!(ex(r"x=(\d+)").apply("x=1 then x=2"), Some("1"));
    }

    #[test]
    fn regex_without_group_takes_whole_match() {
        assert_eq!(ex(r"\d+ apples").apply("I have 3 apples, 4 apples"), Some("3 apples"));
    }

    #[test]
    fn non_participating_or_blank_group_is_a_miss() {
        assert_eq!(ex(r"(x)?y").apply("y"), None);
        assert_eq!(ex(r"Answer:(.*)").apply("Answer:   "), None);
    }

    #[test]
    fn fallback_chain_uses_first_extractor_that_hits() {
        let chain = [ex(r"#### (\d+)"), ex("last_number")];
        assert_eq!(first_hit(&chain, "so 2 + 2 = 4"), Some("4"));
        assert_eq!(first_hit(&chain, "#### 7 but 9 later"), Some("7"));
        assert_eq!(first_hit(&chain, "I do not know"), None);
        assert_eq!(first_hit(&[], "anything"), None);
    }

    #[test]
    fn table_without_group_takes_the_first_group_that_matched() {
        // lm-eval GSM8K flexible-extract: group_select -1, then the first non-empty group.
        let flex = Extractor::regex(
            Regex::new(r"(-?[$0-9.,]{2,})|(-?[0-9]+)").expect("valid"),
            None,
            Select::Last,
        );
        assert_eq!(flex.apply("I had 12 apples, ate 3"), Some("3"));
        assert_eq!(flex.apply("so $1,000."), Some("$1,000."));
        let first = Extractor::regex(
            Regex::new(r"(-?[$0-9.,]{2,})|(-?[0-9]+)").expect("valid"),
            None,
            Select::First,
        );
        assert_eq!(first.apply("7 then 42"), Some("7"));
        let one = Extractor::regex(Regex::new(r"(x)?y").expect("valid"), None, Select::First);
        assert_eq!(one.apply("y"), None);
    }

    #[test]
    fn reserved_names_are_not_regexes() {
        assert!(matches!(ex("last_number"), Extractor::LastNumber));
        assert!(matches!(ex("first_number"), Extractor::FirstNumber));
        assert!(matches!(ex("last_number_x"), Extractor::Pattern(_)));
        assert!(Extractor::parse("(").is_err());
    }
}
