//! The legacy CSV node registration (NVIDIA before HAMi 2.8, DCU, HCU, Iluvatar): devices
//! separated by `:`, fields by `,` as `id,count,devmem,devcore,type,numa,health[,index,mode]`.
//!
//! Decoding follows the Go backend, which is laxer than HAMi: the value must contain `:`;
//! entries without `,` are skipped; an entry with 9 fields takes index and mode from fields
//! 8 and 9; any other count of 7 or more gets index 0 and mode `hami-core`; unparsable
//! numbers read as 0 and an unparsable health as `false`.
//!
//! One extension: a 5-field entry is read as the layout of Volcano's vGPU device plugin,
//! `id,count,devmem,type,health` (devcore 100, numa 0, index 0, mode `hami-core`). Users
//! who point the WebUI at Volcano nodes hit exactly this (volcano-vgpu-device-plugin #39);
//! no HAMi writer produces 5 fields, so accepting them cannot misread a HAMi annotation.
//! Any other count below 7 rejects the whole annotation.

use super::number::{parse_go_bool, parse_i32_or_zero};
use super::{DecodeError, Registered};

/// Mode HAMi implies when a registration predates per-device modes.
pub(crate) const DEFAULT_MODE: &str = "hami-core";

/// Decodes a CSV registration into its device entries.
pub(crate) fn decode(value: &str) -> Result<Vec<Registered>, DecodeError> {
    if !value.contains(':') {
        return Err(DecodeError::CsvNoSeparator);
    }
    value
        .split(':')
        .enumerate()
        .filter(|(_, entry)| entry.contains(','))
        .map(|(position, entry)| decode_entry(position, entry))
        .collect()
}

fn decode_entry(position: usize, entry: &str) -> Result<Registered, DecodeError> {
    let fields: Vec<&str> = entry.split(',').collect();
    let health = |raw: &str| parse_go_bool(raw).unwrap_or(false);
    match fields.as_slice() {
        [id, count, devmem, device_type, healthy] => Ok(Registered {
            id: id.to_string(),
            count: parse_i32_or_zero("count", count)?,
            devmem: parse_i32_or_zero("devmem", devmem)?,
            devcore: 100,
            device_type: device_type.to_string(),
            health: health(healthy),
            mode: DEFAULT_MODE.to_string(),
            ..Registered::default()
        }),
        [id, count, devmem, devcore, device_type, numa, healthy, rest @ ..] => {
            let (index, mode) = match rest {
                [index, mode] => (parse_i32_or_zero("index", index)?, mode.to_string()),
                _ => (0, DEFAULT_MODE.to_string()),
            };
            Ok(Registered {
                id: id.to_string(),
                index,
                count: parse_i32_or_zero("count", count)?,
                devmem: parse_i32_or_zero("devmem", devmem)?,
                devcore: parse_i32_or_zero("devcore", devcore)?,
                device_type: device_type.to_string(),
                numa: parse_i32_or_zero("numa", numa)?,
                mode,
                health: health(healthy),
            })
        }
        _ => Err(DecodeError::CsvFieldCount {
            entry: position,
            fields: fields.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nine_field_entries_carry_index_and_mode() {
        let value = "GPU-8f2c1a3e-5b7d-4e9f-a1c2-3d4e5f6a7b8c,10,15360,100,NVIDIA-Tesla T4,0,true,0,hami-core:GPU-1b2c3d4e-6f70-4a81-9b2c-d3e4f5a6b7c8,10,15360,100,NVIDIA-Tesla T4,0,true,1,mig:";
        let devices = decode(value).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0].id, "GPU-8f2c1a3e-5b7d-4e9f-a1c2-3d4e5f6a7b8c");
        assert_eq!(devices[0].count, 10);
        assert_eq!(devices[0].devmem, 15360);
        assert_eq!(devices[0].devcore, 100);
        assert_eq!(devices[0].device_type, "NVIDIA-Tesla T4");
        assert!(devices[0].health);
        assert_eq!((devices[1].index, devices[1].mode.as_str()), (1, "mig"));
    }

    #[test]
    fn seven_and_eight_field_entries_default_index_and_mode() {
        let devices =
            decode("GPU-bad51c5a-ed4c-591d-91bf-c04a12e19eae,10,8192,100,MR-V100,1,true:x,1,2,3,T,0,false,7:")
                .unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(
            (devices[0].index, devices[0].mode.as_str(), devices[0].numa),
            (0, "hami-core", 1)
        );
        assert_eq!(
            (devices[1].index, devices[1].mode.as_str()),
            (0, "hami-core")
        );
        assert!(!devices[1].health);
    }

    #[test]
    fn five_field_entries_are_read_as_volcano_layout() {
        let devices =
            decode("GPU-151ae9c0,1,1126,NVIDIA-NVIDIA GeForce GTX 1080 Ti,true:").unwrap();
        assert_eq!(devices[0].device_type, "NVIDIA-NVIDIA GeForce GTX 1080 Ti");
        assert_eq!(
            (devices[0].count, devices[0].devmem, devices[0].devcore),
            (1, 1126, 100)
        );
        assert!(devices[0].health);
    }

    #[test]
    fn unparsable_numbers_read_zero_and_unparsable_health_false() {
        let devices = decode("GPU-0,ten,big,all,T4,x,maybe,one,hami-core:").unwrap();
        let d = &devices[0];
        assert_eq!(
            (d.count, d.devmem, d.devcore, d.numa, d.index),
            (0, 0, 0, 0, 0)
        );
        assert!(!d.health);
    }

    #[test]
    fn rejects_missing_separator_short_entries_and_overflow() {
        assert_eq!(
            decode("GPU-0,10,1,1,T4,0,true").unwrap_err().kind(),
            "csv_separator"
        );
        assert_eq!(decode("").unwrap_err().kind(), "csv_separator");
        assert_eq!(
            decode("GPU-0,10,1,1,T4,0,true:GPU-1,1:")
                .unwrap_err()
                .kind(),
            "csv_field_count"
        );
        assert_eq!(
            decode("GPU-0,10,1,1,T4,0:").unwrap_err().kind(),
            "csv_field_count"
        );
        assert_eq!(
            decode("GPU-0,10,99999999999,1,T4,0,true:")
                .unwrap_err()
                .kind(),
            "overflow"
        );
    }

    #[test]
    fn entries_without_commas_are_skipped() {
        assert_eq!(decode(":::").unwrap(), vec![]);
        assert_eq!(decode("junk:GPU-0,1,2,3,T,0,true:").unwrap().len(), 1);
    }
}
