//! Golden files: today's JSON layouts, pinned in the repository.
//!
//! Stored JSON outlives the code that wrote it, so a layout may only change
//! together with the version that names it. Each golden file records the
//! layout's name (a schema string or version) next to the JSON it stands for;
//! the tests compare what the code serializes today with the file, as JSON
//! values (keys, types and values exactly; whitespace and key order aside).
//!
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p <crate> --test golden`. That
//! writes a layout under a *new* name, and adds samples that are new; it refuses
//! to change what an existing name already pins: bump the name first.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};

/// `UPDATE_GOLDEN=1`: write new layouts instead of only checking them.
pub fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

/// `tests/golden/<name>` of the crate under test.
pub fn path(name: &str) -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/golden")
    .join(name)
}

pub fn read(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

pub fn write(path: &Path, value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("serializable") + "\n";
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Checks one named layout: `file` holds `{"schema": <schema>, "samples": {...}}`.
///
/// - same schema, same samples: pass;
/// - same schema, a sample changed or removed: fail, even when updating: the
///   layout changed without a new schema name (`what` says which constant);
/// - another schema: fail, or when updating write the new pin.
///
/// Samples that are only new are added when updating (a new sample pins more,
/// it changes nothing already pinned). `bump` says what changing the name
/// involves; it is printed when the layout changed under an unchanged name.
pub fn check_named_layout(file: &str, what: &str, schema: &str, bump: &str, samples: Value) {
    let path = path(file);
    let Value::Object(samples) = samples else {
        panic!("samples must be a JSON object");
    };
    let expected = serde_json::json!({ "schema": schema, "samples": samples });
    let Some(pinned) = read(&path) else {
        if updating() {
            write(&path, &expected);
            return;
        }
        panic!(
            "{} is missing: run UPDATE_GOLDEN=1 cargo test to pin {what} = {schema:?}",
            path.display()
        );
    };
    if pinned == expected {
        return;
    }
    let pinned_schema = pinned["schema"].as_str().unwrap_or_default();
    if pinned_schema != schema {
        if updating() {
            write(&path, &expected);
            return;
        }
        panic!(
            "{what} is now {schema:?} but {} pins {pinned_schema:?}: run \
             UPDATE_GOLDEN=1 cargo test to pin the new layout",
            path.display()
        );
    }
    let empty = serde_json::Map::new();
    let pinned_samples = pinned["samples"].as_object().unwrap_or(&empty);
    for (name, old) in pinned_samples {
        match samples.get(name) {
            Some(new) if new == old => {}
            Some(new) => panic!(
                "the JSON of sample {name:?} changed, but {what} is still {schema:?}.\n\
                 pinned: {old}\n\
                 now:    {new}\n\
                 Copies stored in the old layout would be misread: {bump}, \
                 then run UPDATE_GOLDEN=1 cargo test to pin the new layout."
            ),
            None => panic!(
                "sample {name:?} pinned in {} is no longer produced; {what} is still {schema:?}",
                path.display()
            ),
        }
    }
    // Only new samples differ.
    if updating() {
        write(&path, &expected);
    } else {
        let new: Vec<_> = samples
            .keys()
            .filter(|k| !pinned_samples.contains_key(*k))
            .collect();
        panic!(
            "samples {new:?} are not pinned in {}: run UPDATE_GOLDEN=1 cargo test",
            path.display()
        );
    }
}
