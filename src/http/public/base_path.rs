//! The external URL prefix the console is served under (`--base-path`, e.g. `/hami/` behind a
//! reverse proxy), and the one rewrite of `index.html` that tells the frontend about it.
//!
//! The HAMi-WebUI build keeps every asset URL relative (`./static/…`) and carries one marker
//! element, `<base data-hami-webui-base href="/">`; the server replaces its `href` with the
//! base path once at start, so one build serves any prefix without a rebuild.

/// Characters allowed in one base-path segment: URL-unreserved only, so the value can be
/// written into HTML and matched against request paths without any escaping.
fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// Canonical form of a base path: leading and trailing slash (`hami` → `/hami/`), `/` for
/// empty. Rejects what could escape the prefix or change its meaning: whitespace, `?`, `#`,
/// `%`, backslashes, dot segments, empty segments, and a prefix that would shadow
/// `/health_check` (which always stays at the root, as upstream keeps it).
pub fn normalize(raw: &str) -> Result<String, String> {
    if raw.is_empty() || raw == "/" {
        return Ok("/".to_string());
    }
    let inner = raw.strip_prefix('/').unwrap_or(raw);
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if let Some(bad) = inner.split('/').find(|s| !valid_segment(s)) {
        return Err(format!(
            "invalid base path {raw:?}: segment {bad:?} is not a plain URL path segment \
             (letters, digits and . _ ~ - only)"
        ));
    }
    if inner == "health_check" || inner.starts_with("health_check/") {
        return Err(format!(
            "invalid base path {raw:?}: conflicts with /health_check"
        ));
    }
    Ok(format!("/{inner}/"))
}

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

/// `index.html` with the marker's `href` set to `base_path` (already [`normalize`]d).
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
    fn base_paths_are_normalized() {
        for (raw, want) in [
            ("", "/"),
            ("/", "/"),
            ("hami", "/hami/"),
            ("/hami", "/hami/"),
            ("/hami/", "/hami/"),
            ("/a/b.c/~d_e-f/", "/a/b.c/~d_e-f/"),
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn unsafe_base_paths_are_rejected() {
        for raw in [
            "/a/../b/",
            "/./",
            "//",
            "/a//b/",
            "/a b/",
            " /a/",
            "/a?x/",
            "/a#x/",
            "/%2e%2e/",
            "/a\\b/",
            "/<script>/",
            "/a\"b/",
            "/health_check/",
            "/health_check/x/",
        ] {
            assert!(normalize(raw).is_err(), "{raw:?} was accepted");
        }
    }

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
