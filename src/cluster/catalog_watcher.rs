//! `DeviceCatalogWatcher`: the actor that keeps the catalog of HAMi's device ConfigMap
//! (`device_config.{namespace,name,key}`) and its state, for `GET /v1/device-config`.
//!
//! Fed by one kube-rs watcher restricted to that one object (`metadata.name` field selector
//! in its namespace, so a Role with `resourceNames` suffices), or in `--snapshot` mode by
//! the ConfigMaps of the file, replayed as one list. Each change re-parses the one key and
//! publishes a new immutable `Arc<CatalogState>` (the pure [`catalog_state`]); handlers ask
//! with [`GetCatalog`] and never wait for the API, and subscribers (the `NodeCache`, which
//! decodes Ascend devices with the catalog) receive every state as [`CatalogChanged`].
//!
//! A catalog that was once loaded survives a later unparsable version (`invalid`) and API
//! trouble (`error`): both states keep serving the last good catalog. A deleted ConfigMap
//! (`missing`) or a `403` (`forbidden`) does not, as upstream: those say the scheduler's
//! configuration is gone or no longer ours to read.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::stream::{BoxStream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

use crate::catalog::{parse, DeviceCatalog};
use crate::cluster::watch::WatchItem;
use crate::config::DeviceConfigRef;

/// What the catalog is, as upstream names it in `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogStatus {
    /// `device_config.enabled` is off: nothing is read.
    Disabled,
    /// Not listed yet.
    Loading,
    /// The ConfigMap was read and its key parsed.
    Loaded,
    /// The ConfigMap does not exist.
    Missing,
    /// The API answered 401 or 403 (RBAC).
    Forbidden,
    /// The key is absent or not a device configuration; the last good catalog is kept.
    Invalid,
    /// Any other API failure (transient); the last good catalog is kept.
    Error,
}

impl CatalogStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Loading => "loading",
            Self::Loaded => "loaded",
            Self::Missing => "missing",
            Self::Forbidden => "forbidden",
            Self::Invalid => "invalid",
            Self::Error => "error",
        }
    }
}

/// One published state of the catalog; replaced whole on every change.
#[derive(Debug, Clone)]
pub struct CatalogState {
    pub status: CatalogStatus,
    /// Why the state is not `loaded` (API error or parse error text); empty otherwise.
    pub reason: String,
    /// Which ConfigMap and key are read.
    pub reference: DeviceConfigRef,
    /// Of the object the state describes: the ConfigMap read (`loaded`, `invalid`), the one
    /// the kept catalog came from (`error`), else empty.
    pub resource_version: String,
    /// When this state was reached; `None` before any outcome (`disabled`, `loading`).
    pub observed_at: Option<Timestamp>,
    /// The catalog in effect: the current one when `loaded`, the last good one when
    /// `invalid` or `error`, none otherwise.
    pub catalog: Option<Arc<DeviceCatalog>>,
    /// Resource version of the ConfigMap `catalog` was parsed from.
    pub catalog_resource_version: String,
}

impl CatalogState {
    fn initial(reference: DeviceConfigRef) -> Self {
        let status = if is_enabled(&reference) {
            CatalogStatus::Loading
        } else {
            CatalogStatus::Disabled
        };
        Self {
            status,
            reason: String::new(),
            reference,
            resource_version: String::new(),
            observed_at: None,
            catalog: None,
            catalog_resource_version: String::new(),
        }
    }

    /// Same outcome (ignoring when it was observed).
    fn same_as(&self, other: &Self) -> bool {
        self.status == other.status
            && self.reason == other.reason
            && self.resource_version == other.resource_version
            && self.catalog_resource_version == other.catalog_resource_version
            && match (&self.catalog, &other.catalog) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

/// Whether anything is to be read: enabled, with a namespace and a name.
pub fn is_enabled(reference: &DeviceConfigRef) -> bool {
    reference.enabled && !reference.namespace.is_empty() && !reference.name.is_empty()
}

/// What the watch last showed of the ConfigMap.
#[derive(Debug, Clone)]
pub enum Observed {
    Missing,
    Present {
        resource_version: String,
        /// The parsed catalog, or why the key gave none.
        outcome: Result<Arc<DeviceCatalog>, String>,
    },
}

/// The API trouble of the moment, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub forbidden: bool,
    pub reason: String,
}

/// Reads one ConfigMap: its resource version and the catalog of `key`.
pub fn observe(config_map: &ConfigMap, key: &str) -> Observed {
    let resource_version = config_map
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    let outcome = match config_map.data.as_ref().and_then(|d| d.get(key)) {
        None => Err(format!("key {key:?} not found")),
        Some(text) => parse(text).map(Arc::new).map_err(|e| e.to_string()),
    };
    Observed::Present {
        resource_version,
        outcome,
    }
}

/// The state for what is known: the API failure of the moment, the last observation and
/// the last good catalog with its resource version. `observed_at` is left for the caller.
pub fn catalog_state(
    reference: &DeviceConfigRef,
    failure: Option<&Failure>,
    observed: Option<&Observed>,
    last_good: Option<&(String, Arc<DeviceCatalog>)>,
) -> CatalogState {
    let mut state = CatalogState::initial(reference.clone());
    if state.status == CatalogStatus::Disabled {
        return state;
    }
    let keep_last_good = |state: &mut CatalogState| {
        if let Some((version, catalog)) = last_good {
            state.catalog = Some(Arc::clone(catalog));
            state.catalog_resource_version.clone_from(version);
        }
    };
    match (failure, observed) {
        (Some(failure), _) if failure.forbidden => {
            state.status = CatalogStatus::Forbidden;
            state.reason.clone_from(&failure.reason);
        }
        (Some(failure), _) => {
            state.status = CatalogStatus::Error;
            state.reason.clone_from(&failure.reason);
            keep_last_good(&mut state);
            state.resource_version = state.catalog_resource_version.clone();
        }
        (None, None) => {}
        (None, Some(Observed::Missing)) => state.status = CatalogStatus::Missing,
        (
            None,
            Some(Observed::Present {
                resource_version,
                outcome,
            }),
        ) => {
            state.resource_version.clone_from(resource_version);
            match outcome {
                Ok(catalog) => {
                    state.status = CatalogStatus::Loaded;
                    state.catalog = Some(Arc::clone(catalog));
                    state.catalog_resource_version.clone_from(resource_version);
                }
                Err(reason) => {
                    state.status = CatalogStatus::Invalid;
                    state.reason.clone_from(reason);
                    keep_last_good(&mut state);
                }
            }
        }
    }
    state
}

/// The catalog's current state; never waits for the API.
#[derive(Message)]
#[rtype(result = "Arc<CatalogState>")]
pub struct GetCatalog;

/// A new catalog state was published.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct CatalogChanged(pub Arc<CatalogState>);

/// Receive every future [`CatalogChanged`], starting with the current state.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeCatalog(pub Recipient<CatalogChanged>);

/// A live watcher on the one ConfigMap `name` of `api`'s namespace, re-established with
/// kube-rs' capped exponential backoff after any error.
pub fn live(api: Api<ConfigMap>, name: &str) -> BoxStream<'static, WatchItem<ConfigMap>> {
    let config = watcher::Config::default()
        .fields(&name_selector(name))
        .any_semantic();
    watcher::watcher(api, config).default_backoff().boxed()
}

fn name_selector(name: &str) -> String {
    format!("metadata.name={name}")
}

/// How often the recovery probe lists the ConfigMap while the watch is failing.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);

pub struct DeviceCatalogWatcher {
    reference: DeviceConfigRef,
    /// Taken in `started`; `None` when disabled.
    events: Option<BoxStream<'static, WatchItem<ConfigMap>>>,
    /// For the recovery probe after watch errors; `None` in snapshot mode.
    api: Option<Api<ConfigMap>>,
    observed: Option<Observed>,
    /// The observation of a relist in progress; replaces `observed` at `InitDone`.
    relist: Option<Observed>,
    last_good: Option<(String, Arc<DeviceCatalog>)>,
    failure: Option<Failure>,
    probing: bool,
    published: Arc<CatalogState>,
    subscribers: Vec<Recipient<CatalogChanged>>,
}

impl DeviceCatalogWatcher {
    /// `events` is ignored when `reference` is disabled.
    pub fn new(
        reference: DeviceConfigRef,
        events: BoxStream<'static, WatchItem<ConfigMap>>,
        api: Option<Api<ConfigMap>>,
    ) -> Self {
        let enabled = is_enabled(&reference);
        Self {
            published: Arc::new(CatalogState::initial(reference.clone())),
            reference,
            events: enabled.then_some(events),
            api,
            observed: None,
            relist: None,
            last_good: None,
            failure: None,
            probing: false,
            subscribers: Vec::new(),
        }
    }

    /// Whether `config_map` is the one configured (a snapshot file may hold others).
    fn is_ours(&self, config_map: &ConfigMap) -> bool {
        config_map.metadata.name.as_deref() == Some(self.reference.name.as_str())
            && config_map.metadata.namespace.as_deref().unwrap_or_default()
                == self.reference.namespace
    }

    fn observe(&self, config_map: &ConfigMap) -> Observed {
        // An unchanged object (a relist, a resumed watch) is not parsed again.
        if let Some(
            known @ Observed::Present {
                resource_version, ..
            },
        ) = &self.observed
        {
            let version = config_map.metadata.resource_version.as_deref();
            if version.is_some_and(|v| !v.is_empty() && v == resource_version) {
                return known.clone();
            }
        }
        observe(config_map, &self.reference.key)
    }

    fn publish(&mut self) {
        if let Some(Observed::Present {
            resource_version,
            outcome: Ok(catalog),
        }) = &self.observed
        {
            self.last_good = Some((resource_version.clone(), Arc::clone(catalog)));
        }
        let mut next = catalog_state(
            &self.reference,
            self.failure.as_ref(),
            self.observed.as_ref(),
            self.last_good.as_ref(),
        );
        if next.same_as(&self.published) {
            return;
        }
        next.observed_at = Some(Timestamp::now());
        let reference = &self.reference;
        if next.status != self.published.status
            || next.resource_version != self.published.resource_version
        {
            let (namespace, name) = (&reference.namespace, &reference.name);
            let issues = next.catalog.as_ref().map_or(0, |c| c.issues.len());
            match next.status {
                CatalogStatus::Loaded | CatalogStatus::Missing => tracing::info!(
                    namespace = %namespace, name = %name, state = next.status.as_str(),
                    resource_version = %next.resource_version, issues,
                    "HAMi device configuration"
                ),
                _ => tracing::warn!(
                    namespace = %namespace, name = %name, state = next.status.as_str(),
                    reason = %next.reason, "HAMi device configuration"
                ),
            }
        }
        self.published = Arc::new(next);
        self.subscribers.retain(|s| s.connected());
        for subscriber in &self.subscribers {
            subscriber.do_send(CatalogChanged(Arc::clone(&self.published)));
        }
    }

    /// Lists the ConfigMap until the API answers; the watch may resume without any event,
    /// so this is what clears `error` / `forbidden` then.
    fn probe(&mut self, ctx: &mut Context<Self>) {
        let Some(api) = self.api.clone() else {
            return;
        };
        if self.probing {
            return;
        }
        self.probing = true;
        let params = ListParams::default().fields(&name_selector(&self.reference.name));
        let until_listed = async move {
            while api.list_metadata(&params).await.is_err() {
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        };
        ctx.spawn(until_listed.into_actor(self).map(|_, act, _| {
            act.probing = false;
            if act.failure.take().is_some() {
                act.publish();
            }
        }));
    }
}

/// Whether a watch error is the API refusing us (RBAC), rather than trouble.
fn is_forbidden(error: &watcher::Error) -> bool {
    let client_error = match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
        watcher::Error::WatchError(status) => return matches!(status.code, 401 | 403),
        watcher::Error::NoResourceVersion => return false,
    };
    matches!(client_error, kube::Error::Api(status) if matches!(status.code, 401 | 403))
}

impl Actor for DeviceCatalogWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(events) = self.events.take() {
            ctx.add_stream(events);
        }
    }
}

impl StreamHandler<WatchItem<ConfigMap>> for DeviceCatalogWatcher {
    fn handle(&mut self, item: WatchItem<ConfigMap>, ctx: &mut Context<Self>) {
        let event = match item {
            Ok(event) => event,
            Err(error) => {
                self.failure = Some(Failure {
                    forbidden: is_forbidden(&error),
                    reason: error.to_string(),
                });
                self.publish();
                self.probe(ctx);
                return;
            }
        };
        // Any event proves the watch works again.
        let recovered = self.failure.take().is_some();
        let changed = match event {
            Event::Init => {
                self.relist = Some(Observed::Missing);
                false
            }
            Event::InitApply(config_map) => {
                if self.is_ours(&config_map) {
                    self.relist = Some(self.observe(&config_map));
                }
                false
            }
            Event::InitDone => {
                self.observed = Some(self.relist.take().unwrap_or(Observed::Missing));
                true
            }
            Event::Apply(config_map) if self.is_ours(&config_map) => {
                self.observed = Some(self.observe(&config_map));
                true
            }
            Event::Delete(config_map) if self.is_ours(&config_map) => {
                self.observed = Some(Observed::Missing);
                true
            }
            Event::Apply(_) | Event::Delete(_) => false,
        };
        if changed || recovered {
            self.publish();
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        tracing::warn!("device configuration watch stream ended");
    }
}

impl Handler<SubscribeCatalog> for DeviceCatalogWatcher {
    type Result = ();
    fn handle(&mut self, msg: SubscribeCatalog, _: &mut Context<Self>) {
        msg.0.do_send(CatalogChanged(Arc::clone(&self.published)));
        self.subscribers.push(msg.0);
    }
}

impl Handler<GetCatalog> for DeviceCatalogWatcher {
    type Result = Arc<CatalogState>;
    fn handle(&mut self, _: GetCatalog, _: &mut Context<Self>) -> Self::Result {
        Arc::clone(&self.published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> DeviceConfigRef {
        DeviceConfigRef {
            enabled: true,
            namespace: "kube-system".into(),
            name: "hami-scheduler-device".into(),
            key: "device-config.yaml".into(),
        }
    }

    fn present(version: &str, text: &str) -> Observed {
        let mut config_map = ConfigMap::default();
        config_map.metadata.resource_version = Some(version.into());
        config_map.data = Some([("device-config.yaml".to_string(), text.to_string())].into());
        observe(&config_map, "device-config.yaml")
    }

    const GOOD: &str = "vnpus:\n- {commonWord: Ascend910B3, memoryAllocatable: 65536}\n";

    #[test]
    fn disabled_without_a_reference() {
        for change in [
            |r: &mut DeviceConfigRef| r.enabled = false,
            |r: &mut DeviceConfigRef| r.namespace.clear(),
            |r: &mut DeviceConfigRef| r.name.clear(),
        ] {
            let mut reference = reference();
            change(&mut reference);
            let state = catalog_state(&reference, None, Some(&present("1", GOOD)), None);
            assert_eq!(state.status, CatalogStatus::Disabled);
            assert!(state.catalog.is_none());
        }
    }

    #[test]
    fn states_follow_the_observation() {
        let r = reference();
        assert_eq!(
            catalog_state(&r, None, None, None).status,
            CatalogStatus::Loading
        );
        assert_eq!(
            catalog_state(&r, None, Some(&Observed::Missing), None).status,
            CatalogStatus::Missing
        );
        let loaded = catalog_state(&r, None, Some(&present("7", GOOD)), None);
        assert_eq!(loaded.status, CatalogStatus::Loaded);
        assert_eq!(loaded.resource_version, "7");
        assert_eq!(loaded.catalog.unwrap().models.len(), 1);
    }

    #[test]
    fn invalid_and_error_keep_the_last_good_catalog_forbidden_does_not() {
        let r = reference();
        let good = Arc::new(parse(GOOD).unwrap());
        let last_good = ("7".to_string(), Arc::clone(&good));
        let invalid = catalog_state(&r, None, Some(&present("8", "vnpus: [")), Some(&last_good));
        assert_eq!(invalid.status, CatalogStatus::Invalid);
        assert_eq!(invalid.resource_version, "8");
        assert!(invalid.reason.starts_with("parse device config"));
        assert!(Arc::ptr_eq(invalid.catalog.as_ref().unwrap(), &good));
        assert_eq!(invalid.catalog_resource_version, "7");

        let config_map = ConfigMap {
            data: Some([("other.yaml".to_string(), GOOD.to_string())].into()),
            ..ConfigMap::default()
        };
        let missing_key = observe(&config_map, "device-config.yaml");
        let state = catalog_state(&r, None, Some(&missing_key), None);
        assert_eq!(state.status, CatalogStatus::Invalid);
        assert_eq!(state.reason, "key \"device-config.yaml\" not found");
        assert!(state.catalog.is_none());

        let trouble = Failure {
            forbidden: false,
            reason: "connection reset".into(),
        };
        let error = catalog_state(
            &r,
            Some(&trouble),
            Some(&present("7", GOOD)),
            Some(&last_good),
        );
        assert_eq!(error.status, CatalogStatus::Error);
        assert_eq!(error.resource_version, "7");
        assert!(error.catalog.is_some());
        let first = catalog_state(&r, Some(&trouble), None, None);
        assert_eq!(first.status, CatalogStatus::Error);
        assert!(first.catalog.is_none());

        let denied = Failure {
            forbidden: true,
            reason: "no RBAC".into(),
        };
        let forbidden = catalog_state(
            &r,
            Some(&denied),
            Some(&present("7", GOOD)),
            Some(&last_good),
        );
        assert_eq!(forbidden.status, CatalogStatus::Forbidden);
        assert_eq!(forbidden.reason, "no RBAC");
        assert!(forbidden.catalog.is_none());
    }
}
