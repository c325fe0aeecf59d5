//! The reference backend against the real AWS SDK for Python (boto3).
//!
//! `.ci/run` installs boto3. Where it is missing outside CI the test says
//! so loudly and passes; under CI (the `CI` variable set) a missing boto3
//! fails the test.

use std::process::Command;

use fleetstorm::server::ServeConfig;

use super::util::{client, get_json, root, start_serve};

fn boto3_available() -> bool {
    Command::new("python3").args(["-c", "import boto3"]).output().is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_send_heartbeat_is_accepted_and_validation_errors_surface() {
    if !boto3_available() {
        assert!(std::env::var_os("CI").is_none(), "boto3 is required in CI: pip install boto3");
        eprintln!("SKIPPED: boto3 is not installed (pip install boto3); CI runs this test");
        return;
    }
    let server = start_serve(ServeConfig::default()).await;
    let script = root().join("tests/sdk/boto3_send_heartbeat.py");
    let url = server.url();
    let output = tokio::task::spawn_blocking(move || Command::new("python3").arg(script).arg(url).output())
        .await
        .unwrap()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "boto3 script failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["invalid_code"], "ValidationException");

    let device = get_json(&client(), &format!("{}/devices/sdk-fleet/boto3-device-1", server.url())).await;
    assert_eq!(device["heartbeats"], 1);
    assert_eq!(device["agent_version"], "1.20231.0");
    assert_eq!(device["models"][0]["name"], "resnet50");
    server.shutdown().await;
}
