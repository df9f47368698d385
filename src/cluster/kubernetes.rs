//! The Kubernetes client: found the way kubectl finds it (in-cluster service account, else
//! `KUBECONFIG` / `~/.kube/config`), with bounded connect and read timeouts.
//!
//! Building the client never contacts the API server, so the HTTP listener is up before any
//! cluster contact and `/livez` answers even when the API server is unreachable.

use std::time::Duration;

use kube::Client;

/// Why no Kubernetes client could be built (a configuration problem, not an outage).
#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    #[error("no Kubernetes configuration found (in-cluster or kubeconfig): {0}")]
    Config(#[source] kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// Connect timeout for the API server; a dead endpoint fails fast and is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout: above the watch timeout kube-rs asks the server for (290 s), so healthy
/// idle watches are not cut by us.
const READ_TIMEOUT: Duration = Duration::from_secs(295);

pub async fn client() -> Result<Client, KubeClientError> {
    let mut config = kube::Config::infer()
        .await
        .map_err(KubeClientError::Config)?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.write_timeout = Some(Duration::from_secs(30));
    Client::try_from(config).map_err(KubeClientError::Client)
}
