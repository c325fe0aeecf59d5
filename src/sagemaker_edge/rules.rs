//! The string rules of the SendHeartbeat contract (`spec/send-heartbeat.md`):
//! length bounds and anchored patterns, written as small state machines.
//!
//! They are hand-written rather than compiled regexes because they sit on the
//! reference backend's hot path (every string of every body) and on the
//! scenario checker; each is a single pass over the bytes with no allocation.
//! The test module cross-checks every matcher against the `regex` crate on
//! random strings, so the two cannot drift apart silently.

use std::fmt;

/// One of the contract's patterns. Every pattern is anchored: it must match
/// the whole string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// `^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$`: DeviceName, DeviceFleetName and the
    /// other EntityName fields.
    EntityName,
    /// `^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`: MetricName and ModelName.
    Hyphenated,
    /// `^[a-zA-Z0-9](-*[a-zA-Z0-9/])*$`: Dimension.
    Dimension,
    /// `[a-zA-Z0-9 _.]+`: AgentVersion and ModelVersion.
    Version,
}

impl Pattern {
    /// The pattern as the contract writes it (anchored), for messages.
    pub fn as_regex(self) -> &'static str {
        match self {
            Pattern::EntityName => "^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$",
            Pattern::Hyphenated => "^[a-zA-Z0-9](-*[a-zA-Z0-9])*$",
            Pattern::Dimension => "^[a-zA-Z0-9](-*[a-zA-Z0-9/])*$",
            Pattern::Version => "^[a-zA-Z0-9 _.]+$",
        }
    }

    /// Whether `s` matches the whole pattern.
    ///
    /// Each pattern is a character set plus rules on the ends, so it is
    /// checked in one branch-free pass over a class table:
    /// - `^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$`: characters in `[a-zA-Z0-9_-]`,
    ///   first and last alphanumeric, and no `-` right after a `_` (a run
    ///   between two alphanumerics is hyphens, then underscores);
    /// - `^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`: characters in `[a-zA-Z0-9-]`,
    ///   first and last alphanumeric;
    /// - `^[a-zA-Z0-9](-*[a-zA-Z0-9/])*$`: characters in `[a-zA-Z0-9/-]`,
    ///   first alphanumeric, last not a hyphen;
    /// - `[a-zA-Z0-9 _.]+`: characters in the set, at least one.
    pub fn matches(self, s: &str) -> bool {
        let bytes = s.as_bytes();
        let (allowed, last_allowed) = match self {
            Pattern::Version => (VERSION_CHAR, VERSION_CHAR),
            Pattern::EntityName => (ALNUM | HYPHEN | UNDERSCORE, ALNUM),
            Pattern::Hyphenated => (ALNUM | HYPHEN, ALNUM),
            Pattern::Dimension => (ALNUM | HYPHEN | SLASH, ALNUM | SLASH),
        };
        let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
            return false;
        };
        let first_allowed = if self == Pattern::Version { VERSION_CHAR } else { ALNUM };
        if class(first) & first_allowed == 0 || class(last) & last_allowed == 0 {
            return false;
        }
        let mut outside = false;
        let mut seen = 0;
        for &b in bytes {
            let c = class(b);
            outside |= c & allowed == 0;
            seen |= c;
        }
        if outside {
            return false;
        }
        // Only EntityName allows underscores next to hyphens, and only as `-_`.
        !(self == Pattern::EntityName && seen & UNDERSCORE != 0 && bytes.windows(2).any(|w| w == b"_-"))
    }
}

fn class(b: u8) -> u8 {
    CLASS[usize::from(b)]
}

/// Character classes, one bit each, looked up per byte.
const ALNUM: u8 = 1;
const HYPHEN: u8 = 2;
const UNDERSCORE: u8 = 4;
const SLASH: u8 = 8;
/// `[a-zA-Z0-9 _.]`
const VERSION_CHAR: u8 = 16;

const CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = if c.is_ascii_alphanumeric() {
            ALNUM | VERSION_CHAR
        } else {
            match c {
                b'-' => HYPHEN,
                b'_' => UNDERSCORE | VERSION_CHAR,
                b'/' => SLASH,
                b' ' | b'.' => VERSION_CHAR,
                _ => 0,
            }
        };
        b += 1;
    }
    table
};

/// A string field's rule: length bounds in characters and an optional pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrRule {
    pub min: usize,
    pub max: usize,
    pub pattern: Option<Pattern>,
}

/// Why a string breaks its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrFault {
    TooShort { len: usize, min: usize },
    TooLong { len: usize, max: usize },
    Pattern(Pattern),
}

impl fmt::Display for StrFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrFault::TooShort { len, min } => write!(f, "length {len}, minimum {min}"),
            StrFault::TooLong { len, max } => write!(f, "length {len}, maximum {max}"),
            StrFault::Pattern(p) => write!(f, "does not match {}", p.as_regex()),
        }
    }
}

impl StrRule {
    /// Checks `s`; a string may break both its length and its pattern, so
    /// each fault is handed to `report`.
    pub fn check_each(&self, s: &str, mut report: impl FnMut(StrFault)) {
        // Every pattern accepts ASCII only, so a string that matches its
        // pattern has as many characters as bytes; only the rest are counted.
        let matched = self.pattern.map(|p| p.matches(s));
        let len = if matched == Some(true) || s.is_ascii() { s.len() } else { s.chars().count() };
        if len < self.min {
            report(StrFault::TooShort { len, min: self.min });
        } else if len > self.max {
            report(StrFault::TooLong { len, max: self.max });
        }
        // An empty string already failed its length; a pattern fault on top
        // of that would say nothing new.
        if let (Some(p), Some(false)) = (self.pattern, matched)
            && len > 0
        {
            report(StrFault::Pattern(p));
        }
    }

    /// The first fault of `s`, if any.
    pub fn check(&self, s: &str) -> Result<(), StrFault> {
        let mut first = None;
        self.check_each(s, |f| {
            first.get_or_insert(f);
        });
        first.map_or(Ok(()), Err)
    }
}

/// DeviceName, DeviceFleetName, DeploymentName, DeploymentStatus, ModelHandle.
pub const ENTITY_NAME: StrRule = StrRule { min: 1, max: 63, pattern: Some(Pattern::EntityName) };
/// AgentVersion and ModelVersion.
pub const VERSION: StrRule = StrRule { min: 1, max: 64, pattern: Some(Pattern::Version) };
/// EdgeMetric.Dimension.
pub const DIMENSION: StrRule = StrRule { min: 1, max: 1000, pattern: Some(Pattern::Dimension) };
/// EdgeMetric.MetricName.
pub const METRIC_NAME: StrRule = StrRule { min: 4, max: 100, pattern: Some(Pattern::Hyphenated) };
/// Model.ModelName and DeploymentModel.ModelName.
pub const MODEL_NAME: StrRule = StrRule { min: 4, max: 255, pattern: Some(Pattern::Hyphenated) };

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entity_name_cases_from_the_spec() {
        for ok in ["cam-01", "cam_01", "cam-_01", "cam--01", "a", "0", "a-b_c", "A9"] {
            assert!(Pattern::EntityName.matches(ok), "{ok} should match");
        }
        for bad in ["cam_-01", "-cam", "cam-", "cam.01", "", "cam_", "_cam", "cam 01", "cäm"] {
            assert!(!Pattern::EntityName.matches(bad), "{bad} should not match");
        }
    }

    #[test]
    fn dimension_allows_slash_after_first_character() {
        assert!(Pattern::Dimension.matches("model/resnet50"));
        assert!(Pattern::Dimension.matches("a/"));
        assert!(Pattern::Dimension.matches("a-/b"));
        assert!(!Pattern::Dimension.matches("/model"));
        assert!(!Pattern::Dimension.matches("model_x"));
        assert!(!Pattern::Dimension.matches("model-"));
    }

    #[test]
    fn hyphenated_rejects_underscores_and_slashes() {
        assert!(Pattern::Hyphenated.matches("cpu-load"));
        assert!(!Pattern::Hyphenated.matches("cpu_load"));
        assert!(!Pattern::Hyphenated.matches("cpu/load"));
    }

    #[test]
    fn version_is_a_plain_character_class() {
        assert!(Pattern::Version.matches("1.20231.0"));
        assert!(Pattern::Version.matches("beta 2_x"));
        assert!(!Pattern::Version.matches(""));
        assert!(!Pattern::Version.matches("1.0-rc1"));
    }

    #[test]
    fn lengths_count_characters_and_both_faults_are_reported() {
        assert_eq!(METRIC_NAME.check("cpu"), Err(StrFault::TooShort { len: 3, min: 4 }));
        assert_eq!(VERSION.check(&"1".repeat(65)), Err(StrFault::TooLong { len: 65, max: 64 }));
        let mut faults = Vec::new();
        METRIC_NAME.check_each("c_u", |f| faults.push(f));
        assert_eq!(faults, vec![StrFault::TooShort { len: 3, min: 4 }, StrFault::Pattern(Pattern::Hyphenated)]);
        // "é" is two bytes but one character.
        let s = format!("{}é", "a".repeat(63));
        assert_eq!(s.len(), 65);
        assert_eq!(
            StrRule { min: 1, max: 64, pattern: None }.check(&s),
            Ok(()),
            "64 characters fit a 64-character limit"
        );
    }

    fn alphabet() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('a'),
                Just('Z'),
                Just('7'),
                Just('-'),
                Just('_'),
                Just('/'),
                Just('.'),
                Just(' '),
                Just('é')
            ],
            0..24,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        #[test]
        fn matchers_agree_with_regex(s in alphabet()) {
            for p in [Pattern::EntityName, Pattern::Hyphenated, Pattern::Dimension, Pattern::Version] {
                let re = regex::Regex::new(p.as_regex()).unwrap();
                prop_assert_eq!(p.matches(&s), re.is_match(&s), "{:?} on {:?}", p, s);
            }
        }
    }
}
