//! The validator against a table of invalid bodies (every rule of the
//! contract broken at least once) and against arbitrary input.

use fleetstorm::sagemaker_edge::validate::inspect;
use fleetstorm::sagemaker_edge::{self, Reason, validate};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A valid body that uses every member of the contract.
fn base() -> Value {
    json!({
        "AgentMetrics": [
            {"Dimension": "agent", "MetricName": "cpu-utilization", "Timestamp": 1700000000.5, "Value": 12.5},
            {"Dimension": "agent/disk", "MetricName": "disk-free", "Timestamp": 1700000000, "Value": -3}
        ],
        "AgentVersion": "1.20231.0",
        "DeviceFleetName": "factory-east",
        "DeviceName": "cam-00001",
        "Models": [
            {"LatestInference": 1700000000.1, "LatestSampleTime": 1699999999.9,
             "ModelMetrics": [{"Dimension": "model/resnet50", "MetricName": "latency-ms", "Timestamp": 1700000000.0, "Value": 4.2},
                              {"Dimension": "model/resnet50", "MetricName": "confidence", "Timestamp": 1700000000.0, "Value": 0.9}],
             "ModelName": "resnet50", "ModelVersion": "3.1"},
            {"LatestInference": 1700000000.2, "LatestSampleTime": 1700000000.2,
             "ModelMetrics": [{"Dimension": "model/ocr", "MetricName": "latency-ms", "Timestamp": 1700000000.0, "Value": 9}],
             "ModelName": "ocr-labels", "ModelVersion": "1.0 beta_2"}
        ],
        "DeploymentResult": {
            "DeploymentName": "rollout-7", "DeploymentStatus": "SUCCESS", "DeploymentStatusMessage": "any text: ok!",
            "DeploymentStartTime": 1699990000, "DeploymentEndTime": 1699990100.25,
            "DeploymentModels": [{"ModelHandle": "h_1", "ModelName": "resnet50", "ModelVersion": "3.1",
                                  "DesiredState": "DEPLOY", "State": "DEPLOY", "Status": "SUCCESS",
                                  "StatusReason": "", "RollbackFailureReason": "n/a"}]
        }
    })
}

/// What to do to the base body.
enum Edit {
    Set(&'static str, Value),
    Remove(&'static str),
    Raw(Vec<u8>),
}

fn apply(edit: Edit) -> Vec<u8> {
    let mut body = base();
    match edit {
        Edit::Set(pointer, value) => {
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            match body.pointer_mut(parent).unwrap() {
                Value::Object(map) => {
                    map.insert(key.to_string(), value);
                }
                Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
                _ => panic!("bad pointer {pointer}"),
            }
        }
        Edit::Remove(pointer) => {
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            body.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key).unwrap();
        }
        Edit::Raw(bytes) => return bytes,
    }
    serde_json::to_vec(&body).unwrap()
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn repeat(c: &str, n: usize) -> Value {
    Value::String(c.repeat(n))
}

const ENTITY: &str = "does not match ^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$";
const HYPHENATED: &str = "does not match ^[a-zA-Z0-9](-*[a-zA-Z0-9])*$";
const DIMENSION: &str = "does not match ^[a-zA-Z0-9](-*[a-zA-Z0-9/])*$";
const VERSION: &str = "does not match ^[a-zA-Z0-9 _.]+$";

fn cases() -> Vec<(Edit, &'static str, &'static str)> {
    use Edit::*;
    vec![
        // Required members.
        (Remove("/AgentVersion"), "AgentVersion", "required member is missing"),
        (Remove("/DeviceFleetName"), "DeviceFleetName", "required member is missing"),
        (Remove("/DeviceName"), "DeviceName", "required member is missing"),
        (Set("/DeviceName", Value::Null), "DeviceName", "required member is null"),
        // AgentVersion: 1-64, [a-zA-Z0-9 _.]+
        (Set("/AgentVersion", s("")), "AgentVersion", "length 0, minimum 1"),
        (Set("/AgentVersion", repeat("1", 65)), "AgentVersion", "length 65, maximum 64"),
        (Set("/AgentVersion", s("1.0-beta")), "AgentVersion", VERSION),
        (Set("/AgentVersion", json!(1.0)), "AgentVersion", "expected a string, found number"),
        // DeviceName: the spec's pattern cases, and its lengths.
        (Set("/DeviceName", s("cam_-01")), "DeviceName", ENTITY),
        (Set("/DeviceName", s("-cam")), "DeviceName", ENTITY),
        (Set("/DeviceName", s("cam-")), "DeviceName", ENTITY),
        (Set("/DeviceName", s("cam.01")), "DeviceName", ENTITY),
        (Set("/DeviceName", s("")), "DeviceName", "length 0, minimum 1"),
        (Set("/DeviceName", repeat("a", 64)), "DeviceName", "length 64, maximum 63"),
        (Set("/DeviceName", json!(42)), "DeviceName", "expected a string, found number"),
        // DeviceFleetName
        (Set("/DeviceFleetName", s("fleet/1")), "DeviceFleetName", ENTITY),
        (Set("/DeviceFleetName", repeat("f", 64)), "DeviceFleetName", "length 64, maximum 63"),
        (Set("/DeviceFleetName", json!(["f"])), "DeviceFleetName", "expected a string, found array"),
        // EdgeMetric
        (Set("/AgentMetrics/0/Dimension", s("")), "AgentMetrics[0].Dimension", "length 0, minimum 1"),
        (Set("/AgentMetrics/0/Dimension", s("/agent")), "AgentMetrics[0].Dimension", DIMENSION),
        (Set("/AgentMetrics/0/Dimension", repeat("d", 1001)), "AgentMetrics[0].Dimension", "length 1001, maximum 1000"),
        (Set("/AgentMetrics/1/MetricName", s("cpu")), "AgentMetrics[1].MetricName", "length 3, minimum 4"),
        (Set("/AgentMetrics/1/MetricName", s("cpu_load")), "AgentMetrics[1].MetricName", HYPHENATED),
        (Set("/AgentMetrics/1/MetricName", repeat("m", 101)), "AgentMetrics[1].MetricName", "length 101, maximum 100"),
        (
            Set("/AgentMetrics/0/Timestamp", s("yesterday")),
            "AgentMetrics[0].Timestamp",
            "expected a number, found string",
        ),
        (Set("/AgentMetrics/0/Value", s("3")), "AgentMetrics[0].Value", "expected a number, found string"),
        (Set("/AgentMetrics/0/Value", json!(true)), "AgentMetrics[0].Value", "expected a number, found boolean"),
        (Set("/AgentMetrics", json!({"a": 1})), "AgentMetrics", "expected an array, found object"),
        (Set("/AgentMetrics/0", json!(7)), "AgentMetrics[0]", "expected an object, found number"),
        (Set("/AgentMetrics/0", Value::Null), "AgentMetrics[0]", "expected an object, found null"),
        (Set("/AgentMetrics/0/Unit", s("percent")), "AgentMetrics[0].Unit", "unknown member"),
        // Model
        (Set("/Models/1/ModelName", s("abc")), "Models[1].ModelName", "length 3, minimum 4"),
        (Set("/Models/0/ModelName", s("res_net")), "Models[0].ModelName", HYPHENATED),
        (Set("/Models/0/ModelName", repeat("m", 256)), "Models[0].ModelName", "length 256, maximum 255"),
        (Set("/Models/0/ModelVersion", s("v1-2")), "Models[0].ModelVersion", VERSION),
        (Set("/Models/0/ModelVersion", repeat("9", 65)), "Models[0].ModelVersion", "length 65, maximum 64"),
        (Set("/Models/0/LatestInference", s("now")), "Models[0].LatestInference", "expected a number, found string"),
        (Set("/Models/0/LatestSampleTime", json!([])), "Models[0].LatestSampleTime", "expected a number, found array"),
        (
            Set("/Models/1/ModelMetrics/0/MetricName", s("cpu")),
            "Models[1].ModelMetrics[0].MetricName",
            "length 3, minimum 4",
        ),
        (
            Set("/Models/0/ModelMetrics/1/Value", json!({"x": 1})),
            "Models[0].ModelMetrics[1].Value",
            "expected a number, found object",
        ),
        (Set("/Models/0/ModelMetrics/0/Dimension", s("model/x_y")), "Models[0].ModelMetrics[0].Dimension", DIMENSION),
        (Set("/Models/0/Foo", json!(1)), "Models[0].Foo", "unknown member"),
        (Set("/Models", s("resnet50")), "Models", "expected an array, found string"),
        // DeploymentResult
        (Set("/DeploymentResult/DeploymentName", s("dep_-1")), "DeploymentResult.DeploymentName", ENTITY),
        (Set("/DeploymentResult/DeploymentStatus", s("")), "DeploymentResult.DeploymentStatus", "length 0, minimum 1"),
        (
            Set("/DeploymentResult/DeploymentStartTime", s("t")),
            "DeploymentResult.DeploymentStartTime",
            "expected a number, found string",
        ),
        (
            Set("/DeploymentResult/DeploymentStatusMessage", json!(5)),
            "DeploymentResult.DeploymentStatusMessage",
            "expected a string, found number",
        ),
        (Set("/DeploymentResult", s("done")), "DeploymentResult", "expected an object, found string"),
        (
            Set("/DeploymentResult/DeploymentModels/0/DesiredState", s("deploy")),
            "DeploymentResult.DeploymentModels[0].DesiredState",
            "must be one of DEPLOY, UNDEPLOY",
        ),
        (
            Set("/DeploymentResult/DeploymentModels/0/Status", s("OK")),
            "DeploymentResult.DeploymentModels[0].Status",
            "must be one of SUCCESS, FAIL",
        ),
        (
            Set("/DeploymentResult/DeploymentModels/0/ModelHandle", s("h-")),
            "DeploymentResult.DeploymentModels[0].ModelHandle",
            ENTITY,
        ),
        (
            Set("/DeploymentResult/DeploymentModels/0/ModelName", s("rn")),
            "DeploymentResult.DeploymentModels[0].ModelName",
            "length 2, minimum 4",
        ),
        (
            Set("/DeploymentResult/DeploymentModels/0/StatusReason", json!(false)),
            "DeploymentResult.DeploymentModels[0].StatusReason",
            "expected a string, found boolean",
        ),
        // The body as a whole.
        (Set("/Devicename", s("cam-1")), "Devicename", "unknown member"),
        (
            Raw(br#"{"AgentVersion":"1","AgentVersion":"2","DeviceFleetName":"f","DeviceName":"d"}"#.to_vec()),
            "AgentVersion",
            "member appears more than once",
        ),
        (Raw(br#"["AgentVersion"]"#.to_vec()), "", "expected an object, found array"),
        (Raw(b"null".to_vec()), "", "expected an object, found null"),
        (Raw(b"{".to_vec()), "", "not valid JSON: EOF while parsing an object at line 1 column 2"),
        (Raw(b"".to_vec()), "", "not valid JSON: EOF while parsing a value"),
        (
            Raw(br#"{"AgentVersion":"1","DeviceFleetName":"f","DeviceName":"d"} x"#.to_vec()),
            "",
            "not valid JSON: trailing characters",
        ),
        (
            Raw(b"{\"AgentVersion\":\"1\xff\",\"DeviceFleetName\":\"f\",\"DeviceName\":\"d\"}".to_vec()),
            "",
            "not valid JSON: invalid UTF-8 in a string at line 1 column 19",
        ),
        (
            Raw(br#"{"AgentVersion":"1","DeviceFleetName":"f","DeviceName":"d","AgentMetrics":[{"Value":1e999}]}"#
                .to_vec()),
            "AgentMetrics[0].Value",
            "number out of range",
        ),
        (
            Raw(br#"{"AgentVersion":"1","DeviceFleetName":"f","DeviceName":"d","Models":[{"LatestInference":-1.8e308}]}"#.to_vec()),
            "Models[0].LatestInference",
            "number out of range",
        ),
        (
            Raw(br#"{"AgentVersion":"1","DeviceFleetName":"f","DeviceName":"d","Models":[{"ModelName":"abcd"},]}"#.to_vec()),
            "",
            "not valid JSON: expected a value at line 1 column 91",
        ),
        (
            Raw(br#"{"AgentVersion":"1","DeviceFleetName":"f","DeviceName":"d\ud800"}"#.to_vec()),
            "",
            "not valid JSON: lone leading surrogate",
        ),
        (
            Raw(b"{\"AgentVersion\":\"1\",\"DeviceFleetName\":\"f\",\"DeviceName\":\"d\x01\"}".to_vec()),
            "",
            "not valid JSON: control character in a string",
        ),
        (
            Raw(br#"{"AgentVersion":"1","DeviceFleetName":"f","DeviceName":"d","Models":[{"LatestInference":01}]}"#.to_vec()),
            "",
            "not valid JSON: expected `,` or `}`",
        ),
    ]
}

#[test]
fn the_base_body_is_valid() {
    validate(&serde_json::to_vec(&base()).unwrap()).unwrap();
}

#[test]
fn every_rule_broken_is_rejected_at_its_path() {
    let cases = cases();
    assert!(cases.len() >= 40);
    for (edit, path, reason) in cases {
        let body = apply(edit);
        let shown = String::from_utf8_lossy(&body).into_owned();
        let violations = validate(&body).expect_err(&format!("accepted: {shown}"));
        assert_eq!(violations.total, 1, "{shown}: expected one violation, got {violations}");
        let v = &violations.list[0];
        assert_eq!(v.path, path, "{shown}: {violations}");
        let reason_text = v.reason.to_string();
        assert!(reason_text.starts_with(reason), "{shown}: got {reason_text:?}, want {reason:?}");
    }
}

#[test]
fn the_spec_pattern_cases_that_are_valid_are_accepted() {
    for name in ["cam-01", "cam_01", "cam-_01", "cam--01", "c"] {
        validate(&apply(Edit::Set("/DeviceName", s(name)))).unwrap();
    }
    validate(&apply(Edit::Set("/AgentMetrics/0/Dimension", s("model/resnet50/")))).unwrap();
    validate(&apply(Edit::Set("/AgentVersion", repeat("1", 64)))).unwrap();
}

#[test]
fn null_optional_members_count_as_absent() {
    validate(&apply(Edit::Set("/Models", Value::Null))).unwrap();
    validate(&apply(Edit::Set("/AgentMetrics/0/Value", Value::Null))).unwrap();
    validate(&apply(Edit::Set("/DeploymentResult", Value::Null))).unwrap();
}

#[test]
fn many_faults_in_one_body_are_all_reported() {
    let body = br#"{"AgentVersion":"","DeviceName":"-x","Models":[{"ModelName":"ab","Bad":1}],"Extra":[1,2]}"#;
    let v = validate(body).unwrap_err();
    let shown: Vec<String> = v.list.iter().map(|v| v.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "AgentVersion: length 0, minimum 1",
            format!("DeviceName: {ENTITY}").as_str(),
            "Models[0].ModelName: length 2, minimum 4",
            "Models[0].Bad: unknown member",
            "Extra: unknown member",
            "DeviceFleetName: required member is missing",
        ]
    );
}

/// Bytes that matter to a JSON scanner.
const INTERESTING: &[u8] = b"\"\\u{}[],:0123456789eE+-. \t\nabdfnrtxDA\xff\xc3\x01/";

/// Arbitrary JSON, biased towards the contract's member names so that the
/// validator's deeper paths are reached.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("AgentVersion".to_string()),
        Just("DeviceName".to_string()),
        Just("DeviceFleetName".to_string()),
        Just("AgentMetrics".to_string()),
        Just("Models".to_string()),
        Just("ModelMetrics".to_string()),
        Just("MetricName".to_string()),
        Just("Value".to_string()),
        Just("DeploymentResult".to_string()),
        Just("DeploymentModels".to_string()),
        Just("Status".to_string()),
        "[A-Za-z]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "\\PC{0,20}".prop_map(Value::String),
        "[a-z0-9_ ./-]{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = validate(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics_and_accepted_bodies_parse(value in arbitrary_json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        if validate(&bytes).is_ok() {
            // Anything the validator accepts must also fit the wire types.
            prop_assert!(serde_json::from_slice::<sagemaker_edge::SendHeartbeat>(&bytes).is_ok(), "{}", value);
        }
    }

    /// The scanner against serde_json on bodies with a few bytes changed:
    /// what it accepts serde_json parses into the wire types (with the same
    /// identifying members); what serde_json rejects as JSON, it rejects; and
    /// its syntax errors are real ones.
    #[test]
    fn the_scanner_agrees_with_serde_json(
        edits in proptest::collection::vec((0usize..4000, 0usize..3, proptest::sample::select(INTERESTING)), 1..4)
    ) {
        let mut bytes = serde_json::to_vec(&base()).unwrap();
        for (at, op, byte) in edits {
            let at = at % (bytes.len() + 1);
            match op {
                0 => bytes.insert(at, byte),
                1 if at < bytes.len() => { bytes.remove(at); }
                _ if at < bytes.len() => bytes[at] = byte,
                _ => bytes.push(byte),
            }
        }
        // `Value`, not `IgnoredAny`: serde_json skips ignored strings without
        // checking their UTF-8.
        let serde_ok = serde_json::from_slice::<serde_json::Value>(&bytes).is_ok();
        match inspect(&bytes) {
            Ok(summary) => {
                let wire: sagemaker_edge::SendHeartbeat = serde_json::from_slice(&bytes)
                    .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
                prop_assert_eq!(summary.device_name, wire.device_name);
                prop_assert_eq!(summary.device_fleet_name, wire.device_fleet_name);
                prop_assert_eq!(summary.agent_version, wire.agent_version);
                prop_assert_eq!(summary.models, wire.models.map_or(0, |m| m.len()));
            }
            Err(v) => {
                let syntax = v.list.iter().any(|v| matches!(v.reason, Reason::NotJson { .. }));
                prop_assert!(!syntax || !serde_ok, "spurious syntax error {} in {}", v, String::from_utf8_lossy(&bytes));
            }
        }
        if !serde_ok {
            prop_assert!(validate(&bytes).is_err());
        }
    }

    #[test]
    fn mutated_valid_bodies_never_panic(cut in 0usize..2000, byte in any::<u8>(), at in 0usize..2000) {
        let mut bytes = serde_json::to_vec(&base()).unwrap();
        let at = at % bytes.len();
        bytes[at] = byte;
        bytes.truncate(cut.max(1));
        let _ = validate(&bytes);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = |inner: &str| format!("{}{inner}{}", "[".repeat(100_000), "]".repeat(100_000));
    for body in [
        format!(r#"{{"AgentVersion":"1","DeviceFleetName":"f","DeviceName":"d","Extra":{}}}"#, deep("1")),
        format!(r#"{{"AgentVersion":"1","DeviceFleetName":"f","DeviceName":"d","Models":[{}]}}"#, deep("")),
        deep(""),
    ] {
        let v = validate(body.as_bytes()).unwrap_err();
        assert!(v.to_string().contains("not valid JSON: nesting too deep"), "{v}");
    }
    // 128 levels is the limit: 127 nested arrays inside a member still pass the syntax check.
    let fine = format!(
        r#"{{"AgentVersion":"1","DeviceFleetName":"f","DeviceName":"d","Extra":{}}}"#,
        "[".repeat(127) + &"]".repeat(127)
    );
    assert_eq!(validate(fine.as_bytes()).unwrap_err().to_string(), "Extra: unknown member");
}
