//! Shared setup for the integration tests: starting the real binary, and (in `kube_api`) a
//! test Kubernetes API server. Each test binary uses a different subset, hence the allow.
#![allow(dead_code)]

pub mod faults;
pub mod fixtures;
pub mod kube_api;
pub mod process;
pub mod upstream;
pub mod wire;
