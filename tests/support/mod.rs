//! Shared setup for the integration tests: starting the real binary, (in `kube_api`) a
//! test Kubernetes API server and (in `cluster_harness`) the caches watching it. Each test
//! binary uses a different subset, hence the allow.
#![allow(dead_code)]

pub mod cluster_harness;
pub mod faults;
pub mod fixtures;
pub mod golden;
pub mod kube_api;
pub mod process;
pub mod upstream;
pub mod wire;
