//! The `custom` profile: a device wire the user writes, for a JSON API
//! fleetstorm has no profile for. A fleet's `[fleets.custom]` table gives
//! the method, a path template, header templates, a body template and the
//! statuses that mean success:
//!
//! ```toml
//! [fleets.custom]
//! method = "PUT"
//! path = "/v2/assets/${device.name}/position"
//! headers = { x-api-key = "${env:TRACKER_KEY}" }
//! body = '{"id": ${device.name}, "seq": ${device.sequence}, "battery": ${metric.battery-percent}}'
//! success = [200, 201]
//! ```
//!
//! A placeholder `${...}` is one of: `device.name`, `device.index`,
//! `device.sequence` (1 for a device's first heartbeat), `device.agent_version`,
//! `fleet.name`, `now.ms`, `now.s`, `now.rfc3339`, `metric.NAME` (an agent
//! metric's walk), `model.NAME.version` (`null` where the model is not
//! deployed), `identity.COLUMN` (the device's row of the identities file),
//! `choice:a=0.9,b=0.1` (a weighted pick per heartbeat, from the device's
//! own random stream), or `env:NAME` (read once, when the scenario is;
//! its value is never shown). `$${` is a literal `${`.
//!
//! In the body a placeholder is a whole JSON value: strings come quoted
//! and escaped, numbers bare, so `{"id": ${device.name}}` and never
//! `{"id": "${device.name}"}`. That makes the template checkable when it
//! is read: rendered once with stand-in values, it must be JSON, and every
//! heartbeat's body is then JSON too (each placeholder is a value of the
//! same kind). A template that could make an invalid request (a body that
//! is not JSON, a path that is not one, a header that cannot be sent) is
//! refused with its line and column. In the path a placeholder is
//! percent-encoded as a path segment; in a header it is sent as it is.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use percent_encoding::utf8_percent_encode;
use serde::Deserialize;
use serde_json::Value;

use super::answer::{Accepted, Refused};
use super::known::Known;
use super::parts::SEGMENT;
use super::profile::ProfileName;
use crate::device::{Device, FleetGenerator, Profile};
use crate::identities::Identities;
use crate::transport::HttpRoute;

/// A fleet's `[fleets.custom]` table, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomSpec {
    /// Default `POST`.
    pub method: Option<String>,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// No body when absent.
    pub body: Option<String>,
    /// The statuses that mean success (default: any 2xx).
    pub success: Option<Vec<u16>>,
}

/// What a template may name: the fleet's metrics, models and identities,
/// and the environment.
pub struct Context<'a> {
    pub fleet: &'a str,
    pub profile: &'a Profile,
    pub identities: Option<&'a Identities>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// A template that could make an invalid request, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("custom.{place}: {message} (line {line}, column {column} of the template)")]
pub struct TemplateError {
    /// `method`, `path`, `headers.NAME`, `body` or `success`.
    pub place: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Clone)]
enum Piece {
    Text(String),
    /// Text from the environment (`${env:NAME}`): sent, never shown.
    Secret {
        name: String,
        value: String,
    },
    Field(Field),
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    DeviceName,
    DeviceIndex,
    Sequence,
    AgentVersion,
    FleetName,
    NowMs,
    NowS,
    NowRfc3339,
    Metric(usize),
    ModelVersion(u16),
    Identity(usize),
    /// Names and cumulative weights.
    Choice(Vec<(String, f64)>),
}

/// A parsed template: its pieces, and where each began in the source.
#[derive(Clone)]
struct Template {
    pieces: Vec<(usize, Piece)>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self
            .pieces
            .iter()
            .map(|(_, p)| match p {
                Piece::Text(t) => t.clone(),
                Piece::Secret { .. } => "${env}".into(),
                Piece::Field(field) => format!("${{{field:?}}}"),
            })
            .collect();
        f.write_str(&shown.concat())
    }
}

/// A value a placeholder renders.
enum Rendered<'a> {
    Str(Cow<'a, str>),
    Int(u64),
    Float(f64),
    Null,
}

/// Where a template is rendered.
#[derive(Clone, Copy, PartialEq)]
enum Where {
    Json,
    Path,
    Header,
}

/// A fleet's custom wire, compiled.
#[derive(Debug, Clone)]
pub struct CustomWire {
    method: Method,
    path: Template,
    headers: Vec<(HeaderName, Template)>,
    body: Option<Template>,
    /// Sorted; empty: any 2xx.
    success: Vec<u16>,
    /// What serve answers a good request with: the first success status
    /// written, or 200.
    answer: StatusCode,
    /// The body's top-level keys whose values are the device's name and
    /// agent version, for serve's registry.
    name_key: Option<String>,
    version_key: Option<String>,
    fleet: String,
}

/// `shown` with every value of `secrets` (as read, or as escaped in a JSON
/// string) replaced by its `${env:NAME}` placeholder: a request shown to a
/// person (`sample`) never carries a value read from the environment.
pub fn mask_secrets(shown: &[u8], secrets: &[(&str, &str)]) -> Vec<u8> {
    let mut masked = shown.to_vec();
    for (name, value) in secrets {
        let placeholder = format!("${{env:{name}}}");
        let escaped = serde_json::to_string(value).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        for form in [*value, escaped] {
            masked = replace_all(&masked, form.as_bytes(), placeholder.as_bytes());
        }
    }
    masked
}

/// `bytes` with every `from` replaced by `to` (`from` not empty).
fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Line and column (1-based, in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Template {
    fn parse(source: &str, cx: &Context<'_>, place: &str) -> Result<Template, TemplateError> {
        let fail = |at: usize, message: String| {
            let (line, column) = line_column(source, at);
            TemplateError { place: place.to_string(), line, column, message }
        };
        let mut pieces = Vec::new();
        // Literal text so far, and where it began.
        let mut text = String::new();
        let mut text_at = 0;
        let mut rest = 0;
        while rest < source.len() {
            let tail = &source[rest..];
            let (literal, taken) = if tail.starts_with("$${") {
                ("${", 3)
            } else if tail.starts_with("${") {
                let close = tail.find('}').ok_or_else(|| fail(rest, "`${` is not closed by `}`".into()))?;
                if !text.is_empty() {
                    pieces.push((text_at, Piece::Text(std::mem::take(&mut text))));
                }
                pieces.push((rest, field(&tail[2..close], cx).map_err(|m| fail(rest, m))?));
                rest += close + 1;
                continue;
            } else {
                let n = tail.chars().next().map_or(1, char::len_utf8);
                (&tail[..n], n)
            };
            if text.is_empty() {
                text_at = rest;
            }
            text.push_str(literal);
            rest += taken;
        }
        if !text.is_empty() {
            pieces.push((text_at, Piece::Text(text)));
        }
        Ok(Template { pieces })
    }

    /// Renders with the device's values into `out`; returns, per piece,
    /// where it began in `out` (for mapping an error back to the source).
    fn render(
        &self,
        into: Where,
        values: &mut dyn FnMut(&Field) -> Rendered<'static>,
        out: &mut Vec<u8>,
    ) -> Vec<usize> {
        let mut starts = Vec::with_capacity(self.pieces.len());
        for (_, piece) in &self.pieces {
            starts.push(out.len());
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Secret { value, .. } => write_value(&Rendered::Str(Cow::Borrowed(value)), into, out),
                Piece::Field(f) => write_value(&values(f), into, out),
            }
        }
        starts
    }

    /// The same JSON template without the whitespace between its tokens
    /// (a body goes compact: one line, as `sample` prints it). Only
    /// literal text holds strings' insides; a placeholder is a whole value.
    fn compact(&self) -> Template {
        let (mut in_string, mut escaped) = (false, false);
        let pieces = self
            .pieces
            .iter()
            .filter_map(|(at, piece)| {
                let Piece::Text(t) = piece else { return Some((*at, piece.clone())) };
                let mut kept = String::with_capacity(t.len());
                for c in t.chars() {
                    if in_string {
                        match (escaped, c) {
                            (true, _) => escaped = false,
                            (false, '\\') => escaped = true,
                            (false, '"') => in_string = false,
                            _ => {}
                        }
                    } else if c == '"' {
                        in_string = true;
                    } else if c.is_whitespace() {
                        continue;
                    }
                    kept.push(c);
                }
                (!kept.is_empty()).then_some((*at, Piece::Text(kept)))
            })
            .collect();
        Template { pieces }
    }

    /// The source offset of byte `at` of a rendering whose pieces began
    /// at `starts`.
    fn source_offset(&self, starts: &[usize], at: usize) -> usize {
        let k = starts.iter().rposition(|&s| s <= at).unwrap_or(0);
        let (source_at, piece) = &self.pieces[k];
        match piece {
            Piece::Text(t) => source_at + (at - starts[k]).min(t.len()),
            _ => *source_at,
        }
    }
}

fn write_value(v: &Rendered<'_>, into: Where, out: &mut Vec<u8>) {
    match (v, into) {
        (Rendered::Str(s), Where::Json) => {
            // Cannot fail writing a str into a Vec.
            let _ = serde_json::to_writer(&mut *out, s.as_ref());
        }
        (Rendered::Str(s), Where::Path) => out.extend(utf8_percent_encode(s, SEGMENT).flat_map(str::bytes)),
        (Rendered::Str(s), Where::Header) => out.extend_from_slice(s.as_bytes()),
        (Rendered::Int(n), _) => crate::device::generate::write_integer(*n, out),
        (Rendered::Float(x), _) => {
            let _ = serde_json::to_writer(&mut *out, x);
        }
        (Rendered::Null, _) => out.extend_from_slice(b"null"),
    }
}

/// The piece a placeholder's inside names.
fn field(inner: &str, cx: &Context<'_>) -> Result<Piece, String> {
    let known = "device.name, device.index, device.sequence, device.agent_version, fleet.name, now.ms, now.s, \
                 now.rfc3339, metric.NAME, model.NAME.version, identity.COLUMN, choice:a=0.9,b=0.1, env:NAME";
    let f = match inner {
        "device.name" => Field::DeviceName,
        "device.index" => Field::DeviceIndex,
        "device.sequence" => Field::Sequence,
        "device.agent_version" => Field::AgentVersion,
        "fleet.name" => Field::FleetName,
        "now.ms" => Field::NowMs,
        "now.s" => Field::NowS,
        "now.rfc3339" => Field::NowRfc3339,
        _ => {
            if let Some(name) = inner.strip_prefix("env:") {
                return (cx.env)(name)
                    .map(|value| Piece::Secret { name: name.to_string(), value })
                    .ok_or_else(|| format!("${{env:{name}}}: the environment variable {name} is not set"));
            }
            if let Some(name) = inner.strip_prefix("metric.") {
                let i = cx.profile.agent_metrics.iter().position(|m| m.name == name).ok_or_else(|| {
                    let names: Vec<&str> = cx.profile.agent_metrics.iter().map(|m| m.name.as_str()).collect();
                    format!(
                        "${{{inner}}}: fleet {:?} has no agent metric {name:?} (its metrics: {})",
                        cx.fleet,
                        names.join(", ")
                    )
                })?;
                Field::Metric(i)
            } else if let Some(model) = inner.strip_prefix("model.").and_then(|m| m.strip_suffix(".version")) {
                let i = cx
                    .profile
                    .models
                    .iter()
                    .position(|m| m.name == model)
                    .ok_or_else(|| format!("${{{inner}}}: fleet {:?} runs no model {model:?}", cx.fleet))?;
                Field::ModelVersion(i as u16)
            } else if let Some(column) = inner.strip_prefix("identity.") {
                let ids = cx.identities.ok_or_else(|| {
                    format!("${{{inner}}}: fleet {:?} has no identities file to read {column:?} from", cx.fleet)
                })?;
                Field::Identity(ids.column(column).ok_or_else(|| {
                    format!(
                        "${{{inner}}}: the identities have no column {column:?} (their columns: {})",
                        ids.columns().join(", ")
                    )
                })?)
            } else if let Some(list) = inner.strip_prefix("choice:") {
                Field::Choice(choices(list).map_err(|e| format!("${{{inner}}}: {e}"))?)
            } else {
                return Err(format!("${{{inner}}} is not a placeholder (placeholders: {known})"));
            }
        }
    };
    Ok(Piece::Field(f))
}

/// `a=0.9,b=0.1` as names and cumulative weights.
fn choices(list: &str) -> Result<Vec<(String, f64)>, String> {
    let mut out = Vec::new();
    let mut total = 0.0;
    for entry in list.split(',') {
        let (name, weight) = entry.split_once('=').ok_or("write choice:NAME=WEIGHT,NAME=WEIGHT")?;
        let weight: f64 = weight.trim().parse().map_err(|_| format!("{weight:?} is not a weight"))?;
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(format!("the weight of {name:?} must be a number of at least 0"));
        }
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
            return Err(format!("{name:?}: a choice is printable ASCII without spaces or quotes"));
        }
        total += weight;
        out.push((name.to_string(), total));
    }
    if total <= 0.0 {
        return Err("every weight is 0".into());
    }
    Ok(out.into_iter().map(|(n, c)| (n, c / total)).collect())
}

/// Stand-in values for checking a template when it is read: each of the
/// kind the real one has.
fn sample(f: &Field) -> Rendered<'static> {
    match f {
        Field::DeviceName | Field::AgentVersion | Field::FleetName | Field::Identity(_) => {
            Rendered::Str("name-1".into())
        }
        Field::NowRfc3339 => Rendered::Str("2026-01-01T00:00:00.000Z".into()),
        Field::Choice(c) => Rendered::Str(c[0].0.clone().into()),
        Field::DeviceIndex | Field::Sequence | Field::NowMs | Field::NowS => Rendered::Int(1),
        Field::Metric(_) => Rendered::Float(1.5),
        Field::ModelVersion(_) => Rendered::Null,
    }
}

impl CustomWire {
    /// Every `${env:NAME}` the templates read, with its value: what
    /// [`mask_secrets`] hides wherever a request is shown.
    pub fn secrets(&self) -> Vec<(&str, &str)> {
        let templates = std::iter::once(&self.path).chain(self.headers.iter().map(|(_, t)| t)).chain(&self.body);
        let pieces = templates.flat_map(|t| &t.pieces);
        pieces
            .filter_map(|(_, p)| match p {
                Piece::Secret { name, value } if !value.is_empty() => Some((name.as_str(), value.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Compiles a fleet's spec, refusing a template that could make an
    /// invalid request.
    pub fn compile(spec: &CustomSpec, cx: &Context<'_>) -> Result<CustomWire, TemplateError> {
        let whole = |place: &str, message: String| TemplateError { place: place.into(), line: 1, column: 1, message };
        let method = spec.method.as_deref().unwrap_or("POST");
        let method = Method::from_bytes(method.as_bytes())
            .ok()
            .filter(|m| m.as_str().bytes().all(|b| b.is_ascii_uppercase()))
            .ok_or_else(|| whole("method", format!("{method:?} is not an HTTP method such as \"POST\" or \"PUT\"")))?;
        let path = Template::parse(&spec.path, cx, "path")?;
        let mut rendered = Vec::new();
        let starts = path.render(Where::Path, &mut sample, &mut rendered);
        let text = String::from_utf8_lossy(&rendered).into_owned();
        if !text.starts_with('/') {
            return Err(whole("path", "a path starts with `/`".into()));
        }
        if let Some(bad) = text.bytes().position(|b| !b.is_ascii_graphic() || b == b'#') {
            let (line, column) = line_column(&spec.path, path.source_offset(&starts, bad));
            return Err(TemplateError {
                place: "path".into(),
                line,
                column,
                message: format!(
                    "{:?} cannot be in a request path (escape it, e.g. %20 for a space)",
                    text.as_bytes()[bad] as char
                ),
            });
        }
        if http::uri::PathAndQuery::try_from(text.as_str()).is_err() {
            return Err(whole("path", format!("{text:?} is not a request path")));
        }
        let mut headers = Vec::new();
        for (name, value) in &spec.headers {
            let place = format!("headers.{name}");
            let header = HeaderName::try_from(name.as_str())
                .map_err(|_| whole(&place, format!("{name:?} is not a header name")))?;
            if matches!(header.as_str(), "content-length" | "host" | "transfer-encoding" | "connection") {
                return Err(whole(&place, format!("{name} is fleetstorm's to set")));
            }
            let template = Template::parse(value, cx, &place)?;
            let mut rendered = Vec::new();
            template.render(Where::Header, &mut sample, &mut rendered);
            if HeaderValue::from_bytes(&rendered).is_err() {
                return Err(whole(&place, "the value cannot be sent in a header (control characters)".into()));
            }
            headers.push((header, template));
        }
        let (mut name_key, mut version_key) = (None, None);
        let body = match &spec.body {
            None => None,
            Some(source) => {
                let template = Template::parse(source, cx, "body")?;
                let mut rendered = Vec::new();
                let starts = template.render(Where::Json, &mut sample, &mut rendered);
                match serde_json::from_slice::<Value>(&rendered) {
                    Ok(_) => {}
                    Err(e) => {
                        let at = offset_of(&rendered, e.line(), e.column());
                        let (line, column) = line_column(source, template.source_offset(&starts, at));
                        let reason = e.to_string();
                        let reason = reason.split(" at line ").next().unwrap_or_default();
                        return Err(TemplateError {
                            place: "body".into(),
                            line,
                            column,
                            message: format!(
                                "the body would not be JSON: {reason} (a placeholder is a whole JSON value: \
                                 write {{\"id\": ${{device.name}}}}, not {{\"id\": \"${{device.name}}\"}})"
                            ),
                        });
                    }
                }
                (name_key, version_key) = registry_keys(&template);
                Some(template.compact())
            }
        };
        let success = spec.success.clone().unwrap_or_default();
        if let Some(bad) = success.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(whole("success", format!("{bad} is not an HTTP status")));
        }
        let answer = success.first().and_then(|s| StatusCode::from_u16(*s).ok()).unwrap_or(StatusCode::OK);
        let mut success = success;
        success.sort_unstable();
        success.dedup();
        Ok(CustomWire {
            method,
            path,
            headers,
            body,
            success,
            answer,
            name_key,
            version_key,
            fleet: cx.fleet.to_string(),
        })
    }

    /// Whether `status` means success.
    #[inline]
    pub fn accepts(&self, status: u16) -> bool {
        if self.success.is_empty() { (200..300).contains(&status) } else { self.success.binary_search(&status).is_ok() }
    }

    /// The request of `device`'s next heartbeat, its body written to `body`.
    pub(crate) fn request(
        &self,
        generator: &FleetGenerator,
        device: &mut Device,
        now_ms: u64,
        body: &mut Vec<u8>,
    ) -> HttpRoute {
        let ts = device.advance_state(generator, now_ms);
        let ids = generator.names.identities().cloned();
        let index = device.index();
        let mut values = |f: &Field| -> Rendered<'static> {
            match f {
                Field::DeviceName => Rendered::Str(super::parts::device_name(generator, index).into()),
                Field::DeviceIndex => Rendered::Int(index),
                Field::Sequence => Rendered::Int(u64::from(device.sequence())),
                Field::AgentVersion => {
                    Rendered::Str(generator.profile.agent_versions.name(device.agent_version()).to_string().into())
                }
                Field::FleetName => Rendered::Str(generator.profile.fleet_name.clone().into()),
                Field::NowMs => Rendered::Int(ts),
                Field::NowS => Rendered::Int(ts / 1000),
                Field::NowRfc3339 => Rendered::Str(
                    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ts))
                        .to_string()
                        .into(),
                ),
                Field::Metric(i) => Rendered::Float(device.agent_metric(*i)),
                Field::ModelVersion(m) => match device.model_version(*m) {
                    Some(v) => {
                        Rendered::Str(generator.profile.models[usize::from(*m)].versions.name(v).to_string().into())
                    }
                    None => Rendered::Null,
                },
                Field::Identity(c) => match &ids {
                    Some(ids) => Rendered::Str(ids.get(index as usize, *c).to_string().into()),
                    None => Rendered::Null,
                },
                Field::Choice(c) => {
                    let u = device.draw();
                    let k = c.iter().position(|(_, cum)| u < *cum).unwrap_or(c.len() - 1);
                    Rendered::Str(c[k].0.clone().into())
                }
            }
        };
        if let Some(t) = &self.body {
            t.render(Where::Json, &mut values, body);
        }
        let mut path = Vec::new();
        self.path.render(Where::Path, &mut values, &mut path);
        let headers = self
            .headers
            .iter()
            .map(|(name, t)| {
                let mut value = Vec::new();
                t.render(Where::Header, &mut values, &mut value);
                (name.clone(), HeaderValue::from_bytes(&value).unwrap_or_else(|_| HeaderValue::from_static("")))
            })
            .collect();
        let mut route = super::parts::http_route(String::from_utf8_lossy(&path).into_owned(), headers);
        route.method = self.method.clone();
        route
    }

    /// Whether a request `serve` got is one of this wire's: its method,
    /// and its path as the template's literal parts and placeholders
    /// (each one path segment, or more) make it.
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        *method == self.method && path_captures(&self.path, path).is_some()
    }

    /// `serve`'s answer to a request of this wire's on `path`: each header
    /// as its template makes it for the device the path names (its
    /// `${device.name}`), with that device's identities row from `known`
    /// (a header whose template changes from one heartbeat to the next
    /// need only be there), and its body JSON (an object with the
    /// template's keys when the template is one).
    pub fn check(
        &self,
        known: &Known,
        path: &str,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Accepted, Refused> {
        let unauthorized = |m: String| Refused::text(StatusCode::UNAUTHORIZED, &m);
        let captures = path_captures(&self.path, path).unwrap_or_default();
        let device = captures
            .iter()
            .find(|(f, _)| **f == Field::DeviceName)
            .map(|(_, v)| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned());
        let row = device.as_deref().and_then(|d| known.find(ProfileName::Custom, d));
        if let Some(d) = &device
            && known.has_identities(ProfileName::Custom)
            && row.is_none()
        {
            return Err(unauthorized(format!("no device {d:?}")));
        }
        for (name, t) in &self.headers {
            let Some(given) = headers.get(name) else {
                return Err(unauthorized(format!("{name} is missing")));
            };
            // The value a device always sends (its name, fleet, identity
            // fields, the environment's), rendered for this device.
            let per_device = t.pieces.iter().all(|(_, p)| match p {
                Piece::Field(Field::DeviceName) => device.is_some(),
                Piece::Field(Field::Identity(_)) => row.is_some(),
                Piece::Field(Field::FleetName) | Piece::Text(_) | Piece::Secret { .. } => true,
                Piece::Field(_) => false,
            });
            if per_device {
                let mut values = |f: &Field| match (f, &row) {
                    (Field::DeviceName, _) => Rendered::Str(device.clone().unwrap_or_default().into()),
                    (Field::FleetName, _) => Rendered::Str(self.fleet.clone().into()),
                    (Field::Identity(c), Some(found)) => Rendered::Str(found.get(*c).to_string().into()),
                    (other, _) => sample(other),
                };
                let mut expected = Vec::new();
                t.render(Where::Header, &mut values, &mut expected);
                if given.as_bytes() != expected.as_slice() {
                    return Err(unauthorized(format!("{name} is wrong")));
                }
            }
        }
        let Some(template) = &self.body else {
            return Ok(Accepted::from_state("-".into(), &serde_json::Map::new(), self.answer));
        };
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| Refused::text(StatusCode::BAD_REQUEST, &format!("the body is not JSON: {e}")))?;
        let mut rendered = Vec::new();
        template.render(Where::Json, &mut sample, &mut rendered);
        if let (Ok(Value::Object(expected)), Value::Object(got)) = (serde_json::from_slice::<Value>(&rendered), &value)
            && let Some(missing) = expected.keys().find(|k| !got.contains_key(*k))
        {
            return Err(Refused::text(StatusCode::BAD_REQUEST, &format!("the body has no {missing:?}")));
        }
        let text = |key: &Option<String>| {
            key.as_ref().and_then(|k| value.get(k)).and_then(Value::as_str).unwrap_or("-").to_string()
        };
        let mut accepted = Accepted::from_state(text(&self.name_key), &serde_json::Map::new(), self.answer);
        accepted.fleet = self.fleet.clone();
        accepted.agent_version = text(&self.version_key);
        Ok(accepted)
    }
}

/// The body's top-level keys holding `${device.name}` and
/// `${device.agent_version}`, if it is an object that has them.
fn registry_keys(body: &Template) -> (Option<String>, Option<String>) {
    let mut marked = Vec::new();
    let mut values = |f: &Field| match f {
        Field::DeviceName => Rendered::Str("\u{1}name".into()),
        Field::AgentVersion => Rendered::Str("\u{1}version".into()),
        other => sample(other),
    };
    body.render(Where::Json, &mut values, &mut marked);
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&marked) else { return (None, None) };
    let key = |mark: &str| object.iter().find(|(_, v)| v.as_str() == Some(mark)).map(|(k, _)| k.clone());
    (key("\u{1}name"), key("\u{1}version"))
}

/// Byte offset of a serde_json error's line and column (1-based) in `text`.
fn offset_of(text: &[u8], line: usize, column: usize) -> usize {
    let mut at = 0;
    for _ in 1..line {
        match text[at..].iter().position(|&b| b == b'\n') {
            Some(n) => at += n + 1,
            None => break,
        }
    }
    (at + column.saturating_sub(1)).min(text.len().saturating_sub(1))
}

/// Whether `path` is one the template makes (literal text as it is, each
/// placeholder at least one character of no `/`), and what each
/// placeholder matched.
fn path_captures<'t, 'p>(template: &'t Template, path: &'p str) -> Option<Vec<(&'t Field, &'p str)>> {
    fn go<'t, 'p>(pieces: &'t [(usize, Piece)], rest: &'p str, got: &mut Vec<(&'t Field, &'p str)>) -> bool {
        match pieces.split_first() {
            None => rest.is_empty(),
            Some(((_, Piece::Text(t) | Piece::Secret { value: t, .. }), more)) => {
                rest.strip_prefix(t.as_str()).is_some_and(|r| go(more, r, got))
            }
            Some(((_, Piece::Field(f)), more)) => {
                let segment = rest.find(['/', '?']).unwrap_or(rest.len());
                (1..=segment).any(|n| {
                    got.push((f, &rest[..n]));
                    let matched = go(more, &rest[n..], got);
                    if !matched {
                        got.pop();
                    }
                    matched
                })
            }
        }
    }
    let mut got = Vec::new();
    go(&template.pieces, path, &mut got).then_some(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        let mut p = crate::device::plain_generator().profile;
        p.fleet_name = "trackers".into();
        p
    }

    fn compile(spec: &CustomSpec) -> Result<CustomWire, TemplateError> {
        let profile = profile();
        let env = |name: &str| (name == "TRACKER_KEY").then(|| "k3y-from-env".to_string());
        CustomWire::compile(spec, &Context { fleet: "trackers", profile: &profile, identities: None, env: &env })
    }

    fn spec(path: &str, body: &str) -> CustomSpec {
        CustomSpec {
            method: Some("PUT".into()),
            path: path.into(),
            headers: [("x-api-key".to_string(), "${env:TRACKER_KEY}".to_string())].into(),
            body: Some(body.into()),
            success: Some(vec![201, 200]),
        }
    }

    const BODY: &str = "{\n  \"note\": \"two  spaces, a \\\" quote\",\n  \"id\": ${device.name},\n  \"seq\": ${device.sequence},\n  \"at\": ${now.rfc3339},\n  \
                        \"cpu\": ${metric.cpu-utilization},\n  \"mode\": ${choice:gps=0.8,wifi=0.2},\n  \"fw\": ${device.agent_version}\n}";

    #[test]
    fn a_custom_wire_renders_each_heartbeat_from_the_device_s_state() {
        let wire = compile(&spec("/v2/assets/${device.name}/position", BODY)).unwrap();
        let mut generator = crate::device::plain_generator();
        generator.profile = profile();
        let mut device = generator.device(3);
        for seq in 1..=3u64 {
            let mut body = Vec::new();
            let a = wire.request(&generator, &mut device, 1_700_000_000_123, &mut body);
            assert_eq!((a.method.as_str(), a.target.as_str()), ("PUT", "/v2/assets/d-3/position"));
            assert_eq!(a.headers[0].1, "k3y-from-env");
            assert!(!body.contains(&b'\n') && !body.starts_with(b" "), "sent compact");
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!((v["id"].as_str(), v["seq"].as_u64(), v["fw"].as_str()), (Some("d-3"), Some(seq), Some("1.0")));
            assert_eq!(v["at"], "2023-11-14T22:13:20.123Z");
            assert_eq!(v["note"], "two  spaces, a \" quote", "a string's insides are kept");
            assert!(v["cpu"].is_f64() && matches!(v["mode"].as_str(), Some("gps" | "wifi")), "{v}");
            // serve takes what it sends.
            assert!(wire.matches(&Method::PUT, a.target.path()));
            let mut headers = http::HeaderMap::new();
            headers.insert("x-api-key", a.headers[0].1.clone());
            let known = Known::default();
            let path = a.target.path();
            let ok = wire.check(&known, path, &headers, &body).unwrap();
            assert_eq!((ok.status, ok.device.as_str(), ok.fleet.as_str()), (StatusCode::CREATED, "d-3", "trackers"));
            assert!(wire.check(&known, path, &http::HeaderMap::new(), &body).unwrap_err().unauthorized());
            headers.insert("x-api-key", HeaderValue::from_static("another key"));
            assert!(wire.check(&known, path, &headers, &body).unwrap_err().unauthorized(), "the env's value, exactly");
        }
        assert!(!wire.matches(&Method::POST, "/v2/assets/d-3/position"));
        assert!(
            !wire.matches(&Method::PUT, "/v2/assets//position")
                && !wire.matches(&Method::PUT, "/v2/assets/a/b/position")
        );
        assert!(wire.accepts(201) && wire.accepts(200) && !wire.accepts(204));
        assert!(!format!("{wire:?}").contains("k3y-from-env"), "a secret in {wire:?}");
    }

    #[test]
    fn a_template_that_could_make_an_invalid_request_is_refused_with_its_line_and_column() {
        let cases: [(CustomSpec, &str, usize, usize, &str); 7] = [
            (spec("/a", "{\n  \"id\": \"${device.name}\"\n}"), "body", 2, 10, "the body would not be JSON"),
            (spec("/a", "{\"id\": ${device.nmae}}"), "body", 1, 8, "${device.nmae} is not a placeholder"),
            (spec("/a", "{\"v\": ${metric.nope}}"), "body", 1, 7, "has no agent metric \"nope\""),
            (spec("/a", "{\"v\": ${device.name"), "body", 1, 7, "is not closed"),
            (spec("/a b/${device.name}", "{}"), "path", 1, 3, "cannot be in a request path"),
            (spec("/a", "{\"k\": ${env:MISSING}}"), "body", 1, 7, "MISSING is not set"),
            (CustomSpec { success: Some(vec![700]), ..spec("/a", "{}") }, "success", 1, 1, "700 is not an HTTP status"),
        ];
        for (spec, place, line, column, message) in cases {
            let e = compile(&spec).unwrap_err();
            assert_eq!((e.place.as_str(), e.line, e.column), (place, line, column), "{e}");
            assert!(e.message.contains(message), "{e}");
        }
        let mut headers = spec("/a", "{}");
        headers.headers.insert("content-length".into(), "3".into());
        assert!(compile(&headers).unwrap_err().message.contains("fleetstorm's to set"));
        assert!(compile(&CustomSpec { method: Some("post me".into()), ..spec("/a", "{}") }).is_err());
    }
}
