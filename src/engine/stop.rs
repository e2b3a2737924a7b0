//! Stop strings may span several tokens, so they are searched in the decoded text.

use crate::error::Result;
use crate::model::TextTokenizer;

/// Byte offset of the earliest stop string in `text`, if any.
pub fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

/// Whether the text of `tokens` holds a stop string that its last token completed. Only the
/// text of the last tokens such a string could span is decoded and searched (a stop string
/// completed earlier was found then), so a check costs the same however long the generation;
/// a hit there is confirmed on the whole text, which only a window's first character can make
/// differ (a character split across tokens, a leading space).
pub fn stop_in_tail(tok: &TextTokenizer, tokens: &[u32], stops: &[String]) -> Result<bool> {
    let longest = stops.iter().map(|s| s.len()).max().unwrap_or(0);
    if longest == 0 {
        return Ok(false);
    }
    // Tokens that decode to no byte of their own (a special token, part of a character) could
    // stretch a stop string over more tokens than it has bytes: four times as many, and then some.
    let from = tokens.len().saturating_sub(4 * longest + 8);
    if find_stop(&tok.decode(&tokens[from..])?, stops).is_none() {
        return Ok(false);
    }
    Ok(from == 0 || find_stop(&tok.decode(tokens)?, stops).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Token by token, the tail check says "stopped" first exactly where the whole text first
    /// holds a stop string: long generations (the window far from the start), stops spanning
    /// many tokens, and characters split across byte tokens.
    #[test]
    fn the_tail_finds_a_stop_where_the_whole_text_first_does() {
        let ckpt = crate::model::embedded::model_checkpoint();
        let tok = TextTokenizer::from_bytes(&ckpt.tokenizer_json, "embedded").unwrap();
        let stops: Vec<String> =
            ["\n\n", "Question:", "😀é😀"].iter().map(|s| s.to_string()).collect();
        let filler = "The answer is 4 + 5 = 9, and 😀 then é. ".repeat(12);
        let texts = [
            format!("{filler}\n\nQuestion: next"),
            format!("{filler}Question:"),
            format!("{filler}x😀é😀y"),
            "Question:".to_string(),
            format!("{filler}\nno stop"),
        ];
        for text in &texts {
            let ids = tok.encode(text, false).unwrap();
            let first = (1..=ids.len())
                .find(|&n| find_stop(&tok.decode(&ids[..n]).unwrap(), &stops).is_some());
            for n in 1..=first.unwrap_or(ids.len()) {
                let got = stop_in_tail(&tok, &ids[..n], &stops).unwrap();
                assert_eq!(got, Some(n) == first, "{text:?} at token {n} of {}", ids.len());
            }
            assert_eq!(first.is_none(), text.ends_with("no stop"), "{text:?}");
        }
        assert!(!stop_in_tail(&tok, &[1, 2, 3], &[]).unwrap(), "no stop strings: never");
    }

    #[test]
    fn earliest_stop_wins() {
        let stops = vec!["\n\n".to_string(), "Question:".to_string()];
        assert_eq!(find_stop("42\nQuestion: x\n\n", &stops), Some(3));
        assert_eq!(find_stop("42\n\nQuestion:", &stops), Some(2));
        assert_eq!(find_stop("no stop here", &stops), None);
        assert_eq!(find_stop("anything", &[String::new()]), None);
    }
}
