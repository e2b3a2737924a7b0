//! Test only: the splitters llama.cpp writes by hand instead of running a regex
//! (`unicode_regex_split_custom_*` in its `unicode.cpp`), re-written step by step, so that the
//! regexes standing in for them in [`super::pretok`] can be checked against them on random text.

use regex::Regex;

use super::pretok::lookup;
use super::pretok::tests_support::{split_with, splitter};
use crate::rng::SplitMix64;

/// The character facts llama.cpp's splitters look at.
#[derive(Clone, Copy, Default)]
struct Flags {
    letter: bool,
    number: bool,
    whitespace: bool,
    mark: bool,
}

struct Classes {
    letter: Regex,
    number: Regex,
    whitespace: Regex,
    mark: Regex,
}

impl Classes {
    fn new() -> Self {
        let re = |r: &str| Regex::new(r).unwrap();
        Self {
            letter: re(r"^\p{L}$"),
            number: re(r"^\p{N}$"),
            whitespace: re(r"^\s$"),
            mark: re(r"^\p{M}$"),
        }
    }

    fn of(&self, c: char) -> Flags {
        let s = c.to_string();
        Flags {
            letter: self.letter.is_match(&s),
            number: self.number.is_match(&s),
            whitespace: self.whitespace.is_match(&s),
            mark: self.mark.is_match(&s),
        }
    }
}

/// Han as `unicode_cpt_is_han` has it.
fn is_han(c: char) -> bool {
    let c = c as u32;
    [
        (0x4E00, 0x9FFF),
        (0x3400, 0x4DBF),
        (0x20000, 0x2A6DF),
        (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF),
        (0x2CEB0, 0x2EBEF),
        (0xF900, 0xFAFF),
        (0x2F800, 0x2FA1F),
    ]
    .iter()
    .any(|&(a, b)| (a..=b).contains(&c))
}

/// A position-indexed view of one text, past-the-end positions reading as "nothing".
struct Text<'a> {
    chars: Vec<char>,
    cl: &'a Classes,
}

impl Text<'_> {
    fn at(&self, i: usize) -> Option<char> {
        self.chars.get(i).copied()
    }
    fn flags(&self, i: usize) -> Flags {
        self.at(i).map_or_else(Flags::default, |c| self.cl.of(c))
    }
    fn lower(&self, i: usize) -> Option<char> {
        self.at(i).map(|c| c.to_lowercase().next().unwrap_or(c))
    }
    /// Length of a contraction (`'s`, `'re`, …) at `i`, case-insensitive or not.
    fn contraction(&self, i: usize, any_case: bool) -> Option<usize> {
        if self.at(i) != Some('\'') || i + 1 >= self.chars.len() {
            return None;
        }
        let get = |j| if any_case { self.lower(j) } else { self.at(j) };
        if matches!(get(i + 1), Some('s' | 't' | 'm' | 'd')) {
            return Some(2);
        }
        if i + 2 < self.chars.len()
            && matches!(
                (get(i + 1), get(i + 2)),
                (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
            )
        {
            return Some(3);
        }
        None
    }
    /// Whitespace run at `i`: its length and the end of its last `\r`/`\n`, if any.
    fn spaces(&self, i: usize) -> (usize, Option<usize>) {
        let mut n = 0;
        let mut last_newline = None;
        while self.flags(i + n).whitespace {
            if matches!(self.at(i + n), Some('\r' | '\n')) {
                last_newline = Some(i + n + 1);
            }
            n += 1;
        }
        (n, last_newline)
    }
    fn pieces(&self, ends: &[usize]) -> Vec<String> {
        let mut start = 0;
        ends.iter()
            .filter_map(|&e| {
                let p: String = self.chars[start..e].iter().collect();
                start = e;
                (!p.is_empty()).then_some(p)
            })
            .collect()
    }
}

/// The whitespace tail every splitter shares: `\s*[\r\n]+` (when `newlines`), `\s+(?!\S)`, `\s+`.
fn whitespace(t: &Text, pos: usize, newlines: bool) -> usize {
    let (n, last_newline) = t.spaces(pos);
    match last_newline {
        Some(end) if newlines => end,
        _ if n > 1 && pos + n < t.chars.len() => pos + n - 1,
        _ if n > 0 => pos + n,
        _ => pos + 1,
    }
}

fn gpt2(t: &Text) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = 0;
    while pos < t.chars.len() {
        if let Some(n) = t.contraction(pos, false) {
            pos += n;
        } else {
            let space = t.at(pos) == Some(' ');
            let f = if space { t.flags(pos + 1) } else { t.flags(pos) };
            let run = |p: &mut usize, keep: &dyn Fn(Flags) -> bool| {
                *p += usize::from(space);
                while *p < t.chars.len() && keep(t.flags(*p)) {
                    *p += 1;
                }
            };
            if f.letter {
                run(&mut pos, &|f| f.letter);
            } else if f.number {
                run(&mut pos, &|f| f.number);
            } else if !(f.whitespace || f.letter || f.number)
                && pos + usize::from(space) < t.chars.len()
            {
                run(&mut pos, &|f| !(f.whitespace || f.letter || f.number));
            } else {
                pos = whitespace(t, pos, false);
            }
        }
        ends.push(pos);
    }
    ends
}

/// Llama 3 (`digits` = 3), Qwen2 (`digits` = 1) and Qwen3.5 (`marks`: combining marks count
/// as letters).
fn llama3(t: &Text, digits: usize, marks: bool) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = 0;
    let len = t.chars.len();
    let letter = |f: Flags| f.letter || (marks && f.mark);
    while pos < len {
        let c = t.at(pos).unwrap();
        let f = t.flags(pos);
        if let Some(n) = t.contraction(pos, true) {
            pos += n;
        } else if !(c == '\r' || c == '\n' || f.number) && (letter(f) || letter(t.flags(pos + 1))) {
            pos += 1;
            while letter(t.flags(pos)) {
                pos += 1;
            }
        } else if f.number {
            let start = pos;
            while t.flags(pos).number && pos - start < digits {
                pos += 1;
            }
        } else {
            let f2 = if c == ' ' { t.flags(pos + 1) } else { f };
            // A space at the end has no character after it to start a run of others.
            let lone_space = c == ' ' && pos + 1 >= len;
            if !(f2.whitespace || letter(f2) || f2.number || lone_space) {
                pos += usize::from(c == ' ');
                while pos < len
                    && !{
                        let g = t.flags(pos);
                        g.whitespace || letter(g) || g.number
                    }
                {
                    pos += 1;
                }
                while matches!(t.at(pos), Some('\r' | '\n')) {
                    pos += 1;
                }
            } else {
                pos = whitespace(t, pos, true);
            }
        }
        ends.push(pos);
    }
    ends
}

fn kimi_k2(t: &Text) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = 0;
    let len = t.chars.len();
    let word_letter = |i: usize| t.flags(i).letter && t.at(i).is_some_and(|c| !is_han(c));
    while pos < len {
        let c = t.at(pos).unwrap();
        let f = t.flags(pos);
        let leading = !(c == '\r' || c == '\n' || f.letter || f.number);
        if is_han(c) {
            while t.at(pos).is_some_and(is_han) {
                pos += 1;
            }
        } else if word_letter(pos) || (leading && word_letter(pos + 1)) {
            pos += usize::from(leading);
            while word_letter(pos) {
                pos += 1;
            }
            pos += t.contraction(pos, true).unwrap_or(0);
        } else if f.number {
            let start = pos;
            while t.flags(pos).number && pos - start < 3 {
                pos += 1;
            }
        } else {
            let f2 = if c == ' ' { t.flags(pos + 1) } else { f };
            let lone_space = c == ' ' && pos + 1 >= len;
            if !(f2.whitespace || f2.letter || f2.number || lone_space) {
                pos += usize::from(c == ' ');
                while pos < len
                    && !{
                        let g = t.flags(pos);
                        g.whitespace || g.letter || g.number
                    }
                {
                    pos += 1;
                }
                while matches!(t.at(pos), Some('\r' | '\n')) {
                    pos += 1;
                }
            } else {
                pos = whitespace(t, pos, true);
            }
        }
        ends.push(pos);
    }
    ends
}

/// AFMoE's digits: a run cut into threes from the right, the text before it joining its first
/// group, the text after the last run one piece.
fn afmoe_digits(t: &Text) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = 0;
    let len = t.chars.len();
    while pos < len {
        if t.flags(pos).number {
            let start = pos;
            while t.flags(pos).number {
                pos += 1;
            }
            let n = pos - start;
            let mut at = start + n % 3;
            if n % 3 > 0 {
                ends.push(at);
            }
            while at < pos {
                at += 3;
                ends.push(at);
            }
        } else {
            pos += 1;
        }
    }
    ends.push(len);
    ends
}

#[test]
fn regexes_split_as_llama_cpps_hand_written_splitters() {
    let pool: Vec<&str> = vec![
        "a", "B", "z", "é", "É", "ß", "ǅ", "ʰ", "中", "字", "ぁ", "1", "9", "٣", "Ⅳ", "½", " ",
        " ", " ", "\t", "\n", "\r", "\u{a0}", "\u{3000}", "'", "s", "S", "t", "l", "L", "v", "e",
        "r", "R", "d", "m", "!", ".", "-", "$", "+", "😀", "\u{301}", "\u{200d}", "_", "/",
        "\u{fe0f}",
    ];
    let cl = Classes::new();
    let mut rng = SplitMix64::new(7);
    type Splitter<'a> = &'a dyn Fn(&Text) -> Vec<usize>;
    let splitters: [(&str, Splitter); 6] = [
        ("gpt-2", &gpt2),
        ("llama-bpe", &|t| llama3(t, 3, false)),
        ("qwen2", &|t| llama3(t, 1, false)),
        ("qwen35", &|t| llama3(t, 1, true)),
        ("kimi-k2", &kimi_k2),
        ("afmoe", &afmoe_digits),
    ];
    let compiled: Vec<_> = splitters
        .iter()
        .map(|(pre, _)| {
            let p = lookup(Some(pre)).unwrap();
            // AFMoE's other regexes are ordinary ones; its first is the hand-split one.
            let regexes = if *pre == "afmoe" { &p.regexes[..1] } else { p.regexes };
            regexes.iter().map(|r| splitter(r)).collect::<Vec<_>>()
        })
        .collect();
    for _ in 0..3000 {
        let text: String =
            (0..rng.below(24)).map(|_| pool[rng.below(pool.len() as u64) as usize]).collect();
        let t = Text { chars: text.chars().collect(), cl: &cl };
        for ((pre, hand), regexes) in splitters.iter().zip(&compiled) {
            assert_eq!(split_with(regexes, &text), t.pieces(&hand(&t)), "{pre}: {text:?}");
        }
    }
}
