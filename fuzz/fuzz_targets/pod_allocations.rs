//! The pod decoder (`vendor::decode_pod`, every vendor's allocation annotation) on one pod
//! built from the input (format: `hami_webui_server_fuzz::pod_from_text`). Malformed keys
//! become `errors`; the decoder must not panic, and it lists exactly one entry per regular
//! container.
#![no_main]

use hami_webui_server::device::DeviceContext;
use hami_webui_server::vendor::decode_pod;
use hami_webui_server_fuzz::pod_from_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pod = pod_from_text(&String::from_utf8_lossy(data));
    let regular = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let decoded = decode_pod(&pod, &DeviceContext::default());
    assert_eq!(decoded.containers.len(), regular);
});
