//! The HTTP side: discovery, paged lists, chunked watch streams with bookmarks and
//! `410 Expired`, single objects, and errors as `Status` objects.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::*;

/// Every failure a handler can answer, rendered once as a `metav1.Status` body.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(super) struct ApiFailure {
    pub(super) code: u16,
    pub(super) reason: &'static str,
    pub(super) message: String,
}

impl ApiFailure {
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
        }
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: message.into(),
        }
    }

    pub(super) fn expired(message: impl Into<String>) -> Self {
        Self {
            code: 410,
            reason: "Expired",
            message: message.into(),
        }
    }
}

impl From<SelectorError> for ApiFailure {
    fn from(err: SelectorError) -> Self {
        Self::bad_request(err.to_string())
    }
}

impl ResponseError for ApiFailure {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(status_object(
            self.code,
            self.reason,
            &self.message,
        ))
    }
}

/// The URL part of a resource request: which kind, and optionally namespace and name.
pub(super) struct Scope {
    pub(super) kind: ResourceKind,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
}

impl Scope {
    pub(super) fn from_request(req: &HttpRequest) -> Result<Self, ApiFailure> {
        let info = req.match_info();
        let plural = info.get("plural").unwrap_or_default();
        let group = info.get("group").unwrap_or_default();
        let namespace = info.get("namespace").map(str::to_owned);
        let name = info.get("name").map(str::to_owned);
        let not_found =
            || ApiFailure::not_found("the server could not find the requested resource");
        let kind = ResourceKind::from_plural(group, plural).ok_or_else(not_found)?;
        // Namespaced kinds have no cluster-level item path; cluster kinds have no namespace path.
        if (namespace.is_some() && !kind.namespaced())
            || (kind.namespaced() && namespace.is_none() && name.is_some())
        {
            return Err(not_found());
        }
        Ok(Self {
            kind,
            namespace,
            name,
        })
    }

    pub(super) fn check_allowed(&self, state: &ApiState, verb: &str) -> Result<(), ApiFailure> {
        let plural = self.kind.plural();
        if self.kind.group() == DRA_GROUP && !state.dra_served {
            return Err(ApiFailure::not_found(
                "the server could not find the requested resource",
            ));
        }
        if !state.forbidden.contains(plural) {
            return Ok(());
        }
        let place = match &self.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_owned(),
        };
        Err(ApiFailure {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "{plural} is forbidden: User \"system:anonymous\" cannot {verb} resource \"{plural}\" in API group \"{}\" {place}",
                self.kind.group()
            ),
        })
    }
}

/// The query parameters of list and watch requests that this server honours.
pub(super) struct ListQuery {
    pub(super) labels: LabelSelector,
    pub(super) fields: FieldSelector,
    pub(super) limit: Option<usize>,
    pub(super) continue_token: Option<String>,
    pub(super) resource_version: Option<String>,
    pub(super) exact_match: bool,
    pub(super) watch: bool,
    pub(super) bookmarks: bool,
    pub(super) send_initial_events: bool,
    pub(super) timeout: Duration,
}

pub(super) fn flag(params: &HashMap<String, String>, key: &str) -> bool {
    params.get(key).is_some_and(|v| v == "true" || v == "1")
}

impl ListQuery {
    pub(super) fn parse(query: &str) -> Result<Self, ApiFailure> {
        let params = web::Query::<HashMap<String, String>>::from_query(query)
            .map_err(|err| ApiFailure::bad_request(format!("malformed query string: {err}")))?
            .into_inner();
        let text = |key: &str| params.get(key).map(String::as_str).unwrap_or("");
        let number = |key: &str| -> Result<Option<u64>, ApiFailure> {
            match params.get(key).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| ApiFailure::bad_request(format!("invalid {key}: {v:?}"))),
            }
        };
        let timeout = match number("timeoutSeconds")? {
            Some(secs) => Duration::from_secs(secs).min(MAX_WATCH_TIMEOUT),
            None => DEFAULT_WATCH_TIMEOUT,
        };
        Ok(Self {
            labels: LabelSelector::parse(text("labelSelector"))?,
            fields: FieldSelector::parse(text("fieldSelector"))?,
            limit: number("limit")?
                .filter(|&n| n > 0)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            continue_token: params.get("continue").filter(|v| !v.is_empty()).cloned(),
            resource_version: params
                .get("resourceVersion")
                .filter(|v| !v.is_empty())
                .cloned(),
            exact_match: text("resourceVersionMatch") == "Exact",
            watch: flag(&params, "watch"),
            bookmarks: flag(&params, "allowWatchBookmarks"),
            send_initial_events: flag(&params, "sendInitialEvents"),
            timeout,
        })
    }

    pub(super) fn filter(&self, scope: &Scope) -> ObjectFilter {
        ObjectFilter {
            namespace: scope.namespace.clone(),
            name: scope.name.clone(),
            labels: self.labels.clone(),
            fields: self.fields.clone(),
        }
    }
}

pub(super) fn parse_revision(text: &str) -> Result<u64, ApiFailure> {
    text.parse()
        .map_err(|_| ApiFailure::bad_request(format!("invalid resource version: {text:?}")))
}

/// `{revision}/{namespace}/{name}`: the list's revision plus the last key served. Names and
/// namespaces never contain '/', so the split is unambiguous.
pub(super) fn parse_continue(token: &str) -> Result<(u64, ObjectKey), ApiFailure> {
    let bad = || ApiFailure::bad_request(format!("invalid continue token: {token:?}"));
    let mut parts = token.splitn(3, '/');
    let revision = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
    let namespace = parts.next().ok_or_else(bad)?;
    let name = parts.next().ok_or_else(bad)?;
    Ok((revision, (namespace.to_owned(), name.to_owned())))
}

pub(super) fn json_response(body: &Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string())
}

pub(super) async fn version() -> HttpResponse {
    json_response(&json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0",
        "gitCommit": "60a317eadfcb839692a68eab88b2096f4d708f4f",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T13:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    }))
}

pub(super) async fn core_versions(shared: web::Data<Shared>) -> HttpResponse {
    json_response(&json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            { "clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{}", shared.port) }
        ],
    }))
}

pub(super) async fn core_resources() -> HttpResponse {
    resource_list("", "v1")
}

/// `/apis/resource.k8s.io/v1`, unless a test turned DRA off.
pub(super) async fn dra_resources(shared: web::Data<Shared>) -> HttpResponse {
    if !shared.lock().dra_served {
        return ApiFailure::not_found("the server could not find the requested resource")
            .error_response();
    }
    resource_list(DRA_GROUP, "resource.k8s.io/v1")
}

fn resource_list(group: &str, group_version: &str) -> HttpResponse {
    let resources: Vec<Value> = ResourceKind::ALL
        .into_iter()
        .filter(|kind| kind.group() == group)
        .map(|kind| {
            let mut resource = json!({
                "name": kind.plural(),
                "singularName": kind.kind().to_lowercase(),
                "namespaced": kind.namespaced(),
                "kind": kind.kind(),
                "verbs": ["get", "list", "watch"],
                "shortNames": kind.short_names(),
            });
            if kind == ResourceKind::Pod {
                resource["categories"] = json!(["all"]);
            }
            resource
        })
        .collect();
    json_response(&json!({
        "kind": "APIResourceList",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

pub(super) async fn group_list(shared: web::Data<Shared>) -> HttpResponse {
    let mut groups = vec![lease::api_group()];
    if shared.lock().dra_served {
        groups.push(json!({
            "name": DRA_GROUP,
            "versions": [{ "groupVersion": "resource.k8s.io/v1", "version": "v1" }],
            "preferredVersion": { "groupVersion": "resource.k8s.io/v1", "version": "v1" },
        }));
    }
    json_response(&json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups,
    }))
}

pub(super) async fn unknown_path(req: HttpRequest) -> HttpResponse {
    let failure = if req.method() == actix_web::http::Method::GET {
        ApiFailure::not_found("the server could not find the requested resource")
    } else {
        ApiFailure {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!(
                "the server does not allow this method on the requested resource: {}",
                req.method()
            ),
        }
    };
    failure.error_response()
}

pub(super) async fn collection(
    req: HttpRequest,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiFailure> {
    let scope = Scope::from_request(&req)?;
    let query = ListQuery::parse(req.query_string())?;
    if query.watch {
        watch(scope, query, shared.into_inner())
    } else {
        list(scope, query, &shared)
    }
}

pub(super) async fn item(
    req: HttpRequest,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiFailure> {
    let scope = Scope::from_request(&req)?;
    let query = ListQuery::parse(req.query_string())?;
    if query.watch {
        return watch(scope, query, shared.into_inner());
    }
    let state = shared.lock();
    scope.check_allowed(&state, "get")?;
    let key = (
        scope.namespace.clone().unwrap_or_default(),
        scope.name.clone().unwrap_or_default(),
    );
    match state.objects[scope.kind.index()].get(&key) {
        Some(object) => Ok(json_response(object)),
        None => Err(ApiFailure::not_found(format!(
            "{} \"{}\" not found",
            scope.kind.plural(),
            key.1
        ))),
    }
}

pub(super) fn list(
    scope: Scope,
    query: ListQuery,
    shared: &Shared,
) -> Result<HttpResponse, ApiFailure> {
    let filter = query.filter(&scope);
    let (revision, items, next) = {
        let mut state = shared.lock();
        scope.check_allowed(&state, "list")?;
        let (revision, after) = match &query.continue_token {
            Some(token) => {
                let (revision, after) = parse_continue(token)?;
                if revision < state.compacted {
                    return Err(ApiFailure::expired(
                        "The provided continue parameter is too old to display a consistent list result. \
                         You can start a new list without the continue parameter.",
                    ));
                }
                (revision, Some(after))
            }
            None => {
                if let Some(requested) = &query.resource_version {
                    let requested = parse_revision(requested)?;
                    // Only history is missing: an exact read of an older revision is gone.
                    if query.exact_match && requested != state.revision {
                        return Err(ApiFailure::expired(expired_message(
                            requested,
                            state.revision,
                        )));
                    }
                }
                (state.revision, None)
            }
        };
        state.expired_until_list = false;
        let limit = query.limit.unwrap_or(usize::MAX);
        let mut items: Vec<Arc<Value>> = Vec::new();
        let mut next = None;
        let mut last_key = None;
        for (key, object) in state.matching(scope.kind, &filter, after.as_ref()) {
            if items.len() == limit {
                next = last_key.take();
                break;
            }
            items.push(Arc::clone(object));
            last_key = Some(key.clone());
        }
        (revision, items, next)
    };

    // Serialise outside the lock: 100k pods take a while and watches must keep flowing.
    let mut metadata = Map::new();
    metadata.insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
    if let Some((ns, name)) = next {
        metadata.insert(
            "continue".into(),
            Value::String(format!("{revision}/{ns}/{name}")),
        );
    }
    let mut body = String::with_capacity(64 + items.len() * 512);
    let _ = write!(
        body,
        "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        scope.kind.kind(),
        scope.kind.api_version(),
        Value::Object(metadata)
    );
    for (i, object) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(body, "{object}");
    }
    body.push_str("]}");
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

pub(super) fn watch(
    scope: Scope,
    query: ListQuery,
    shared: Arc<Shared>,
) -> Result<HttpResponse, ApiFailure> {
    let filter = query.filter(&scope);
    let kind = scope.kind;
    let (tx, rx) = mpsc::unbounded_channel();
    let bookmark_interval = {
        let mut state = shared.lock();
        scope.check_allowed(&state, "watch")?;
        let send = |line: Bytes| {
            let _ = tx.send(WatchFrame::Line(line));
        };
        let start = match query.resource_version.as_deref() {
            None | Some("0") => None,
            Some(text) => Some(parse_revision(text)?),
        };
        match start {
            Some(start) if start < state.compacted => {
                // Real servers answer 200 and then a 410 ERROR event for a compacted watch.
                let status =
                    status_object(410, "Expired", &expired_message(start, state.compacted));
                send(watch_line("ERROR", &status));
                let _ = tx.send(WatchFrame::End);
            }
            Some(start) => {
                let first = state.log.partition_point(|change| change.revision <= start);
                for change in state
                    .log
                    .range(first..)
                    .filter(|change| change.kind == kind)
                {
                    if let Some(event_type) = change.event_type(&filter) {
                        send(watch_line(event_type, &change.object));
                    }
                }
                state.watches.push(WatchRegistration {
                    kind,
                    filter,
                    tx: tx.clone(),
                });
            }
            None => {
                // No revision (or "0"): synthetic ADDED for the current state, then live events.
                for (_, object) in state.matching(kind, &filter, None) {
                    send(watch_line("ADDED", object));
                }
                if query.send_initial_events {
                    send(bookmark_line(kind, state.revision, true));
                }
                state.watches.push(WatchRegistration {
                    kind,
                    filter,
                    tx: tx.clone(),
                });
            }
        }
        state.bookmark_interval
    };

    let deadline = tokio::time::Instant::now() + query.timeout;
    let bookmarks = query.bookmarks.then(|| {
        let mut ticks = tokio::time::interval_at(
            tokio::time::Instant::now() + bookmark_interval,
            bookmark_interval,
        );
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    let stream = WatchStream {
        kind,
        rx,
        tx,
        shared,
        deadline,
        bookmarks,
    };
    let body = futures::stream::unfold(stream, |mut stream| async move {
        let line = stream.next_line().await?;
        Some((Ok::<_, Infallible>(line), stream))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .streaming(body))
}

/// The consumer half of one watch: drains its channel until cut, timed out or disconnected.
pub(super) struct WatchStream {
    pub(super) kind: ResourceKind,
    pub(super) rx: mpsc::UnboundedReceiver<WatchFrame>,
    /// Lets the stream enqueue its own bookmarks behind events already pushed to it.
    pub(super) tx: mpsc::UnboundedSender<WatchFrame>,
    pub(super) shared: Arc<Shared>,
    pub(super) deadline: tokio::time::Instant,
    pub(super) bookmarks: Option<tokio::time::Interval>,
}

impl WatchStream {
    pub(super) async fn next_line(&mut self) -> Option<Bytes> {
        // A bookmark tick enqueues one frame, which the next turn returns; two turns suffice,
        // the bound only guards against a logic error.
        for _ in 0..4 {
            let tick = async {
                match self.bookmarks.as_mut() {
                    Some(ticks) => {
                        ticks.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                biased;
                frame = self.rx.recv() => return match frame {
                    Some(WatchFrame::Line(line)) => Some(line),
                    Some(WatchFrame::End) | None => None,
                },
                () = tokio::time::sleep_until(self.deadline) => return None,
                () = tick => {
                    // Under the lock, so every change up to this revision is already queued.
                    let state = self.shared.lock();
                    let _ = self.tx.send(WatchFrame::Line(bookmark_line(self.kind, state.revision, false)));
                }
            }
        }
        None
    }
}

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/version", web::get().to(version))
        .route("/version/", web::get().to(version))
        .route("/api", web::get().to(core_versions))
        .route("/api/v1", web::get().to(core_resources))
        .route("/apis", web::get().to(group_list))
        .route(
            "/api/v1/namespaces/{namespace}/{plural}/{name}",
            web::get().to(item),
        )
        .route(
            "/api/v1/namespaces/{namespace}/{plural}",
            web::get().to(collection),
        )
        .route("/api/v1/{plural}/{name}", web::get().to(item))
        .route("/api/v1/{plural}", web::get().to(collection))
        .route("/apis/resource.k8s.io/v1", web::get().to(dra_resources))
        .route(
            "/apis/{group:resource\\.k8s\\.io}/v1/namespaces/{namespace}/{plural}/{name}",
            web::get().to(item),
        )
        .route(
            "/apis/{group:resource\\.k8s\\.io}/v1/namespaces/{namespace}/{plural}",
            web::get().to(collection),
        )
        .route(
            "/apis/{group:resource\\.k8s\\.io}/v1/{plural}/{name}",
            web::get().to(item),
        )
        .route(
            "/apis/{group:resource\\.k8s\\.io}/v1/{plural}",
            web::get().to(collection),
        )
        .configure(lease::routes);
}
