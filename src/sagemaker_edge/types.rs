//! The SendHeartbeat request as serde types, with the wire's PascalCase
//! member names.
//!
//! Optional members are `Option`s that are left out when `None` (never sent
//! as `null`). Timestamps are epoch seconds as JSON numbers, carried as
//! [`Timestamp`], which the generator builds from whole milliseconds so that
//! they print with at most three decimals.
//!
//! These types are for code that wants a heartbeat as a value (tests, the
//! `sample` round trip, tools built on the library). The hot paths do not
//! use them: the generator serializes straight from device state
//! ([`crate::device::generate`]), and the reference backend checks bytes with the streaming
//! validator (`validate`).

use serde::{Deserialize, Serialize};

/// Epoch seconds, fractions allowed.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub f64);

impl Timestamp {
    /// From whole milliseconds since the Unix epoch.
    pub fn from_millis(ms: u64) -> Self {
        Timestamp(ms as f64 / 1000.0)
    }
}

/// The body of `POST /SendHeartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SendHeartbeat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_metrics: Option<Vec<EdgeMetric>>,
    pub agent_version: String,
    pub device_fleet_name: String,
    pub device_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<Model>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_result: Option<DeploymentResult>,
}

/// One metric sample, used by `AgentMetrics` and `Model.ModelMetrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EdgeMetric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// A model deployed on the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Model {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_inference: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_sample_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_metrics: Option<Vec<EdgeMetric>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
}

/// The outcome of the latest deployment (a newer revision of the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DeploymentResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_status_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_start_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_end_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_models: Option<Vec<DeploymentModel>>,
}

/// `DEPLOY` or `UNDEPLOY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ModelState {
    Deploy,
    Undeploy,
}

/// `SUCCESS` or `FAIL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DeploymentStatus {
    Success,
    Fail,
}

/// One model of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DeploymentModel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_handle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<ModelState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ModelState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeploymentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_failure_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_optionals_are_omitted_and_names_are_pascal_case() {
        let hb = SendHeartbeat {
            agent_metrics: None,
            agent_version: "1.0".into(),
            device_fleet_name: "f1".into(),
            device_name: "d1".into(),
            models: Some(vec![Model {
                latest_inference: Some(Timestamp::from_millis(1_700_000_000_123)),
                latest_sample_time: None,
                model_metrics: None,
                model_name: Some("resnet".into()),
                model_version: None,
            }]),
            deployment_result: None,
        };
        let json = serde_json::to_string(&hb).unwrap();
        assert_eq!(
            json,
            r#"{"AgentVersion":"1.0","DeviceFleetName":"f1","DeviceName":"d1","Models":[{"LatestInference":1700000000.123,"ModelName":"resnet"}]}"#
        );
        assert_eq!(serde_json::from_str::<SendHeartbeat>(&json).unwrap(), hb);
    }

    #[test]
    fn deployment_enums_use_the_wire_spelling() {
        let m: DeploymentModel =
            serde_json::from_str(r#"{"DesiredState":"DEPLOY","State":"UNDEPLOY","Status":"FAIL"}"#).unwrap();
        assert_eq!(m.desired_state, Some(ModelState::Deploy));
        assert_eq!(m.state, Some(ModelState::Undeploy));
        assert_eq!(m.status, Some(DeploymentStatus::Fail));
    }
}
