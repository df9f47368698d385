//! Property tests: no decoder panics, whatever annotations, capacities or JSON it is fed.

use crate::vendor::DeviceContext;
use proptest::prelude::*;
use serde_json::Value;

use super::testutil::{node, pod};
use super::{decode_alloc_segments, decode_node_devices, decode_pod, json_register};
use crate::device::Vendor;

/// Every node annotation and capacity any decoder reads.
const NODE_KEYS: &[&str] = &[
    "hami.io/node-nvidia-register",
    "hami.io/node-register-Ascend910B",
    "hami.io/node-register-Ascend310P",
    "hami.io/node-register-Ascend910B4-1",
    "hami.io/node-dcu-register",
    "hami.io/node-hcu-register",
    "metax-tech.com/node-gpu-devices",
    "hami.io/node-amd-register",
    "hami.io/node-MR-V100-register",
    "hami.io/node-BI-V150-register",
    "enflame.com/gcu-drs-capacity",
    "hami.io/node-register-xpu",
    "hami.io/node-biren-register",
    "hami.io/node-va-register",
];
const CAPACITY_KEYS: &[&str] = &[
    "cambricon.com/mlu.smlu.vcore",
    "cambricon.com/mlu.smlu.vmemory",
    "cambricon.com/mlu370.smlu.vcore",
    "cambricon.com/mlu370.smlu.vmemory",
    "metax-tech.com/gpu",
    "enflame.com/gcu",
    "mthreads.com/sgpu-core",
    "mthreads.com/sgpu-memory",
    "kunlunxin.com/xpu",
    "aws.amazon.com/neuron",
    "aws.amazon.com/neuroncore",
];
/// Every pod annotation any decoder reads.
const POD_KEYS: &[&str] = &[
    "hami.io/vgpu-node",
    "hami.io/vgpu-devices-allocated",
    "hami.io/cambricon-mlu-devices-allocated",
    "CAMBRICON_DSMLU_PROFILE",
    "CAMBRICON_DSMLU_PROFILE_INSTANCE",
    "hami.io/Ascend910B-devices-allocated",
    "hami.io/Ascend910B3-devices-allocated",
    "hami.io/dcu-devices-allocated",
    "hami.io/hcu-devices-allocated",
    "hami.io/metax-gpu-devices-allocated",
    "hami.io/metax-sgpu-devices-allocated",
    "hami.io/amd-devices-allocated",
    "hami.io/MR-V100-devices-allocated",
    "hami.io/enflame-gcu-devices-allocated",
    "hami.io/enflame-vgpu-devices-allocated",
    "hami.io/mthreads-vgpu-devices-allocated",
    "hami.io/kunlun-allocated",
    "hami.io/xpu-devices-allocated",
    "hami.io/aws-neuron-devices-allocated",
    "hami.io/Biren-devices-allocated",
    "hami.io/Vastai-devices-allocated",
];

/// Strings biased towards the separators and digits the formats are made of.
fn format_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[-,:;_a-zA-Z0-9.\\[\\]{}\" ]{0,80}",
        "[0-9]{0,25}[kMGTPEimnu]{0,2}",
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9 .:-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_string()),
                    Just("Count".to_string()),
                    Just("devmem".to_string()),
                    Just("health".to_string()),
                    Just("index".to_string()),
                    Just("uuid".to_string()),
                    Just("totalVRam".to_string()),
                    Just("devices".to_string()),
                    Just("profiles".to_string()),
                    Just("capacity".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn node_decoders_never_panic(
        annotations in prop::collection::vec((prop::sample::select(NODE_KEYS), format_text()), 0..4),
        capacity in prop::collection::vec((prop::sample::select(CAPACITY_KEYS), format_text()), 0..4),
    ) {
        let annotations: Vec<(&str, &str)> = annotations.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let capacity: Vec<(&str, &str)> = capacity.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let n = node("n", &annotations, &capacity);
        for vendor in Vendor::ALL {
            if let Ok(devices) = decode_node_devices(vendor, &n, &DeviceContext::default()) {
                prop_assert!(devices.len() <= super::MAX_DEVICES_PER_NODE * 4);
            }
        }
    }

    #[test]
    fn node_decoders_never_panic_on_arbitrary_json(value in json_value(), key in prop::sample::select(NODE_KEYS)) {
        let text = value.to_string();
        let n = node("n", &[(key, text.as_str())], &[]);
        for vendor in Vendor::ALL {
            let _ = decode_node_devices(vendor, &n, &DeviceContext::default());
        }
    }

    #[test]
    fn json_register_decoder_never_panics(value in json_value()) {
        let _ = json_register::decode_value(&value);
        let wrapped = Value::Array(vec![value]);
        let _ = json_register::decode_value(&wrapped);
    }

    #[test]
    fn alloc_segments_never_panic(value in format_text()) {
        if let Ok(segments) = decode_alloc_segments(&value) {
            prop_assert_eq!(segments.len(), super::count_segments(&value));
        }
    }

    #[test]
    fn pod_decoder_never_panics_and_lists_every_container(
        annotations in prop::collection::vec((prop::sample::select(POD_KEYS), format_text()), 0..5),
        init in 0usize..3,
        regular in 0usize..4,
    ) {
        let annotations: Vec<(&str, &str)> = annotations.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let init_names: Vec<String> = (0..init).map(|i| format!("i{i}")).collect();
        let names: Vec<String> = (0..regular).map(|i| format!("c{i}")).collect();
        let init_refs: Vec<&str> = init_names.iter().map(String::as_str).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let decoded = decode_pod(&pod(&annotations, &init_refs, &refs), &DeviceContext::default());
        prop_assert_eq!(decoded.containers.len(), regular);
    }
}
