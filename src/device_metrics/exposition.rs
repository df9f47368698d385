//! The device and container families `/metrics` exports, and their rendering to the
//! Prometheus text format.
//!
//! Names, label names and HELP texts are the Go backend's (8f42445) so existing dashboards
//! and the frontend's PromQL keep working; the families upstream 2.0 added follow upstream's
//! wording. Rendering is done once per published cycle, never per scrape.

use std::fmt::Write as _;

/// Device labels, in the Go backend's order.
pub const DEVICE_LABELS: &[&str] = &[
    "node",
    "provider",
    "device_type",
    "device_uuid",
    "driver_version",
    "device_no",
];
/// Container allocation labels (with `container_pod_uuid`).
pub const CONTAINER_ALLOC_LABELS: &[&str] = &[
    "node",
    "provider",
    "device_type",
    "device_uuid",
    "pod_name",
    "container_name",
    "namespace_name",
    "container_pod_uuid",
];
/// Container usage labels (without `container_pod_uuid`).
pub const CONTAINER_USAGE_LABELS: &[&str] = &[
    "node",
    "provider",
    "device_type",
    "device_uuid",
    "pod_name",
    "container_name",
    "namespace_name",
];

/// One exported gauge family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    VgpuCount,
    VmemorySize,
    VcoreSize,
    VcoreScaling,
    VmemoryScaling,
    MemorySize,
    MemoryUsed,
    MemoryUtil,
    CoreSize,
    CoreUsed,
    CoreUtil,
    CoreUsedAvg,
    CoreUtilAvg,
    DeviceTemperature,
    DeviceMemoryTemperature,
    DevicePower,
    DeviceHardwareHealth,
    DeviceLastXidErrorCode,
    DeviceFanSpeedP,
    DeviceFanSpeedR,
    ContainerVgpuAllocated,
    ContainerVmemoryAllocated,
    ContainerVcoreAllocated,
    ContainerVcoreAllocationKnown,
    ContainerMemoryUsed,
    ContainerMemoryUtil,
    ContainerCoreUsed,
    ContainerCoreUtil,
}

impl Family {
    pub const ALL: [Family; 28] = [
        Family::VgpuCount,
        Family::VmemorySize,
        Family::VcoreSize,
        Family::VcoreScaling,
        Family::VmemoryScaling,
        Family::MemorySize,
        Family::MemoryUsed,
        Family::MemoryUtil,
        Family::CoreSize,
        Family::CoreUsed,
        Family::CoreUtil,
        Family::CoreUsedAvg,
        Family::CoreUtilAvg,
        Family::DeviceTemperature,
        Family::DeviceMemoryTemperature,
        Family::DevicePower,
        Family::DeviceHardwareHealth,
        Family::DeviceLastXidErrorCode,
        Family::DeviceFanSpeedP,
        Family::DeviceFanSpeedR,
        Family::ContainerVgpuAllocated,
        Family::ContainerVmemoryAllocated,
        Family::ContainerVcoreAllocated,
        Family::ContainerVcoreAllocationKnown,
        Family::ContainerMemoryUsed,
        Family::ContainerMemoryUtil,
        Family::ContainerCoreUsed,
        Family::ContainerCoreUtil,
    ];

    /// `(name, HELP, label names)`. Some Go HELP texts end in a space; kept.
    pub fn spec(self) -> (&'static str, &'static str, &'static [&'static str]) {
        use Family::*;
        match self {
            VgpuCount => ("hami_vgpu_count", "Total vGPU count", DEVICE_LABELS),
            VmemorySize => ("hami_vmemory_size", "Total vMemory size", DEVICE_LABELS),
            VcoreSize => ("hami_vcore_size", "Total vCore size", DEVICE_LABELS),
            VcoreScaling => ("hami_vcore_scaling", "GPU virtual core Scaling", DEVICE_LABELS),
            VmemoryScaling => ("hami_vmemory_scaling", "GPU virtual memory Scaling", DEVICE_LABELS),
            MemorySize => ("hami_memory_size", "Actual memory size, unit is 'MB' ", DEVICE_LABELS),
            MemoryUsed => ("hami_memory_used", "Actual memory usage, unit is 'MB' ", DEVICE_LABELS),
            MemoryUtil => ("hami_memory_util", "Actual Memory Util percent 0-100", DEVICE_LABELS),
            CoreSize => ("hami_core_size", "Actual core size", DEVICE_LABELS),
            CoreUsed => ("hami_core_used", "Actual Core Used", DEVICE_LABELS),
            CoreUtil => ("hami_core_util", "Actual Core Util percent 0-100", DEVICE_LABELS),
            CoreUsedAvg => ("hami_core_used_avg", "Actual Core Used period avg", DEVICE_LABELS),
            CoreUtilAvg => (
                "hami_core_util_avg",
                "Actual Core Util percent 0-100 period avg",
                DEVICE_LABELS,
            ),
            DeviceTemperature => ("hami_device_temperature", "gpu temperature", DEVICE_LABELS),
            DeviceMemoryTemperature => (
                "hami_device_memory_temperature",
                "gpu memory temperature",
                DEVICE_LABELS,
            ),
            DevicePower => ("hami_device_power", "gpu power", DEVICE_LABELS),
            DeviceHardwareHealth => (
                "hami_device_hardware_health",
                "gpu hardware health",
                DEVICE_LABELS,
            ),
            DeviceLastXidErrorCode => (
                "hami_device_last_xid_error_code",
                "Last NVIDIA XID error code reported by DCGM; 0 means no error and non-zero values are diagnostic codes, not a health status",
                DEVICE_LABELS,
            ),
            DeviceFanSpeedP => (
                "hami_device_fan_speed_p",
                "gpu fan speed percent 0-100",
                DEVICE_LABELS,
            ),
            DeviceFanSpeedR => ("hami_device_fan_speed_r", "gpu fan speed rpm", DEVICE_LABELS),
            ContainerVgpuAllocated => (
                "hami_container_vgpu_allocated",
                "task allocated vGPU count",
                CONTAINER_ALLOC_LABELS,
            ),
            ContainerVmemoryAllocated => (
                "hami_container_vmemory_allocated",
                "task allocated vMemory size",
                CONTAINER_ALLOC_LABELS,
            ),
            ContainerVcoreAllocated => (
                "hami_container_vcore_allocated",
                "task allocated vCore size",
                CONTAINER_ALLOC_LABELS,
            ),
            ContainerVcoreAllocationKnown => (
                "hami_container_vcore_allocation_known",
                "whether the task's allocated vCore size is known (1) or unavailable (0)",
                CONTAINER_ALLOC_LABELS,
            ),
            ContainerMemoryUsed => (
                "hami_container_memory_used",
                "task used memory unit MB",
                CONTAINER_USAGE_LABELS,
            ),
            ContainerMemoryUtil => (
                "hami_container_memory_util",
                "task memory util percent 0-100",
                CONTAINER_USAGE_LABELS,
            ),
            ContainerCoreUsed => (
                "hami_container_core_used",
                "task used core ",
                CONTAINER_USAGE_LABELS,
            ),
            ContainerCoreUtil => (
                "hami_container_core_util",
                "task core util percent 0-100",
                CONTAINER_USAGE_LABELS,
            ),
        }
    }
}

/// One series: label values in the family's label order, and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub labels: Vec<String>,
    pub value: f64,
}

/// Renders families (each with its series, any order) to the text format, families in
/// [`Family::ALL`] order and series sorted by label values, so equal states render to equal
/// bytes. Families without series are omitted, as client_golang omits empty vectors.
pub fn render<'a>(families: impl IntoIterator<Item = (Family, &'a [Point])>) -> String {
    let mut by_family: Vec<(Family, Vec<&Point>)> = Vec::new();
    for (family, points) in families {
        match by_family.iter_mut().find(|(f, _)| *f == family) {
            Some((_, all)) => all.extend(points.iter()),
            None => by_family.push((family, points.iter().collect())),
        }
    }
    by_family.sort_by_key(|(f, _)| *f);
    let mut out = String::new();
    for (family, mut points) in by_family {
        if points.is_empty() {
            continue;
        }
        points.sort_by(|a, b| a.labels.cmp(&b.labels));
        points.dedup_by(|a, b| a.labels == b.labels);
        let (name, help, label_names) = family.spec();
        let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {name} gauge");
        for point in points {
            out.push_str(name);
            out.push('{');
            for (i, (label, value)) in label_names.iter().zip(&point.labels).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{label}=\"{}\"", escape_label(value));
            }
            out.push_str("} ");
            out.push_str(&format_value(point.value));
            out.push('\n');
        }
    }
    out
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Sample values as the text format spells them.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(labels: &[&str], value: f64) -> Point {
        Point {
            labels: labels.iter().map(|s| s.to_string()).collect(),
            value,
        }
    }

    #[test]
    fn renders_help_type_and_sorted_escaped_series() {
        let points = vec![
            point(&["n2", "NVIDIA", "T4", "GPU-b", "", ""], 10.0),
            point(&["n1", "NVIDIA", "T\"4\n", "GPU-a", "535", "0"], 0.5),
        ];
        let text = render([(Family::VgpuCount, points.as_slice())]);
        assert_eq!(
            text,
            "# HELP hami_vgpu_count Total vGPU count\n# TYPE hami_vgpu_count gauge\n\
             hami_vgpu_count{node=\"n1\",provider=\"NVIDIA\",device_type=\"T\\\"4\\n\",device_uuid=\"GPU-a\",driver_version=\"535\",device_no=\"0\"} 0.5\n\
             hami_vgpu_count{node=\"n2\",provider=\"NVIDIA\",device_type=\"T4\",device_uuid=\"GPU-b\",driver_version=\"\",device_no=\"\"} 10\n"
        );
    }

    #[test]
    fn trailing_spaces_of_go_help_texts_are_kept() {
        let points = [point(&["n", "p", "t", "u", "d", "0"], 1.0)];
        let text = render([(Family::MemoryUsed, &points[..])]);
        assert!(text.starts_with("# HELP hami_memory_used Actual memory usage, unit is 'MB' \n"));
    }

    #[test]
    fn special_values_and_empty_families() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(100.0), "100");
        assert_eq!(render([(Family::CoreSize, &[][..])]), "");
    }
}
