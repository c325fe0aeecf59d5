//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the built `fleetstorm` binary with `args` from the repository root.
pub fn fleetstorm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetstorm"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the fleetstorm binary runs")
}

use bytes::Bytes;
use fleetstorm::server::{self, RunningServer, ServeConfig};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Starts the reference backend in-process on a free loopback port.
pub async fn start_serve(config: ServeConfig) -> RunningServer {
    let config = ServeConfig { addr: "127.0.0.1:0".parse().unwrap(), ..config };
    server::spawn(config).await.expect("serve starts")
}

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request; `Err` when the connection closed without an answer.
pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.map_err(|e| format!("{e:?}"))?.to_bytes();
    Ok((parts.status, parts.headers, bytes))
}

pub async fn post(client: &HttpClient, url: &str, body: impl Into<Bytes>) -> (StatusCode, HeaderMap, Bytes) {
    send(client, Method::POST, url, &[], body).await.expect("an answer")
}

pub async fn get_json(client: &HttpClient, url: &str) -> serde_json::Value {
    let (status, _, body) = send(client, Method::GET, url, &[], Bytes::new()).await.expect("an answer");
    assert_eq!(status, StatusCode::OK, "GET {url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("JSON")
}

/// A valid heartbeat from device `device` of fleet `fleet`.
pub fn heartbeat(fleet: &str, device: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "AgentVersion": "1.20231.0",
        "DeviceFleetName": fleet,
        "DeviceName": device,
        "AgentMetrics": [{"Dimension": "agent", "MetricName": "cpu-utilization", "Timestamp": 1764160000.123, "Value": 12.5}],
        "Models": [{"ModelName": "resnet50", "ModelVersion": "3.1", "LatestInference": 1764160000.1, "LatestSampleTime": 1764159990.0}]
    }))
    .unwrap()
}
