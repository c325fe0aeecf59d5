//! The single-pass scanner behind [`validate`](super::validate) and
//! [`inspect`](super::inspect): it walks a body's bytes once, directed by
//! the [`schema`](super::schema) tables, checks each value where it lies in
//! the input and reports violations at their paths. JSON syntax, the
//! word-at-a-time string and digit scans and the path context live here;
//! what the body must contain lives in the schema.

use std::fmt;

use super::schema::{Capture, Field, Kind, Shape};
use super::{MAX_DEPTH, MAX_REPORTED, Reason, Summary, SyntaxError, Violation, Violations};

pub(super) fn scan(body: &[u8], summarize: bool) -> Result<Summary<'_>, Violations> {
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

// ---------------------------------------------------------------- scanning

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
}
