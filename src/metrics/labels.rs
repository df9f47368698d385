//! [`LabelSet`]: one series' label values, escaped and rendered once as `{name="value",…}` and
//! shared (as `Arc`) by every family that uses them and by later cycles while they stay equal.
//!
//! kube-state-metrics keeps each object's rendered lines for the same reason: at 10,000 GPUs
//! a cycle publishes ~520,000 series over ~50,000 distinct label sets, and escaping and
//! formatting every label of every series every cycle was most of a cycle's CPU.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

/// Most label names a set holds (the container allocation families').
pub const MAX_LABELS: usize = 8;

/// Rendered label values. The container families' two label lists share one set: the usage
/// families' names are a prefix of the allocation families' ([`LabelSet::write`] cuts it).
#[derive(Clone, PartialEq, Eq)]
pub struct LabelSet {
    /// `{name="value",…}` with values escaped as the text format wants.
    text: Box<str>,
    /// Byte range of each value (escaped) in `text`.
    spans: [(u32, u32); MAX_LABELS],
    len: u8,
    /// No value needed escaping, so each span is the raw value.
    plain: bool,
}

impl LabelSet {
    /// Renders `values` under `names` (same length, at most [`MAX_LABELS`]; extra values are
    /// ignored).
    pub fn new(names: &[&str], values: &[&str]) -> Self {
        let len = names.len().min(values.len()).min(MAX_LABELS);
        let mut text = String::with_capacity(
            2 + names[..len]
                .iter()
                .zip(values)
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>(),
        );
        let mut spans = [(0u32, 0u32); MAX_LABELS];
        let mut plain = true;
        text.push('{');
        for (i, (name, value)) in names.iter().zip(values).take(len).enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(name);
            text.push_str("=\"");
            let start = text.len();
            if needs_escape(value) {
                plain = false;
                escape_into(&mut text, value);
            } else {
                text.push_str(value);
            }
            spans[i] = (offset(start), offset(text.len()));
            text.push('"');
        }
        text.push('}');
        Self {
            text: text.into_boxed_str(),
            spans,
            len: len as u8,
            plain,
        }
    }

    /// How many labels the set holds.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`th value, unescaped (empty past the end).
    pub fn value(&self, i: usize) -> Cow<'_, str> {
        let Some(raw) = self.raw(i) else {
            return Cow::Borrowed("");
        };
        if self.plain {
            Cow::Borrowed(raw)
        } else {
            unescape(raw)
        }
    }

    /// Whether the set holds exactly these values.
    pub fn matches(&self, values: &[&str]) -> bool {
        values.len() == self.len()
            && values
                .iter()
                .enumerate()
                .all(|(i, v)| match (self.plain, self.raw(i)) {
                    (true, Some(raw)) => raw == *v,
                    _ => self.value(i) == *v,
                })
    }

    /// Orders by the first `n` values, as strings, the way series are sorted in a family.
    pub fn cmp_values(&self, other: &Self, n: usize) -> Ordering {
        let n = n.min(MAX_LABELS);
        let both_plain = self.plain && other.plain;
        for i in 0..n {
            // `str` orders by bytes, so raw byte ranges compare like the values.
            let ord = match (both_plain, self.raw_bytes(i), other.raw_bytes(i)) {
                (true, Some(a), Some(b)) => a.cmp(b),
                _ => self.value(i).cmp(&other.value(i)),
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        self.len.min(n as u8).cmp(&other.len.min(n as u8))
    }

    /// Whether the first `n` values are equal.
    pub fn eq_values(&self, other: &Self, n: usize) -> bool {
        if self.len == other.len && n >= self.len() {
            // Escaping is injective, so equal texts mean equal values (same label names).
            return self.text == other.text || self.cmp_values(other, n) == Ordering::Equal;
        }
        self.cmp_values(other, n) == Ordering::Equal
    }

    /// Appends the set as the first `n` labels: `{…}` (the whole text when `n` covers it).
    pub fn write(&self, out: &mut Vec<u8>, n: usize) {
        if n >= self.len() {
            out.extend_from_slice(self.text.as_bytes());
        } else if n == 0 {
            out.extend_from_slice(b"{}");
        } else {
            // Up to the closing quote of the `n`th value.
            let end = self.spans[n - 1].1 as usize + 1;
            out.extend_from_slice(&self.text.as_bytes()[..end]);
            out.push(b'}');
        }
    }

    /// The whole rendered text, `{…}`.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn raw_bytes(&self, i: usize) -> Option<&[u8]> {
        if i >= self.len() {
            return None;
        }
        let (start, end) = self.spans[i];
        self.text.as_bytes().get(start as usize..end as usize)
    }

    fn raw(&self, i: usize) -> Option<&str> {
        if i >= self.len() {
            return None;
        }
        let (start, end) = self.spans[i];
        self.text.get(start as usize..end as usize)
    }
}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn needs_escape(value: &str) -> bool {
    value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n'))
}

/// Label value escaping of the text format: backslash, double quote and line feed.
pub fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["a", "b", "c"];

    #[test]
    fn renders_escapes_and_reads_back() {
        let set = LabelSet::new(NAMES, &["x", "q\"\\\nz", ""]);
        let mut out = Vec::new();
        set.write(&mut out, 3);
        assert_eq!(out, b"{a=\"x\",b=\"q\\\"\\\\\\nz\",c=\"\"}");
        assert_eq!(set.value(1), "q\"\\\nz");
        assert!(set.matches(&["x", "q\"\\\nz", ""]));
        assert!(!set.matches(&["x", "q", ""]));
        out.clear();
        set.write(&mut out, 1);
        assert_eq!(out, b"{a=\"x\"}");
    }

    #[test]
    fn orders_by_values_not_by_text() {
        // `"` sorts after ` ` in text, but "a" < "a b" as values.
        let short = LabelSet::new(NAMES, &["a", "1", "1"]);
        let long = LabelSet::new(NAMES, &["a b", "0", "0"]);
        assert_eq!(short.cmp_values(&long, 3), Ordering::Less);
        let escaped = LabelSet::new(NAMES, &["a\"", "0", "0"]);
        assert_eq!(short.cmp_values(&escaped, 3), Ordering::Less);
        assert_eq!(escaped.cmp_values(&long, 3), Ordering::Greater);
        let prefix_equal = LabelSet::new(NAMES, &["a", "1", "2"]);
        assert_eq!(short.cmp_values(&prefix_equal, 2), Ordering::Equal);
        assert!(short.eq_values(&prefix_equal, 2));
        assert!(!short.eq_values(&prefix_equal, 3));
    }
}
