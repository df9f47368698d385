//! Kubernetes label-selector strings (`gpu=on`, `k in (a,b)`, `!k`, …) as written in the
//! `node_selectors` config section, parsed into kube-rs' own `Selector` so that matching uses
//! kube's semantics rather than a copy of them.
//!
//! The Go backend used `labels.Parse`; a selector it could not parse stopped its inventory
//! loop for good. Here a bad selector is a configuration error reported at start-up.

use std::collections::BTreeSet;

use kube::core::{Expression, Selector};

/// Why a selector string is not a label selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A term (between commas) that has no recognisable operator or key.
    #[error("invalid selector term {0:?}")]
    Term(String),
    /// `in` / `notin` without a parenthesised value list.
    #[error("invalid value set in {0:?}")]
    ValueSet(String),
    /// A key or value with characters Kubernetes never allows in labels.
    #[error("invalid label key or value in {0:?}")]
    Label(String),
}

/// Parses a selector string. An empty (or all-blank) string selects every node, as in Go.
pub fn parse_selector(text: &str) -> Result<Selector, SelectorError> {
    let mut selector = Selector::default();
    for term in split_terms(text) {
        let term = term.trim();
        if term.is_empty() {
            if text.trim().is_empty() {
                continue;
            }
            return Err(SelectorError::Term(text.to_string()));
        }
        selector.extend(std::iter::once(parse_term(term)?));
    }
    Ok(selector)
}

/// Splits on commas that are not inside a `( … )` value set.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

fn parse_term(term: &str) -> Result<Expression, SelectorError> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(label_key(key.trim(), term)?));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(Expression::NotEqual(
            label_key(key.trim(), term)?,
            label_value(value.trim(), term)?,
        ));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Expression::Equal(
            label_key(key.trim(), term)?,
            label_value(value.trim(), term)?,
        ));
    }
    let words: Vec<&str> = term.splitn(2, char::is_whitespace).collect();
    match words.as_slice() {
        [key] => Ok(Expression::Exists(label_key(key, term)?)),
        [key, rest] => {
            let rest = rest.trim_start();
            let (negated, set) = if let Some(set) = rest.strip_prefix("notin") {
                (true, set)
            } else if let Some(set) = rest.strip_prefix("in") {
                (false, set)
            } else {
                return Err(SelectorError::Term(term.to_string()));
            };
            let values = parse_value_set(set.trim(), term)?;
            let key = label_key(key, term)?;
            Ok(if negated {
                Expression::NotIn(key, values)
            } else {
                Expression::In(key, values)
            })
        }
        _ => Err(SelectorError::Term(term.to_string())),
    }
}

fn parse_value_set(set: &str, term: &str) -> Result<BTreeSet<String>, SelectorError> {
    let inner = set
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| SelectorError::ValueSet(term.to_string()))?;
    inner
        .split(',')
        .map(|v| label_value(v.trim(), term))
        .collect()
}

/// Label keys: an optional DNS-subdomain prefix and `/`, then a name of alphanumerics,
/// `-`, `_`, `.`.
fn label_key(key: &str, term: &str) -> Result<String, SelectorError> {
    let valid_part = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let ok = match key.split_once('/') {
        Some((prefix, name)) => valid_part(prefix) && valid_part(name) && !name.contains('/'),
        None => valid_part(key),
    };
    if ok {
        Ok(key.to_string())
    } else {
        Err(SelectorError::Label(term.to_string()))
    }
}

fn label_value(value: &str, term: &str) -> Result<String, SelectorError> {
    if value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(value.to_string())
    } else {
        Err(SelectorError::Label(term.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::SelectorExt;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator_matches_as_kubernetes_does() {
        let node = labels(&[
            ("gpu", "on"),
            ("zone", "a"),
            ("metax-tech.com/gpu.installed", "true"),
        ]);
        let cases = [
            ("gpu=on", true),
            ("gpu==on", true),
            ("gpu=off", false),
            ("gpu!=off", true),
            ("missing!=x", true),
            ("gpu", true),
            ("!gpu", false),
            ("!missing", true),
            ("zone in (a,b)", true),
            ("zone in (b, c)", false),
            ("zone notin (b,c)", true),
            ("missing notin (b)", true),
            ("gpu=on,zone=a", true),
            ("gpu=on, zone in (a), !missing", true),
            ("gpu=on,zone=b", false),
            ("metax-tech.com/gpu.installed=true", true),
            ("", true),
            ("  ", true),
        ];
        for (text, want) in cases {
            let selector = parse_selector(text).unwrap();
            assert_eq!(selector.matches(&node), want, "{text}");
        }
    }

    #[test]
    fn malformed_selectors_are_errors() {
        for text in [
            "gpu=on,",
            "zone in a,b",
            "zone in (a",
            "a b c",
            "=on",
            "gpu=o n",
            "k in ()x",
        ] {
            assert!(parse_selector(text).is_err(), "{text:?} should fail");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,60}") {
            let _ = parse_selector(&text);
        }
    }
}
