//! The device families of a cycle: one label set per device, the registered capacity and
//! allocation figures from the snapshot and the exporter's readings.

use std::sync::Arc;

use crate::device::{Device, Vendor};

use super::builder::Builder;
use super::exposition::Family;
use super::identity::DeviceIdentity;
use super::labels::LabelSet;
use super::queries::{self, CycleQuery};
use super::readings::{readings, round1, DeviceValues};
use super::Source;

pub(super) fn device_families(
    b: &mut Builder,
    device: &Device,
    labels: &Arc<LabelSet>,
    values: Option<&DeviceValues<'_>>,
    identity: &DeviceIdentity,
    card_core: &mut Option<f32>,
) {
    use Family::*;
    let inv = Source::Inventory;
    b.set(VgpuCount, inv, labels, f64::from(device.count));
    b.set(VmemorySize, inv, labels, f64::from(device.devmem));
    b.set(MemorySize, inv, labels, f64::from(device.devmem));
    b.set(VcoreSize, inv, labels, f64::from(device.devcore));
    b.set(
        VcoreScaling,
        inv,
        labels,
        f64::from(device.devcore as f32 / 100.0),
    );
    b.set(CoreSize, inv, labels, 100.0);
    if device.cordoned {
        b.set(DeviceCordoned, inv, labels, 1.0);
    }
    if device.dra.is_some() {
        b.set(DeviceDra, inv, labels, 1.0);
    }
    let has_exporter = queries::identity_label(device.vendor).is_some();
    if device.vendor != Vendor::Nvidia {
        // Only DCGM reports XID errors; the Go backend set 0 for everyone else.
        b.set(DeviceHardwareHealth, inv, labels, 0.0);
    }
    let Some(values) = values.filter(|_| has_exporter) else {
        return;
    };
    let src = Source::Query(CycleQuery::Device(device.vendor));
    let r = readings(device.vendor, values, &identity.uuid);
    b.set(MemoryUsed, src, labels, f64::from(r.mem_used));
    b.set(
        MemoryUtil,
        src,
        labels,
        round1(100.0 * (r.mem_used / device.devmem as f32)),
    );
    if r.mem_total > 0.0 {
        b.set(
            VmemoryScaling,
            src,
            labels,
            round1(device.devmem as f32 / r.mem_total),
        );
    }
    for family in [CoreUsed, CoreUtil, CoreUsedAvg, CoreUtilAvg] {
        b.set(family, src, labels, f64::from(r.core));
    }
    *card_core = Some(r.core);
    let optional = [
        (DeviceTemperature, r.temp),
        (DeviceMemoryTemperature, r.mem_temp),
        (DevicePower, r.power),
    ];
    for (family, value) in optional {
        if let Some(value) = value {
            b.set(family, src, labels, f64::from(value));
        }
    }
    if let Some(fan) = r.fan {
        let family = if device.vendor == Vendor::Mlu {
            DeviceFanSpeedR
        } else {
            DeviceFanSpeedP
        };
        b.set(family, src, labels, f64::from(fan));
    }
    if let Some(xid) = r.xid {
        b.set(DeviceHardwareHealth, src, labels, f64::from(xid));
        b.set(DeviceLastXidErrorCode, src, labels, f64::from(xid));
    }
}
