//! [`Echo`]: client-supplied text as an error message quotes it — a short prefix and the full
//! length, never the whole input. A 1 MB value in a request body used to come back whole in
//! the 400 reply (and two or three times in the log); the caller only needs enough to find it.

use std::fmt;

/// Bytes of client text an error message carries at most.
pub const ECHO_BYTES: usize = 256;

/// Displays at most [`ECHO_BYTES`] of the text (cut on a character boundary), followed by
/// `… (N bytes)` when it was cut.
#[derive(Debug, Clone, Copy)]
pub struct Echo<'a>(pub &'a str);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        if text.len() <= ECHO_BYTES {
            return f.write_str(text);
        }
        let mut end = ECHO_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{}… ({} bytes)", &text[..end], text.len())
    }
}

/// [`Echo`] of any displayable value, rendered first.
pub fn echo(value: impl fmt::Display) -> String {
    let text = value.to_string();
    Echo(&text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_with_its_length() {
        assert_eq!(Echo("abc").to_string(), "abc");
        let long = "y".repeat(1_048_000);
        let shown = Echo(&long).to_string();
        assert!(shown.len() < ECHO_BYTES + 32, "{}", shown.len());
        assert!(shown.ends_with("… (1048000 bytes)"), "{shown}");
        // Never inside a character.
        let wide = "é".repeat(300);
        let shown = Echo(&wide).to_string();
        assert!(shown.starts_with(&"é".repeat(128)), "{shown}");
        assert_eq!(echo(format_args!("{}", "z".repeat(10))), "zzzzzzzzzz");
    }
}
