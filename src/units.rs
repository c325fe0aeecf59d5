//! Human-friendly quantities shared by scenario files and flags:
//! durations (`250ms`, `30s`, `5m`, `1h`, `1m30s`), read with `humantime`;
//! shares (`10%`), rates (`2000/s`); and the wall clock as heartbeats
//! carry it. Every duration written as text is read by [`parse_duration`],
//! through [`DurationValue`] when serde reads it.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The wall clock in epoch milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A quantity written as text that does not read as one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    #[error("empty duration: write e.g. 250ms, 30s, 5m or 1h")]
    EmptyDuration,
    #[error("{text:?} is not a duration ({source}); write e.g. 250ms, 30s, 5m or 1h")]
    NotADuration {
        text: String,
        #[source]
        source: humantime::DurationError,
    },
    #[error("{text:?} is not a share; write e.g. \"10%\" or 0.1")]
    NotAShare { text: String },
    #[error("{value} is not a share between 0% and 100%")]
    ShareOutOfRange { value: f64 },
    #[error("{text:?} is not a rate; write e.g. \"2000/s\", \"120/m\" or \"7200/h\"")]
    NotARate { text: String },
    #[error("{text:?}: a rate must be above 0")]
    RateNotPositive { text: String },
}

/// Parses a duration such as `250ms`, `30s`, `5m`, `1h` or `1m 30s`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(UnitError::EmptyDuration);
    }
    humantime::parse_duration(trimmed).map_err(|source| UnitError::NotADuration { text: text.to_string(), source })
}

/// Formats a duration the way `parse_duration` reads it (`1s 500ms`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `n` with thousands separated by commas, as people read counts: 372,000.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// serde helpers for `Duration` fields written as strings (read as
/// [`DurationValue`] reads them).
pub mod serde_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    use super::DurationValue;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        DurationValue::deserialize(d).map(|DurationValue(v)| v)
    }

    /// The same for `Option<Duration>`.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::time::Duration;

        use super::DurationValue;

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<DurationValue>::deserialize(d).map(|v| v.map(|DurationValue(v)| v))
        }
    }
}

/// A duration written as a string: `250ms`, `30s`, `5m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with its unit, as a string: \"250ms\", \"30s\", \"5m\" or \"1h\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<DurationValue, E> {
                parse_duration(s).map(DurationValue).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A share written as `10%` or as a number in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Share(pub f64);

impl Share {
    pub fn parse(text: &str) -> Result<Share, UnitError> {
        let t = text.trim();
        let value = match t.strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
            None => t.parse::<f64>(),
        }
        .map_err(|_| UnitError::NotAShare { text: text.to_string() })?;
        Share::checked(value)
    }

    fn checked(value: f64) -> Result<Share, UnitError> {
        if value.is_finite() && (0.0..=1.0).contains(&value) {
            Ok(Share(value))
        } else {
            Err(UnitError::ShareOutOfRange { value })
        }
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Share;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a share such as \"10%\" or 0.1")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Share, E> {
                Share::parse(s).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Share, E> {
                Share::checked(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Share, E> {
                Share::checked(v as f64).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Share, E> {
                Share::checked(v as f64).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A rate written as `2000/s`, `120/m` or `7200/h`: events per second.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Rate(pub f64);

impl Rate {
    pub fn parse(text: &str) -> Result<Rate, UnitError> {
        let bad = || UnitError::NotARate { text: text.to_string() };
        let (n, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let n: f64 = n.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        let rate = n / per;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(UnitError::RateNotPositive { text: text.to_string() });
        }
        Ok(Rate(rate))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Rate::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_group_their_thousands() {
        for (n, text) in [(0, "0"), (999, "999"), (1_000, "1,000"), (372_000, "372,000"), (12_345_678, "12,345,678")] {
            assert_eq!(thousands(n), text);
        }
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(""), Err(UnitError::EmptyDuration));
        let parsecs = parse_duration("5 parsecs").unwrap_err();
        assert!(matches!(parsecs, UnitError::NotADuration { .. }), "{parsecs:?}");
        assert!(parsecs.to_string().contains("\"5 parsecs\" is not a duration"), "{parsecs}");
        assert!(parse_duration("30").is_err(), "a unit is required");
    }

    #[test]
    fn shares_and_rates_say_what_is_wrong() {
        assert_eq!(Share::parse("10%"), Ok(Share(0.1)));
        assert_eq!(Share::parse("0.25"), Ok(Share(0.25)));
        assert_eq!(Share::parse("ten"), Err(UnitError::NotAShare { text: "ten".into() }));
        assert_eq!(Share::parse("120%"), Err(UnitError::ShareOutOfRange { value: 1.2 }));
        assert_eq!(Rate::parse("120/m"), Ok(Rate(2.0)));
        assert_eq!(Rate::parse("7200/h"), Ok(Rate(2.0)));
        assert_eq!(Rate::parse("5/day"), Err(UnitError::NotARate { text: "5/day".into() }));
        assert_eq!(Rate::parse("0/s"), Err(UnitError::RateNotPositive { text: "0/s".into() }));
        assert_eq!(
            Rate::parse("0/s").unwrap_err().to_string(),
            "\"0/s\": a rate must be above 0",
            "the words scenario errors quote"
        );
    }

    #[test]
    fn a_duration_field_reads_the_same_whichever_serde_path_reads_it() {
        #[derive(serde::Deserialize)]
        struct Fields {
            #[serde(with = "serde_duration")]
            plain: Duration,
            #[serde(default, with = "serde_duration::option")]
            optional: Option<Duration>,
            value: DurationValue,
        }
        let f: Fields = serde_json::from_str(r#"{"plain": "1m30s", "optional": "250ms", "value": "1m30s"}"#).unwrap();
        assert_eq!(
            (f.plain, f.optional, f.value.0),
            (Duration::from_secs(90), Some(Duration::from_millis(250)), f.plain)
        );
        for bad in [r#"{"plain": "30", "value": "1s"}"#, r#"{"plain": "1s", "value": "30"}"#] {
            let e = serde_json::from_str::<Fields>(bad).err().unwrap().to_string();
            assert!(e.contains("\"30\" is not a duration"), "{e}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for d in [Duration::from_millis(1500), Duration::from_secs(7200), Duration::from_micros(250)] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
