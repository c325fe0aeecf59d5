//! Reports of the schemas before v3 (`fleetstorm.report/v1`, `/v2`) read
//! as v3 ones: their outcomes, which were HTTP's, become classes and codes.
//! Done on the JSON, before it is read as a [`super::Report`], so that
//! everything after reading (render, `merge`, `compare`, gates) sees v3.
//!
//! In each statistics object (the totals, each fleet, each cohort):
//!
//! - `status_codes` becomes `codes.http`;
//! - `errors.http_5xx` becomes `errors.server_error`;
//! - `errors.http_4xx` is split by the object's own status codes into
//!   `auth` (401, 403), `throttled` (429) and `rejected` (other 4xx) when
//!   the 4xx statuses add up to exactly `http_4xx` (they may not: a
//!   `custom` profile may accept a 4xx), else all of it is `rejected`;
//! - `other_status`, `timeout`, `connect`, `tls`, `io` and `protocol` keep
//!   their names, and every v3 class is listed (0 when it had none).
//!
//! A second of the timeline has no status codes: its `http_4xx` goes to
//! the class all of the run's 4xx went to, or to `rejected` when the run's
//! were split among several.

use serde_json::{Map, Value};

use crate::stats::{OutcomeClass, http_class};

/// Brings a v1 or v2 report's outcomes to v3's (see the module docs);
/// its target, which was HTTP's, says its HTTP version (HTTP/1.1 where
/// the earliest reports named none).
pub(super) fn outcomes_from_v2(report: &mut Value) {
    if let Some(target) = report.pointer_mut("/scenario/target").and_then(Value::as_object_mut) {
        target.entry("http").or_insert_with(|| Value::from("HTTP/1.1"));
    }
    let run_4xx = report.get_mut("totals").and_then(stats_from_v2);
    for fleet in report.get_mut("fleets").and_then(Value::as_array_mut).into_iter().flatten() {
        stats_from_v2(fleet);
    }
    for cohort in report.get_mut("cohorts").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(stats) = cohort.get_mut("stats") {
            stats_from_v2(stats);
        }
    }
    let second_4xx = run_4xx.unwrap_or(OutcomeClass::Rejected);
    for second in report.get_mut("timeline").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(errors) = second.get_mut("errors").and_then(Value::as_object_mut) {
            let old = std::mem::take(errors);
            for (name, n) in old {
                let name = match name.as_str() {
                    "http_4xx" => second_4xx.as_str().to_string(),
                    "http_5xx" => OutcomeClass::ServerError.as_str().to_string(),
                    _ => name,
                };
                let sum = errors.get(&name).and_then(Value::as_u64).unwrap_or(0) + n.as_u64().unwrap_or(0);
                errors.insert(name, Value::from(sum));
            }
        }
    }
}

/// One statistics object to v3; the class its 4xx answers all went to,
/// if there were some and they went to one.
fn stats_from_v2(stats: &mut Value) -> Option<OutcomeClass> {
    let stats = stats.as_object_mut()?;
    let statuses = match stats.remove("status_codes") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let old = match stats.remove("errors") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    let mut errors: Map<String, Value> =
        OutcomeClass::FAILED.iter().map(|c| (c.as_str().to_string(), Value::from(0u64))).collect();
    let add = |errors: &mut Map<String, Value>, name: &str, n: u64| {
        let sum = errors.get(name).map_or(0, count) + n;
        errors.insert(name.to_string(), Value::from(sum));
    };
    let mut client = Vec::new();
    for (name, n) in &old {
        match name.as_str() {
            "http_4xx" => client.push(count(n)),
            "http_5xx" => add(&mut errors, OutcomeClass::ServerError.as_str(), count(n)),
            other => add(&mut errors, other, count(n)),
        }
    }
    let n_4xx: u64 = client.iter().sum();
    let by_status: Vec<(OutcomeClass, u64)> = statuses
        .iter()
        .filter_map(|(code, n)| code.parse::<u16>().ok().filter(|s| (400..=499).contains(s)).map(|s| (s, count(n))))
        .map(|(status, n)| (http_class(status), n))
        .collect();
    let split = if by_status.iter().map(|(_, n)| n).sum::<u64>() == n_4xx {
        by_status
    } else {
        vec![(OutcomeClass::Rejected, n_4xx)]
    };
    let mut went_to: Vec<OutcomeClass> = Vec::new();
    for (class, n) in split {
        add(&mut errors, class.as_str(), n);
        if n > 0 && !went_to.contains(&class) {
            went_to.push(class);
        }
    }
    stats.insert("errors".into(), Value::Object(errors));
    let mut codes = Map::new();
    if !statuses.is_empty() {
        codes.insert("http".into(), Value::Object(statuses));
    }
    stats.insert("codes".into(), Value::Object(codes));
    match went_to.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stats(errors: Value, status_codes: Value) -> Value {
        json!({"errors": errors, "status_codes": status_codes, "sent": 1})
    }

    fn v2_errors(http_4xx: u64, http_5xx: u64) -> Value {
        json!({"http_4xx": http_4xx, "http_5xx": http_5xx, "other_status": 1, "timeout": 2, "connect": 3,
               "tls": 0, "io": 4, "protocol": 5})
    }

    #[test]
    fn statuses_become_http_codes_and_4xx_is_split_by_them() {
        let mut s = stats(v2_errors(10, 7), json!({"200": 50, "401": 2, "403": 1, "404": 3, "429": 4, "503": 7}));
        assert_eq!(stats_from_v2(&mut s), None, "split among several");
        assert_eq!(s["codes"], json!({"http": {"200": 50, "401": 2, "403": 1, "404": 3, "429": 4, "503": 7}}));
        assert_eq!(
            s["errors"],
            json!({"rejected": 3, "auth": 3, "throttled": 4, "server_error": 7, "other_status": 1, "timeout": 2,
                   "connect": 3, "tls": 0, "io": 4, "protocol": 5})
        );
        assert!(s.get("status_codes").is_none());
        assert_eq!(s["sent"], 1, "the rest kept");
    }

    #[test]
    fn client_errors_that_do_not_add_up_are_all_rejected() {
        // A custom profile accepted some 401s: 5 answers, 3 failures.
        let mut s = stats(v2_errors(3, 0), json!({"200": 1, "401": 5}));
        assert_eq!(stats_from_v2(&mut s), Some(OutcomeClass::Rejected));
        assert_eq!((s["errors"]["rejected"].as_u64(), s["errors"]["auth"].as_u64()), (Some(3), Some(0)));
        let mut none = stats(v2_errors(0, 0), json!({}));
        assert_eq!(stats_from_v2(&mut none), None);
        assert_eq!(none["codes"], json!({}));
        assert_eq!(none["errors"].as_object().unwrap().len(), OutcomeClass::FAILED.len());
    }

    #[test]
    fn seconds_follow_the_run_s_4xx_class() {
        let second = json!({"t": 0, "errors": {"http_4xx": 2, "http_5xx": 1, "io": 1}});
        let mut report = json!({
            "totals": stats(v2_errors(6, 1), json!({"429": 6, "500": 1})),
            "fleets": [stats(v2_errors(6, 1), json!({"429": 6, "500": 1}))],
            "cohorts": [{"fleet": "a", "stats": stats(v2_errors(6, 1), json!({"429": 6, "500": 1}))}],
            "timeline": [second.clone()],
        });
        outcomes_from_v2(&mut report);
        assert_eq!(report["timeline"][0]["errors"], json!({"throttled": 2, "server_error": 1, "io": 1}));
        assert_eq!(report["fleets"][0]["errors"]["throttled"], 6);
        assert_eq!(report["cohorts"][0]["stats"]["errors"]["throttled"], 6);
        // Split in the run: a second's 4xx cannot be told apart.
        let mut report = json!({
            "totals": stats(v2_errors(2, 1), json!({"429": 1, "404": 1, "500": 1})),
            "fleets": [], "timeline": [second],
        });
        outcomes_from_v2(&mut report);
        assert_eq!(report["timeline"][0]["errors"], json!({"rejected": 2, "server_error": 1, "io": 1}));
    }
}
