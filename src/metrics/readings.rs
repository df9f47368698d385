//! The per-device readings of a cycle: the device query's answer indexed by device id
//! ([`device_values`]), turned into one device's values ([`readings`]), and the driver
//! version and card number the info query reports ([`info_labels`]).

use std::collections::HashMap;

use crate::device::Vendor;
use crate::query_client::{Sample, SeriesLabels};

use super::queries::{self, CycleQuery};
use super::state::{samples, InfoLabels};
use super::QueryResults;

/// Device quantities of one vendor's device query: per exporter id, each metric of
/// [`queries::device_metrics`] by position, as float32 (the precision the Go backend
/// worked in). A repeated series overwrites the earlier one.
pub(super) type DeviceValues<'a> = FastMap<&'a str, [Option<f32>; MAX_DEVICE_METRICS]>;

/// The joins' maps: keyed by upstream label values, hashed with `foldhash` (randomly seeded),
/// several times faster than SipHash on these keys.
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Most device metrics a vendor's device query asks for.
pub(super) const MAX_DEVICE_METRICS: usize = 8;

pub(super) fn device_values(results: &QueryResults, vendor: Vendor) -> Option<DeviceValues<'_>> {
    let samples = samples(results, CycleQuery::Device(vendor))?;
    let id_label = queries::identity_label(vendor)?;
    let names = queries::device_metrics(vendor);
    let mut values = DeviceValues::with_capacity_and_hasher(
        samples.len() / names.len().max(1) + 1,
        Default::default(),
    );
    for s in samples {
        let (Some(name), Some(id)) = (s.metric.get("__name__"), s.metric.get(id_label)) else {
            continue;
        };
        let Some(position) = names.iter().position(|n| *n == name) else {
            continue;
        };
        if let Some(slot) = values
            .entry(id)
            .or_insert([None; MAX_DEVICE_METRICS])
            .get_mut(position)
        {
            *slot = Some(s.value as f32);
        }
    }
    Some(values)
}

/// Round half away from zero to one decimal, as the Go backend's `round1`.
pub(super) fn round1(x: f32) -> f64 {
    (f64::from(x) * 10.0).round() / 10.0
}

/// The vendor's physical quantities for one device, in the units the families use.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct DeviceReadings {
    pub(super) mem_used: f32,
    pub(super) mem_total: f32,
    pub(super) core: f32,
    pub(super) temp: Option<f32>,
    pub(super) mem_temp: Option<f32>,
    pub(super) power: Option<f32>,
    pub(super) fan: Option<f32>,
    pub(super) xid: Option<f32>,
}

pub(super) fn readings(vendor: Vendor, values: &DeviceValues<'_>, id: &str) -> DeviceReadings {
    let row = values.get(id);
    let names = queries::device_metrics(vendor);
    let get = |name: &str| {
        let position = names.iter().position(|n| *n == name)?;
        row.and_then(|r| r.get(position).copied().flatten())
    };
    let v = |name: &str| get(name).unwrap_or(0.0);
    match vendor {
        Vendor::Nvidia => DeviceReadings {
            mem_used: v("DCGM_FI_DEV_FB_USED"),
            mem_total: match (get("DCGM_FI_DEV_FB_FREE"), get("DCGM_FI_DEV_FB_USED")) {
                (Some(free), Some(used)) => free + used,
                _ => 0.0,
            },
            core: v("DCGM_FI_DEV_GPU_UTIL"),
            temp: Some(v("DCGM_FI_DEV_GPU_TEMP")),
            mem_temp: Some(v("DCGM_FI_DEV_MEMORY_TEMP")),
            power: Some(v("DCGM_FI_DEV_POWER_USAGE")),
            fan: Some(v("DCGM_FI_DEV_FAN_SPEED")),
            xid: Some(v("DCGM_FI_DEV_XID_ERRORS")),
        },
        Vendor::Mlu => DeviceReadings {
            mem_used: v("mlu_memory_used") / 1024.0,
            mem_total: v("mlu_memory_total") / 1024.0,
            core: v("mlu_utilization"),
            temp: Some(v("mlu_temperature")),
            mem_temp: Some(v("mlu_memory_temperature")),
            power: Some(v("mlu_power_usage")),
            fan: Some(v("mlu_fan_speed")),
            xid: None,
        },
        Vendor::Ascend => DeviceReadings {
            mem_used: v("npu_chip_info_hbm_used_memory"),
            mem_total: v("npu_chip_info_hbm_total_memory"),
            core: v("npu_chip_info_utilization"),
            temp: Some(v("npu_chip_info_temperature")),
            // The Go backend reused the chip temperature query here.
            mem_temp: Some(v("npu_chip_info_temperature")),
            power: Some(v("npu_chip_info_power")),
            fan: None,
            xid: None,
        },
        Vendor::Dcu => DeviceReadings {
            mem_used: v("dcu_usedmemory_bytes") / 1024.0 / 1024.0,
            mem_total: v("dcu_memorycap_bytes") / 1024.0 / 1024.0,
            core: v("dcu_utilizationrate"),
            temp: Some(v("dcu_temp")),
            mem_temp: None,
            power: Some(v("dcu_power_usage")),
            fan: None,
            xid: None,
        },
        Vendor::Hcu => DeviceReadings {
            mem_used: v("hcu_usedmemory_bytes") / 1024.0 / 1024.0,
            mem_total: v("hcu_memorycap_bytes") / 1024.0 / 1024.0,
            core: v("hcu_utilizationrate"),
            temp: Some(v("hcu_temp")),
            mem_temp: Some(v("hcu_temp_mem")),
            power: Some(v("hcu_power_usage")),
            fan: None,
            xid: None,
        },
        Vendor::Metax => DeviceReadings {
            mem_used: v("mx_memory_used") / 1024.0,
            mem_total: v("mx_memory_total") / 1024.0,
            core: v("mx_gpu_usage"),
            temp: Some(v("mx_chip_hotspot_temp")),
            mem_temp: None,
            power: Some(v("mx_board_power") / 1000.0),
            fan: None,
            xid: None,
        },
        _ => DeviceReadings::default(),
    }
}

/// An info series' labels, with the series they came from.
pub(super) type InfoChoice<'a> = ((String, String), &'a SeriesLabels);

/// `(driver_version, device_no)` per device uuid from a vendor's info query.
pub(super) fn info_labels(vendor: Vendor, samples: &[Sample]) -> InfoLabels {
    // The Go backend took the first series; the first in label order makes "first"
    // deterministic (the series whose labels sort lowest wins, earliest among equals).
    let mut chosen: FastMap<String, InfoChoice<'_>> =
        FastMap::with_capacity_and_hasher(samples.len(), Default::default());
    for s in samples {
        let get = |k: &str| s.metric.get(k).unwrap_or_default().to_string();
        let (id, labels) = match vendor {
            Vendor::Nvidia => (get("UUID"), (get("DCGM_FI_DRIVER_VERSION"), get("device"))),
            Vendor::Mlu => (get("uuid"), (get("driver"), get("sn"))),
            Vendor::Ascend => (
                get("vdie_id"),
                ("暂无".to_string(), format!("ascend-{}", get("id"))),
            ),
            Vendor::Dcu => (
                get("device_id"),
                ("暂无".to_string(), format!("dcu-{}", get("minor_number"))),
            ),
            Vendor::Metax => (get("uuid"), (get("driver_version"), get("deviceId"))),
            // hcu-exporter's minor number is the displayed device number; it has no driver label.
            Vendor::Hcu => (get("device_id"), (String::new(), get("minor_number"))),
            _ => continue,
        };
        match chosen.entry(id) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((labels, &s.metric));
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                if s.metric < *slot.get().1 {
                    slot.insert((labels, &s.metric));
                }
            }
        }
    }
    chosen
        .into_iter()
        .map(|(id, (labels, _))| (id, labels))
        .collect()
}
