//! The cluster side: watchers turning the API server (or a `--snapshot` file) into events, the
//! `NodeCache` and `PodCache` actors that decode them, and the immutable [`snapshot`] every
//! reader gets.

pub mod kubernetes;
pub mod node_cache;
pub mod pod_cache;
pub mod scheduling;
pub mod scheduling_events;
pub mod snapshot;
pub mod snapshot_file;
pub mod watch;
