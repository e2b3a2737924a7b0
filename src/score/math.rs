//! The `math` normaliser: LaTeX answers brought to one canonical spelling, following
//! `strip_string` of the Hendrycks MATH code (also used by lm-evaluation-harness's
//! `hendrycks_math`) plus Minerva's `\text{…}` unwrapping and thousands commas.
//!
//! Normalised: line breaks, `\!`, `\\`→`\`, `\dfrac`/`\tfrac`→`\frac`, `\left`/`\right`,
//! degrees (`^\circ`, `^{\circ}`), `$` and `\$`, units written `\text{ unit}` (with the space,
//! as MATH does) and everything after them, `\text{X}`/`\textbf{X}`/`\mbox{X}`→`X`, `\%` and
//! `%`, a leading `.5`→`0.5`, a short left-hand side (`x = 5`→`5`), `\sqrt3`→`\sqrt{3}`,
//! `\frac12`→`\frac{1}{2}`, `0.5`→`\frac{1}{2}`, integer `a/b`→`\frac{a}{b}`, all spaces,
//! commas in a plain integer (`1,000`), one trailing `.`.
//!
//! Not normalised (so not judged equal): symbolic equivalence (`\frac{2}{4}` vs `\frac{1}{2}`,
//! `x+1` vs `1+x`), decimals other than 0.5 vs fractions, unit words without `\text{ …}`,
//! interval/tuple spacing beyond removing spaces, `\pi` vs `π`.

use std::sync::LazyLock;

use regex::Regex;

static TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\\(?:text|textbf|mbox)\{([^{}]*)\}").expect("constant pattern is valid")
});
static SQRT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\sqrt([^{\\\s])").expect("constant pattern is valid"));
static A_SLASH_B: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(-?\d+)/(\d+)$").expect("constant pattern is valid"));
static GROUPED_INT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^-?\d{1,3}(?:,\d{3})+$").expect("constant pattern is valid"));

/// Canonical spelling of a MATH answer (see the module comment for the rules).
pub(crate) fn normalize_math(s: &str) -> String {
    let mut s = s.replace('\n', "").replace("\\!", "").replace("\\\\", "\\");
    s = s.replace("tfrac", "frac").replace("dfrac", "frac");
    s = s.replace("\\left", "").replace("\\right", "");
    s = s.replace("^{\\circ}", "").replace("^\\circ", "");
    s = s.replace("\\$", "").replace('$', "");
    // MATH writes units as "\text{ cm}"; the number is what is left of them.
    if let Some(i) = s.find("\\text{ ") {
        s.truncate(i);
    }
    s = TEXT.replace_all(&s, "$1").into_owned();
    s = s.replace("\\%", "").replace('%', "");
    s = s.replace(" .", " 0.").replace("{.", "{0.");
    if s.starts_with('.') {
        s.insert(0, '0');
    }
    // "x = 5" and "k=5": a left side of at most two characters is a variable name.
    if let [lhs, rhs] = s.split('=').collect::<Vec<_>>()[..] {
        if lhs.trim().len() <= 2 {
            s = rhs.to_owned();
        }
    }
    s = SQRT.replace_all(&s, "\\sqrt{$1}").into_owned();
    s.retain(|c| !c.is_whitespace());
    s = fix_fracs(&s);
    if let Some(t) = s.strip_suffix('.') {
        s = t.to_owned();
    }
    if s == "0.5" {
        return "\\frac{1}{2}".into();
    }
    if GROUPED_INT.is_match(&s) {
        s.retain(|c| c != ',');
    }
    A_SLASH_B.replace(&s, "\\frac{$1}{$2}").into_owned()
}

/// `\frac12` → `\frac{1}{2}`, `\frac1{72}` → `\frac{1}{72}`, `\frac{1}2` → `\frac{1}{2}`:
/// single-character arguments get their braces.
fn fix_fracs(s: &str) -> String {
    let mut parts = s.split("\\frac");
    let mut out = parts.next().unwrap_or_default().to_owned();
    for part in parts {
        out.push_str("\\frac");
        let (first, rest) = brace_arg(part);
        let (second, tail) = brace_arg(rest);
        out.push_str(&first);
        out.push_str(&second);
        out.push_str(tail);
    }
    out
}

/// Byte index of the `}` that closes the `{` starting `s`; `None` when it is never closed.
pub(crate) fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// One argument: `{…}` as written (balanced) or a single character wrapped in braces.
fn brace_arg(s: &str) -> (String, &str) {
    if s.starts_with('{') {
        return match closing_brace(s) {
            Some(i) => (s[..=i].to_owned(), &s[i + 1..]),
            None => (s.to_owned(), ""),
        };
    }
    match s.chars().next() {
        Some(c) if c != '\\' => (format!("{{{c}}}"), &s[c.len_utf8()..]),
        _ => (String::new(), s),
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_math as n;

    #[test]
    fn same_answer_different_spelling() {
        for (a, b) in [
            ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
            ("\\dfrac{1}{2}", "\\frac12"),
            ("\\tfrac{3}{4}", "3/4"),
            ("0.5", "\\frac{1}{2}"),
            ("90^\\circ", "90"),
            ("90^{\\circ}", "90"),
            ("\\$18.90", "18.90"),
            ("10\\text{ inches}", "10"),
            ("\\text{Evelyn}", "Evelyn"),
            ("x = 5", "5"),
            ("1,\\!000", "1000"),
            ("5.", "5"),
            (".5", "\\frac{1}{2}"),
            ("\\sqrt3", "\\sqrt{3}"),
            ("50\\%", "50"),
            ("\\frac{\\sqrt{3}}2", "\\frac{\\sqrt{3}}{2}"),
        ] {
            assert_eq!(n(a), n(b), "{a} vs {b}");
        }
    }

    #[test]
    fn different_answers_stay_different() {
        for (a, b) in [
            ("\\frac{2}{4}", "\\frac{1}{2}"),
            ("x+1", "1+x"),
            ("1,2", "12"),
            ("0.25", "\\frac14"),
            ("10", "100"),
        ] {
            assert_ne!(n(a), n(b), "{a} vs {b}");
        }
        // A long left side is not a variable name.
        assert_eq!(n("f(x) = 2x"), "f(x)=2x");
    }
}
