//! `--healthcheck`: the binary as its own probe. Images without curl or wget (ours is
//! distroless) point the container health check at `hami-webui-server --healthcheck`, which
//! asks a URL (default: this process's public `/health_check`) and exits 0 on a 2xx answer,
//! 1 otherwise. Nothing else is started: no configuration must be valid for it to work.

use std::time::Duration;

use awc::http::Uri;

/// How long the probe waits for the whole answer, as upstream's web entry does.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Why the probe failed. Messages never repeat the URL's user part, which could carry a
/// password.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Not an absolute `http(s)://host…` URL, or one with credentials.
    #[error("health check URL is invalid: {0}")]
    InvalidUrl(&'static str),
    /// No answer: refused, timed out, not HTTP.
    #[error("health check request failed: {0}")]
    Request(String),
    /// An answer, but not 2xx (redirects are not followed: a redirect is not health).
    #[error("health check answered {0}")]
    Status(u16),
}

/// `http://127.0.0.1:<port>/health_check` for a listen address such as `:3000` or
/// `0.0.0.0:3000`; a specific host (`10.0.0.5:3000`, `[::1]:3000`) is asked directly.
pub fn default_url(listen_address: &str) -> String {
    let (host, port) = listen_address
        .rsplit_once(':')
        .unwrap_or(("", listen_address));
    let host = match host {
        "" | "0.0.0.0" | "[::]" | "::" => "127.0.0.1",
        other => other,
    };
    format!("http://{host}:{port}/health_check")
}

fn checked(url: &str) -> Result<Uri, ProbeError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| ProbeError::InvalidUrl("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(ProbeError::InvalidUrl("scheme must be http or https"));
    }
    let authority = uri.authority().ok_or(ProbeError::InvalidUrl("no host"))?;
    if authority.as_str().contains('@') {
        return Err(ProbeError::InvalidUrl("credentials are not allowed"));
    }
    if authority.host().is_empty() {
        return Err(ProbeError::InvalidUrl("no host"));
    }
    Ok(uri)
}

/// Asks `url` once; `Ok` with the status for a 2xx answer.
pub async fn probe(url: &str) -> Result<u16, ProbeError> {
    let uri = checked(url)?;
    let client = awc::Client::builder()
        .timeout(TIMEOUT)
        .disable_redirects()
        .finish();
    let mut reply = client
        .get(uri)
        .send()
        .await
        .map_err(|e| ProbeError::Request(e.to_string()))?;
    // Drain a little of the body so the server sees a clean exchange; its content is not
    // part of the verdict.
    let _ = reply.body().limit(4096).await;
    let status = reply.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(ProbeError::Status(status.as_u16()))
    }
}

/// Runs [`probe`] on a fresh actix system (called from `main` before anything else starts).
pub fn run(url: &str) -> Result<u16, ProbeError> {
    actix_rt::System::new().block_on(probe(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url_follows_the_listen_address() {
        assert_eq!(default_url(":3000"), "http://127.0.0.1:3000/health_check");
        assert_eq!(
            default_url("0.0.0.0:3100"),
            "http://127.0.0.1:3100/health_check"
        );
        assert_eq!(
            default_url("[::]:3000"),
            "http://127.0.0.1:3000/health_check"
        );
        assert_eq!(
            default_url("10.0.0.5:3000"),
            "http://10.0.0.5:3000/health_check"
        );
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_credentials() {
        for url in [
            "",
            "localhost:3000/health_check",
            "ftp://127.0.0.1/x",
            "http:///x",
            "http://user:do-not-print@127.0.0.1:3000/health_check",
        ] {
            let err = checked(url).unwrap_err().to_string();
            assert!(!err.contains("do-not-print"), "{err}");
        }
        assert!(checked("http://127.0.0.1:3000/health_check").is_ok());
    }

    #[actix_rt::test]
    async fn a_closed_port_fails() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/health_check");
        assert!(matches!(probe(&url).await, Err(ProbeError::Request(_))));
    }
}
