//! Device name templates such as `cam-{index:05}`.
//!
//! A template is literal text with `{index}` placeholders; `{index:05}`
//! pads the device's index with zeros to five digits. `{{` and `}}` stand for
//! literal braces (which can never appear in a valid name, but the checker
//! reports that rather than the parser). Because every placeholder renders
//! the index in decimal, a template with at least one placeholder gives each
//! device of a fleet a distinct name.

use std::fmt::{self, Write};

use serde::{Deserialize, Deserializer};

use crate::sagemaker_edge::rules::{self, StrFault};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Literal text, and the same text escaped for a JSON string.
    Literal {
        text: String,
        json: Vec<u8>,
    },
    Index {
        width: usize,
    },
}

impl Part {
    fn literal(text: String) -> Part {
        let quoted = serde_json::to_vec(&text).unwrap_or_default();
        let json = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default().to_vec();
        Part::Literal { text, json }
    }
}

/// A parsed device name template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate {
    source: String,
    parts: Vec<Part>,
}

/// What is wrong with a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed `{{` at byte {0}; write `{{{{` for a literal brace")]
    Unclosed(usize),
    #[error("unknown placeholder `{{{0}}}`; the only placeholder is `{{index}}` (or `{{index:05}}` to pad)")]
    UnknownPlaceholder(String),
    #[error("bad padding in `{{{0}}}`; write e.g. `{{index:05}}` (width at most 20)")]
    BadWidth(String),
    #[error("stray `}}` at byte {0}; write `}}}}` for a literal brace")]
    Stray(usize),
    #[error("`{{index}}` is missing, so every device would get the same name")]
    NoIndex,
    #[error("device {index} would be named {name:?}, which is not a valid DeviceName: {fault}")]
    InvalidName { index: u64, name: String, fault: StrFault },
}

impl NameTemplate {
    /// Parses the template syntax (names are checked by [`Self::check_for`]).
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = source.char_indices().peekable();
        while let Some((at, c)) = rest.next() {
            match c {
                '{' if rest.peek().map(|p| p.1) == Some('{') => {
                    rest.next();
                    literal.push('{');
                }
                '}' if rest.peek().map(|p| p.1) == Some('}') => {
                    rest.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::Stray(at)),
                '{' => {
                    let close = source[at..].find('}').ok_or(TemplateError::Unclosed(at))?;
                    let inner = &source[at + 1..at + close];
                    let width = match inner.split_once(':') {
                        None if inner == "index" => 0,
                        Some(("index", w)) => match w.parse::<usize>() {
                            Ok(n) if n <= 20 && !w.starts_with('+') => n,
                            _ => return Err(TemplateError::BadWidth(inner.to_string())),
                        },
                        _ => return Err(TemplateError::UnknownPlaceholder(inner.to_string())),
                    };
                    if !literal.is_empty() {
                        parts.push(Part::literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Index { width });
                    // Skip to the closing brace.
                    while rest.next_if(|&(i, _)| i < at + close).is_some() {}
                    rest.next();
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::literal(literal));
        }
        Ok(NameTemplate { source: source.to_string(), parts })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Checks that devices `0..devices` all get valid, distinct names.
    ///
    /// Digits are alphanumeric, so whether a rendered name matches the
    /// pattern does not depend on the index; only its length does, and that
    /// grows with the index. Checking the first and the last device is
    /// therefore enough.
    pub fn check_for(&self, devices: u64) -> Result<(), TemplateError> {
        if devices > 1 && !self.parts.iter().any(|p| matches!(p, Part::Index { .. })) {
            return Err(TemplateError::NoIndex);
        }
        let mut name = String::new();
        for index in [0, devices.saturating_sub(1)] {
            name.clear();
            self.render(index, &mut name);
            if let Err(fault) = rules::ENTITY_NAME.check(&name) {
                return Err(TemplateError::InvalidName { index, name, fault });
            }
        }
        Ok(())
    }

    /// Appends device `index`'s name to `out`.
    pub fn render(&self, index: u64, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal { text, .. } => out.push_str(text),
                Part::Index { width } => {
                    let _ = write!(out, "{index:0width$}");
                }
            }
        }
    }

    /// Appends device `index`'s name to `out` as the inside of a JSON
    /// string (escaped, without quotes). This is the generator's hot path,
    /// so digits are written by hand rather than through `fmt`.
    pub fn render_json(&self, index: u64, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Literal { json, .. } => out.extend_from_slice(json),
                Part::Index { width } => {
                    let mut digits = [0u8; 20];
                    let mut start = digits.len();
                    let mut n = index;
                    loop {
                        start -= 1;
                        digits[start] = b'0' + (n % 10) as u8;
                        n /= 10;
                        if n == 0 {
                            break;
                        }
                    }
                    let len = digits.len() - start;
                    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(len)));
                    out.extend_from_slice(&digits[start..]);
                }
            }
        }
    }
}

impl fmt::Display for NameTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for NameTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // Check the first device's name here, where the template is written;
        // the fleet checks the rest once it knows its device count.
        let template = NameTemplate::parse(&s).map_err(serde::de::Error::custom)?;
        template.check_for(1).map_err(serde::de::Error::custom)?;
        Ok(template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, i: u64) -> String {
        let mut s = String::new();
        NameTemplate::parse(t).unwrap().render(i, &mut s);
        s
    }

    #[test]
    fn renders_padded_and_plain_indices() {
        assert_eq!(render("cam-{index:05}", 42), "cam-00042");
        assert_eq!(render("cam-{index:05}", 1234567), "cam-1234567");
        assert_eq!(render("{index}x{index:3}", 7), "7x007");
        assert_eq!(render("a{{b}}", 0), "a{b}");
    }

    #[test]
    fn json_rendering_matches_plain_rendering_escaped() {
        for (t, i) in [("cam-{index:05}", 42u64), ("{index}", 0), ("{index:3}x\"{{", 123_456), ("{index:20}", u64::MAX)]
        {
            let mut json = Vec::new();
            NameTemplate::parse(t).unwrap().render_json(i, &mut json);
            let expected = serde_json::to_string(&render(t, i)).unwrap();
            assert_eq!(format!("\"{}\"", String::from_utf8(json).unwrap()), expected, "{t}");
        }
    }

    #[test]
    fn syntax_errors_are_named() {
        assert_eq!(NameTemplate::parse("cam-{index"), Err(TemplateError::Unclosed(4)));
        assert_eq!(NameTemplate::parse("cam-{id}"), Err(TemplateError::UnknownPlaceholder("id".into())));
        assert_eq!(NameTemplate::parse("cam-{index:x}"), Err(TemplateError::BadWidth("index:x".into())));
        assert_eq!(NameTemplate::parse("cam}"), Err(TemplateError::Stray(3)));
    }

    #[test]
    fn names_are_checked_against_the_device_name_rule() {
        let t = NameTemplate::parse("cam-{index}").unwrap();
        assert_eq!(t.check_for(1_000_000), Ok(()));
        assert_eq!(NameTemplate::parse("cam").unwrap().check_for(1), Ok(()));
        assert_eq!(NameTemplate::parse("cam").unwrap().check_for(2), Err(TemplateError::NoIndex));
        assert!(matches!(
            NameTemplate::parse("cam_-{index}").unwrap().check_for(5),
            Err(TemplateError::InvalidName { index: 0, .. })
        ));
        // 60 letters + up to 4 digits: device 999 fits 63, device 9999 does not.
        let long = NameTemplate::parse(&format!("{}{{index}}", "a".repeat(60))).unwrap();
        assert_eq!(long.check_for(1000), Ok(()));
        assert!(matches!(long.check_for(10_000), Err(TemplateError::InvalidName { index: 9999, .. })));
    }
}
