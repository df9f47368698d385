//! One HTTP exchange with the upstream: URL, form, credentials, TLS, streaming read under
//! the size limit, and the mapping of transport failures onto [`QueryError`].
//!
//! Split in two because awc's client is not `Send`: [`UpstreamSettings`] is everything that
//! can be checked at start-up on the caller's thread (and fails there, naming the key);
//! [`Upstream`] is built from it on the actor's own thread.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, HOST};
use actix_web::http::{Method, Uri};
use base64::Engine as _;
use futures::StreamExt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::{wire, Query, QueryError, QueryOutput};
use crate::config::duration::format_go_duration;
use crate::config::{PrometheusConfig, TlsConfig};

/// Why the query client cannot start: a `prometheus` setting that can never work. Each
/// message names the key; none carries credentials.
#[derive(Debug, thiserror::Error)]
pub enum QueryClientError {
    /// `prometheus.address` is not an `http(s)://host[:port][/path]` URL.
    #[error("prometheus.address: {0}")]
    Address(String),
    /// A TLS file cannot be read or holds no usable PEM data.
    #[error("{key}: {path}: {reason}")]
    TlsFile {
        key: &'static str,
        path: String,
        reason: String,
    },
    /// rustls refused the assembled TLS configuration.
    #[error("prometheus.tls: {0}")]
    Tls(#[source] rustls::Error),
}

/// Responses below this size are decoded inline; larger ones on the blocking pool, so a
/// 64 MiB range answer never stalls the actor's thread.
const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// A credentials file is re-read when its size or modification time changes, and at least
/// this often regardless (a same-size rewrite within the file system's timestamp
/// granularity would otherwise go unnoticed).
const CREDENTIALS_RECHECK: Duration = Duration::from_secs(10);

/// Everything checked at start-up; `Send`, so it can move to the actor's thread.
pub(super) struct UpstreamSettings {
    /// `scheme://authority[/path]` + `path_prefix`, without a trailing slash; the API path
    /// is appended per request.
    base: String,
    /// With `tls.server_name`: the URL carries that name (it becomes SNI and the name the
    /// certificate is verified against) while the connection goes to the configured host.
    redirect: Option<Redirect>,
    tls: Option<Arc<rustls::ClientConfig>>,
    credentials: CredentialSource,
    max_response_bytes: usize,
    max_concurrency: usize,
    connect_timeout: Duration,
}

#[derive(Clone)]
struct Redirect {
    /// The configured host and port (the real destination).
    host: String,
    port: u16,
    /// The configured authority, kept as the `Host` header as Go's client does.
    host_header: String,
}

#[derive(Clone)]
enum CredentialSource {
    None,
    Verbatim(String),
    Scheme {
        scheme: String,
        file: PathBuf,
    },
    Basic {
        username: PathBuf,
        password: PathBuf,
    },
}

impl UpstreamSettings {
    pub(super) fn new(config: &PrometheusConfig) -> Result<Self, QueryClientError> {
        let address = config.address.trim_end_matches('/');
        let uri: Uri = address
            .parse()
            .map_err(|e| QueryClientError::Address(format!("{e}")))?;
        let scheme = uri
            .scheme_str()
            .filter(|s| *s == "http" || *s == "https")
            .ok_or_else(|| QueryClientError::Address("scheme must be http or https".into()))?;
        let authority = uri
            .authority()
            .ok_or_else(|| QueryClientError::Address("missing host".into()))?;
        if authority.as_str().contains('@') {
            return Err(QueryClientError::Address(
                "credentials in the URL are not supported; use prometheus.basic_auth".into(),
            ));
        }
        let https = scheme == "https";
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path().trim_end_matches('/');
        let server_name = config.tls.server_name.as_deref().filter(|_| https);
        let (url_authority, redirect) = match server_name {
            Some(name) => (
                format!("{name}:{port}"),
                Some(Redirect {
                    host: authority
                        .host()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                    port,
                    host_header: authority.as_str().to_string(),
                }),
            ),
            None => (authority.as_str().to_string(), None),
        };
        let base = format!("{scheme}://{url_authority}{path}{}", config.path_prefix);
        let tls = if https {
            Some(Arc::new(tls_config(&config.tls)?))
        } else {
            None
        };
        let credentials = if let Some(a) = &config.authorization {
            CredentialSource::Scheme {
                scheme: a.scheme.clone(),
                file: a.credentials_file.clone(),
            }
        } else if let Some(b) = &config.basic_auth {
            CredentialSource::Basic {
                username: b.username_file.clone(),
                password: b.password_file.clone(),
            }
        } else if let Some(auth) = &config.auth {
            CredentialSource::Verbatim(auth.clone())
        } else {
            CredentialSource::None
        };
        if config.auth.is_some() && !matches!(credentials, CredentialSource::Verbatim(_)) {
            tracing::warn!(
                "prometheus.auth is ignored: prometheus.authorization or basic_auth is set"
            );
        }
        Ok(Self {
            base,
            redirect,
            tls,
            credentials,
            max_response_bytes: config.max_response_bytes,
            max_concurrency: config.max_concurrency,
            connect_timeout: config.timeout,
        })
    }
}

/// TLS towards the upstream: verification against the system roots plus `ca_file` unless
/// `insecure_skip_verify`, an optional client certificate, HTTP/1.1 only (one request per
/// connection keeps the concurrency cap meaningful at the upstream).
fn tls_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, QueryClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(QueryClientError::Tls)?;
    let builder = if tls.insecure_skip_verify {
        tracing::warn!(
            "prometheus.tls.insecure_skip_verify is set: the metrics store's certificate is NOT verified"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, "system root certificates loaded");
        if let Some(ca_file) = &tls.ca_file {
            let certs = read_certificates("prometheus.tls.ca_file", ca_file)?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| tls_file_error("prometheus.tls.ca_file", ca_file, e))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let certs = read_certificates("prometheus.tls.cert_file", cert_file)?;
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| tls_file_error("prometheus.tls.key_file", key_file, e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(QueryClientError::Tls)?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, QueryClientError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_file_error(key, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_file_error(key, path, e))?;
    if certs.is_empty() {
        return Err(tls_file_error(key, path, "no PEM certificate found"));
    }
    Ok(certs)
}

fn tls_file_error(
    key: &'static str,
    path: &Path,
    reason: impl std::fmt::Display,
) -> QueryClientError {
    QueryClientError::TlsFile {
        key,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// `insecure_skip_verify`: any certificate is accepted, but handshake signatures are still
/// checked so the session keys belong to whoever presented the certificate.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The live client, on the actor's thread.
pub(super) struct Upstream {
    client: awc::Client,
    base: String,
    redirect: Option<Redirect>,
    credentials: Credentials,
    max_response_bytes: usize,
}

impl Upstream {
    pub(super) fn new(settings: UpstreamSettings) -> Self {
        let mut connector = awc::Connector::new()
            .timeout(settings.connect_timeout)
            .handshake_timeout(settings.connect_timeout)
            .limit(settings.max_concurrency.max(1));
        if let Some(tls) = settings.tls {
            connector = connector.rustls_0_23(tls);
        }
        let client = awc::Client::builder()
            .connector(connector)
            // The deadline is ours (tokio timers around the whole exchange, body included);
            // awc's own timeout would cut at 5 s and only up to the response head.
            .disable_timeout()
            // Only the configured upstream is ever asked: a redirect is an answer, not a
            // new address to talk to.
            .disable_redirects()
            .finish();
        Self {
            client,
            base: settings.base,
            redirect: settings.redirect,
            credentials: Credentials::new(settings.credentials),
            max_response_bytes: settings.max_response_bytes,
        }
    }

    /// One exchange. The caller wraps it in the deadline; `deadline` here only sets the
    /// upstream's `timeout` parameter to what remains, so the upstream gives up with us.
    pub(super) async fn run(
        &self,
        query: &Query,
        deadline: Instant,
    ) -> Result<QueryOutput, QueryError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let remaining =
            Duration::from_millis(u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX));
        if remaining.is_zero() {
            return Err(QueryError::Timeout);
        }
        let (path, mut form) = form_of(query);
        form.push(("timeout", format_go_duration(remaining)));

        let url = format!("{}{path}", self.base);
        let addr = match &self.redirect {
            Some(redirect) => Some(resolve(redirect).await?),
            None => None,
        };
        let authorization = self.credentials.header()?;
        let request = |method: Method| {
            let mut request = self
                .client
                .request(method, url.as_str())
                .insert_header((ACCEPT, "application/json"));
            if let Some(value) = &authorization {
                request = request.insert_header((AUTHORIZATION, value.clone()));
            }
            if let (Some(addr), Some(redirect)) = (addr, &self.redirect) {
                request = request
                    .address(addr)
                    .insert_header((HOST, redirect.host_header.as_str()));
            }
            request
        };
        let mut response = request(Method::POST)
            .send_form(&form)
            .await
            .map_err(send_error)?;
        // Prometheus' Go client retries with GET when a server (or a proxy in front of it)
        // does not take POST; so do we.
        if matches!(response.status().as_u16(), 405 | 501) {
            drop(response);
            response = request(Method::GET)
                .query(&form)
                .map_err(|e| QueryError::Unreachable(format!("cannot encode the query: {e}")))?
                .send()
                .await
                .map_err(send_error)?;
        }
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            return Err(QueryError::Redirected { status });
        }

        let limit = self.max_response_bytes;
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(QueryError::TooLarge { limit });
        }
        // Never more than `limit` bytes (plus one chunk being checked) in memory.
        let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit));
        while let Some(chunk) = response.next().await {
            let chunk = chunk.map_err(|e| {
                QueryError::Unreachable(format!("connection lost while reading the answer: {e}"))
            })?;
            if body.len() + chunk.len() > limit {
                return Err(QueryError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        drop(response);

        if body.len() <= INLINE_DECODE_BYTES {
            return wire::decode(status, &body);
        }
        actix_web::rt::task::spawn_blocking(move || wire::decode(status, &body))
            .await
            .unwrap_or_else(|_| Err(QueryError::Decode("decoder task failed".into())))
    }
}

/// API path and form parameters (without `timeout`) of a query.
fn form_of(query: &Query) -> (&'static str, Vec<(&'static str, String)>) {
    match query {
        Query::Instant { expr, time } => {
            let mut form = vec![("query", expr.clone())];
            if let Some(t) = time {
                form.push(("time", t.to_string()));
            }
            ("/api/v1/query", form)
        }
        Query::Range {
            expr,
            start,
            end,
            step,
        } => (
            "/api/v1/query_range",
            vec![
                ("query", expr.clone()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", step.as_secs_f64().to_string()),
            ],
        ),
    }
}

/// The real destination when the URL names `tls.server_name` instead. An IP literal needs no
/// lookup; a name is resolved on the blocking pool (std's resolver blocks).
async fn resolve(redirect: &Redirect) -> Result<SocketAddr, QueryError> {
    if let Ok(ip) = redirect.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, redirect.port));
    }
    let target = (redirect.host.clone(), redirect.port);
    let host = redirect.host.clone();
    actix_web::rt::task::spawn_blocking(move || target.to_socket_addrs().map(|mut a| a.next()))
        .await
        .ok()
        .and_then(|r| r.ok())
        .flatten()
        .ok_or_else(|| QueryError::Unreachable(format!("cannot resolve {host}")))
}

/// awc's failures. None of these messages carries request headers.
fn send_error(error: awc::error::SendRequestError) -> QueryError {
    use awc::error::{ConnectError, SendRequestError};
    match error {
        SendRequestError::Timeout => QueryError::Timeout,
        SendRequestError::Connect(ConnectError::Timeout) => {
            QueryError::Unreachable("connection timed out".into())
        }
        SendRequestError::Connect(e) => QueryError::Unreachable(e.to_string()),
        SendRequestError::Send(e) => {
            QueryError::Unreachable(format!("sending the query failed: {e}"))
        }
        // A TLS alert after the handshake (e.g. a refused client certificate under TLS 1.3)
        // or a reset surfaces while reading the answer's head: still a connection failure.
        SendRequestError::Response(actix_web::error::ParseError::Io(e)) => {
            QueryError::Unreachable(format!("connection failed: {e}"))
        }
        SendRequestError::Response(e) => QueryError::Decode(format!("malformed HTTP answer: {e}")),
        SendRequestError::Url(e) => QueryError::Unreachable(format!("invalid URL: {e}")),
        other => QueryError::Unreachable(other.to_string()),
    }
}

/// The `Authorization` header, built per request from files that may be rotated.
struct Credentials {
    source: CredentialSource,
    files: Vec<WatchedFile>,
}

impl Credentials {
    fn new(source: CredentialSource) -> Self {
        let files = match &source {
            CredentialSource::Scheme { file, .. } => vec![WatchedFile::new(file.clone())],
            CredentialSource::Basic { username, password } => vec![
                WatchedFile::new(username.clone()),
                WatchedFile::new(password.clone()),
            ],
            CredentialSource::None | CredentialSource::Verbatim(_) => Vec::new(),
        };
        Self { source, files }
    }

    fn header(&self) -> Result<Option<HeaderValue>, QueryError> {
        let (text, origin) = match &self.source {
            CredentialSource::None => return Ok(None),
            CredentialSource::Verbatim(auth) => (auth.clone(), "prometheus.auth".to_string()),
            CredentialSource::Scheme { scheme, .. } => {
                let file = &self.files[0];
                (
                    format!("{scheme} {}", file.read()?),
                    file.path.display().to_string(),
                )
            }
            CredentialSource::Basic { .. } => {
                let user = self.files[0].read()?;
                let password = self.files[1].read()?;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                (
                    format!("Basic {token}"),
                    "prometheus.basic_auth".to_string(),
                )
            }
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            QueryError::Unreachable(format!(
                "{origin}: credentials are not a valid header value"
            ))
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

/// A small secret file, trimmed, cached until it changes.
struct WatchedFile {
    path: PathBuf,
    cache: RefCell<Option<CachedFile>>,
}

struct CachedFile {
    modified: Option<SystemTime>,
    len: u64,
    read_at: Instant,
    text: String,
}

impl WatchedFile {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            cache: RefCell::new(None),
        }
    }

    fn read(&self) -> Result<String, QueryError> {
        let unreadable = |e: std::io::Error| {
            QueryError::Unreachable(format!(
                "cannot read credentials file {}: {}",
                self.path.display(),
                e.kind()
            ))
        };
        let meta = std::fs::metadata(&self.path).map_err(unreadable)?;
        let modified = meta.modified().ok();
        if let Some(cached) = self.cache.borrow().as_ref() {
            if cached.modified == modified
                && cached.len == meta.len()
                && cached.read_at.elapsed() < CREDENTIALS_RECHECK
            {
                return Ok(cached.text.clone());
            }
        }
        let text = std::fs::read_to_string(&self.path)
            .map_err(unreadable)?
            .trim()
            .to_string();
        *self.cache.borrow_mut() = Some(CachedFile {
            modified,
            len: meta.len(),
            read_at: Instant::now(),
            text: text.clone(),
        });
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_form_uses_seconds() {
        let (path, form) = form_of(&Query::Range {
            expr: "up".into(),
            start: 1_700_000_000.0,
            end: 1_700_000_060.5,
            step: Duration::from_millis(15_500),
        });
        assert_eq!(path, "/api/v1/query_range");
        assert_eq!(
            form,
            vec![
                ("query", "up".to_string()),
                ("start", "1700000000".to_string()),
                ("end", "1700000060.5".to_string()),
                ("step", "15.5".to_string()),
            ]
        );
    }

    #[test]
    fn rotated_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "one\n").unwrap();
        let file = WatchedFile::new(path.clone());
        assert_eq!(file.read().unwrap(), "one");
        std::fs::write(&path, "second\n").unwrap();
        assert_eq!(file.read().unwrap(), "second");
    }

    #[test]
    fn unreadable_file_error_names_the_path_only() {
        let creds = Credentials::new(CredentialSource::Scheme {
            scheme: "Bearer".into(),
            file: PathBuf::from("/nonexistent/token"),
        });
        let err = creds.header().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/token"), "{err}");
    }

    #[test]
    fn invalid_header_value_does_not_echo_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cr3t\nvalue").unwrap();
        let creds = Credentials::new(CredentialSource::Scheme {
            scheme: "Bearer".into(),
            file: path,
        });
        let err = creds.header().unwrap_err().to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}
