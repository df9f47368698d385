//! The public listener (`web.listen_address`, default `:3000`): the HAMi-WebUI console and
//! its API on one origin, as upstream 2.0's single-process image serves them — without a
//! proxy hop.
//!
//! What it answers:
//! - `/health_check` (GET/HEAD, `OK\n`), always at the root, for the public port's probes;
//! - `<base>/api/vgpu/v1/*`: the internal listener's own route table
//!   ([`crate::http::configure`]) mounted under `/api/vgpu` with the same [`AppState`], so `/api/vgpu/v1/gpus` runs
//!   the `/v1/gpus` handler in-process with the same JSON and errors. Only `/v1/*` is let
//!   through: `/metrics`, `/readyz` and `/livez` are the internal port's and are 404 here;
//! - everything else under `<base>`: the built frontend from `web.static_dir`
//!   ([`site`], loaded whole at start), with history-mode fallback to `index.html`
//!   ([`route`]), cache headers, precompressed gzip, and the framing policy of `web.*`;
//! - anything outside `<base>`: JSON 404.
//!
//! [`healthcheck`] is the `--healthcheck` client side of `/health_check`.

pub mod base_path;
pub mod healthcheck;
pub mod route;
pub mod serve;
pub mod site;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::Uri;
use actix_web::middleware::{Compress, ErrorHandlerResponse, ErrorHandlers};
use actix_web::{guard, web, App, HttpMessage, ResponseError};
use tracing_actix_web::TracingLogger;

use crate::config::WebConfig;
use crate::error::ApiError;
use crate::http;
use crate::http::logging::RequestLog;
use crate::http::AppState;
pub use serve::Console;
use site::{SiteError, StaticSite};

/// Where the API is mounted on the public listener, below the base path.
pub const API_PREFIX: &str = "/api/vgpu";

/// Why the public listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The static directory cannot be served: a configuration problem (exit status 2).
    #[error("web.static_dir: {0}")]
    Site(#[from] SiteError),
    /// The public address is taken or not ours to bind (exit status 1, like the internal
    /// listener).
    #[error("web.listen_address: cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The server could not be built or the loading task died.
    #[error("public http server: {0}")]
    Io(#[from] std::io::Error),
}

impl WebError {
    /// Whether the operator's configuration is at fault (rather than the environment).
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::Site(_))
    }
}

/// Whether the public listener runs: not with `web.enabled: false` (a 1.x chart, whose own
/// frontend container owns port 3000 in the pod, must set it), nor when the static directory
/// is the default one and absent (a development run, an image without the frontend) —
/// logged either way. An explicitly configured directory must exist, which
/// [`Console::load`] checks.
pub fn serves_console(settings: &WebConfig) -> bool {
    if !settings.enabled {
        tracing::info!("public listener disabled (web.enabled: false)");
        return false;
    }
    if !settings.static_dir_explicit && !settings.static_dir.is_dir() {
        tracing::warn!(
            static_dir = %settings.static_dir.display(),
            "no web console build at the default static dir; public listener not started \
             (set web.static_dir or --static-dir to serve one)"
        );
        return false;
    }
    true
}

impl Console {
    /// Reads and compresses the console's files once (a few MB: CPU work, kept off the
    /// actors' thread).
    pub async fn load(settings: &WebConfig) -> Result<Console, WebError> {
        let dir = settings.static_dir.clone();
        let base = settings.base_path.clone();
        let site = actix_rt::task::spawn_blocking(move || StaticSite::load(&dir, &base))
            .await
            .map_err(|e| WebError::Io(std::io::Error::other(e.to_string())))??;
        tracing::info!(
            static_dir = %settings.static_dir.display(),
            base_path = %settings.base_path,
            files = site.file_count(),
            bytes = site.total_bytes,
            gzip_bytes = site.gzip_bytes,
            frame_ancestors = settings.frame_ancestors.as_deref().unwrap_or("(none)"),
            "web console loaded"
        );
        Ok(Console {
            site,
            mount: settings
                .base_path
                .strip_suffix('/')
                .unwrap_or_default()
                .to_string(),
            policy: serve::console_policy(settings.frame_ancestors.as_deref()),
        })
    }
}

/// Marks a request that arrived as `<base>/api/vgpu/v1/…` and now carries the internal
/// path `/v1/…`; only such requests may enter the internal route table.
#[derive(Debug, Clone, Copy)]
struct ApiRequest;

/// Rewrites `<api_root>/v1/…` to `/v1/…` before routing, as upstream's web entry strips the
/// prefix, so the handlers (and their error messages) see exactly what the internal
/// listener's callers send. Paths with dot segments are left alone and end in a 404.
fn strip_api_prefix(req: &mut ServiceRequest, api_root: &str) {
    let uri = req.uri();
    let Some(rest) = uri.path().strip_prefix(api_root) else {
        return;
    };
    if !(rest == "/v1" || rest.starts_with("/v1/")) || route::has_dot_segment(rest) {
        return;
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    let Ok(path_and_query) = path_and_query.parse() else {
        return;
    };
    parts.path_and_query = Some(path_and_query);
    let Ok(stripped) = Uri::from_parts(parts) else {
        return;
    };
    req.match_info_mut().get_mut().update(&stripped);
    req.head_mut().uri = stripped;
    req.extensions_mut().insert(ApiRequest);
}

/// The public application: `/health_check`, the internal route table below
/// `<mount>/api/vgpu` (same handlers, same [`AppState`]), and the console below `<mount>`
/// (the base path without its trailing slash, `""` for the root).
pub fn app(
    state: AppState,
    console: web::Data<Console>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let mount = console.mount.clone();
    let api_root = format!("{mount}{API_PREFIX}");
    App::new()
        .wrap_fn(move |mut req, service| {
            strip_api_prefix(&mut req, &api_root);
            service.call(req)
        })
        .wrap(TracingLogger::<RequestLog>::new())
        .wrap_fn(http::pipelining::answer_then_yield)
        .app_data(web::Data::new(state))
        .app_data(console)
        .service(web::resource("/health_check").to(serve::health_check))
        .service(
            // The internal route table, for rewritten requests only: /metrics, /readyz,
            // /livez and the rest are unreachable because a rewritten path is /v1/….
            web::scope("")
                .guard(guard::fn_guard(|ctx| {
                    ctx.req_data().contains::<ApiRequest>()
                }))
                // The browser gets JSON compressed; the internal port stays as it is.
                .wrap(Compress::default())
                // Compress answers a client refusing every encoding with a plain-text 406.
                .wrap(
                    ErrorHandlers::new()
                        .handler(StatusCode::NOT_ACCEPTABLE, not_acceptable_as_json),
                )
                .wrap(http::api_headers())
                .configure(http::configure)
                .default_service(web::to(http::fallback::not_found)),
        )
        .service(web::scope(&mount).default_service(web::to(serve::console)))
        .default_service(web::to(serve::not_found_route))
}

/// The JSON 406 in place of the compression middleware's plain-text one.
fn not_acceptable_as_json<B>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let (request, _) = response.into_parts();
    let answer = ApiError::NotAcceptable.error_response();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, answer).map_into_right_body(),
    ))
}
