//! `GET /v1/device-config`: asks the `DeviceCatalogWatcher` for its published state (never
//! waits for the API) and renders it with [`crate::reply::device_config`].

use actix_web::{web, HttpResponse};

use crate::cluster::catalog_watcher::GetCatalog;
use crate::error::ApiError;
use crate::http::AppState;
use crate::reply::device_config::device_config_reply;

/// `GET /v1/device-config`.
pub async fn get(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let catalog = state
        .cluster
        .catalog
        .send(GetCatalog)
        .await
        .map_err(|_| ApiError::Unavailable("the device catalog watcher is not running"))?;
    Ok(HttpResponse::Ok().json(device_config_reply(&catalog, &state.config.server.timezone)))
}
