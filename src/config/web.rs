//! The public listener's settings (`web.*`) and upstream 2.0's flags that override them:
//! where the console is served from, under which base path, and who may frame it.
//!
//! The base path (`--base-path`, e.g. `/hami/` behind a reverse proxy) is checked here so
//! that it can be written into HTML and matched against request paths without escaping.
//! Framing is upstream 2.0's tri-state JSON (`--frame-ancestors-json`, `web.frame_ancestors`):
//! `null` sends no policy, `[]` forbids all framing (`'none'`), and a list allows exactly
//! `'self'` and/or the listed origins, validated strictly (exact `http(s)://host[:port]`, no
//! paths, wildcards or credentials) so a typo cannot silently widen the policy.

use std::path::PathBuf;

use super::build::{non_empty, validate_listen_addr};
use super::file::RawWeb;
use super::{Config, ConfigError};

/// The public listener's settings (`web.*`, overridden by upstream 2.0's flags through
/// [`Config::with_web_flags`]).
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Off: only the internal listener runs (e.g. beside a 1.x chart's own frontend).
    pub enabled: bool,
    /// As written, Go style: `:3000` means every interface; see [`WebConfig::bind_address`].
    pub listen_address: String,
    /// The built HAMi-WebUI frontend, with `index.html` at its root.
    pub static_dir: PathBuf,
    /// Whether `static_dir` was set by the operator. The default directory may be absent
    /// (development runs, images without the frontend) and then the listener stays off
    /// with a warning; a configured one must exist.
    pub static_dir_explicit: bool,
    /// Normalized external prefix, `/` or `/hami/` (leading and trailing slash).
    pub base_path: String,
    /// `Content-Security-Policy` value for the console page, when framing is restricted.
    pub frame_ancestors: Option<String>,
}

impl WebConfig {
    /// The address to bind: a Go-style empty host (`:3000`) becomes `0.0.0.0`.
    pub fn bind_address(&self) -> String {
        match self.listen_address.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => self.listen_address.clone(),
        }
    }
}

/// Upstream 2.0's web flags (and their `HAMI_WEBUI_*` environment variables); each one
/// given replaces the matching `web.*` key.
#[derive(Debug, Clone, Default)]
pub struct WebFlags {
    pub listen_address: Option<String>,
    pub static_dir: Option<PathBuf>,
    pub base_path: Option<String>,
    /// JSON text: `null`, `[]` or an array of sources.
    pub frame_ancestors_json: Option<String>,
}

impl Config {
    /// Applies the web flags over the file's `web.*` keys; errors name the flag.
    pub fn with_web_flags(mut self, flags: &WebFlags) -> Result<Config, ConfigError> {
        let web = &mut self.web;
        if let Some(addr) = &flags.listen_address {
            validate_listen_addr("--listen-address", addr)?;
            web.listen_address = addr.clone();
        }
        if let Some(dir) = &flags.static_dir {
            if dir.as_os_str().is_empty() {
                return Err(ConfigError::invalid("--static-dir", "must not be empty"));
            }
            web.static_dir = dir.clone();
            web.static_dir_explicit = true;
        }
        if let Some(base) = &flags.base_path {
            web.base_path =
                normalize_base_path(base).map_err(|e| ConfigError::invalid("--base-path", e))?;
        }
        if let Some(json) = &flags.frame_ancestors_json {
            let sources = parse_frame_ancestors_json(json)
                .map_err(|e| ConfigError::invalid("--frame-ancestors-json", e))?;
            web.frame_ancestors = frame_ancestors_policy(sources.as_deref())
                .map_err(|e| ConfigError::invalid("--frame-ancestors-json", e))?;
        }
        Ok(self)
    }
}

/// Upstream 2.0's web entry defaults: `:3000`, `/apps/public`, base `/`, no framing policy.
pub(super) fn web_config(raw: RawWeb) -> Result<WebConfig, ConfigError> {
    let listen_address = non_empty(raw.listen_address).unwrap_or_else(|| ":3000".into());
    validate_listen_addr("web.listen_address", &listen_address)?;
    let static_dir = non_empty(raw.static_dir).map(PathBuf::from);
    let base_path = normalize_base_path(raw.base_path.as_deref().unwrap_or("/"))
        .map_err(|e| ConfigError::invalid("web.base_path", e))?;
    let frame_ancestors = frame_ancestors_policy(raw.frame_ancestors.as_deref())
        .map_err(|e| ConfigError::invalid("web.frame_ancestors", e))?;
    Ok(WebConfig {
        enabled: raw.enabled.unwrap_or(true),
        listen_address,
        static_dir_explicit: static_dir.is_some(),
        static_dir: static_dir.unwrap_or_else(|| PathBuf::from("/apps/public")),
        base_path,
        frame_ancestors,
    })
}

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
pub fn normalize_base_path(raw: &str) -> Result<String, String> {
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

/// Parses the flag's JSON text into the sources; `None` for JSON `null`.
pub fn parse_frame_ancestors_json(text: &str) -> Result<Option<Vec<String>>, String> {
    serde_json::from_str::<Option<Vec<String>>>(text.trim()).map_err(|_| {
        format!("{text:?} is not null or a JSON array of strings (e.g. [\"'self'\", \"https://portal.example.com\"])")
    })
}

/// The header value for `sources`, or `None` when no policy is to be sent.
pub fn frame_ancestors_policy(sources: Option<&[String]>) -> Result<Option<String>, String> {
    let Some(sources) = sources else {
        return Ok(None);
    };
    if sources.is_empty() {
        return Ok(Some("frame-ancestors 'none'".to_string()));
    }
    for source in sources {
        if source != "'self'" && !is_exact_origin(source) {
            return Err(format!(
                "{source:?} is neither 'self' nor an exact http(s) origin like https://portal.example.com"
            ));
        }
    }
    Ok(Some(format!("frame-ancestors {}", sources.join(" "))))
}

/// `http://host[:port]` or `https://host[:port]`, nothing more.
fn is_exact_origin(source: &str) -> bool {
    let Some(authority) = source
        .strip_prefix("https://")
        .or_else(|| source.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal.
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("v6", port),
                None => return false,
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, port),
            None => (authority, ""),
        }
    };
    let port_ok = port.is_empty() && !authority.ends_with(':')
        || (!port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok());
    port_ok && (host == "v6" || is_dns_name(host))
}

/// A DNS name or IPv4 address: dot-separated labels of letters, digits and inner hyphens.
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        })
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
            assert_eq!(normalize_base_path(raw).as_deref(), Ok(want), "{raw:?}");
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
            assert!(normalize_base_path(raw).is_err(), "{raw:?} was accepted");
        }
    }

    fn header(json: &str) -> Result<Option<String>, String> {
        frame_ancestors_policy(parse_frame_ancestors_json(json)?.as_deref())
    }

    #[test]
    fn tri_state_json() {
        assert_eq!(header("null"), Ok(None));
        assert_eq!(header("[]"), Ok(Some("frame-ancestors 'none'".into())));
        assert_eq!(
            header(r#"["'self'", "https://portal.example.com", "http://10.0.0.1:8080", "https://[::1]:9443"]"#),
            Ok(Some(
                "frame-ancestors 'self' https://portal.example.com http://10.0.0.1:8080 https://[::1]:9443"
                    .into()
            ))
        );
    }

    #[test]
    fn malformed_json_and_loose_sources_are_rejected() {
        for json in ["", "{}", r#""'self'""#, r#"["'self'", 1]"#, "[] trailing"] {
            assert!(parse_frame_ancestors_json(json).is_err(), "{json:?}");
        }
        for source in [
            "self",
            "'none'",
            "*",
            "https://*.example.com",
            "https://portal.example.com/",
            "https://portal.example.com/path",
            "https://user@portal.example.com",
            "https://portal.example.com?x",
            "ftp://portal.example.com",
            "https://",
            "https://portal.example.com:",
            "https://portal.example.com:99999",
            "https://-bad.example.com",
            "https://[zz]:1",
            "https://a b",
            "https://a;script-src *",
        ] {
            assert!(
                frame_ancestors_policy(Some(&[source.to_string()])).is_err(),
                "{source:?} was accepted"
            );
        }
    }
}
