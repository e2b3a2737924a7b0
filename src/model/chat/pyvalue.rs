//! Template values printed the way Python prints them.

use super::*;

/// A message as the template sees it: a dict whose keys iterate in Python's insertion order
/// (role, content), which a plain minijinja map (sorted keys) would not give.
#[derive(Debug)]
pub(super) struct MessageView {
    role: Value,
    content: Value,
}

impl MessageView {
    pub(super) fn new(m: &Message) -> MessageView {
        MessageView { role: Value::from(m.role.as_str()), content: Value::from(m.content.as_str()) }
    }
}

impl Object for MessageView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "role" => Some(self.role.clone()),
            "content" => Some(self.content.clone()),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["role", "content"])
    }
}

/// Python's `str()` of a template value, which is what Jinja2 prints.
pub(super) struct PyStr<'a>(pub(super) &'a Value);

impl fmt::Display for PyStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.kind() {
            ValueKind::Undefined => Ok(()),
            ValueKind::String => f.write_str(self.0.as_str().unwrap_or_default()),
            _ => write_py_repr(f, self.0),
        }
    }
}

/// Python's `repr()`, used for values nested inside printed lists and dicts.
pub(super) fn write_py_repr(f: &mut dyn fmt::Write, v: &Value) -> fmt::Result {
    match v.kind() {
        ValueKind::Undefined => f.write_str(""),
        ValueKind::None => f.write_str("None"),
        ValueKind::Bool => f.write_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number if !v.is_integer() => match f64::try_from(v.clone()) {
            Ok(x) => f.write_str(&py_float_repr(x)),
            Err(_) => write!(f, "{v}"),
        },
        ValueKind::String => write_py_str_repr(f, v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            f.write_char('[')?;
            if let Ok(iter) = v.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_py_repr(f, &item)?;
                }
            }
            f.write_char(']')
        }
        ValueKind::Map => {
            f.write_char('{')?;
            if let Ok(iter) = v.try_iter() {
                for (i, key) in iter.enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_py_repr(f, &key)?;
                    f.write_str(": ")?;
                    write_py_repr(f, &v.get_item(&key).unwrap_or_default())?;
                }
            }
            f.write_char('}')
        }
        _ => write!(f, "{v}"),
    }
}

pub(super) fn write_py_str_repr(f: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    f.write_char(quote)?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c == quote => write!(f, "\\{c}")?,
            c if (c as u32) < 0x20 || (0x7f..=0xa0).contains(&(c as u32)) => {
                write!(f, "\\x{:02x}", c as u32)?
            }
            c => f.write_char(c)?,
        }
    }
    f.write_char(quote)
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form outside 1e-4..1e16.
pub(super) fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{exp_sign}{:02}", exp.unsigned_abs())
    }
}
