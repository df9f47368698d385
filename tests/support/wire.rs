//! The HTTP/1.1 request-head reading every hand-written test server needs (fault servers,
//! stalling stubs): bounded in lines, tolerant of garbage, never panicking.

use std::io::BufRead;

/// Reads one request head (up to 200 lines); returns it with its `Content-Length`, or `None`
/// when the peer closed. The body is left unread, so a caller may answer or reset first.
pub fn read_head(reader: &mut impl BufRead) -> Option<(String, usize)> {
    let mut head = String::new();
    let mut length = 0usize;
    for _ in 0..200 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if line.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        head.push_str(&line);
    }
    Some((head, length))
}
