//! Python string methods, `len()` and `strftime` as templates expect them.

use super::*;

/// Python's `datetime.strftime` for the given time; unsupported directives are an error
/// (chrono would otherwise panic while formatting).
pub(super) fn strftime<Tz: chrono::TimeZone>(
    now: &chrono::DateTime<Tz>,
    format: &str,
) -> Result<String, Error>
where
    Tz::Offset: fmt::Display,
{
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: unsupported format {format:?}"),
        ));
    }
    let mut out = String::new();
    write!(out, "{}", now.format_with_items(items.iter())).map_err(|_| {
        Error::new(ErrorKind::InvalidOperation, format!("strftime_now: cannot format {format:?}"))
    })?;
    Ok(out)
}

/// transformers' `strftime_now(format)`: `datetime.now().strftime(format)`, or the fixed time of
/// [`RenderInput::now`] when the render has one.
pub(super) fn strftime_now(state: &State, format: &str) -> Result<String, Error> {
    let fixed = state.lookup(NOW_VAR);
    match fixed.as_ref().and_then(|v| v.as_str()) {
        Some(text) => {
            use chrono::TimeZone;
            let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
            strftime(&chrono::Utc.from_utc_datetime(&naive), format)
        }
        None => strftime(&chrono::Local::now(), format),
    }
}

/// Python string methods with Python's semantics where minijinja-contrib's differ (whitespace
/// set, `split` edge cases, `title`), plus a few it lacks; everything else goes to pycompat.
pub(super) fn python_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        match method {
            "strip" | "lstrip" | "rstrip" => {
                let (chars,): (Option<Value>,) = from_args(args)?;
                let chars = match chars.filter(|c| !c.is_none()) {
                    None => None,
                    Some(c) => Some(c.as_str().map(str::to_string).ok_or_else(|| {
                        Error::new(ErrorKind::InvalidOperation, "strip arg must be None or str")
                    })?),
                };
                let (left, right) = (method != "rstrip", method != "lstrip");
                return Ok(Value::from(py_strip(s, chars.as_deref(), left, right)));
            }
            "split" | "rsplit" => {
                let (sep, maxsplit): (Option<Value>, Option<i64>) = from_args(args)?;
                let sep = match sep.filter(|s| !s.is_none()) {
                    None => None,
                    Some(v) => match v.as_str() {
                        Some("") => {
                            return Err(Error::new(ErrorKind::InvalidOperation, "empty separator"))
                        }
                        Some(sep) => Some(sep.to_string()),
                        None => {
                            return Err(Error::new(
                                ErrorKind::InvalidOperation,
                                "must be str or None",
                            ))
                        }
                    },
                };
                let max = maxsplit.filter(|m| *m >= 0).map(|m| m as usize);
                let parts = py_split(s, sep.as_deref(), max, method == "rsplit");
                return Ok(Value::from(parts));
            }
            "title" => {
                let () = from_args(args)?;
                return Ok(Value::from(py_title(s)));
            }
            "removeprefix" => {
                let (prefix,): (&str,) = from_args(args)?;
                return Ok(Value::from(s.strip_prefix(prefix).unwrap_or(s)));
            }
            "removesuffix" => {
                let (suffix,): (&str,) = from_args(args)?;
                return Ok(Value::from(s.strip_suffix(suffix).unwrap_or(s)));
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Python's `str.strip(chars)` on the chosen sides; `chars=None` means whitespace.
pub(super) fn py_strip<'a>(s: &'a str, chars: Option<&str>, left: bool, right: bool) -> &'a str {
    let strip = |c: char| match chars {
        Some(set) => set.contains(c),
        None => py_is_space(c),
    };
    let s = if left { s.trim_start_matches(strip) } else { s };
    if right {
        s.trim_end_matches(strip)
    } else {
        s
    }
}

/// Jinja2's `length`/`count`: `len()`, which is 0 for an undefined value.
pub(super) fn py_length(v: &Value) -> Result<usize, Error> {
    if v.is_undefined() {
        return Ok(0);
    }
    minijinja::filters::length(v)
}

/// Python's `str.isspace` for one character: Unicode White_Space plus the ASCII separators
/// U+001C..U+001F, which Rust's `char::is_whitespace` leaves out.
pub(super) fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

pub(super) fn py_split(
    s: &str,
    sep: Option<&str>,
    max: Option<usize>,
    from_right: bool,
) -> Vec<String> {
    let mut parts: Vec<String> = match (sep, from_right) {
        (Some(sep), false) => match max {
            Some(m) => s.splitn(m + 1, sep).map(str::to_string).collect(),
            None => s.split(sep).map(str::to_string).collect(),
        },
        (Some(sep), true) => match max {
            Some(m) => s.rsplitn(m + 1, sep).map(str::to_string).collect(),
            None => s.rsplit(sep).map(str::to_string).collect(),
        },
        (None, _) => {
            // Runs of whitespace separate; once `max` splits are made, the remainder is kept
            // whole, its whitespace on the far side included (as Python does).
            let mut out = Vec::new();
            let chars: Vec<char> =
                if from_right { s.chars().rev().collect() } else { s.chars().collect() };
            let mut i = 0;
            while i < chars.len() {
                while i < chars.len() && py_is_space(chars[i]) {
                    i += 1;
                }
                if i == chars.len() {
                    break;
                }
                if max.is_some_and(|m| out.len() == m) {
                    out.push(chars[i..].to_vec());
                    break;
                }
                let start = i;
                while i < chars.len() && !py_is_space(chars[i]) {
                    i += 1;
                }
                out.push(chars[start..i].to_vec());
            }
            out.into_iter()
                .map(|mut word| {
                    if from_right {
                        word.reverse();
                    }
                    word.into_iter().collect()
                })
                .collect()
        }
    };
    if from_right {
        parts.reverse();
    }
    parts
}

pub(super) fn py_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_cased = false;
    for c in s.chars() {
        let cased = c.is_lowercase() || c.is_uppercase();
        if cased && prev_cased {
            out.extend(c.to_lowercase());
        } else if cased {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_cased = cased;
    }
    out
}

/// The check [`rewrite_tags`] puts around each for loop's iterable: Jinja2 cannot
/// iterate None (`TypeError`), minijinja loops zero times over it.
pub(super) fn iterable_check(value: Value) -> Result<Value, Error> {
    if value.is_none() {
        return Err(Error::new(ErrorKind::InvalidOperation, "'NoneType' object is not iterable"));
    }
    Ok(value)
}

/// Jinja2's `is iterable`: anything Python can iterate, which leaves out None (minijinja iterates
/// None as empty, so `tools is iterable and tools|length > 0` would fail on `none|length`).
pub(super) fn is_iterable(value: &Value) -> bool {
    !value.is_none() && value.try_iter().is_ok()
}

/// One of minijinja's list-returning filters, on the filter's arguments after the value.
type ListFilter = fn(&State, Value, Vec<Value>) -> Result<Vec<Value>, Error>;

/// Jinja2's `map`, `select`, `reject`, `selectattr` and `rejectattr` return generators, minijinja's
/// return lists. The difference shows in `tojson` (a generator is not JSON serializable), in
/// `length` (a generator has no len) and in truth tests (a generator is always true), so their
/// results become [`PyGenerator`]s, which behave that way.
pub(super) fn as_generator(
    filter: ListFilter,
) -> impl Fn(&State, Value, Rest<Value>) -> Result<Value, Error> + Send + Sync + 'static {
    move |state, value, args| Ok(Value::from_object(PyGenerator(filter(state, value, args.0)?)))
}

/// A Python generator's stand-in: iterates (once or more, which is harmless), has no length and
/// no items by index, is always true, and is not JSON serializable.
#[derive(Debug)]
pub(super) struct PyGenerator(Vec<Value>);

impl Object for PyGenerator {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Iterable
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.clone())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        None
    }

    fn is_true(self: &Arc<Self>) -> bool {
        true
    }
}

/// The generator filters of [`as_generator`], each minijinja's own on the same arguments.
pub(super) fn add_generator_filters(env: &mut Environment<'static>) {
    use minijinja::filters;
    /// `select(test, args...)`: the test's name first, if any.
    fn named(args: &[Value], at: usize) -> Result<(Option<String>, Rest<Value>), Error> {
        let name = match args.get(at) {
            None => None,
            Some(v) if v.is_kwargs() => None,
            Some(v) => Some(v.as_str().map(str::to_string).ok_or_else(|| {
                Error::new(ErrorKind::InvalidOperation, "test name must be a string")
            })?),
        };
        let skip = at + usize::from(name.is_some());
        Ok((name, Rest(args.get(skip..).unwrap_or_default().to_vec())))
    }
    fn attr(args: &[Value]) -> Result<String, Error> {
        args.first().and_then(|a| a.as_str()).map(str::to_string).ok_or_else(|| {
            Error::new(ErrorKind::MissingArgument, "selectattr/rejectattr need an attribute name")
        })
    }
    env.add_filter("map", as_generator(|s, v, a| filters::map(s, v, Rest(a))));
    env.add_filter(
        "select",
        as_generator(|s, v, a| {
            let (name, rest) = named(&a, 0)?;
            filters::select(s, v, name.map(Into::into), rest)
        }),
    );
    env.add_filter(
        "reject",
        as_generator(|s, v, a| {
            let (name, rest) = named(&a, 0)?;
            filters::reject(s, v, name.map(Into::into), rest)
        }),
    );
    env.add_filter(
        "selectattr",
        as_generator(|s, v, a| {
            let (name, rest) = named(&a, 1)?;
            filters::selectattr(s, v, attr(&a)?.into(), name.map(Into::into), rest)
        }),
    );
    env.add_filter(
        "rejectattr",
        as_generator(|s, v, a| {
            let (name, rest) = named(&a, 1)?;
            filters::rejectattr(s, v, attr(&a)?.into(), name.map(Into::into), rest)
        }),
    );
}
