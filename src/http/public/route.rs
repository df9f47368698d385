//! Pure: which answer a public request path gets — a file, the console page, or 404.
//!
//! The path is percent-decoded once and then judged segment by segment; anything that
//! could climb out of the static directory or be read differently by another layer (`..`,
//! `.`, `%2e%2e`, backslashes, NUL, empty segments, bad escapes) is a 404, never the page
//! and never a file. Files are looked up in the in-memory [`StaticSite`] only, so even a
//! path that slipped through could not reach the disk.

use super::site::StaticSite;

/// What to answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// The file at this key of the site.
    File(String),
    /// The console page (`/`, `/index.html`, a history-mode route such as
    /// `/admin/vgpu/node/admin`).
    Index,
    /// 404: a traversal attempt, a missing asset, or a backend path not exposed publicly.
    NotFound,
}

/// First segments that are never the console: the API prefix (its `/api/vgpu/v1` routes are
/// taken before this), and the internal listener's own endpoints, which must not answer the
/// page publicly either (a `/metrics` page of HTML would confuse a misdirected scraper).
const NOT_THE_CONSOLE: [&str; 6] = ["api", "metrics", "readyz", "livez", "q", "health_check"];

/// Resolves `path`, relative to the base path and starting with `/` (or empty for the
/// bare base path without its trailing slash).
pub fn resolve(site: &StaticSite, path: &str) -> Target {
    if path.is_empty() || path == "/" {
        return Target::Index;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Target::NotFound;
    };
    let Some(decoded) = percent_decode(rest) else {
        return Target::NotFound;
    };
    let trailing_slash = decoded.ends_with('/');
    let trimmed = decoded.strip_suffix('/').unwrap_or(&decoded);
    let segments: Vec<&str> = trimmed.split('/').collect();
    if segments.iter().any(|s| !safe_segment(s)) {
        return Target::NotFound;
    }
    if segments
        .first()
        .is_some_and(|first| NOT_THE_CONSOLE.contains(first))
    {
        return Target::NotFound;
    }
    let key = segments.join("/");
    if key == "index.html" {
        return Target::Index;
    }
    if !trailing_slash && site.file(&key).is_some() {
        return Target::File(key);
    }
    if looks_like_an_asset(site, &segments) {
        return Target::NotFound;
    }
    Target::Index
}

/// A request for a file that is not there gets 404, not the page (a missing script
/// answered with HTML fails obscurely in the browser): a top-level name with an
/// extension (`/app.js`), or anything under a directory of the build (`/static/…`).
/// Everything else is a history-mode route of the frontend.
fn looks_like_an_asset(site: &StaticSite, segments: &[&str]) -> bool {
    match segments {
        [single] => single.contains('.') || site.is_dir(single),
        [first, ..] => site.is_dir(first),
        [] => false,
    }
}

/// Whether any segment of `path` is `.` or `..`, also when spelled with `%2e`.
pub fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    })
}

/// One decoded path segment that names nothing but itself.
fn safe_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && !segment.contains(['\\', '\0'])
        && !segment.chars().any(char::is_control)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> (tempfile::TempDir, StaticSite) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("static/js")).unwrap();
        std::fs::write(
            root.join("index.html"),
            "<base data-hami-webui-base href=\"/\">",
        )
        .unwrap();
        std::fs::write(root.join("favicon.svg"), "<svg/>").unwrap();
        std::fs::write(root.join("static/js/app.0123abcd.js"), "x").unwrap();
        std::fs::write(root.join("static/js/a b.js"), "x").unwrap();
        let site = StaticSite::load(root, "/").unwrap();
        (dir, site)
    }

    #[test]
    fn files_page_and_history_routes() {
        let (_dir, site) = site();
        let file = |k: &str| Target::File(k.to_string());
        for (path, want) in [
            ("", Target::Index),
            ("/", Target::Index),
            ("/index.html", Target::Index),
            ("/favicon.svg", file("favicon.svg")),
            (
                "/static/js/app.0123abcd.js",
                file("static/js/app.0123abcd.js"),
            ),
            ("/static/js/a%20b.js", file("static/js/a b.js")),
            (
                "/static%2Fjs%2Fapp.0123abcd.js",
                file("static/js/app.0123abcd.js"),
            ),
            ("/admin/vgpu/node/admin", Target::Index),
            ("/admin/vgpu/node/admin/", Target::Index),
            ("/admin/vgpu/node/10.0.0.1", Target::Index),
            ("/static/js/missing.js", Target::NotFound),
            ("/static/", Target::NotFound),
            ("/missing.js", Target::NotFound),
            ("/favicon.svg/", Target::NotFound),
        ] {
            assert_eq!(resolve(&site, path), want, "{path}");
        }
    }

    #[test]
    fn traversal_and_odd_spellings_are_not_found() {
        let (_dir, site) = site();
        for path in [
            "/../etc/passwd",
            "/static/../index.html",
            "/static/js/../../favicon.svg",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/static/%2e%2e/%2e%2e/etc/passwd",
            "/..%2f..%2fetc%2fpasswd",
            "/.%2e/x",
            "/./favicon.svg",
            "/static//js/app.0123abcd.js",
            "/..\\..\\etc\\passwd",
            "/%5c..%5cetc%5cpasswd",
            "/static/js/app.0123abcd.js%00.html",
            "/%zz",
            "/%c0%ae%c0%ae/etc/passwd",
            "etc/passwd",
            "//etc/passwd",
        ] {
            assert_eq!(resolve(&site, path), Target::NotFound, "{path}");
        }
    }

    #[test]
    fn dot_segments_in_any_spelling() {
        for path in [
            "/v1/../metrics",
            "/v1/./gpus",
            "/v1/%2e%2e/x",
            "/v1/.%2E/x",
            "/..",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in ["/v1/gpus", "/v1/a.b", "/v1/...", "/v1/%2e%2e%2e"] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }

    #[test]
    fn backend_paths_are_never_the_page() {
        let (_dir, site) = site();
        for path in [
            "/metrics",
            "/readyz",
            "/livez",
            "/q/openapi.yaml",
            "/api",
            "/api/vgpu/v2/x",
            "/health_check",
        ] {
            assert_eq!(resolve(&site, path), Target::NotFound, "{path}");
        }
    }
}
