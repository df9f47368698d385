//! The external URL prefix the console is served under (`--base-path`, e.g. `/hami/` behind a
//! reverse proxy), and the one rewrite of `index.html` that tells the frontend about it.
//!
//! The HAMi-WebUI build keeps every asset URL relative (`./static/…`) and carries one marker
//! element, `<base data-hami-webui-base href="/">`; the server replaces its `href` with the
//! base path once at start, so one build serves any prefix without a rebuild.

/// The marker element as the build emits it, and its attribute after the rewrite.
const MARKER_NAME: &str = "data-hami-webui-base";

/// Finds every `<base data-hami-webui-base href="/">` element (ASCII whitespace between the
/// parts, optional self-closing slash) and returns their byte ranges.
fn find_markers(html: &str) -> Vec<std::ops::Range<usize>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = html[from..].find("<base") {
        let start = from + offset;
        from = start + "<base".len();
        if let Some(end) = parse_marker(&html[from..]) {
            found.push(start..from + end);
            from += end;
        }
    }
    found
}

/// Parses the rest of a marker after `<base`; returns the length up to and including `>`.
fn parse_marker(rest: &str) -> Option<usize> {
    let skip_ws = |s: &str| {
        s.len()
            - s.trim_start_matches(|c: char| c.is_ascii_whitespace())
                .len()
    };
    let mut at = skip_ws(rest);
    if at == 0 {
        return None;
    }
    at += rest[at..]
        .strip_prefix(MARKER_NAME)
        .map(|_| MARKER_NAME.len())?;
    let gap = skip_ws(&rest[at..]);
    if gap == 0 {
        return None;
    }
    at += gap;
    at += rest[at..]
        .strip_prefix("href=\"/\"")
        .map(|_| "href=\"/\"".len())?;
    at += skip_ws(&rest[at..]);
    if rest[at..].starts_with('/') {
        at += 1;
    }
    rest[at..].starts_with('>').then_some(at + 1)
}

/// `index.html` with the marker's `href` set to `base_path` (already normalized by [`crate::config::normalize_base_path`]).
///
/// More than one marker is an error (which one would the frontend read?). No marker is
/// accepted only for the root base path, where the page is right as built; under any other
/// prefix the page could not find its assets, so that is an error too.
pub fn rewrite_index(html: &str, base_path: &str) -> Result<String, String> {
    let markers = find_markers(html);
    match markers.as_slice() {
        [] if base_path == "/" => Ok(html.to_string()),
        [] => Err(format!(
            "index.html has no <base {MARKER_NAME} href=\"/\"> element, so it cannot be \
             served under the base path {base_path}"
        )),
        [range] => Ok(format!(
            "{}<base {MARKER_NAME} href=\"{base_path}\">{}",
            &html[..range.start],
            &html[range.end..]
        )),
        _ => Err(format!(
            "index.html has {} <base {MARKER_NAME}> elements; exactly one is expected",
            markers.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_rewritten_once() {
        let html =
            "<html><head><base data-hami-webui-base href=\"/\"><title>x</title></head></html>";
        assert_eq!(
            rewrite_index(html, "/hami/").unwrap(),
            "<html><head><base data-hami-webui-base href=\"/hami/\"><title>x</title></head></html>"
        );
        let spaced = "<base\n  data-hami-webui-base\thref=\"/\" />rest";
        assert_eq!(
            rewrite_index(spaced, "/x/").unwrap(),
            "<base data-hami-webui-base href=\"/x/\">rest"
        );
    }

    #[test]
    fn missing_or_repeated_markers() {
        let plain = "<html><head><base href=\"/\"></head></html>";
        assert_eq!(rewrite_index(plain, "/").unwrap(), plain);
        assert!(rewrite_index(plain, "/hami/").is_err());
        let twice = "<base data-hami-webui-base href=\"/\"><base data-hami-webui-base href=\"/\">";
        assert!(rewrite_index(twice, "/").is_err());
        // Another href is not the build's marker.
        let other = "<base data-hami-webui-base href=\"/old/\">";
        assert!(rewrite_index(other, "/hami/").is_err());
    }
}
