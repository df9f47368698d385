//! Label and field selectors as the API server parses and applies them (`labelSelector`,
//! `fieldSelector` of list and watch requests).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A selector the server cannot parse; answered with `400 BadRequest` like the real server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(String);

/// One clause of a label selector, in the forms `kubectl -l` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals {
        key: String,
        value: String,
    },
    NotEquals {
        key: String,
        value: String,
    },
    In {
        key: String,
        values: BTreeSet<String>,
    },
    NotIn {
        key: String,
        values: BTreeSet<String>,
    },
    Exists {
        key: String,
    },
    DoesNotExist {
        key: String,
    },
    GreaterThan {
        key: String,
        value: i64,
    },
    LessThan {
        key: String,
        value: i64,
    },
}

impl Requirement {
    pub(super) fn matches<'a>(&self, label: &impl Fn(&str) -> Option<&'a str>) -> bool {
        match self {
            Self::Equals { key, value } => label(key) == Some(value.as_str()),
            Self::NotEquals { key, value } => label(key) != Some(value.as_str()),
            Self::In { key, values } => label(key).is_some_and(|v| values.contains(v)),
            Self::NotIn { key, values } => !label(key).is_some_and(|v| values.contains(v)),
            Self::Exists { key } => label(key).is_some(),
            Self::DoesNotExist { key } => label(key).is_none(),
            Self::GreaterThan { key, value } => label(key)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *value),
            Self::LessThan { key, value } => label(key)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *value),
        }
    }
}

/// A parsed `labelSelector`: requirements joined by commas, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut cursor = Cursor { text, pos: 0 };
        let mut requirements = Vec::new();
        cursor.skip_ws();
        if cursor.at_end() {
            return Ok(Self { requirements });
        }
        // Each turn consumes at least one character or fails, so text.len() bounds the loop.
        for _ in 0..=text.len() {
            requirements.push(cursor.requirement()?);
            cursor.skip_ws();
            if cursor.at_end() {
                return Ok(Self { requirements });
            }
            if !cursor.eat(",") {
                return Err(cursor.error("expected ','"));
            }
        }
        Err(cursor.error("selector too long"))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }

    pub(super) fn matches_with<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|req| req.matches(&label))
    }

    pub(super) fn matches_object(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        self.matches_with(|key| labels.and_then(|l| l.get(key)).and_then(Value::as_str))
    }
}

/// Hand-rolled scanner: the grammar is tiny and error positions help debug test selectors.
pub(super) struct Cursor<'a> {
    pub(super) text: &'a str,
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    pub(super) fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    pub(super) fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    pub(super) fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
            .unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    pub(super) fn error(&self, what: &str) -> SelectorError {
        SelectorError(format!(
            "{what} at position {} in {:?}",
            self.pos, self.text
        ))
    }

    pub(super) fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        self.skip_ws();
        if self.eat("!") {
            self.skip_ws();
            let key = self.key()?;
            return Ok(Requirement::DoesNotExist { key });
        }
        let key = self.key()?;
        self.skip_ws();
        if self.at_end() || self.rest().starts_with(',') {
            return Ok(Requirement::Exists { key });
        }
        if self.eat("==") || self.eat("=") {
            let value = self.value()?;
            return Ok(Requirement::Equals { key, value });
        }
        if self.eat("!=") {
            let value = self.value()?;
            return Ok(Requirement::NotEquals { key, value });
        }
        if self.eat(">") {
            let value = self.integer()?;
            return Ok(Requirement::GreaterThan { key, value });
        }
        if self.eat("<") {
            let value = self.integer()?;
            return Ok(Requirement::LessThan { key, value });
        }
        let start = self.pos;
        match self.word() {
            "in" => Ok(Requirement::In {
                key,
                values: self.value_set()?,
            }),
            "notin" => Ok(Requirement::NotIn {
                key,
                values: self.value_set()?,
            }),
            _ => {
                self.pos = start;
                Err(self.error("expected one of =, ==, !=, in, notin, >, <"))
            }
        }
    }

    pub(super) fn key(&mut self) -> Result<String, SelectorError> {
        let key = self.word();
        if valid_label_key(key) {
            Ok(key.to_owned())
        } else {
            Err(self.error(&format!("invalid label key {key:?}")))
        }
    }

    pub(super) fn value(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let value = self.word();
        if valid_label_value(value) {
            Ok(value.to_owned())
        } else {
            Err(self.error(&format!("invalid label value {value:?}")))
        }
    }

    pub(super) fn integer(&mut self) -> Result<i64, SelectorError> {
        self.skip_ws();
        let word = self.word();
        word.parse()
            .map_err(|_| self.error(&format!("expected an integer, found {word:?}")))
    }

    pub(super) fn value_set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        self.skip_ws();
        if !self.eat("(") {
            return Err(self.error("expected '('"));
        }
        self.skip_ws();
        if self.eat(")") {
            return Err(self.error("values set can't be empty"));
        }
        let mut values = BTreeSet::new();
        for _ in 0..=self.text.len() {
            values.insert(self.value()?);
            self.skip_ws();
            if self.eat(")") {
                return Ok(values);
            }
            if !self.eat(",") {
                return Err(self.error("expected ',' or ')'"));
            }
        }
        Err(self.error("unterminated value set"))
    }
}

/// `[prefix/]name`, where name is a label value that may not be empty.
pub(super) fn valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.')
                .all(|part| !part.contains('_') && !part.is_empty() && valid_label_value(part))
    });
    prefix_ok && !name.is_empty() && valid_label_value(name)
}

pub(super) fn valid_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.is_empty()
        || (value.len() <= 63
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric))
}

/// A parsed `fieldSelector`: `path=value`, `path==value` or `path!=value`, comma-joined.
///
/// Any dotted path into the object is accepted (a missing field reads as ""), which covers
/// `metadata.name`, `spec.nodeName` and `involvedObject.*` without a table per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub terms: Vec<FieldTerm>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub path: String,
    pub value: String,
    pub negated: bool,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let terms = text
            .split(',')
            .map(|term| {
                let (path, value, negated) = if let Some((p, v)) = term.split_once("!=") {
                    (p, v, true)
                } else if let Some((p, v)) = term.split_once("==") {
                    (p, v, false)
                } else if let Some((p, v)) = term.split_once('=') {
                    (p, v, false)
                } else {
                    return Err(SelectorError(format!(
                        "invalid field selector term {term:?}"
                    )));
                };
                let path = path.trim();
                if path.is_empty() {
                    return Err(SelectorError(format!("empty field name in {term:?}")));
                }
                Ok(FieldTerm {
                    path: path.to_owned(),
                    value: value.trim().to_owned(),
                    negated,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { terms })
    }

    pub fn matches_object(&self, object: &Value) -> bool {
        self.terms.iter().all(|term| {
            let pointer = format!("/{}", term.path.replace('.', "/"));
            let actual = match object.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == term.value) != term.negated
        })
    }
}

/// Which objects one request sees: its URL scope plus its selectors.
#[derive(Debug, Clone, Default)]
pub(super) struct ObjectFilter {
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) labels: LabelSelector,
    pub(super) fields: FieldSelector,
}

impl ObjectFilter {
    pub(super) fn matches(&self, object: &Value) -> bool {
        let field = |path: &str| object.pointer(path).and_then(Value::as_str).unwrap_or("");
        self.namespace
            .as_deref()
            .is_none_or(|ns| field("/metadata/namespace") == ns)
            && self
                .name
                .as_deref()
                .is_none_or(|name| field("/metadata/name") == name)
            && self.labels.matches_object(object)
            && self.fields.matches_object(object)
    }
}
