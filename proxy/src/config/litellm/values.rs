//! Scalar readers (each warns at the value's path and returns `None` on a bad value) and
//! small helpers shared by the conversion.

use super::{Converter, ENV_PREFIX};
use serde_yaml::Value;

impl Converter<'_> {
    /// A number, a numeric string, or `os.environ/NAME` holding one.
    pub(super) fn number(&mut self, v: &Value, path: &str) -> Option<f64> {
        let parsed = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => match s.strip_prefix(ENV_PREFIX) {
                Some(name) => {
                    let name = name.trim();
                    let Some(value) = self.lookup(name) else {
                        self.warn(
                            path,
                            format!("environment variable {name} is not set; ignored"),
                        );
                        return None;
                    };
                    value.trim().parse().ok()
                }
                None => s.trim().parse().ok(),
            },
            _ => None,
        };
        match parsed {
            Some(n) if n.is_finite() => Some(n),
            _ => {
                self.warn(path, "not a number; ignored");
                None
            }
        }
    }

    pub(super) fn non_negative(&mut self, v: &Value, path: &str) -> Option<f64> {
        let n = self.number(v, path)?;
        if n < 0.0 {
            self.warn(path, "negative; ignored");
            return None;
        }
        Some(n)
    }

    pub(super) fn positive(&mut self, v: &Value, path: &str) -> Option<f64> {
        let n = self.number(v, path)?;
        if n <= 0.0 {
            self.warn(path, "must be greater than 0; ignored");
            return None;
        }
        Some(n)
    }

    pub(super) fn seconds(&mut self, v: &Value, path: &str) -> Option<f64> {
        if v.is_null() {
            return None;
        }
        self.positive(v, path)
    }

    pub(super) fn count(&mut self, v: &Value, path: &str) -> Option<u32> {
        let n = self.non_negative(v, path)?;
        if n.fract() != 0.0 || n > f64::from(u32::MAX) {
            self.warn(path, "not a whole number; ignored");
            return None;
        }
        Some(n as u32)
    }

    pub(super) fn flag(&mut self, v: &Value, path: &str) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => {
                self.warn(path, "not true or false; ignored");
                None
            }
        }
    }

    /// A list of strings, or one string.
    pub(super) fn string_list(&mut self, v: &Value, path: &str) -> Vec<String> {
        match v {
            Value::Null => Vec::new(),
            Value::Sequence(seq) => {
                let mut out = Vec::new();
                for (i, item) in seq.iter().enumerate() {
                    match scalar(item) {
                        Some(s) => out.push(s),
                        None => self.warn(format!("{path}[{i}]"), "not a string; ignored"),
                    }
                }
                out
            }
            other => match scalar(other) {
                Some(s) => vec![s],
                None => {
                    self.warn(path, "expected a list of strings; ignored");
                    Vec::new()
                }
            },
        }
    }
}

pub(super) fn max_of<T: PartialOrd + Copy>(items: impl Iterator<Item = Option<T>>) -> Option<T> {
    items.flatten().fold(None, |acc, x| match acc {
        Some(a) if a >= x => Some(a),
        _ => Some(x),
    })
}

pub(super) fn millis(secs: f64) -> u64 {
    ((secs * 1000.0).round() as u64).max(1)
}

pub(super) fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// A LiteLLM model name as a Switchyard model pattern: `*` stays a wildcard, the other glob
/// characters match themselves.
pub(super) fn glob_literal(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '?' | '[' | ']' | '{' | '}' | '\\' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

/// Lower-case letters, digits and single dashes.
pub(super) fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-');
    if out.is_empty() {
        "backend".to_owned()
    } else {
        out.to_owned()
    }
}

/// A scalar as text (YAML may type `600`, `true` or `none` however it likes).
pub(super) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar(&t.value),
        _ => None,
    }
}

pub(super) fn key_name(k: &Value) -> String {
    scalar(k).unwrap_or_else(|| "<non-string key>".to_owned())
}
