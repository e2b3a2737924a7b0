//! Text normalisation applied to answers and targets alike.

use std::sync::LazyLock;

use regex::Regex;

use super::config::Normalizer;

/// `\b` keeps "another" and "theory" intact; `(?i)` catches "The".
static ARTICLES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(?:a|an|the)\b").expect("constant pattern is valid"));

/// A compiled normalisation step: `remove` regexes are built once per scorer.
#[derive(Debug)]
pub(crate) enum Step {
    Builtin(Normalizer),
    Remove(Regex),
}

impl Step {
    fn apply(&self, s: String) -> String {
        match self {
            Self::Builtin(n) => n.apply(s),
            Self::Remove(re) => re.replace_all(&s, "").into_owned(),
        }
    }
}

impl Normalizer {
    fn apply(&self, s: String) -> String {
        match self {
            // Uncompiled (tests, one-off calls); a scorer uses `Step::Remove`.
            Self::Remove(p) => match Regex::new(p) {
                Ok(re) => re.replace_all(&s, "").into_owned(),
                Err(_) => s,
            },
            Self::Strip => s.trim().to_owned(),
            Self::Lowercase => s.to_lowercase(),
            Self::RemoveCommas => s.replace(',', ""),
            Self::RemoveDollar => s.replace('$', ""),
            Self::RemovePunctuation => s.chars().filter(|c| !c.is_ascii_punctuation()).collect(),
            // A space, not nothing, as in SQuAD, so a later remove_punctuation
            // turns "x.the.y" into "x y" rather than gluing it into "xy".
            Self::RemoveArticles => ARTICLES.replace_all(&s, " ").into_owned(),
            Self::CollapseWhitespace => s.split_whitespace().collect::<Vec<_>>().join(" "),
            Self::RemoveTrailingPeriod => {
                let t = s.trim();
                t.strip_suffix('.').unwrap_or(t).to_owned()
            }
            Self::Squad => squad(&s),
            Self::Math => super::math::normalize_math(&s),
        }
    }
}

/// SQuAD's `normalize_answer` (lower, remove punctuation, articles, extra
/// whitespace), in SQuAD's order, which is not the order of the steps above:
/// punctuation goes before articles so "the." still loses its article.
pub(crate) fn squad(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    let no_articles = ARTICLES.replace_all(&no_punct, " ");
    no_articles.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Applies `steps` left to right.
#[cfg(test)]
pub(crate) fn normalize(steps: &[Normalizer], text: &str) -> String {
    steps.iter().fold(text.to_owned(), |acc, step| step.apply(acc))
}

/// Applies compiled `steps` left to right.
pub(crate) fn normalize_compiled(steps: &[Step], text: &str) -> String {
    steps.iter().fold(text.to_owned(), |acc, step| step.apply(acc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Normalizer::*;

    #[test]
    fn each_step() {
        assert_eq!(normalize(&[Strip], "  x y \n"), "x y");
        assert_eq!(normalize(&[Lowercase], "ÄbC"), "äbc");
        assert_eq!(normalize(&[RemoveCommas], "1,234,5"), "12345");
        assert_eq!(normalize(&[RemoveDollar], "$5 or $$6"), "5 or 6");
        assert_eq!(normalize(&[RemovePunctuation], "it's (3.5)!"), "its 35");
        assert_eq!(normalize(&[CollapseWhitespace], " a \t\n b  c "), "a b c");
        assert_eq!(normalize(&[RemoveTrailingPeriod], " 42. "), "42");
    }

    #[test]
    fn trailing_period_removes_only_one() {
        assert_eq!(normalize(&[RemoveTrailingPeriod], "etc.."), "etc.");
        assert_eq!(normalize(&[RemoveTrailingPeriod], "3.5"), "3.5");
    }

    #[test]
    fn remove_articles_drops_whole_words_only() {
        let steps = [RemoveArticles, CollapseWhitespace];
        assert_eq!(normalize(&steps, "The cat ate an apple and a pear"), "cat ate apple and pear");
        assert_eq!(normalize(&steps, "another theory: THE end"), "another theory: end");
        assert_eq!(normalize(&steps, "banana anthem"), "banana anthem");
    }

    #[test]
    fn remove_deletes_every_match_as_python_re_sub_does() {
        // lm-eval GSM8K's regexes_to_ignore, in its order.
        let gsm = [
            Remove(",".into()),
            Remove(r"\$".into()),
            Remove("(?s).*#### ".into()),
            Remove(r"\.$".into()),
        ];
        assert_eq!(normalize(&gsm, "$1,000."), "1000");
        assert_eq!(normalize(&gsm, "A = 3\nso #### 1\n#### 1,234"), "1234");
        assert_eq!(normalize(&gsm, "3.5"), "3.5");
        assert_eq!(normalize(&gsm, "7.."), "7.");
    }

    #[test]
    fn empty_list_is_identity() {
        assert_eq!(normalize(&[], "  As Is. "), "  As Is. ");
    }

    #[test]
    fn order_matters() {
        // Collapsing before stripping punctuation leaves the gap " - " made.
        assert_eq!(normalize(&[CollapseWhitespace, RemovePunctuation], "a - b"), "a  b");
        assert_eq!(normalize(&[RemovePunctuation, CollapseWhitespace], "a - b"), "a b");
        assert_eq!(normalize(&[RemoveArticles, RemovePunctuation], "x.the.y"), "x y");
        assert_eq!(normalize(&[Lowercase, RemoveArticles, Strip], "The X"), "x");
    }

    #[test]
    fn squad_is_lower_punct_articles_whitespace() {
        assert_eq!(normalize(&[Squad], "  The  Cotswolds, England. "), "cotswolds england");
        assert_eq!(normalize(&[Squad], "Twain, Mark"), "twain mark");
        // Punctuation first: "the." is still an article, "an-other" becomes "another".
        assert_eq!(normalize(&[Squad], "The. End an-other"), "end another");
        assert_eq!(normalize(&[Squad], "A"), "");
    }
}
