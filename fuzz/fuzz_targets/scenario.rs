//! The scenario parser on arbitrary text, as TOML and as JSON: an error is
//! fine, a panic is not; a scenario that parses has at least one fleet.
#![no_main]

use fleetstorm::scenario::{Format, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for format in [Format::Toml, Format::Json] {
        match parse(text, format, "fuzz", "fuzz") {
            Ok(s) => assert!(!s.fleets.is_empty()),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
