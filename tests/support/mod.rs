//! Shared setup for the integration tests: the in-process application (`app`), starting the
//! real binary (`process`), a test Kubernetes API server (`kube_api`) and the service
//! watching it (`cluster_harness`). Each test
//! binary uses a different subset, hence the allow.
#![allow(dead_code)]

pub mod app;
pub mod cluster_harness;
pub mod demo;
pub mod faults;
pub mod fixtures;
pub mod golden;
pub mod kube_api;
pub mod process;
pub mod upstream;
pub mod wire;
