//! The request validator: checks the raw bytes of a `SendHeartbeat` body
//! against every rule of the contract and reports *every* violation with its
//! JSON path (`Models[1].ModelMetrics[0].MetricName: length 3, minimum 4`).
//!
//! # How it works
//!
//! The body is never turned into a tree. A serde [`DeserializeSeed`] walks
//! the JSON as `serde_json` parses it, carrying the schema node it expects
//! (`Kind`) and a context that holds the current path and the violations
//! found so far. Strings are checked where they lie in the input (borrowed,
//! or in serde_json's scratch buffer when escaped), so a valid body costs no
//! allocation beyond the validator's own path stack; paths are only rendered
//! into strings when a violation is reported.
//!
//! # Policy
//!
//! - **Not JSON** (syntax error, invalid UTF-8, trailing bytes, numbers out
//!   of `f64` range, nesting deeper than serde_json's limit of 128): one
//!   violation at the body level naming serde_json's line and column. Any
//!   violations found before the syntax error are kept.
//! - **Wrong types** (`"Value": "3"`, a body that is an array): a violation
//!   at that path, `expected a number, found string`; the value is skipped.
//! - **Unknown fields** are rejected, at their own path. The reference
//!   backend is strict on purpose: a misspelt member (`Devicename`) is a bug
//!   in the sender that a lenient server would hide.
//! - **Duplicate fields** are rejected.
//! - **`null`** for an optional member counts as absent (as AWS JSON
//!   protocols treat it); for a required member it is a violation.
//! - Numbers must be finite; JSON cannot spell anything else, and a literal
//!   too large for an `f64` is a syntax error in serde_json.
//! - At most [`MAX_REPORTED`] violations are kept; [`Violations::total`]
//!   counts them all, so a huge hostile body cannot make a huge error list.
//!
//! The validator never panics, whatever the input: the property tests feed
//! it arbitrary bytes and arbitrary JSON.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::rules::{self, StrFault, StrRule};

/// How many violations a [`Violations`] keeps; the rest are only counted.
pub const MAX_REPORTED: usize = 100;

/// One broken rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// JSON path of the offending member, e.g. `Models[1].ModelName`; empty
    /// for the body itself.
    pub path: String,
    pub reason: Reason,
}

/// Why a member breaks the contract.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The body is not a JSON document (serde_json's message, with position).
    NotJson(String),
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    Missing,
    NullRequired,
    Unknown,
    Duplicate,
    Str(StrFault),
    NotOneOf(&'static [&'static str]),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotJson(m) => write!(f, "not valid JSON: {m}"),
            Reason::WrongType { expected, found } => write!(f, "expected {expected}, found {found}"),
            Reason::Missing => f.write_str("required member is missing"),
            Reason::NullRequired => f.write_str("required member is null"),
            Reason::Unknown => f.write_str("unknown member"),
            Reason::Duplicate => f.write_str("member appears more than once"),
            Reason::Str(fault) => fault.fmt(f),
            Reason::NotOneOf(allowed) => write!(f, "must be one of {}", allowed.join(", ")),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "body" } else { &self.path };
        write!(f, "{path}: {}", self.reason)
    }
}

/// Everything wrong with one body.
#[derive(Debug, Clone, PartialEq)]
pub struct Violations {
    /// The first [`MAX_REPORTED`] violations, in document order.
    pub list: Vec<Violation>,
    /// How many there were in all.
    pub total: usize,
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.list.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            v.fmt(f)?;
        }
        if self.total > self.list.len() {
            write!(f, "; and {} more", self.total - self.list.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// Checks one request body. `Ok` means the body meets every rule.
pub fn validate(body: &[u8]) -> Result<(), Violations> {
    let mut ctx = Ctx::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed =
        ValueSeed { ctx: &mut ctx, kind: Kind::Object(Shape::Request) }.deserialize(&mut de).and_then(|presence| {
            if presence == Presence::Null {
                ctx.report(Reason::WrongType { expected: "an object", found: "null" });
            }
            de.end()
        });
    if let Err(e) = parsed {
        ctx.path.len = 0;
        ctx.report(Reason::NotJson(e.to_string()));
    }
    if ctx.total == 0 { Ok(()) } else { Err(Violations { list: ctx.found, total: ctx.total }) }
}

// ----------------------------------------------------------------- schema

/// The object types of the contract.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Request,
    Metric,
    Model,
    Deployment,
    DeploymentModel,
}

/// What a member's value must be.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str(StrRule),
    /// Any string.
    Text,
    OneOf(&'static [&'static str]),
    Number,
    Object(Shape),
    List(Shape),
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Str(_) | Kind::Text | Kind::OneOf(_) => "a string",
            Kind::Number => "a number",
            Kind::Object(_) => "an object",
            Kind::List(_) => "an array",
        }
    }
}

struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, required: false }
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, required: true }
}

const MODEL_STATES: &[&str] = &["DEPLOY", "UNDEPLOY"];
const DEPLOYMENT_STATUSES: &[&str] = &["SUCCESS", "FAIL"];

const REQUEST: &[Field] = &[
    opt("AgentMetrics", Kind::List(Shape::Metric)),
    req("AgentVersion", Kind::Str(rules::VERSION)),
    req("DeviceFleetName", Kind::Str(rules::ENTITY_NAME)),
    req("DeviceName", Kind::Str(rules::ENTITY_NAME)),
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
    opt("ModelName", Kind::Str(rules::MODEL_NAME)),
    opt("ModelVersion", Kind::Str(rules::VERSION)),
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
    fn fields(self) -> &'static [Field] {
        match self {
            Shape::Request => REQUEST,
            Shape::Metric => METRIC,
            Shape::Model => MODEL,
            Shape::Deployment => DEPLOYMENT,
            Shape::DeploymentModel => DEPLOYMENT_MODEL,
        }
    }
}

// ---------------------------------------------------------------- context

#[derive(Debug, Clone, Copy)]
enum Segment {
    Field(&'static str),
    Index(usize),
}

/// The path to the value being checked. The schema is at most five levels
/// deep (`Models[i].ModelMetrics[j].MetricName`), so a fixed array does.
struct Path {
    segments: [Segment; 8],
    len: usize,
}

impl Path {
    fn push(&mut self, s: Segment) {
        // Cannot overflow with the schema above; ignoring a push keeps the
        // validator panic-free even if the schema ever grows past the array.
        if let Some(slot) = self.segments.get_mut(self.len) {
            *slot = s;
            self.len += 1;
        }
    }

    fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    fn render(&self, extra: Option<&str>) -> String {
        let mut out = String::new();
        let names = self.segments[..self.len].iter().map(|s| match s {
            Segment::Field(name) => Ok(*name),
            Segment::Index(i) => Err(*i),
        });
        for part in names.chain(extra.map(Ok)) {
            match part {
                Ok(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Err(i) => {
                    use fmt::Write;
                    let _ = write!(out, "[{i}]");
                }
            }
        }
        out
    }
}

struct Ctx {
    path: Path,
    found: Vec<Violation>,
    total: usize,
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx { path: Path { segments: [Segment::Index(0); 8], len: 0 }, found: Vec::new(), total: 0 }
    }
}

impl Ctx {
    fn report(&mut self, reason: Reason) {
        self.report_with(None, reason);
    }

    fn report_with(&mut self, extra: Option<&str>, reason: Reason) {
        self.total += 1;
        if self.found.len() < MAX_REPORTED {
            self.found.push(Violation { path: self.path.render(extra), reason });
        }
    }

    fn check_str(&mut self, kind: Kind, s: &str) {
        match kind {
            Kind::Str(rule) => rule.check_each(s, |fault| self.report(Reason::Str(fault))),
            Kind::OneOf(allowed) => {
                if !allowed.contains(&s) {
                    self.report(Reason::NotOneOf(allowed));
                }
            }
            Kind::Text => {}
            other => self.report(Reason::WrongType { expected: other.expected(), found: "string" }),
        }
    }
}

// ------------------------------------------------------------------ seeds

/// Whether a member held a value or `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    Value,
    Null,
}

/// Checks one value against `kind`.
struct ValueSeed<'c> {
    ctx: &'c mut Ctx,
    kind: Kind,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Presence;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Presence, D::Error> {
        d.deserialize_any(self)
    }
}

impl ValueSeed<'_> {
    fn mismatch(self, found: &'static str) -> Presence {
        self.ctx.report(Reason::WrongType { expected: self.kind.expected(), found });
        Presence::Value
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Presence;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.expected())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Presence, E> {
        Ok(self.mismatch("boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Presence, E> {
        self.visit_number()
    }

    fn visit_u64<E>(self, _: u64) -> Result<Presence, E> {
        self.visit_number()
    }

    fn visit_f64<E>(self, v: f64) -> Result<Presence, E> {
        if !v.is_finite() {
            self.ctx.report(Reason::WrongType { expected: "a finite number", found: "a non-finite number" });
            return Ok(Presence::Value);
        }
        self.visit_number()
    }

    fn visit_str<E>(self, s: &str) -> Result<Presence, E> {
        self.ctx.check_str(self.kind, s);
        Ok(Presence::Value)
    }

    fn visit_unit<E>(self) -> Result<Presence, E> {
        Ok(Presence::Null)
    }

    fn visit_none<E>(self) -> Result<Presence, E> {
        Ok(Presence::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Presence, A::Error> {
        let Kind::List(shape) = self.kind else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(self.mismatch("array"));
        };
        let mut index = 0;
        loop {
            self.ctx.path.push(Segment::Index(index));
            let element = seq.next_element_seed(ValueSeed { ctx: &mut *self.ctx, kind: Kind::Object(shape) });
            if let Ok(Some(Presence::Null)) = element {
                self.ctx.report(Reason::WrongType { expected: "an object", found: "null" });
            }
            self.ctx.path.pop();
            if element?.is_none() {
                return Ok(Presence::Value);
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Presence, A::Error> {
        let Kind::Object(shape) = self.kind else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(self.mismatch("object"));
        };
        check_object(self.ctx, map, shape.fields())?;
        Ok(Presence::Value)
    }
}

impl ValueSeed<'_> {
    fn visit_number<E>(self) -> Result<Presence, E> {
        if !matches!(self.kind, Kind::Number) {
            return Ok(self.mismatch("number"));
        }
        Ok(Presence::Value)
    }
}

fn check_object<'de, A: MapAccess<'de>>(ctx: &mut Ctx, mut map: A, fields: &'static [Field]) -> Result<(), A::Error> {
    // Bit i set: field i was mentioned (for duplicates and missing members).
    let mut mentioned: u32 = 0;
    while let Some(key) = map.next_key_seed(KeySeed { fields })? {
        match key {
            Key::Known(i) => {
                let field = &fields[i];
                ctx.path.push(Segment::Field(field.name));
                if mentioned & (1 << i) != 0 {
                    ctx.report(Reason::Duplicate);
                    map.next_value::<IgnoredAny>()?;
                } else {
                    mentioned |= 1 << i;
                    let presence = map.next_value_seed(ValueSeed { ctx: &mut *ctx, kind: field.kind });
                    if field.required && matches!(presence, Ok(Presence::Null)) {
                        ctx.report(Reason::NullRequired);
                    }
                    presence?;
                }
                ctx.path.pop();
            }
            Key::Unknown(name) => {
                ctx.report_with(Some(&name), Reason::Unknown);
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    for (i, field) in fields.iter().enumerate() {
        if field.required && mentioned & (1 << i) == 0 {
            ctx.path.push(Segment::Field(field.name));
            ctx.report(Reason::Missing);
            ctx.path.pop();
        }
    }
    Ok(())
}

enum Key {
    Known(usize),
    Unknown(Box<str>),
}

/// Reads an object key and looks it up among the shape's fields.
struct KeySeed {
    fields: &'static [Field],
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, s: &str) -> Result<Key, E> {
        Ok(match self.fields.iter().position(|f| f.name == s) {
            Some(i) => Key::Known(i),
            None => Key::Unknown(s.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(body: &str) -> Vec<String> {
        match validate(body.as_bytes()) {
            Ok(()) => vec![],
            Err(v) => v.list.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn minimal_body_is_valid() {
        assert_eq!(paths(r#"{"AgentVersion":"1.0","DeviceFleetName":"f","DeviceName":"d"}"#), Vec::<String>::new());
    }

    #[test]
    fn every_violation_is_reported_in_document_order() {
        let got = paths(
            r#"{"AgentVersion":"1.0-x","DeviceName":"-d","Models":[{"ModelName":"resnet"},{"ModelMetrics":[{"MetricName":"cpu"}]}]}"#,
        );
        assert_eq!(
            got,
            vec![
                "AgentVersion: does not match ^[a-zA-Z0-9 _.]+$",
                "DeviceName: does not match ^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$",
                "Models[1].ModelMetrics[0].MetricName: length 3, minimum 4",
                "DeviceFleetName: required member is missing",
            ]
        );
    }

    #[test]
    fn escaped_strings_are_checked_after_unescaping() {
        assert!(validate(br#"{"AgentVersion":"1\u002e0","DeviceFleetName":"f","DeviceName":"d"}"#).is_ok());
        assert_eq!(
            paths(r#"{"AgentVersion":"1\n0","DeviceFleetName":"f","DeviceName":"d"}"#),
            vec!["AgentVersion: does not match ^[a-zA-Z0-9 _.]+$"]
        );
    }

    #[test]
    fn the_list_is_capped_but_the_total_counts_all() {
        let metrics = vec![r#"{"MetricName":"x"}"#; 500].join(",");
        let body =
            format!(r#"{{"AgentVersion":"1","DeviceFleetName":"f","DeviceName":"d","AgentMetrics":[{metrics}]}}"#);
        let v = validate(body.as_bytes()).unwrap_err();
        assert_eq!(v.list.len(), MAX_REPORTED);
        assert_eq!(v.total, 500);
        assert!(v.to_string().ends_with("; and 400 more"));
    }
}
