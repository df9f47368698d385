//! `GET /v1/device-config`'s reply: the state of HAMi's device ConfigMap and the Ascend
//! models read from it, as upstream 2.0's `DeviceConfigReply` (`api/v1/device_config.proto`)
//! renders it.

use jiff::tz::TimeZone;
use serde::Serialize;

use crate::catalog::AscendModel;
use crate::cluster::catalog_watcher::{CatalogState, CatalogStatus};
use crate::reply::protojson::Int64;
use crate::reply::times::rfc3339;

/// `DeviceConfigReply`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceConfigReply {
    pub state: &'static str,
    /// Set only for `invalid`: parse errors describe the operator's own file, while API
    /// errors stay in the server log (as upstream).
    pub reason: String,
    pub namespace: String,
    pub name: String,
    pub key: String,
    pub resource_version: String,
    /// RFC 3339 in the configured zone; empty before any outcome.
    pub observed_at: String,
    pub issues: Vec<String>,
    pub ascend_models: Vec<AscendModelReply>,
}

/// `AscendModel`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AscendModelReply {
    pub common_word: String,
    pub chip_name: String,
    pub resource_name: String,
    pub resource_memory_name: String,
    pub resource_core_name: String,
    pub memory_allocatable: Int64,
    pub memory_capacity: Int64,
    pub ai_core: i32,
    pub ai_cpu: i32,
    pub templates: Vec<AscendTemplateReply>,
    /// HAMi allocates modules of two NPUs (a `superPod` Ascend910C only).
    pub super_pod: bool,
}

/// `AscendTemplate`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AscendTemplateReply {
    pub name: String,
    pub memory: Int64,
    pub ai_core: i32,
    pub ai_cpu: i32,
    /// A proto3 `optional`: absent (not `null`) when unknown, as protojson omits it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_share: Option<i32>,
}

/// Builds the reply from a published state (pure).
pub fn device_config_reply(state: &CatalogState, zone: &TimeZone) -> DeviceConfigReply {
    let catalog = state.catalog.as_deref();
    DeviceConfigReply {
        state: state.status.as_str(),
        reason: if state.status == CatalogStatus::Invalid {
            state.reason.clone()
        } else {
            String::new()
        },
        namespace: state.reference.namespace.clone(),
        name: state.reference.name.clone(),
        key: state.reference.key.clone(),
        resource_version: state.resource_version.clone(),
        observed_at: state
            .observed_at
            .map(|t| rfc3339(t, zone))
            .unwrap_or_default(),
        issues: catalog.map(|c| c.issues.clone()).unwrap_or_default(),
        ascend_models: catalog
            .map(|c| c.models.iter().map(model_reply).collect())
            .unwrap_or_default(),
    }
}

fn model_reply(model: &AscendModel) -> AscendModelReply {
    AscendModelReply {
        common_word: model.common_word.clone(),
        chip_name: model.chip_name.clone(),
        resource_name: model.resource_name.clone(),
        resource_memory_name: model.resource_memory_name.clone(),
        resource_core_name: model.resource_core_name.clone(),
        memory_allocatable: Int64(model.memory_allocatable),
        memory_capacity: Int64(model.memory_capacity),
        ai_core: model.ai_core,
        ai_cpu: model.ai_cpu,
        templates: model
            .templates
            .iter()
            .map(|t| AscendTemplateReply {
                name: t.name.clone(),
                memory: Int64(t.memory),
                ai_core: t.ai_core,
                ai_cpu: t.ai_cpu,
                compute_share: model.compute_share(t),
            })
            .collect(),
        super_pod: model.pairs_modules(),
    }
}
