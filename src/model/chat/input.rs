//! What a template is given beyond text-only messages: any JSON messages (tool calls, tool
//! results, reasoning), a tools list and extra variables, prepared as transformers prepares them.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::*;

/// A JSON value as a template sees it. Objects keep their keys in the order written, as Python
/// dicts do: templates iterate tool schemas and print arguments with `tojson`, and a map sorted by
/// key (minijinja's own, serde_json's) would reorder them.
#[derive(Debug, Clone)]
pub struct TemplateValue(pub(super) Value);

impl TemplateValue {
    /// Parses JSON text, keeping the order of object keys.
    pub fn from_json(text: &str) -> Result<TemplateValue, ChatTemplateError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let value = OrderedSeed
            .deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v))
            .map_err(|e| ChatTemplateError::Input(format!("not valid JSON: {e}")))?;
        Ok(TemplateValue(value))
    }

    /// A command-line value: JSON when it parses as JSON (`false`, `3`, `["a"]`), else the text
    /// itself as a string (`<s>`), so that special tokens need no quoting.
    pub fn from_arg(text: &str) -> TemplateValue {
        Self::from_json(text).unwrap_or_else(|_| TemplateValue(Value::from(text)))
    }

    /// The value under `key` of an object (None for a missing key or a non-object).
    pub fn get(&self, key: &str) -> Option<TemplateValue> {
        if self.0.kind() != ValueKind::Map {
            return None;
        }
        self.0.get_attr(key).ok().filter(|v| !v.is_undefined()).map(TemplateValue)
    }
}

/// Compact JSON as Python's `json.dumps(value, ensure_ascii=False)` writes it, keys in order.
impl fmt::Display for TemplateValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&json_dumps(&self.0).map_err(|_| fmt::Error)?)
    }
}

/// Variables set from the messages, tools and generation-prompt arguments.
const RESERVED_VARS: [&str; 4] = ["messages", "tools", "documents", "add_generation_prompt"];

/// A conversation and everything else transformers' `apply_chat_template(conversation,
/// tools=..., add_generation_prompt=..., tokenize=False, **kwargs)` hands the template.
#[derive(Debug, Clone)]
pub struct RenderInput {
    pub(super) messages: Vec<Value>,
    pub(super) tools: Option<Value>,
    pub(super) vars: Vec<(String, Value)>,
    pub(super) add_generation_prompt: bool,
    pub(super) now: Option<chrono::NaiveDateTime>,
}

impl RenderInput {
    /// The messages: a list of objects, each passed through with all its fields after the two
    /// changes transformers makes: keys whose value is null are dropped (`_normalize_chat_messages`),
    /// and a message's reasoning (`reasoning_content`, `thinking` or `reasoning`) is given under
    /// both `thinking` and `reasoning_content` (`_alias_reasoning_fields`).
    pub fn new(messages: &TemplateValue) -> Result<RenderInput, ChatTemplateError> {
        let list = match messages.0.kind() {
            ValueKind::Seq => messages.0.try_iter().map_err(|e| input_error(&e))?,
            _ => {
                return Err(ChatTemplateError::Input(format!(
                    "messages must be a list of objects, not {}",
                    json_kind(&messages.0)
                )))
            }
        };
        let mut out = Vec::new();
        for (i, message) in list.enumerate() {
            let Some(dict) = message.downcast_object_ref::<PyDict>() else {
                return Err(ChatTemplateError::Input(format!(
                    "message {i} must be an object, not {}",
                    json_kind(&message)
                )));
            };
            out.push(Value::from_object(normalized_message(dict)));
        }
        Ok(RenderInput {
            messages: out,
            tools: None,
            vars: Vec::new(),
            add_generation_prompt: true,
            now: None,
        })
    }

    /// The tools list (JSON schemas), as `apply_chat_template(tools=...)`.
    pub fn tools(mut self, tools: &TemplateValue) -> Result<RenderInput, ChatTemplateError> {
        if tools.0.kind() != ValueKind::Seq {
            return Err(ChatTemplateError::Input(format!(
                "tools must be a list, not {}",
                json_kind(&tools.0)
            )));
        }
        self.tools = Some(tools.0.clone());
        Ok(self)
    }

    pub fn add_generation_prompt(mut self, add: bool) -> RenderInput {
        self.add_generation_prompt = add;
        self
    }

    /// An extra template variable (`bos_token`, `enable_thinking`, ...), as a keyword argument of
    /// `apply_chat_template`; it overrides the template's special tokens of the same name. The
    /// names that have their own arguments are refused, as Python refuses a keyword given twice.
    pub fn var(
        mut self,
        name: &str,
        value: TemplateValue,
    ) -> Result<RenderInput, ChatTemplateError> {
        if RESERVED_VARS.contains(&name) {
            return Err(ChatTemplateError::Input(format!(
                "{name} cannot be set as a variable: it has its own argument"
            )));
        }
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value.0));
        Ok(self)
    }

    /// The time `strftime_now` reports instead of the clock's (for reproducible renders).
    pub fn now(mut self, now: chrono::NaiveDateTime) -> RenderInput {
        self.now = Some(now);
        self
    }
}

/// What a parsed JSON value was, in JSON's words.
fn json_kind(v: &Value) -> &'static str {
    match v.kind() {
        ValueKind::Map => "an object",
        ValueKind::Seq => "a list",
        ValueKind::String => "a string",
        ValueKind::Number => "a number",
        ValueKind::Bool => "a boolean",
        ValueKind::None => "null",
        _ => "a value of another kind",
    }
}

fn input_error(e: &Error) -> ChatTemplateError {
    ChatTemplateError::Input(detail(e))
}

/// transformers' normalisation of one message (see [`RenderInput::new`]), keeping key order as
/// Python's `{"thinking": r, **message, "reasoning_content": r}` does.
fn normalized_message(dict: &PyDict) -> PyDict {
    let mut entries: Vec<(String, Value)> =
        dict.0.iter().filter(|(_, v)| !v.is_none()).cloned().collect();
    let reasoning = ["reasoning_content", "thinking", "reasoning"]
        .iter()
        .find_map(|k| entries.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
    if let Some(reasoning) = reasoning {
        let thinking = match entries.iter().position(|(n, _)| n == "thinking") {
            Some(i) => entries.remove(i).1,
            None => reasoning.clone(),
        };
        entries.insert(0, ("thinking".to_string(), thinking));
        match entries.iter_mut().find(|(n, _)| n == "reasoning_content") {
            Some(entry) => entry.1 = reasoning,
            None => entries.push(("reasoning_content".to_string(), reasoning)),
        }
    }
    PyDict(entries)
}

/// A Python dict: keys in insertion order.
#[derive(Debug, Clone)]
pub(super) struct PyDict(pub(super) Vec<(String, Value)>);

impl Object for PyDict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.iter().map(|(k, _)| Value::from(k.as_str())).collect())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// Deserializes JSON straight into template values, objects as [`PyDict`].
struct OrderedSeed;

impl<'de> DeserializeSeed<'de> for OrderedSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(OrderedVisitor)
    }
}

struct OrderedVisitor;

impl<'de> Visitor<'de> for OrderedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::from(()))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::from(()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(OrderedSeed)? {
            items.push(item);
        }
        Ok(Value::from(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(String, Value)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(OrderedSeed)?;
            // A repeated key keeps its first position and its last value, as json.loads does.
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => entries.push((key, value)),
            }
        }
        Ok(Value::from_object(PyDict(entries)))
    }
}
