//! `coordination.k8s.io/v1` Leases: get, list, create, update with `resourceVersion`
//! preconditions (a stale write answers `409 Conflict`), delete. No watch: leader election
//! polls.
//!
//! Leases are kept apart from the watched kinds because they share nothing with them but the
//! revision counter: no change log, no selectors, no core-group discovery.

use std::collections::BTreeMap;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::*;

pub(super) const GROUP: &str = "coordination.k8s.io";
pub(super) const GROUP_VERSION: &str = "coordination.k8s.io/v1";

/// The Leases and the faults a test injects into their writes.
#[derive(Default)]
pub(super) struct LeaseStore {
    pub(super) objects: BTreeMap<ObjectKey, Value>,
    /// This many of the next creates/updates answer `409` whatever their precondition, as
    /// when another writer won the race in between.
    pub(super) forced_conflicts: usize,
    /// Writes answered `409`, forced or genuine.
    pub(super) conflicts_answered: usize,
}

pub(super) fn conflict(name: &str) -> ApiFailure {
    ApiFailure {
        code: 409,
        reason: "Conflict",
        message: format!(
            "Operation cannot be fulfilled on leases.{GROUP} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
    }
}

fn not_found(name: &str) -> ApiFailure {
    ApiFailure::not_found(format!("leases.{GROUP} \"{name}\" not found"))
}

fn check_allowed(state: &ApiState, verb: &str, namespace: &str) -> Result<(), ApiFailure> {
    if !state.forbidden.contains("leases") {
        return Ok(());
    }
    Err(ApiFailure {
        code: 403,
        reason: "Forbidden",
        message: format!(
            "leases.{GROUP} is forbidden: User \"system:anonymous\" cannot {verb} resource \"leases\" in API group \"{GROUP}\" in the namespace \"{namespace}\""
        ),
    })
}

impl ApiState {
    /// Stores `lease` under a new revision, filling the server-owned metadata.
    pub(super) fn store_lease(&mut self, port: u16, namespace: &str, mut lease: Value) -> Value {
        let name = lease["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = (namespace.to_owned(), name);
        let previous = self.leases.objects.get(&key);
        let uid = previous
            .and_then(|p| p["metadata"].get("uid").cloned())
            .unwrap_or_else(|| {
                self.next_uid += 1;
                Value::String(format!("{port:08x}-0000-4000-8000-{:012x}", self.next_uid))
            });
        let created = previous
            .and_then(|p| p["metadata"].get("creationTimestamp").cloned())
            .unwrap_or_else(|| Value::String(now_rfc3339()));
        self.revision += 1;
        lease["apiVersion"] = json!(GROUP_VERSION);
        lease["kind"] = json!("Lease");
        let metadata = &mut lease["metadata"];
        metadata["namespace"] = json!(namespace);
        metadata["uid"] = uid;
        metadata["creationTimestamp"] = created;
        metadata["resourceVersion"] = json!(self.revision.to_string());
        self.leases.objects.insert(key, lease.clone());
        lease
    }
}

fn parse_body(body: &Bytes) -> Result<Value, ApiFailure> {
    let lease: Value = serde_json::from_slice(body)
        .map_err(|err| ApiFailure::bad_request(format!("the body is not JSON: {err}")))?;
    if lease
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k != "Lease")
    {
        return Err(ApiFailure::bad_request("the body is not a Lease"));
    }
    if !lease.get("metadata").is_some_and(Value::is_object) {
        return Err(ApiFailure::bad_request("the Lease has no metadata"));
    }
    Ok(lease)
}

fn invalid(name: &str, field: &str, detail: &str) -> ApiFailure {
    ApiFailure {
        code: 422,
        reason: "Invalid",
        message: format!("Lease.{GROUP} \"{name}\" is invalid: {field}: {detail}"),
    }
}

fn path_part(req: &HttpRequest, part: &str) -> String {
    req.match_info().get(part).unwrap_or_default().to_owned()
}

pub(super) async fn list(
    req: HttpRequest,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiFailure> {
    let namespace = req.match_info().get("namespace").map(str::to_owned);
    let state = shared.lock();
    check_allowed(&state, "list", namespace.as_deref().unwrap_or(""))?;
    let items: Vec<&Value> = state
        .leases
        .objects
        .iter()
        .filter(|((ns, _), _)| namespace.as_ref().is_none_or(|want| want == ns))
        .map(|(_, lease)| lease)
        .collect();
    Ok(json_response(&json!({
        "kind": "LeaseList",
        "apiVersion": GROUP_VERSION,
        "metadata": { "resourceVersion": state.revision.to_string() },
        "items": items,
    })))
}

pub(super) async fn get(
    req: HttpRequest,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiFailure> {
    let (namespace, name) = (path_part(&req, "namespace"), path_part(&req, "name"));
    let state = shared.lock();
    check_allowed(&state, "get", &namespace)?;
    match state.leases.objects.get(&(namespace, name.clone())) {
        Some(lease) => Ok(json_response(lease)),
        None => Err(not_found(&name)),
    }
}

pub(super) async fn create(
    req: HttpRequest,
    body: Bytes,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiFailure> {
    let namespace = path_part(&req, "namespace");
    let mut lease = parse_body(&body)?;
    let name = lease["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() {
        return Err(invalid(
            "",
            "metadata.name",
            "Required value: name is required",
        ));
    }
    if lease["metadata"]
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(invalid(
            &name,
            "metadata.resourceVersion",
            "Invalid value: resourceVersion should not be set on objects to be created",
        ));
    }
    let mut state = shared.lock();
    check_allowed(&state, "create", &namespace)?;
    if state.leases.forced_conflicts > 0 {
        state.leases.forced_conflicts -= 1;
        state.leases.conflicts_answered += 1;
        return Err(conflict(&name));
    }
    if state
        .leases
        .objects
        .contains_key(&(namespace.clone(), name.clone()))
    {
        state.leases.conflicts_answered += 1;
        return Err(ApiFailure {
            code: 409,
            reason: "AlreadyExists",
            message: format!("leases.{GROUP} \"{name}\" already exists"),
        });
    }
    lease["metadata"]["resourceVersion"] = Value::Null;
    let stored = state.store_lease(shared.port, &namespace, lease);
    Ok(HttpResponse::Created()
        .content_type("application/json")
        .body(stored.to_string()))
}

pub(super) async fn update(
    req: HttpRequest,
    body: Bytes,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiFailure> {
    let (namespace, name) = (path_part(&req, "namespace"), path_part(&req, "name"));
    let lease = parse_body(&body)?;
    if lease["metadata"]["name"].as_str() != Some(name.as_str()) {
        return Err(ApiFailure::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    let Some(precondition) = lease["metadata"]
        .get("resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
        .map(str::to_owned)
    else {
        return Err(invalid(
            &name,
            "metadata.resourceVersion",
            "Invalid value: 0x0: must be specified for an update",
        ));
    };
    let mut state = shared.lock();
    check_allowed(&state, "update", &namespace)?;
    let Some(current) = state.leases.objects.get(&(namespace.clone(), name.clone())) else {
        return Err(not_found(&name));
    };
    let current_version = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default();
    if state.leases.forced_conflicts > 0 || current_version != precondition {
        state.leases.forced_conflicts = state.leases.forced_conflicts.saturating_sub(1);
        state.leases.conflicts_answered += 1;
        return Err(conflict(&name));
    }
    let stored = state.store_lease(shared.port, &namespace, lease);
    Ok(json_response(&stored))
}

pub(super) async fn delete(
    req: HttpRequest,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiFailure> {
    let (namespace, name) = (path_part(&req, "namespace"), path_part(&req, "name"));
    let mut state = shared.lock();
    check_allowed(&state, "delete", &namespace)?;
    if state
        .leases
        .objects
        .remove(&(namespace, name.clone()))
        .is_none()
    {
        return Err(not_found(&name));
    }
    state.revision += 1;
    Ok(json_response(&json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": { "name": name, "group": GROUP, "kind": "leases" },
    })))
}

pub(super) async fn group_resources() -> HttpResponse {
    json_response(&json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [{
            "name": "leases",
            "singularName": "lease",
            "namespaced": true,
            "kind": "Lease",
            "verbs": ["create", "delete", "get", "list", "update"],
        }],
    }))
}

/// The `/apis` entry for this group.
pub(super) fn api_group() -> Value {
    json!({
        "name": GROUP,
        "versions": [{ "groupVersion": GROUP_VERSION, "version": "v1" }],
        "preferredVersion": { "groupVersion": GROUP_VERSION, "version": "v1" },
    })
}

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    let base = format!("/apis/{GROUP_VERSION}");
    cfg.route(&base, web::get().to(group_resources))
        .route(&format!("{base}/leases"), web::get().to(list))
        .route(
            &format!("{base}/namespaces/{{namespace}}/leases"),
            web::get().to(list),
        )
        .route(
            &format!("{base}/namespaces/{{namespace}}/leases"),
            web::post().to(create),
        )
        .route(
            &format!("{base}/namespaces/{{namespace}}/leases/{{name}}"),
            web::get().to(get),
        )
        .route(
            &format!("{base}/namespaces/{{namespace}}/leases/{{name}}"),
            web::put().to(update),
        )
        .route(
            &format!("{base}/namespaces/{{namespace}}/leases/{{name}}"),
            web::delete().to(delete),
        );
}
