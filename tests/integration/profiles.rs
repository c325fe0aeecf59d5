//! Device profiles against the vendors' own code: what fleetstorm computes
//! for a profile's credentials equals what the vendor's SDK computes for
//! the same inputs.

use fleetstorm::wire::azure::sas_token;

use super::util::interop;

#[test]
fn azure_sas_tokens_equal_the_azure_iot_device_sdk_s() {
    use base64::Engine as _;
    // Keys of several lengths, device ids with characters that need
    // encoding, with and without a policy name, expiries near and far.
    let mut cases = Vec::new();
    for i in 0..24u64 {
        let raw: Vec<u8> = (0..(16 + i * 3)).map(|b| (b * 37 + i * 11) as u8).collect();
        let key = base64::engine::general_purpose::STANDARD.encode(raw);
        let device = ["cam-00042", "meter 7", "a+b/c", "ünï-çødé", "x_y.z~1"][i as usize % 5];
        let uri = format!("hub-{i}.azure-devices.net/devices/{device}");
        let key_name = (i % 3 == 0).then(|| "device".to_string());
        cases.push(
            serde_json::json!({"uri": uri, "key": key, "expiry": 1_700_000_000 + i * 86_399, "key_name": key_name}),
        );
    }
    let arg = serde_json::to_string(&cases).unwrap();
    let Some(theirs) = interop("azure_sas.py", &[&arg], &["azure.iot.device"]) else { return };
    let theirs: Vec<String> = serde_json::from_value(theirs).unwrap();
    assert_eq!(theirs.len(), cases.len());
    for (case, sdk) in cases.iter().zip(&theirs) {
        let ours = sas_token(
            case["uri"].as_str().unwrap(),
            case["key"].as_str().unwrap(),
            case["expiry"].as_u64().unwrap(),
            case["key_name"].as_str(),
        )
        .unwrap();
        assert_eq!(&ours, sdk, "{case}");
    }
}
