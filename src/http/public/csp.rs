//! The `Content-Security-Policy: frame-ancestors …` header of the console page
//! (`--frame-ancestors-json`, config `web.frame_ancestors`): which sites may embed the
//! console in an iframe, e.g. a platform portal.
//!
//! The setting is upstream 2.0's tri-state JSON: `null` (the default) sends no policy,
//! `[]` forbids all framing (`'none'`), and a list allows exactly `'self'` and/or the listed
//! origins. Sources are validated strictly (exact `http(s)://host[:port]` origins, no paths,
//! wildcards or credentials) so a typo cannot silently widen the policy.

/// Parses the flag's JSON text into the sources; `None` for JSON `null`.
pub fn parse_json(text: &str) -> Result<Option<Vec<String>>, String> {
    serde_json::from_str::<Option<Vec<String>>>(text.trim()).map_err(|_| {
        format!("{text:?} is not null or a JSON array of strings (e.g. [\"'self'\", \"https://portal.example.com\"])")
    })
}

/// The header value for `sources`, or `None` when no policy is to be sent.
pub fn policy(sources: Option<&[String]>) -> Result<Option<String>, String> {
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

    fn header(json: &str) -> Result<Option<String>, String> {
        policy(parse_json(json)?.as_deref())
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
            assert!(parse_json(json).is_err(), "{json:?}");
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
                policy(Some(&[source.to_string()])).is_err(),
                "{source:?} was accepted"
            );
        }
    }
}
