//! HAMi's pod allocation format, shared by almost every vendor: containers separated by `;`,
//! devices by `:`, device fields by `,` as `uuid,type,usedmem,usedcores`. HAMi writes `:`
//! after every device and `;` after every container. This module also owns the rule that
//! maps segments to containers across the two encodings HAMi has used.

use super::number::parse_i32;
use super::{snippet, DecodeError, PodView};
use crate::device::DeviceAllocation;

/// The `;`-separated segments of an allocation value, one per container HAMi accounted for.
///
/// Counting rule: an empty value has no segments. Otherwise exactly one trailing `;` (the
/// terminator HAMi writes after the last container) is removed and the rest is split on
/// `;`, keeping empty pieces. So `"a:;"` is one segment, `";a:;"` two (the first empty),
/// `";"` one empty segment, `"a:"` (unterminated) one, and `"a:;;"` two.
pub fn count_segments(value: &str) -> usize {
    segments(value).count()
}

fn segments(value: &str) -> impl Iterator<Item = &str> {
    let body = value.strip_suffix(';').unwrap_or(value);
    let pieces = (!value.is_empty()).then(|| body.split(';'));
    pieces.into_iter().flatten()
}

/// Decodes an allocation value into its segments (see [`count_segments`] for how segments
/// are counted), each a list of devices. Entries without `,` are skipped (HAMi's trailing
/// `:` leaves empty ones); an entry with fewer than four fields, or a memory or core field
/// that is not an i32, fails the whole value. Fields beyond the fourth are ignored.
pub fn decode_alloc_segments(value: &str) -> Result<Vec<Vec<DeviceAllocation>>, DecodeError> {
    segments(value).map(decode_segment).collect()
}

fn decode_segment(segment: &str) -> Result<Vec<DeviceAllocation>, DecodeError> {
    segment
        .split(':')
        .filter(|entry| entry.contains(','))
        .map(|entry| {
            let mut fields = entry.split(',');
            let mut next = || fields.next();
            match (next(), next(), next(), next()) {
                (Some(uuid), Some(alloc_type), Some(mem), Some(cores)) => Ok(DeviceAllocation {
                    uuid: uuid.to_string(),
                    alloc_type: alloc_type.to_string(),
                    usedmem: parse_i32("usedmem", mem)?,
                    usedcores: parse_i32("usedcores", cores)?,
                    facts: Default::default(),
                }),
                _ => Err(DecodeError::AllocationFields {
                    entry: snippet(entry),
                }),
            }
        })
        .collect()
}

/// Maps decoded segments onto the pod's regular containers, returning exactly `regular`
/// lists.
///
/// HAMi ≥ 2.9 writes one segment per init container before those of the regular
/// containers; older HAMi writes only the regular containers' segments. The encodings are
/// told apart by the segment count: when the pod has init containers and there are exactly
/// `init + regular` segments, the first `init` are skipped; in every other case segments
/// are taken from the first one. Missing segments become empty lists, extra ones are
/// ignored.
pub fn align_to_containers<T>(segments: Vec<Vec<T>>, init: usize, regular: usize) -> Vec<Vec<T>> {
    let skip = if init > 0 && Some(segments.len()) == init.checked_add(regular) {
        init
    } else {
        0
    };
    let mut lists: Vec<Vec<T>> = segments.into_iter().skip(skip).take(regular).collect();
    lists.resize_with(regular, Vec::new);
    lists
}

/// What a `0` in the cores field means for a vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZeroCores {
    /// No core limit was requested, so the task may use the whole device: shown as 100,
    /// as the Go backend did for NVIDIA, DCU and Metax.
    Whole,
    /// The number is taken as written (vendors whose core unit is not a percentage).
    AsWritten,
}

/// Reads `key` from the pod and decodes it in the common format, aligned to the regular
/// containers. `None` when the pod does not carry the key.
pub(crate) fn decode_aligned(
    pod: &PodView<'_>,
    key: &str,
    zero: ZeroCores,
) -> Option<Result<Vec<Vec<DeviceAllocation>>, DecodeError>> {
    let value = pod.annotation(key)?;
    Some(decode_alloc_segments(value).map(|mut segments| {
        if zero == ZeroCores::Whole {
            for allocation in segments.iter_mut().flatten() {
                if allocation.usedcores == 0 {
                    allocation.usedcores = 100;
                }
            }
        }
        align_to_containers(segments, pod.init_containers, pod.containers)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::decode_pod;
    use crate::vendor::testutil::pod;
    use crate::vendor::DeviceContext;

    fn alloc(uuid: &str, mem: i32, cores: i32) -> DeviceAllocation {
        DeviceAllocation {
            uuid: uuid.into(),
            alloc_type: "NVIDIA".into(),
            usedmem: mem,
            usedcores: cores,
            facts: Default::default(),
        }
    }

    #[test]
    fn segment_count_follows_the_documented_rule() {
        let cases = [
            ("", 0),
            (";", 1),
            ("a,b,1,2:;", 1),
            (";a,b,1,2:;", 2),
            ("a,b,1,2:", 1),
            ("a,b,1,2:;;", 2),
            (";;", 2),
            ("a:;b:;c:;", 3),
        ];
        for (value, want) in cases {
            assert_eq!(count_segments(value), want, "{value:?}");
            assert_eq!(
                decode_alloc_segments(value).unwrap().len(),
                want,
                "{value:?}"
            );
        }
    }

    #[test]
    fn decodes_devices_of_each_segment_and_skips_entries_without_commas() {
        let value = "GPU-a,NVIDIA,8000,0:GPU-b,NVIDIA,4000,30:;;GPU-c,NVIDIA,1,2:";
        let segments = decode_alloc_segments(value).unwrap();
        assert_eq!(
            segments,
            vec![
                vec![alloc("GPU-a", 8000, 0), alloc("GPU-b", 4000, 30)],
                vec![],
                vec![alloc("GPU-c", 1, 2)],
            ]
        );
        assert_eq!(decode_alloc_segments("junk:;").unwrap(), vec![vec![]]);
        assert_eq!(
            decode_alloc_segments("GPU-a,NVIDIA,1,2,extra:;").unwrap(),
            vec![vec![alloc("GPU-a", 1, 2)]]
        );
    }

    #[test]
    fn malformed_entries_fail_the_value() {
        assert_eq!(
            decode_alloc_segments("GPU-a,NVIDIA,1:;")
                .unwrap_err()
                .kind(),
            "bad_allocation"
        );
        assert_eq!(
            decode_alloc_segments("GPU-a,NVIDIA,lots,1:;")
                .unwrap_err()
                .kind(),
            "bad_number"
        );
        assert_eq!(
            decode_alloc_segments("GPU-a,NVIDIA,1,99999999999:;")
                .unwrap_err()
                .kind(),
            "overflow"
        );
    }

    #[test]
    fn alignment_skips_init_segments_only_in_the_new_encoding() {
        let seg = |s: &str| vec![s.to_string()];
        // (segments, init, regular, expected first-segment labels per container)
        type Case = (Vec<Vec<String>>, usize, usize, Vec<Vec<String>>);
        let cases: Vec<Case> = vec![
            // no init containers: identity
            (vec![seg("c0"), seg("c1")], 0, 2, vec![seg("c0"), seg("c1")]),
            // one init container, new encoding (init segment first)
            (vec![seg("i0"), seg("c0")], 1, 1, vec![seg("c0")]),
            // one init container, old encoding (regular containers only)
            (vec![seg("c0")], 1, 1, vec![seg("c0")]),
            // two init containers, new encoding
            (
                vec![vec![], seg("i1"), seg("c0"), seg("c1")],
                2,
                2,
                vec![seg("c0"), seg("c1")],
            ),
            // two init containers, old encoding
            (vec![seg("c0"), seg("c1")], 2, 2, vec![seg("c0"), seg("c1")]),
            // fewer segments than containers: padded
            (vec![seg("c0")], 0, 3, vec![seg("c0"), vec![], vec![]]),
            // more segments than either encoding: taken from the start, truncated
            (vec![seg("c0"), seg("c1"), seg("x")], 1, 1, vec![seg("c0")]),
            // no containers at all
            (vec![seg("c0")], 0, 0, vec![]),
        ];
        for (segments, init, regular, want) in cases {
            assert_eq!(
                align_to_containers(segments.clone(), init, regular),
                want,
                "{segments:?}"
            );
        }
    }

    /// End to end through `decode_pod`, both encodings and 0, 1, 2 init containers.
    #[test]
    fn pods_decode_right_with_old_and_new_init_container_encodings() {
        let key = "hami.io/vgpu-devices-allocated";
        type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [&'a [&'a str]]);
        let cases: [Case; 8] = [
            ("GPU-a,NVIDIA,1,1:;", &[], &["c"], &[&["GPU-a"]]),
            (
                ";GPU-a,NVIDIA,1,1:;",
                &[],
                &["c0", "c1"],
                &[&[], &["GPU-a"]],
            ),
            // one init container without a GPU, new encoding: leading empty segment
            (";GPU-a,NVIDIA,1,1:;", &["i"], &["c"], &[&["GPU-a"]]),
            // one init container, old encoding
            ("GPU-a,NVIDIA,1,1:;", &["i"], &["c"], &[&["GPU-a"]]),
            // init container holding a GPU itself, new encoding: not reported on `c`
            (
                "GPU-i,NVIDIA,1,1:;GPU-a,NVIDIA,1,1:;",
                &["i"],
                &["c"],
                &[&["GPU-a"]],
            ),
            // two init containers, new encoding
            (
                ";;GPU-a,NVIDIA,1,1:;;",
                &["i0", "i1"],
                &["c0", "c1"],
                &[&["GPU-a"], &[]],
            ),
            // two init containers, old encoding
            (
                "GPU-a,NVIDIA,1,1:;GPU-b,NVIDIA,1,1:;",
                &["i0", "i1"],
                &["c0", "c1"],
                &[&["GPU-a"], &["GPU-b"]],
            ),
            // empty segments only
            (";;", &["i"], &["c"], &[&[]]),
        ];
        for (value, init, regular, want) in cases {
            let decoded = decode_pod(
                &pod(&[(key, value)], init, regular),
                &DeviceContext::default(),
            );
            assert!(decoded.errors.is_empty(), "{value:?}");
            let got: Vec<Vec<&str>> = decoded
                .containers
                .iter()
                .map(|c| c.allocations.iter().map(|a| a.uuid.as_str()).collect())
                .collect();
            let want: Vec<Vec<&str>> = want.iter().map(|l| l.to_vec()).collect();
            assert_eq!(got, want, "{value:?} init={init:?}");
        }
    }
}
