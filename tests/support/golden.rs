//! Golden files: replies compared as exact JSON text (field order included, as the protobuf
//! JSON the frontend reads) with `tests/golden/<name>.json`, and other text (expositions)
//! with `tests/golden/<name>`. `UPDATE_GOLDEN=1` rewrites them instead, for review in the
//! diff.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

/// `tests/golden/<name>.json`; `name` may contain folders (`demo/gpus`).
pub fn path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"))
}

/// Fails when `reply`, pretty-printed, differs from the golden file by one byte.
pub fn assert_golden(name: &str, reply: &impl Serialize) {
    let text = serde_json::to_string_pretty(reply).expect("serializable") + "\n";
    compare(name, &path(name), &text);
}

/// Fails when `text` differs from `tests/golden/<file>` (`file` names its extension).
pub fn assert_text(file: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file);
    compare(file, &path, text);
}

fn compare(name: &str, path: &Path, text: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("golden dir");
        std::fs::write(path, text).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "missing {}: run with UPDATE_GOLDEN=1 and review it",
            path.display()
        )
    });
    assert_eq!(text, expected, "golden {name} differs");
}

/// The golden file as JSON, for comparing HTTP answers.
pub fn value(name: &str) -> Value {
    let text = std::fs::read_to_string(path(name)).expect("golden exists");
    serde_json::from_str(&text).expect("golden is JSON")
}
