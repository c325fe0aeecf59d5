//! The request validator on arbitrary bytes: never a panic, and `inspect`
//! agrees with `validate` on what is valid.
#![no_main]

use fleetstorm::sagemaker_edge::validate::{inspect, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let valid = validate(data).is_ok();
    assert_eq!(inspect(data).is_ok(), valid);
});
