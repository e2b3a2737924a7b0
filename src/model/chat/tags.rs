//! Block tags rewritten before minijinja compiles the template: the `{% generation %}` tag of
//! transformers' assistant masks, and `{% for %}` loops made to refuse `None` as Jinja2 does.

/// The function wrapped around a for loop's iterable (see [`checked_for_loop`]).
pub(super) const ITERABLE_CHECK: &str = "__benchgen_iterable";

/// transformers' AssistantTracker adds a `{% generation %}...{% endgeneration %}` block that
/// renders its body unchanged (it only records offsets). minijinja has no custom tags, so the
/// tags become `{% with %}`/`{% endwith %}`: also a scoped block that outputs its body, and a
/// block tag like the original, so trim_blocks/lstrip_blocks and `-` markers act the same.
/// `{% for %}` tags get [`checked_for_loop`]'s check; every other tag is kept as written.
pub(super) fn rewrite_tags(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    // Walk the delimiters in order so text inside `{{ }}` and `{# #}` is never taken for a tag.
    while let Some(start) = rest.find('{') {
        let (close, is_block) = match rest.as_bytes().get(start + 1) {
            Some(b'%') => ("%}", true),
            Some(b'{') => ("}}", false),
            Some(b'#') => ("#}", false),
            _ => {
                out.push_str(&rest[..start + 1]);
                rest = &rest[start + 1..];
                continue;
            }
        };
        let Some(len) = rest[start + 2..].find(close).map(|i| i + 4) else {
            break;
        };
        let tag = &rest[start..start + len];
        out.push_str(&rest[..start]);
        let (open_mark, body) = split_marker_front(&tag[2..len - 2]);
        let (body, close_mark) = split_marker_back(body);
        let word = match body.trim() {
            "generation" if is_block => Some("with".to_string()),
            "endgeneration" if is_block => Some("endwith".to_string()),
            _ if is_block => checked_for_loop(body),
            _ => None,
        };
        match word {
            Some(word) => out.push_str(&format!("{{%{open_mark} {word} {close_mark}%}}")),
            None => out.push_str(tag),
        }
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

pub(super) fn split_marker_front(s: &str) -> (&str, &str) {
    match s.as_bytes().first() {
        Some(b'-' | b'+') => s.split_at(1),
        _ => ("", s),
    }
}

pub(super) fn split_marker_back(s: &str) -> (&str, &str) {
    match s.as_bytes().last() {
        Some(b'-' | b'+') => s.split_at(s.len() - 1),
        _ => (s, ""),
    }
}

/// `for TARGET in EXPR [if COND] [recursive]` becomes `for TARGET in ITERABLE_CHECK(EXPR) ...`.
/// Jinja2 raises `TypeError: 'NoneType' object is not iterable` on `{% for t in tools %}` when
/// `tools` is None (templates that need tools refuse a conversation without them that way), where
/// minijinja loops zero times; the check function raises instead. None for any other tag.
pub(super) fn checked_for_loop(body: &str) -> Option<String> {
    let body = body.trim();
    let rest = body.strip_prefix("for")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let words = top_level_words(body);
    let (in_at, in_end) = words.iter().find(|(_, _, w)| *w == "in").map(|(a, b, _)| (*a, *b))?;
    let expr_end = words
        .iter()
        .find(|(at, _, w)| *at > in_end && matches!(*w, "if" | "recursive"))
        .map_or(body.len(), |(at, _, _)| *at);
    let expr = body[in_end..expr_end].trim();
    if expr.is_empty() {
        return None;
    }
    let tail = body[expr_end..].trim();
    let head = body[..in_at].trim_end();
    Some(format!("{head} in {ITERABLE_CHECK}({expr}) {tail}").trim_end().to_string())
}

/// The identifiers outside strings and brackets, with their byte ranges.
fn top_level_words(s: &str) -> Vec<(usize, usize, &str)> {
    let bytes = s.as_bytes();
    let mut words = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                i += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                if depth == 0 {
                    words.push((start, i, &s[start..i]));
                }
            }
            _ => i += 1,
        }
    }
    words
}
