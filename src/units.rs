//! Human-friendly quantities shared by scenario files and flags:
//! durations (`250ms`, `30s`, `5m`, `1h`, `1m30s`), read with `humantime`;
//! and the wall clock as heartbeats carry it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall clock in epoch milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Parses a duration such as `250ms`, `30s`, `5m`, `1h` or `1m 30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration: write e.g. 250ms, 30s, 5m or 1h".into());
    }
    humantime::parse_duration(trimmed)
        .map_err(|e| format!("{text:?} is not a duration ({e}); write e.g. 250ms, 30s, 5m or 1h"))
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

/// serde helpers for `Duration` fields written as strings.
pub mod serde_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<Duration>`.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::time::Duration;

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(text) => super::super::parse_duration(&text).map(Some).map_err(serde::de::Error::custom),
            }
        }
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
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(parse_duration("5 parsecs").unwrap_err().contains("not a duration"));
        assert!(parse_duration("30").is_err(), "a unit is required");
    }

    #[test]
    fn formatting_round_trips() {
        for d in [Duration::from_millis(1500), Duration::from_secs(7200), Duration::from_micros(250)] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
