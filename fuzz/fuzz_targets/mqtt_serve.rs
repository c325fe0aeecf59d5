//! serve's MQTT listener on whatever a client sends: the bytes are a
//! client's side of one session, then it closes its writing half. Never a
//! panic, and the session ends (`server::fuzzing`).
#![no_main]

use fleetstorm::server::fuzzing::mqtt_session;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Err(finding) = mqtt_session(bytes) {
        panic!("serve's session did not end as it should: {finding:?}");
    }
});
