//! An environment manifest, as a pull request could write it: parsing, the schema checks
//! and locating fields must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paved::manifest::{environment, yaml};

const FILE: &str = "environments/payments/checkout.yaml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = environment::parse_manifest(FILE, text) {
        let _ = environment::check_manifest(&m, None);
    }
    for path in ["metadata.name", "spec.parameters.size", "spec.tags[0]", "a.b.c.d"] {
        let _ = yaml::locate(text, &yaml::FieldPath::parse(path));
    }
});
