//! The request validator: checks the raw bytes of a `SendHeartbeat` body
//! against every rule of the contract and reports *every* violation with its
//! JSON path (`Models[1].ModelMetrics[0].MetricName: length 3, minimum 4`).
//!
//! # How it works
//!
//! A single-pass, schema-directed scanner (`Scanner`) walks the bytes once.
//! It knows at each point which member it is in (`Kind`), checks strings
//! where they lie in the input (unescaping into a reused buffer only when a
//! string has escapes), checks number syntax without converting numbers
//! (except the rare literal whose exponent or length could overflow an
//! `f64`), and skips anything outside the schema iteratively. Paths are only
//! rendered into strings when a violation is reported, so a valid body costs
//! no allocation at all.
//!
//! Why not serde_json: skipping a 1 KB heartbeat with
//! `serde_json::from_slice::<IgnoredAny>` alone takes about 1.3 µs here,
//! above the backend's budget of 1 µs for the whole check. The scanner's
//! grammar is tested against serde_json's on arbitrary input (see the
//! integration tests): everything it accepts, serde_json parses into the
//! wire types; everything serde_json rejects as JSON, it rejects.
//!
//! # Policy
//!
//! - **Not JSON** (syntax error, invalid UTF-8, lone surrogate escapes,
//!   trailing bytes, nesting deeper than [`MAX_DEPTH`]): one violation at the
//!   body level naming the line and column. Violations found before the
//!   syntax error are kept.
//! - **Wrong types** (`"Value": "3"`, a body that is an array): a violation
//!   at that path, `expected a number, found string`; the value is skipped.
//! - **Unknown members** are rejected, at their own path. The reference
//!   backend is strict on purpose: a misspelt member (`Devicename`) is a bug
//!   in the sender that a lenient server would hide.
//! - **Duplicate members** are rejected.
//! - **`null`** for an optional member counts as absent (as AWS JSON
//!   protocols treat it); for a required member it is a violation.
//! - **Numbers** must be finite doubles: a literal such as `1e999` is a
//!   violation at its path (`number out of range`).
//! - At most [`MAX_REPORTED`] violations are kept; [`Violations::total`]
//!   counts them all, so a huge hostile body cannot make a huge error list.
//!
//! The validator never panics, whatever the input: the property tests feed
//! it arbitrary bytes and arbitrary JSON, and a fuzz target does the same.

use std::fmt;

use super::rules::{self, StrFault, StrRule};

/// How many violations a [`Violations`] keeps; the rest are only counted.
pub const MAX_REPORTED: usize = 100;

/// How deeply arrays and objects may nest, anywhere in the body.
pub const MAX_DEPTH: usize = 128;

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
    /// The body is not a JSON document: what was wrong, and where.
    NotJson {
        what: SyntaxError,
        line: usize,
        column: usize,
    },
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    OutOfRange,
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
            Reason::NotJson { what, line, column } => {
                write!(f, "not valid JSON: {what} at line {line} column {column}")
            }
            Reason::WrongType { expected, found } => write!(f, "expected {expected}, found {found}"),
            Reason::OutOfRange => f.write_str("number out of range: not a finite double"),
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

/// The identifying members of a valid body, borrowed from it where they
/// have no escapes. The reference backend's registry keys on these.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary<'a> {
    pub device_fleet_name: std::borrow::Cow<'a, str>,
    pub device_name: std::borrow::Cow<'a, str>,
    pub agent_version: std::borrow::Cow<'a, str>,
    /// How many models the body lists.
    pub models: usize,
    /// A hash of the models' names and versions, in order: equal model sets
    /// hash equal, so a registry can intern them.
    pub models_hash: u64,
}

/// Checks one request body. `Ok` means the body meets every rule.
pub fn validate(body: &[u8]) -> Result<(), Violations> {
    scan(body, false).map(|_| ())
}

/// Checks one request body and, if it is valid, returns its identifying
/// members.
pub fn inspect(body: &[u8]) -> Result<Summary<'_>, Violations> {
    scan(body, true)
}

fn scan(body: &[u8], summarize: bool) -> Result<Summary<'_>, Violations> {
    let mut scanner = Scanner {
        bytes: body,
        at: 0,
        ctx: Ctx::default(),
        scratch: String::new(),
        summary: Summary::default(),
        summarize,
    };
    let outcome = scanner.document();
    let Scanner { mut ctx, summary, .. } = scanner;
    if let Err(Syntax { at, what }) = outcome {
        let (line, column) = line_column(body, at);
        ctx.path.len = 0;
        ctx.report(Reason::NotJson { what, line, column });
    }
    if ctx.total == 0 { Ok(summary) } else { Err(Violations { list: ctx.found, total: ctx.total }) }
}

/// 1-based line and column (in bytes) of offset `at`.
fn line_column(body: &[u8], at: usize) -> (usize, usize) {
    let before = &body[..at.min(body.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
    (line, column)
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
    /// Where the summary keeps this member's string, if anywhere.
    capture: Capture,
}

/// The members that feed [`Summary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
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

// ---------------------------------------------------------------- scanner

/// What made a body not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyntaxError {
    EofString,
    ControlCharacter,
    InvalidUtf8,
    InvalidEscape,
    InvalidNumber,
    InvalidSurrogatePair,
    LoneLeadingSurrogate,
    LoneTrailingSurrogate,
    EofList,
    EofValue,
    EofObject,
    ExpectedCommaOrBracket,
    ExpectedCommaOrBrace,
    ExpectedCommaOrClose,
    ExpectedMemberName,
    ExpectedValue,
    TooDeep,
    TrailingCharacters,
    ExpectedColon,
}

impl SyntaxError {
    fn message(self) -> &'static str {
        match self {
            SyntaxError::EofString => "EOF while parsing a string",
            SyntaxError::ControlCharacter => "control character in a string",
            SyntaxError::InvalidUtf8 => "invalid UTF-8 in a string",
            SyntaxError::InvalidEscape => "invalid escape",
            SyntaxError::InvalidNumber => "invalid number",
            SyntaxError::InvalidSurrogatePair => "invalid surrogate pair in hex escape",
            SyntaxError::LoneLeadingSurrogate => "lone leading surrogate in hex escape",
            SyntaxError::LoneTrailingSurrogate => "lone trailing surrogate in hex escape",
            SyntaxError::EofList => "EOF while parsing a list",
            SyntaxError::EofValue => "EOF while parsing a value",
            SyntaxError::EofObject => "EOF while parsing an object",
            SyntaxError::ExpectedCommaOrBracket => "expected `,` or `]`",
            SyntaxError::ExpectedCommaOrBrace => "expected `,` or `}`",
            SyntaxError::ExpectedCommaOrClose => "expected `,` or a closing bracket",
            SyntaxError::ExpectedMemberName => "expected a member name",
            SyntaxError::ExpectedValue => "expected a value",
            SyntaxError::TooDeep => "nesting too deep",
            SyntaxError::TrailingCharacters => "trailing characters",
            SyntaxError::ExpectedColon => "expected `:`",
        }
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// A syntax error: what was wrong, at which byte offset.
struct Syntax {
    at: usize,
    what: SyntaxError,
}

type Scan<T> = Result<T, Syntax>;

/// A scanned string: in the input (no escapes) or in the scanner's buffer.
#[derive(Clone, Copy)]
enum StrAt<'a> {
    Input(&'a str),
    Scratch,
}

/// Whether a value was `null`, as far as callers care.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scanned {
    Null,
    Other,
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
    ctx: Ctx,
    /// Unescaped text of the last string that had escapes.
    scratch: String,
    summary: Summary<'a>,
    /// Whether to fill `summary` (`validate` does not need it).
    summarize: bool,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Flags (high bit of each byte) the bytes of `w` (little-endian) that end
/// the fast string scan: a quote, a backslash, a control character or a
/// non-ASCII byte. The lowest flag is exact (borrows only run upwards), so
/// `trailing_zeros() / 8` is the offset of the first such byte.
#[inline]
fn special_bytes(w: u64) -> u64 {
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let quote = zero(w ^ (ONES * u64::from(b'"')));
    let backslash = zero(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    quote | backslash | control | (w & HIGHS)
}

/// How many of the 8 bytes of `w` (little-endian) are ASCII digits before
/// the first that is not.
#[inline]
fn leading_digits(w: u64) -> usize {
    const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const LOW_NIBBLES: u64 = 0x0F0F_0F0F_0F0F_0F0F;
    const THREES: u64 = 0x3030_3030_3030_3030;
    // Per byte: nonzero unless the high nibble is 3 and the low nibble at
    // most 9 (adding 6 to a nibble never carries out of its byte).
    let bad = ((w & HIGH_NIBBLES) ^ THREES) | ((w & LOW_NIBBLES).wrapping_add(ONES * 6) & HIGH_NIBBLES);
    let nonzero = (((bad & !HIGHS).wrapping_add(!HIGHS)) | bad) & HIGHS;
    (nonzero.trailing_zeros() / 8) as usize
}

/// The index of the field named `key`.
#[inline]
fn lookup(fields: &[Field], key: &str) -> Option<usize> {
    fields.iter().position(|f| same_bytes(f.name.as_bytes(), key.as_bytes()))
}

/// Byte equality for short strings, eight bytes at a time and inline:
/// member names are short, and a `memcmp` call per candidate name cost
/// about a tenth of the validator's time.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut a_chunks = a.chunks_exact(8);
    let mut b_chunks = b.chunks_exact(8);
    for (x, y) in (&mut a_chunks).zip(&mut b_chunks) {
        if u64::from_ne_bytes(x.try_into().unwrap_or([0; 8])) != u64::from_ne_bytes(y.try_into().unwrap_or([0; 8])) {
            return false;
        }
    }
    a_chunks.remainder().iter().zip(b_chunks.remainder()).all(|(x, y)| x == y)
}

impl<'a> Scanner<'a> {
    fn document(&mut self) -> Scan<()> {
        self.ws();
        if let Scanned::Null = self.value(Kind::Object(Shape::Request), 0, Capture::None)? {
            self.ctx.report(Reason::WrongType { expected: "an object", found: "null" });
        }
        self.ws();
        if self.at < self.bytes.len() {
            return Err(self.error(SyntaxError::TrailingCharacters));
        }
        Ok(())
    }

    fn error(&self, what: SyntaxError) -> Syntax {
        Syntax { at: self.at, what }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: SyntaxError) -> Scan<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn mismatch(&mut self, kind: Kind, found: &'static str) {
        self.ctx.report(Reason::WrongType { expected: kind.expected(), found });
    }

    /// Scans one value at the cursor (after whitespace) against `kind`;
    /// `depth` is the number of containers around it; a string value is
    /// kept for the summary as `capture` says.
    fn value(&mut self, kind: Kind, depth: usize, capture: Capture) -> Scan<Scanned> {
        match self.peek() {
            Some(b'{') => match kind {
                Kind::Object(shape) => self.object(shape, depth + 1)?,
                _ => {
                    self.mismatch(kind, "object");
                    self.skip_value(depth)?;
                }
            },
            Some(b'[') => match kind {
                Kind::List(shape) => self.list(shape, depth + 1)?,
                _ => {
                    self.mismatch(kind, "array");
                    self.skip_value(depth)?;
                }
            },
            Some(b'"') => self.string_value(kind, capture)?,
            Some(b't') => {
                self.literal(b"true")?;
                self.mismatch(kind, "boolean");
            }
            Some(b'f') => {
                self.literal(b"false")?;
                self.mismatch(kind, "boolean");
            }
            Some(b'n') => {
                self.literal(b"null")?;
                return Ok(Scanned::Null);
            }
            Some(b'-' | b'0'..=b'9') => {
                let finite = self.number()?;
                if !matches!(kind, Kind::Number) {
                    self.mismatch(kind, "number");
                } else if !finite {
                    self.ctx.report(Reason::OutOfRange);
                }
            }
            Some(_) => return Err(self.error(SyntaxError::ExpectedValue)),
            None => return Err(self.error(SyntaxError::EofValue)),
        }
        Ok(Scanned::Other)
    }

    /// Scans a string value at the cursor and checks it against `kind`.
    #[inline]
    fn string_value(&mut self, kind: Kind, capture: Capture) -> Scan<()> {
        let s = self.string()?;
        let text = match s {
            StrAt::Input(s) => s,
            StrAt::Scratch => &self.scratch,
        };
        self.ctx.check_str(kind, text);
        if self.summarize && capture != Capture::None {
            self.capture(capture, s);
        }
        Ok(())
    }

    fn object(&mut self, shape: Shape, depth: usize) -> Scan<()> {
        if depth > MAX_DEPTH {
            return Err(self.error(SyntaxError::TooDeep));
        }
        self.at += 1;
        let fields = shape.fields();
        // Bit i set: field i was mentioned (for duplicates and missing members).
        let mut mentioned: u32 = 0;
        let mut next_expected = 0;
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
        } else {
            loop {
                self.ws();
                if self.peek() != Some(b'"') {
                    return Err(self.error(if self.at < self.bytes.len() {
                        SyntaxError::ExpectedMemberName
                    } else {
                        SyntaxError::EofObject
                    }));
                }
                // Senders usually write members in the schema's order, so the
                // field after the last one matched is tried first, straight
                // from the input; anything else takes the general path.
                let (known, unknown_name) = match self.expected_key(fields, next_expected) {
                    Some(i) => (Some(i), None),
                    None => {
                        let key = self.string()?;
                        let key_text = match key {
                            StrAt::Input(s) => s,
                            StrAt::Scratch => &self.scratch,
                        };
                        let known = lookup(fields, key_text);
                        (known, if known.is_none() { Some(key_text.to_string()) } else { None })
                    }
                };
                if let Some(i) = known {
                    next_expected = i + 1;
                }
                self.ws();
                self.expect(b':', SyntaxError::ExpectedColon)?;
                self.ws();
                match known {
                    Some(i) => {
                        let field = &fields[i];
                        self.ctx.path.push(Segment::Field(field.name));
                        if mentioned & (1 << i) != 0 {
                            self.ctx.report(Reason::Duplicate);
                            self.skip_value(depth)?;
                        } else {
                            mentioned |= 1 << i;
                            // The expected type needs no general dispatch.
                            let scanned = match (field.kind, self.peek()) {
                                (Kind::Number, Some(b'-' | b'0'..=b'9')) => {
                                    if !self.number()? {
                                        self.ctx.report(Reason::OutOfRange);
                                    }
                                    Scanned::Other
                                }
                                (Kind::Str(_), Some(b'"')) => {
                                    self.string_value(field.kind, field.capture)?;
                                    Scanned::Other
                                }
                                (kind, _) => self.value(kind, depth, field.capture)?,
                            };
                            if scanned == Scanned::Null && field.required {
                                self.ctx.report(Reason::NullRequired);
                            }
                        }
                        self.ctx.path.pop();
                    }
                    None => {
                        self.ctx.report_with(unknown_name.as_deref(), Reason::Unknown);
                        self.skip_value(depth)?;
                    }
                }
                self.ws();
                match self.peek() {
                    Some(b',') => self.at += 1,
                    Some(b'}') => {
                        self.at += 1;
                        break;
                    }
                    Some(_) => return Err(self.error(SyntaxError::ExpectedCommaOrBrace)),
                    None => return Err(self.error(SyntaxError::EofObject)),
                }
            }
        }
        for (i, field) in fields.iter().enumerate() {
            if field.required && mentioned & (1 << i) == 0 {
                self.ctx.path.push(Segment::Field(field.name));
                self.ctx.report(Reason::Missing);
                self.ctx.path.pop();
            }
        }
        Ok(())
    }

    fn list(&mut self, shape: Shape, depth: usize) -> Scan<()> {
        if depth > MAX_DEPTH {
            return Err(self.error(SyntaxError::TooDeep));
        }
        self.at += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            self.ws();
            self.ctx.path.push(Segment::Index(index));
            let element = if self.peek() == Some(b'{') {
                self.object(shape, depth + 1)?;
                Scanned::Other
            } else {
                self.value(Kind::Object(shape), depth, Capture::None)?
            };
            if let Scanned::Null = element {
                self.ctx.report(Reason::WrongType { expected: "an object", found: "null" });
            }
            self.ctx.path.pop();
            if let (Shape::Model, true) = (shape, self.summarize) {
                self.summary.models += 1;
            }
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    index += 1;
                }
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(_) => return Err(self.error(SyntaxError::ExpectedCommaOrBracket)),
                None => return Err(self.error(SyntaxError::EofList)),
            }
        }
    }

    /// If the cursor is on the quoted, unescaped name of `fields[i]`, moves
    /// past it and returns `i`.
    #[inline]
    fn expected_key(&mut self, fields: &[Field], i: usize) -> Option<usize> {
        let name = fields.get(i)?.name.as_bytes();
        let start = self.at + 1;
        let end = start + name.len();
        if self.bytes.get(end) == Some(&b'"') && same_bytes(&self.bytes[start..end], name) {
            self.at = end + 1;
            Some(i)
        } else {
            None
        }
    }

    /// Keeps the members the summary needs.
    fn capture(&mut self, capture: Capture, s: StrAt<'a>) {
        let text = || match s {
            StrAt::Input(s) => std::borrow::Cow::Borrowed(s),
            StrAt::Scratch => std::borrow::Cow::Owned(self.scratch.clone()),
        };
        match capture {
            Capture::None => {}
            Capture::DeviceName => self.summary.device_name = text(),
            Capture::DeviceFleetName => self.summary.device_fleet_name = text(),
            Capture::AgentVersion => self.summary.agent_version = text(),
            Capture::ModelName | Capture::ModelVersion => {
                let bytes = match s {
                    StrAt::Input(s) => s.as_bytes(),
                    StrAt::Scratch => self.scratch.as_bytes(),
                };
                // FNV-1a over which field it is, the text and a terminator,
                // so ("ab","c") and ("a","bc") differ.
                let mut h = self.summary.models_hash ^ (capture as u64);
                for &b in bytes.iter().chain(b"\0") {
                    h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
                self.summary.models_hash = h;
            }
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Scan<()> {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.error(SyntaxError::ExpectedValue))
        }
    }

    /// Scans a number; returns whether it is a finite double.
    fn number(&mut self) -> Scan<bool> {
        let b = self.bytes;
        let start = self.at;
        let mut i = start;
        let digits = |mut i: usize| {
            // Eight bytes at a time: timestamps have ten or more digits.
            while let Some(chunk) = b.get(i..i + 8) {
                let n = leading_digits(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])));
                i += n;
                if n < 8 {
                    return i;
                }
            }
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
            i
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i),
            _ => return Err(Syntax { at: i, what: SyntaxError::InvalidNumber }),
        }
        let integer_digits = i - start;
        if b.get(i) == Some(&b'.') {
            let first = i + 1;
            i = digits(first);
            if i == first {
                return Err(Syntax { at: i, what: SyntaxError::InvalidNumber });
            }
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = b.get(i) {
            exponent = true;
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let first = i;
            i = digits(first);
            if i == first {
                return Err(Syntax { at: i, what: SyntaxError::InvalidNumber });
            }
        }
        self.at = i;
        // Without an exponent, only a literal of more than 300 digits can
        // exceed f64::MAX (about 1.8e308); the rest need no conversion.
        if exponent || integer_digits > 300 {
            let text = std::str::from_utf8(&b[start..i]).unwrap_or("0");
            return Ok(text.parse::<f64>().is_ok_and(f64::is_finite));
        }
        Ok(true)
    }

    /// Scans a string at the cursor (which is on its opening quote).
    #[inline]
    fn string(&mut self) -> Scan<StrAt<'a>> {
        let b = self.bytes;
        let start = self.at + 1;
        let mut i = start;
        let mut ascii = true;
        loop {
            // Jump to the next byte that needs a look, eight bytes at a time.
            while let Some(chunk) = b.get(i..i + 8) {
                let special = special_bytes(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])));
                if special != 0 {
                    i += (special.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            match b.get(i) {
                Some(b'"') => {
                    self.at = i + 1;
                    let raw = &b[start..i];
                    if ascii {
                        debug_assert!(raw.is_ascii());
                        // SAFETY: every byte of `raw` was seen to be below 0x80
                        // (skipped by `special_bytes` or seen below), and ASCII is UTF-8.
                        // This skips a UTF-8 check per string, a sixth of the
                        // validator's time on typical bodies.
                        return Ok(StrAt::Input(unsafe { std::str::from_utf8_unchecked(raw) }));
                    }
                    return match std::str::from_utf8(raw) {
                        Ok(s) => Ok(StrAt::Input(s)),
                        Err(e) => Err(Syntax { at: start + e.valid_up_to(), what: SyntaxError::InvalidUtf8 }),
                    };
                }
                Some(b'\\') => return self.escaped_string(start, i),
                Some(&c) if c < 0x20 => return Err(Syntax { at: i, what: SyntaxError::ControlCharacter }),
                Some(&c) => {
                    ascii &= c < 0x80;
                    i += 1;
                }
                None => return Err(Syntax { at: i, what: SyntaxError::EofString }),
            }
        }
    }

    /// Finishes a string that has escapes, unescaping it into `scratch`.
    /// `plain_end` is where the first backslash lies.
    fn escaped_string(&mut self, start: usize, plain_end: usize) -> Scan<StrAt<'a>> {
        let b = self.bytes;
        self.scratch.clear();
        let mut run = start;
        let mut i = plain_end;
        let push_run = |scratch: &mut String, from: usize, to: usize| match std::str::from_utf8(&b[from..to]) {
            Ok(s) => {
                scratch.push_str(s);
                Ok(())
            }
            Err(e) => Err(Syntax { at: from + e.valid_up_to(), what: SyntaxError::InvalidUtf8 }),
        };
        loop {
            match b.get(i) {
                Some(b'"') => {
                    push_run(&mut self.scratch, run, i)?;
                    self.at = i + 1;
                    return Ok(StrAt::Scratch);
                }
                Some(b'\\') => {
                    push_run(&mut self.scratch, run, i)?;
                    let escape = b.get(i + 1).copied();
                    i += 2;
                    let c = match escape {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let (c, next) = self.unicode_escape(i)?;
                            i = next;
                            c
                        }
                        Some(_) => return Err(Syntax { at: i - 1, what: SyntaxError::InvalidEscape }),
                        None => return Err(Syntax { at: i - 1, what: SyntaxError::EofString }),
                    };
                    self.scratch.push(c);
                    run = i;
                }
                Some(&c) if c < 0x20 => return Err(Syntax { at: i, what: SyntaxError::ControlCharacter }),
                Some(_) => i += 1,
                None => return Err(Syntax { at: i, what: SyntaxError::EofString }),
            }
        }
    }

    /// Decodes the `XXXX` of a `\uXXXX` escape at `i` (and its low half, if
    /// it is a high surrogate); returns the character and the next offset.
    fn unicode_escape(&self, i: usize) -> Scan<(char, usize)> {
        let hex4 = |at: usize| -> Scan<u32> {
            let digits = self.bytes.get(at..at + 4).ok_or(Syntax { at, what: SyntaxError::EofString })?;
            digits.iter().try_fold(0u32, |acc, &d| {
                let v = (d as char).to_digit(16).ok_or(Syntax { at, what: SyntaxError::InvalidEscape })?;
                Ok(acc * 16 + v)
            })
        };
        let first = hex4(i)?;
        match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(i + 4..i + 6) != Some(b"\\u") {
                    return Err(Syntax { at: i, what: SyntaxError::LoneLeadingSurrogate });
                }
                let second = hex4(i + 6)?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(Syntax { at: i + 6, what: SyntaxError::InvalidSurrogatePair });
                }
                let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                char::from_u32(c).map(|c| (c, i + 10)).ok_or(Syntax { at: i, what: SyntaxError::InvalidEscape })
            }
            0xDC00..=0xDFFF => Err(Syntax { at: i, what: SyntaxError::LoneTrailingSurrogate }),
            _ => char::from_u32(first).map(|c| (c, i + 4)).ok_or(Syntax { at: i, what: SyntaxError::InvalidEscape }),
        }
    }

    /// Skips one value of any shape (after whitespace), checking only its
    /// syntax. Iterative, so hostile nesting cannot exhaust the stack.
    fn skip_value(&mut self, depth: usize) -> Scan<()> {
        // Open containers, innermost last: true for an object.
        let mut open = [false; MAX_DEPTH];
        let mut len = 0;
        loop {
            // At a value.
            match self.peek() {
                Some(c @ (b'{' | b'[')) => {
                    if depth + len >= MAX_DEPTH {
                        return Err(self.error(SyntaxError::TooDeep));
                    }
                    let is_object = c == b'{';
                    open[len] = is_object;
                    len += 1;
                    self.at += 1;
                    self.ws();
                    if self.peek() == Some(if is_object { b'}' } else { b']' }) {
                        self.at += 1;
                        len -= 1;
                    } else if is_object {
                        self.member_name()?;
                        continue;
                    } else {
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                Some(_) => return Err(self.error(SyntaxError::ExpectedValue)),
                None => return Err(self.error(SyntaxError::EofValue)),
            }
            // After a value: close containers until one continues.
            loop {
                if len == 0 {
                    return Ok(());
                }
                self.ws();
                let is_object = open[len - 1];
                match self.peek() {
                    Some(b',') => {
                        self.at += 1;
                        self.ws();
                        if is_object {
                            self.member_name()?;
                        }
                        break;
                    }
                    Some(b'}') if is_object => {
                        self.at += 1;
                        len -= 1;
                    }
                    Some(b']') if !is_object => {
                        self.at += 1;
                        len -= 1;
                    }
                    Some(_) => return Err(self.error(SyntaxError::ExpectedCommaOrClose)),
                    None => return Err(self.error(SyntaxError::EofValue)),
                }
            }
        }
    }

    /// Scans `"name" :` and the whitespace after it.
    fn member_name(&mut self) -> Scan<()> {
        if self.peek() != Some(b'"') {
            return Err(self.error(SyntaxError::ExpectedMemberName));
        }
        self.string()?;
        self.ws();
        self.expect(b':', SyntaxError::ExpectedColon)?;
        self.ws();
        Ok(())
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
    fn word_tricks_are_exact_at_every_position() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = b;
                let special = special_bytes(u64::from_le_bytes(word));
                let expected_special = b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b);
                let first = if special == 0 { 8 } else { (special.trailing_zeros() / 8) as usize };
                assert_eq!(first, if expected_special { at } else { 8 }, "byte {b:#x} at {at}");

                let mut digits = *b"01234567";
                digits[at] = b;
                let n = leading_digits(u64::from_le_bytes(digits));
                assert_eq!(n, if b.is_ascii_digit() { 8 } else { at }, "byte {b:#x} at {at}");
            }
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
