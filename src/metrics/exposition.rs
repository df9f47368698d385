//! The device and container families `/metrics` exports, and their rendering to the
//! Prometheus text format.
//!
//! Names, label names and HELP texts are the Go backend's (8f42445) so existing dashboards
//! and the frontend's PromQL keep working; the families upstream 2.0 added follow upstream's
//! wording. Rendering is done once per published cycle, never per scrape.

use std::cmp::Ordering;
use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;

use super::labels::LabelSet;

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
    DeviceCordoned,
    DeviceDra,
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
    pub const ALL: [Family; 30] = [
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
        Family::DeviceCordoned,
        Family::DeviceDra,
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
            DeviceCordoned => (
                "hami_device_cordoned",
                "1 for a device listed in its node's hami.io/device-cordon: HAMi places nothing new on it (absent otherwise)",
                DEVICE_LABELS,
            ),
            DeviceDra => (
                "hami_device_dra",
                "1 for a device published through Kubernetes DRA (a HAMi-DRA ResourceSlice; absent for annotation-registered devices)",
                DEVICE_LABELS,
            ),
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

/// One series: its label set (rendered once, shared) and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub labels: Arc<LabelSet>,
    pub value: f64,
}

impl Point {
    /// The same series with the same value: the same shared label set or equal values, and
    /// the same value bits (so a family whose points are all `same` renders to equal bytes).
    pub fn same(&self, other: &Point) -> bool {
        self.value.to_bits() == other.value.to_bits()
            && (Arc::ptr_eq(&self.labels, &other.labels) || self.labels == other.labels)
    }
}

/// The series of one family in exposition order: sorted by label values, duplicates dropped.
/// `groups` in source order, each with whether it is already strictly in label order.
pub fn family_view(family: Family, groups: &[(&Arc<[Point]>, bool)]) -> Arc<[Point]> {
    let n = family.spec().2.len();
    let sorted_and_unique = |points: &[Point]| {
        points.windows(2).all(|w| {
            !Arc::ptr_eq(&w[0].labels, &w[1].labels)
                && w[0].labels.cmp_values(&w[1].labels, n) == Ordering::Less
        })
    };
    if let [(only, ordered)] = groups {
        if *ordered || sorted_and_unique(only) {
            return Arc::clone(only);
        }
    }
    let mut all: Vec<Point> = groups.iter().flat_map(|(g, _)| g.iter().cloned()).collect();
    // Stable: of equal label sets the first (by source, then insertion) is kept.
    all.sort_by(|a, b| a.labels.cmp_values(&b.labels, n));
    all.dedup_by(|b, a| Arc::ptr_eq(&a.labels, &b.labels) || a.labels.eq_values(&b.labels, n));
    all.into()
}

/// Appends the HELP and TYPE lines and every series of one family (nothing when it is empty).
pub fn write_family(out: &mut Vec<u8>, family: Family, points: &[Point]) {
    if points.is_empty() {
        return;
    }
    write_header(out, family);
    write_points(out, family, points);
}

pub(super) fn write_header(out: &mut Vec<u8>, family: Family) {
    let (name, help, _) = family.spec();
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(escape_help(help).as_bytes());
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b" gauge\n");
}

pub(super) fn write_points(out: &mut Vec<u8>, family: Family, points: &[Point]) {
    let (name, _, label_names) = family.spec();
    let n = label_names.len();
    for point in points {
        out.extend_from_slice(name.as_bytes());
        point.labels.write(out, n);
        out.push(b' ');
        write_value(out, point.value);
        out.push(b'\n');
    }
}

/// Renders one family (HELP, TYPE, series) in pieces of about `piece` bytes, handing each
/// to `sink`; nothing when it has no series. Returns the text's length.
pub fn render_family_in_pieces(
    family: Family,
    points: &[Point],
    piece: usize,
    scratch: &mut Vec<u8>,
    mut sink: impl FnMut(&[u8]),
) -> usize {
    if points.is_empty() {
        return 0;
    }
    scratch.clear();
    write_header(scratch, family);
    let mut total = 0;
    for part in points.chunks(256) {
        write_points(scratch, family, part);
        if scratch.len() >= piece {
            total += scratch.len();
            sink(scratch);
            scratch.clear();
        }
    }
    if !scratch.is_empty() {
        total += scratch.len();
        sink(scratch);
        scratch.clear();
    }
    total
}

/// Renders families (each a view from [`family_view`]) in the order given to the text format.
pub fn render<'a>(families: impl IntoIterator<Item = (Family, &'a [Point])>) -> String {
    let mut out = Vec::new();
    for (family, points) in families {
        write_family(&mut out, family, points);
    }
    // Only `&str` pieces and ASCII were appended.
    String::from_utf8(out).unwrap_or_default()
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Sample values as the text format spells them (as Rust's `Display` writes an `f64`, plus
/// `NaN`, `+Inf` and `-Inf`).
pub fn format_value(value: f64) -> String {
    let mut out = Vec::new();
    write_value(&mut out, value);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends a sample value exactly as Rust's `Display` writes an `f64` (what this exporter
/// always wrote), plus `NaN`, `+Inf` and `-Inf`, without `fmt` in the common cases: whole
/// numbers through `itoa`, short fractions through `ryu`. `ryu` and `Display` both write the
/// shortest digits that read back to the value, but break ties differently (to even, and
/// away from zero), and a tie needs about 16 significant digits; from 15 on, and where `ryu`
/// would write an exponent (Display never does), `Display` writes it.
pub fn write_value(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 9.0e15 {
        if value == 0.0 && value.is_sign_negative() {
            out.extend_from_slice(b"-0");
        } else {
            out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
        }
    } else {
        let mut buffer = ryu::Buffer::new();
        let text = buffer.format_finite(value);
        if text.contains('e') || significant_digits(text) >= 15 {
            use std::io::Write as _;
            let _ = write!(out, "{value}");
        } else {
            // `ryu` marks whole numbers with ".0"; Display does not.
            out.extend_from_slice(text.strip_suffix(".0").unwrap_or(text).as_bytes());
        }
    }
}

/// Digits from the first non-zero one (trailing zeros included: an overcount is safe).
fn significant_digits(text: &str) -> usize {
    text.bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|&b| b == b'0')
        .count()
}

/// Gzip at the fast level: what a cycle compresses once instead of once per scrape, and what
/// the kept REST replies are sent as.
pub fn gzip(data: &[u8]) -> Bytes {
    // The fast level: at 10,000 GPUs the text is ~100 MB and the default level costs seconds
    // of CPU per cycle for a few percent of size.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if encoder.write_all(data).is_err() {
        return Bytes::new();
    }
    encoder.finish().map(Bytes::from).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(labels: &[&str], value: f64) -> Point {
        Point {
            labels: Arc::new(LabelSet::new(DEVICE_LABELS, labels)),
            value,
        }
    }

    fn rendered(family: Family, points: Vec<Point>) -> String {
        let group: Arc<[Point]> = points.into();
        let view = family_view(family, &[(&group, false)]);
        render([(family, &view[..])])
    }

    #[test]
    fn renders_help_type_and_sorted_escaped_series() {
        let points = vec![
            point(&["n2", "NVIDIA", "T4", "GPU-b", "", ""], 10.0),
            point(&["n1", "NVIDIA", "T\"4\n", "GPU-a", "535", "0"], 0.5),
        ];
        let text = rendered(Family::VgpuCount, points);
        assert_eq!(
            text,
            "# HELP hami_vgpu_count Total vGPU count\n# TYPE hami_vgpu_count gauge\n\
             hami_vgpu_count{node=\"n1\",provider=\"NVIDIA\",device_type=\"T\\\"4\\n\",device_uuid=\"GPU-a\",driver_version=\"535\",device_no=\"0\"} 0.5\n\
             hami_vgpu_count{node=\"n2\",provider=\"NVIDIA\",device_type=\"T4\",device_uuid=\"GPU-b\",driver_version=\"\",device_no=\"\"} 10\n"
        );
    }

    #[test]
    fn trailing_spaces_of_go_help_texts_are_kept() {
        let text = rendered(
            Family::MemoryUsed,
            vec![point(&["n", "p", "t", "u", "d", "0"], 1.0)],
        );
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

    #[test]
    fn values_are_written_as_display_writes_them() {
        let mut cases = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            25.3,
            1.0 / 3.0,
            1e-7,
            1.5e-5,
            1e15,
            9.0e15,
            1e16,
            1.5e16,
            1e21,
            1e300,
            -2.5e-300,
            123456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            // A tie: ryu rounds it to even ("…312"), Display away from zero ("…313").
            "-132.706817626953125".parse().unwrap(),
        ];
        // Every float32 quantity of the families goes through f64; spread over many exponents.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() {
                cases.push(v);
                cases.push(f64::from(v as f32));
                cases.push(((x % 100_000) as f64) / 10.0);
            }
        }
        for v in cases.into_iter().filter(|v| v.is_finite()) {
            assert_eq!(format_value(v), format!("{v}"), "{v:e}");
        }
    }

    #[test]
    fn duplicates_keep_the_first_and_groups_merge_in_label_order() {
        let a: Arc<[Point]> = vec![point(&["n2", "", "", "", "", ""], 1.0)].into();
        let b: Arc<[Point]> = vec![
            point(&["n1", "", "", "", "", ""], 2.0),
            point(&["n2", "", "", "", "", ""], 3.0),
        ]
        .into();
        let view = family_view(Family::CoreUtil, &[(&a, true), (&b, true)]);
        let values: Vec<f64> = view.iter().map(|p| p.value).collect();
        assert_eq!(values, [2.0, 1.0]);
    }
}
