//! Stop strings may span several tokens, so they are searched in the decoded text.

/// Byte offset of the earliest stop string in `text`, if any.
pub fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_stop_wins() {
        let stops = vec!["\n\n".to_string(), "Question:".to_string()];
        assert_eq!(find_stop("42\nQuestion: x\n\n", &stops), Some(3));
        assert_eq!(find_stop("42\n\nQuestion:", &stops), Some(2));
        assert_eq!(find_stop("no stop here", &stops), None);
        assert_eq!(find_stop("anything", &[String::new()]), None);
    }
}
