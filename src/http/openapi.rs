//! `GET /openapi.json`: an OpenAPI 3 description of every route of the internal listener,
//! kept by hand next to the routes and checked against them by tests (every route
//! [`super::configure`] registers is described in [`ROUTES`], and every described route
//! answers).
//!
//! Schemas spell the wire format: camelCase names in proto order, int32 as integers, floats
//! as numbers (or the strings `NaN`/`Infinity`), int64 timestamps as strings.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

/// One described route.
#[derive(Debug)]
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Component schema of the JSON body, if any.
    pub body: Option<&'static str>,
    /// Query parameters (all optional strings).
    pub query: &'static [&'static str],
    /// Component schema of the 200 answer; `None` for plain-text answers.
    pub reply: Option<&'static str>,
}

const fn route(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    body: Option<&'static str>,
    query: &'static [&'static str],
    reply: Option<&'static str>,
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        summary,
        body,
        query,
        reply,
    }
}

/// Every route of the internal listener.
pub const ROUTES: &[RouteDoc] = &[
    route(
        "get",
        "/livez",
        "Liveness: 200 `ok` while the process answers",
        None,
        &[],
        None,
    ),
    route(
        "get",
        "/readyz",
        "Readiness: 200 `ok` once the caches synced, else 503 naming what is awaited (any method)",
        None,
        &[],
        None,
    ),
    route(
        "get",
        "/metrics",
        "Prometheus exposition of the device, allocation and self metrics (any method)",
        None,
        &[],
        None,
    ),
    route(
        "post",
        "/v1/gpus",
        "Card list; capacity from hami_core_size / hami_memory_size when the metrics store answers",
        Some("GetAllGpusReq"),
        &[],
        Some("GPUsReply"),
    ),
    route(
        "post",
        "/v1/gpu-types",
        "Distinct card types, optionally of one provider (only `type` is filled)",
        Some("GetAllGpusReq"),
        &[],
        Some("GPUsReply"),
    ),
    route(
        "get",
        "/v1/gpu",
        "One card by id; an unknown id gives an all-empty card",
        None,
        &["uid"],
        Some("GPUReply"),
    ),
    route(
        "post",
        "/v1/nodes",
        "Node list; capacity from hami_core_size / hami_memory_size when the metrics store answers",
        Some("GetAllNodesReq"),
        &[],
        Some("NodesReply"),
    ),
    route(
        "get",
        "/v1/node",
        "One node by UID; an unknown UID is 500 `node not found`",
        None,
        &["uid"],
        Some("NodeReply"),
    ),
    route(
        "post",
        "/v1/summary",
        "Device totals over the matching devices",
        Some("GetSummaryReq"),
        &[],
        Some("DeviceSummaryReply"),
    ),
    route(
        "post",
        "/v1/containers",
        "Workload (container) list, ordered by status",
        Some("GetAllContainersReq"),
        &[],
        Some("ContainersReply"),
    ),
    route(
        "get",
        "/v1/container",
        "One container of a pod; not found gives an all-empty container",
        None,
        &["name", "podUid", "deviceId"],
        Some("ContainerReply"),
    ),
    route(
        "post",
        "/v1/monitor/summary",
        "Allocation rates (percent) and allocation per physical device over the matching devices",
        Some("SummaryFilter"),
        &[],
        Some("SummaryResponse"),
    ),
    route(
        "post",
        "/v1/monitor/query/range-vector",
        "PromQL range query, gaps filled with 0 on the step grid",
        Some("QueryRangeRequest"),
        &[],
        Some("RangeResponse"),
    ),
    route(
        "post",
        "/v1/monitor/query/instant-vector",
        "PromQL instant query at the current time",
        Some("QueryInstantRequest"),
        &[],
        Some("InstantResponse"),
    ),
    route(
        "get",
        "/v1/device-config",
        "State of HAMi's device ConfigMap and the Ascend models configured in it",
        None,
        &[],
        Some("DeviceConfigReply"),
    ),
    route(
        "post",
        "/v1/workloads",
        "GPU workloads: allocated containers and unbound GPU requests, filtered and paged",
        Some("ListWorkloadsRequest"),
        &[],
        Some("WorkloadsReply"),
    ),
    route(
        "get",
        "/v1/scheduling/pod",
        "One GPU pod's scheduling state and recent events",
        None,
        &["namespace", "name", "uid"],
        Some("SchedulingPodReply"),
    ),
    route("get", "/openapi.json", "This document", None, &[], None),
];

fn object(fields: &[(&str, Value)]) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|(name, schema)| (name.to_string(), schema.clone()))
        .collect();
    json!({"type": "object", "properties": properties})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn int32() -> Value {
    json!({"type": "integer", "format": "int32"})
}

fn boolean() -> Value {
    json!({"type": "boolean"})
}

fn float() -> Value {
    json!({"oneOf": [{"type": "number", "format": "float"},
                     {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]})
}

fn int64() -> Value {
    json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn list_of(name: &str) -> Value {
    json!({"type": "array", "items": reference(name)})
}

fn strings_object(names: &[&str]) -> Value {
    let fields: Vec<(&str, Value)> = names.iter().map(|n| (*n, string())).collect();
    object(&fields)
}

fn schemas() -> Value {
    let rates = object(&[("vgpu", float()), ("memory", float()), ("core", float())]);
    json!({
        "Error": object(&[("code", int32()), ("reason", string()), ("message", string()),
                          ("metadata", string_map())]),
        "GetAllGpusReq": object(&[("filters", strings_object(&["uid", "type", "nodeName", "provider"]))]),
        "GPUReply": object(&[
            ("uuid", string()), ("nodeName", string()), ("type", string()),
            ("vgpuUsed", int32()), ("vgpuTotal", int32()), ("coreUsed", int32()),
            ("coreTotal", int32()), ("memoryUsed", int32()), ("memoryTotal", int32()),
            ("nodeUid", string()), ("health", boolean()), ("mode", string()),
            ("coreUsedKnown", boolean()), ("unconfigured", boolean()), ("vendor", string())]),
        "GPUsReply": object(&[("list", list_of("GPUReply"))]),
        "GetAllNodesReq": object(&[("filters", strings_object(&["ip", "type", "isSchedulable"]))]),
        "NodeReply": object(&[
            ("ip", string()), ("isSchedulable", boolean()), ("isReady", boolean()),
            ("type", strings()), ("vgpuUsed", int32()), ("vgpuTotal", int32()),
            ("coreUsed", int32()), ("coreTotal", int32()), ("memoryUsed", int32()),
            ("memoryTotal", int32()), ("uid", string()), ("name", string()),
            ("cardCnt", int32()), ("osImage", string()), ("operatingSystem", string()),
            ("kernelVersion", string()), ("containerRuntimeVersion", string()),
            ("kubeletVersion", string()), ("kubeProxyVersion", string()),
            ("architecture", string()), ("creationTimestamp", string())]),
        "NodesReply": object(&[("list", list_of("NodeReply"))]),
        "GetSummaryReq": object(&[("filters", strings_object(&["type", "nodeUid", "deviceId"]))]),
        "DeviceSummaryReply": object(&[
            ("vgpuUsed", int32()), ("vgpuTotal", int32()), ("coreUsed", int32()),
            ("coreTotal", int32()), ("memoryUsed", int32()), ("memoryTotal", int32()),
            ("gpuCount", int32()), ("nodeCount", int32())]),
        "GetAllContainersReq": object(&[
            ("filters", strings_object(&["name", "nodeName", "status", "deviceId", "nodeUid",
                                         "resourceGroup", "priority"])),
            ("pageSize", object(&[("pageSize", int32()), ("pageNo", int32()),
                                  ("sort", string()), ("sortField", string())]))]),
        "ContainerReply": object(&[
            ("name", string()), ("status", string()), ("appName", string()),
            ("nodeName", string()), ("allocatedDevices", int32()), ("allocatedCores", int32()),
            ("allocatedMem", int32()), ("type", string()), ("createTime", string()),
            ("startTime", string()), ("endTime", string()), ("podUid", string()),
            ("nodeUid", string()), ("resourcePool", string()), ("flavor", string()),
            ("priority", string()), ("namespace", string()), ("deviceIds", strings()),
            ("images", strings()), ("allocatedCoresKnown", boolean()),
            ("statusDetail", reference("ContainerStatusDetail")), ("pending", boolean()),
            ("scheduling", reference("SchedulingPod")),
            ("request", reference("SchedulingContainerRequest")), ("containerKind", string()),
            ("allocationShape", string()), ("template", string()),
            ("allocatedCoresReason", string()), ("vendor", string())]),
        "ContainerStatusDetail": object(&[
            ("containerState", string()), ("reason", string()), ("message", string()),
            ("ready", boolean()), ("restartCount", int32()), ("exitCode", int32()),
            ("podPhase", string()), ("podReady", string()), ("podReadyReason", string()),
            ("podReadyMessage", string()), ("restartPending", boolean()),
            ("lastTerminationReason", string()), ("lastExitCode", int32()),
            ("lastTerminationMessage", string()), ("podReason", string()),
            ("podMessage", string())]),
        "ListWorkloadsRequest": object(&[
            ("filters", strings_object(&["name", "nodeName", "status", "deviceId", "nodeUid",
                                         "namespace", "priority"])),
            ("page", int32()), ("pageSize", int32())]),
        "WorkloadsReply": object(&[
            ("items", list_of("ContainerReply")), ("total", int32()),
            ("statusCounts", json!({"type": "object", "additionalProperties": int32()}))]),
        "SchedulingPod": object(&[
            ("name", string()), ("namespace", string()), ("uid", string()),
            ("createdAt", string()), ("schedulerName", string()), ("nodeName", string()),
            ("stage", string()), ("reasonCodes", strings()), ("reasonSource", string()),
            ("condition", object(&[("status", string()), ("reason", string()),
                                   ("message", string()), ("transitionAt", string()),
                                   ("messageTruncated", boolean())])),
            ("requests", list_of("SchedulingContainerRequest")), ("gates", strings()),
            ("constraints", json!({"type": "array", "items": strings_object(&["name", "value"])})),
            ("preallocated", boolean()), ("allocatedContainers", strings())]),
        "SchedulingContainerRequest": object(&[
            ("container", string()), ("containerKind", string()),
            ("resources", json!({"type": "array",
                                 "items": strings_object(&["name", "value", "unit", "kind", "vendor"])}))]),
        "SchedulingPodReply": object(&[
            ("pod", reference("SchedulingPod")),
            ("events", json!({"type": "array", "items": object(&[
                ("uid", string()), ("reason", string()), ("type", string()),
                ("message", string()), ("source", string()), ("lastObservedAt", string()),
                ("count", int32()), ("messageTruncated", boolean())])})),
            ("eventStatus", string()), ("eventsIncomplete", boolean()),
            ("eventsFetchedAt", string())]),
        "ContainersReply": object(&[("items", list_of("ContainerReply"))]),
        "SummaryFilter": strings_object(&["node", "device"]),
        "SummaryResponse": object(&[("distributionRate", rates.clone()), ("scaling", rates)]),
        "QueryRangeRequest": object(&[("query", string()),
                                      ("range", strings_object(&["start", "end", "step"]))]),
        "RangeResponse": object(&[("data", json!({"type": "array", "items": object(&[
            ("metric", string_map()),
            ("values", json!({"type": "array", "items": object(&[("value", float()), ("timestamp", int64())])}))])}))]),
        "QueryInstantRequest": object(&[("query", string())]),
        "DeviceConfigReply": object(&[
            ("state", json!({"type": "string", "enum": ["disabled", "loading", "loaded", "missing",
                                                        "forbidden", "invalid", "error"]})),
            ("reason", string()), ("namespace", string()), ("name", string()), ("key", string()),
            ("resourceVersion", string()), ("observedAt", string()), ("issues", strings()),
            ("ascendModels", list_of("AscendModel"))]),
        "AscendModel": object(&[
            ("commonWord", string()), ("chipName", string()), ("resourceName", string()),
            ("resourceMemoryName", string()), ("resourceCoreName", string()),
            ("memoryAllocatable", int64()), ("memoryCapacity", int64()), ("aiCore", int32()),
            ("aiCpu", int32()), ("templates", list_of("AscendTemplate")), ("superPod", boolean())]),
        "AscendTemplate": object(&[
            ("name", string()), ("memory", int64()), ("aiCore", int32()), ("aiCpu", int32()),
            ("computeShare", int32())]),
        "InstantResponse": object(&[("data", json!({"type": "array", "items": object(&[
            ("metric", string_map()), ("value", float()), ("timestamp", int64())])}))]),
    })
}

fn operation(route: &RouteDoc) -> Value {
    let mut op = Map::new();
    op.insert("summary".into(), json!(route.summary));
    if let Some(body) = route.body {
        op.insert(
            "requestBody".into(),
            json!({"required": false, "content": {"application/json": {"schema": reference(body)}}}),
        );
    }
    if !route.query.is_empty() {
        let parameters: Vec<Value> = route
            .query
            .iter()
            .map(|name| json!({"name": name, "in": "query", "required": false, "schema": string()}))
            .collect();
        op.insert("parameters".into(), Value::Array(parameters));
    }
    let ok = match route.reply {
        Some(reply) => json!({"description": "OK",
                              "content": {"application/json": {"schema": reference(reply)}}}),
        None => json!({"description": "OK"}),
    };
    let error = json!({"description": "Error (HTTP status = code)",
                       "content": {"application/json": {"schema": reference("Error")}}});
    op.insert("responses".into(), json!({"200": ok, "default": error}));
    Value::Object(op)
}

/// The whole document, built once.
pub fn document_json() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut paths = Map::new();
        for route in ROUTES {
            let entry = paths
                .entry(route.path.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(methods) = entry {
                methods.insert(route.method.to_string(), operation(route));
            }
        }
        json!({
            "openapi": "3.0.3",
            "info": {
                "title": "hami-webui-server",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Backend of the HAMi-WebUI console. Request bodies accept \
                    camelCase and snake_case names and ignore unknown fields; every route \
                    also binds the query string (nested as `filters.nodeName=x`)."
            },
            "paths": paths,
            "components": {"schemas": schemas()}
        })
    })
}

/// `GET /openapi.json`.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(document_json())
}
