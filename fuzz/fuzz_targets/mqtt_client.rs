//! fleetstorm's MQTT client on whatever a broker sends: the bytes are a
//! broker's side of one session (CONNACK, then what answers its QoS 1
//! PUBLISH and its idle wait), then the broker closes. Never a panic, and
//! the session ends (`transport::mqtt::fuzzing`), in MQTT 3.1.1 and in 5.
#![no_main]

use fleetstorm::transport::mqtt::fuzzing::{client, client5};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Err(finding) = client(bytes) {
        panic!("the session did not end on bytes that did: {finding:?}");
    }
    if let Err(finding) = client5(bytes) {
        panic!("the MQTT 5 session did not end on bytes that did: {finding:?}");
    }
});
