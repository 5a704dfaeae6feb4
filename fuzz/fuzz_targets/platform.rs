//! `.paved/platform.yaml` as a governance pull request could write it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paved::manifest::platform;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = platform::parse_platform(".paved/platform.yaml", text);
});
