//! An environment's README as the Overview tab shows it. Environments come from anywhere (a
//! folder, a zip someone sent), so their markdown is rendered without its raw HTML, which is
//! shown as text, and without link targets that would run script.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

pub fn to_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Link { link_type, dest_url: safe_url(dest_url), title, id })
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Image { link_type, dest_url: safe_url(dest_url), title, id })
        }
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// `url` when it is relative or http(s)/mailto, else `#`. Browsers ignore tabs, newlines and
/// case in a scheme (`Java\tScript:`), so the scheme is compared the same way.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let scheme_end = url.find([':', '/', '?', '#']);
    let Some(end) = scheme_end.filter(|&i| url[i..].starts_with(':')) else {
        return url;
    };
    let scheme: String = url[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase();
    if matches!(scheme.as_str(), "http" | "https" | "mailto") {
        url
    } else {
        CowStr::Borrowed("#")
    }
}

#[cfg(test)]
mod tests {
    use super::to_html;

    #[test]
    fn markdown_renders() {
        let html =
            to_html("# Title\n\nSome **bold** and `code`.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<strong>bold</strong>") && html.contains("<code>code</code>"));
        assert!(html.contains("<table>") && html.contains("<td>2</td>"), "{html}");
    }

    #[test]
    fn raw_html_is_text_and_script_links_go_nowhere() {
        let html = to_html(
            "<script>alert(1)</script>\n\nhi <img src=x onerror=alert(2)>\n\n\
             [a](javascript:alert(3)) [b](Java%09Script:x) [c](<JAVA\tSCRIPT:x>) \
             [d](https://example.org/p) [e](data/test.jsonl) ![i](data:text/html,x)",
        );
        assert!(!html.contains("<script>") && !html.contains("<img src=x"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"), "{html}");
        let hrefs: Vec<&str> =
            html.split("href=\"").skip(1).filter_map(|h| h.split('"').next()).collect();
        assert_eq!(hrefs, ["#", "#", "#", "https://example.org/p", "data/test.jsonl"], "{html}");
        assert!(!html.contains("src=\"data:"), "{html}");
        assert!(html.contains("href=\"https://example.org/p\""), "{html}");
        assert!(html.contains("href=\"data/test.jsonl\""), "{html}");
    }
}
