//! The `SendHeartbeat` contract as the scanner reads it: each object type
//! of the body (`Shape`), its members and what each member's value must be
//! (`Kind`), and which members feed the [`Summary`](super::Summary). The
//! scanner is generic over these tables; the rules on strings live in
//! [`rules`](super::super::rules).

use super::super::rules::{self, StrRule};

/// The object types of the contract.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    Request,
    Metric,
    Model,
    Deployment,
    DeploymentModel,
}

/// What a member's value must be.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Str(StrRule),
    /// Any string.
    Text,
    OneOf(&'static [&'static str]),
    Number,
    Object(Shape),
    List(Shape),
}

impl Kind {
    pub(super) fn expected(self) -> &'static str {
        match self {
            Kind::Str(_) | Kind::Text | Kind::OneOf(_) => "a string",
            Kind::Number => "a number",
            Kind::Object(_) => "an object",
            Kind::List(_) => "an array",
        }
    }
}

pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) required: bool,
    /// Where the summary keeps this member's string, if anywhere.
    pub(super) capture: Capture,
}

/// The members that feed [`Summary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Capture {
    None,
    DeviceName,
    DeviceFleetName,
    AgentVersion,
    /// ModelName and ModelVersion of a listed model: hashed.
    ModelName,
    ModelVersion,
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, required: false, capture: Capture::None }
}

const fn req(name: &'static str, kind: Kind, capture: Capture) -> Field {
    Field { name, kind, required: true, capture }
}

const fn model_id(name: &'static str, kind: Kind, capture: Capture) -> Field {
    Field { name, kind, required: false, capture }
}

const MODEL_STATES: &[&str] = &["DEPLOY", "UNDEPLOY"];
const DEPLOYMENT_STATUSES: &[&str] = &["SUCCESS", "FAIL"];

const REQUEST: &[Field] = &[
    opt("AgentMetrics", Kind::List(Shape::Metric)),
    req("AgentVersion", Kind::Str(rules::VERSION), Capture::AgentVersion),
    req("DeviceFleetName", Kind::Str(rules::ENTITY_NAME), Capture::DeviceFleetName),
    req("DeviceName", Kind::Str(rules::ENTITY_NAME), Capture::DeviceName),
    opt("Models", Kind::List(Shape::Model)),
    opt("DeploymentResult", Kind::Object(Shape::Deployment)),
];

const METRIC: &[Field] = &[
    opt("Dimension", Kind::Str(rules::DIMENSION)),
    opt("MetricName", Kind::Str(rules::METRIC_NAME)),
    opt("Timestamp", Kind::Number),
    opt("Value", Kind::Number),
];

const MODEL: &[Field] = &[
    opt("LatestInference", Kind::Number),
    opt("LatestSampleTime", Kind::Number),
    opt("ModelMetrics", Kind::List(Shape::Metric)),
    model_id("ModelName", Kind::Str(rules::MODEL_NAME), Capture::ModelName),
    model_id("ModelVersion", Kind::Str(rules::VERSION), Capture::ModelVersion),
];

const DEPLOYMENT: &[Field] = &[
    opt("DeploymentName", Kind::Str(rules::ENTITY_NAME)),
    opt("DeploymentStatus", Kind::Str(rules::ENTITY_NAME)),
    opt("DeploymentStatusMessage", Kind::Text),
    opt("DeploymentStartTime", Kind::Number),
    opt("DeploymentEndTime", Kind::Number),
    opt("DeploymentModels", Kind::List(Shape::DeploymentModel)),
];

const DEPLOYMENT_MODEL: &[Field] = &[
    opt("ModelHandle", Kind::Str(rules::ENTITY_NAME)),
    opt("ModelName", Kind::Str(rules::MODEL_NAME)),
    opt("ModelVersion", Kind::Str(rules::VERSION)),
    opt("DesiredState", Kind::OneOf(MODEL_STATES)),
    opt("State", Kind::OneOf(MODEL_STATES)),
    opt("Status", Kind::OneOf(DEPLOYMENT_STATUSES)),
    opt("StatusReason", Kind::Text),
    opt("RollbackFailureReason", Kind::Text),
];

impl Shape {
    pub(super) fn fields(self) -> &'static [Field] {
        match self {
            Shape::Request => REQUEST,
            Shape::Metric => METRIC,
            Shape::Model => MODEL,
            Shape::Deployment => DEPLOYMENT,
            Shape::DeploymentModel => DEPLOYMENT_MODEL,
        }
    }
}
