//! The `{% generation %}` tag of transformers' assistant masks, mapped onto minijinja.

/// transformers' AssistantTracker adds a `{% generation %}...{% endgeneration %}` block that
/// renders its body unchanged (it only records offsets). minijinja has no custom tags, so the
/// tags become `{% with %}`/`{% endwith %}`: also a scoped block that outputs its body, and a
/// block tag like the original, so trim_blocks/lstrip_blocks and `-` markers act the same.
pub(super) fn rewrite_generation_tags(template: &str) -> String {
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
            "generation" if is_block => Some("with"),
            "endgeneration" if is_block => Some("endwith"),
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
