//! JUnit XML (`--junit`): one test case per threshold, so CI systems list
//! the gates natively. A failing threshold is a `<failure>` whose message
//! gives the actual value against the condition.
//!
//! With cohorts (`breakdown = ["agent_version"]`), a second suite,
//! `fleetstorm.<scenario>.cohorts`, has one passing test case per fleet and
//! agent version, its results in `<system-out>` (which JUnit readers show
//! with the case), so a rollout's versions can be compared in the CI's own
//! test view.

use std::fmt::Write as _;

use super::markup::escape;
use super::{Report, cohorts};
use crate::gate::Unit;

/// Renders the report's thresholds as a JUnit XML document.
pub fn render(report: &Report) -> String {
    let tests = report.thresholds.len();
    let failures = report.failed_thresholds();
    let suite = format!("fleetstorm.{}", report.scenario.name);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"fleetstorm\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\">",
        tests + report.cohorts.len(),
        report.elapsed_s
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{:.3}\" timestamp=\"{}\">",
        escape(&suite),
        report.elapsed_s,
        escape(report.started_at.trim_end_matches('Z'))
    );
    out.push_str("    <properties>\n");
    for (name, value) in [
        ("target", report.scenario.destination()),
        ("seed", report.scenario.seed.to_string()),
        ("duration_s", format!("{:.3}", report.duration_s)),
        ("interrupted", report.interrupted.to_string()),
        ("generator", report.generator.verdict.clone()),
        ("pool", report.generator.pool.as_ref().map_or_else(|| "none".to_string(), |p| p.verdict.clone())),
        ("connection_wait_p99_ms", format!("{:.3}", report.totals.connection_wait_ms.p99)),
        ("late", report.totals.late.to_string()),
        ("retry_pending", report.totals.retry_pending.to_string()),
    ]
    .into_iter()
    .chain(session_properties(&report.totals))
    .map(|(name, value)| (name.to_string(), value))
    .chain(delivery_properties(report))
    {
        let _ = writeln!(out, "      <property name=\"{name}\" value=\"{}\"/>", escape(&value));
    }
    out.push_str("    </properties>\n");
    for t in &report.thresholds {
        let name = if t.abort { format!("abort if {}", t.expr) } else { t.expr.clone() };
        let _ = write!(out, "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"", escape(&suite), escape(&name));
        if t.ok {
            out.push_str("/>\n");
        } else {
            let message = if t.abort {
                format!("{}: the abort condition held (actual {})", t.expr, t.actual_text)
            } else {
                format!("{}: actual {}", t.expr, t.actual_text)
            };
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{}\" type=\"threshold\">{}</failure>\n    </testcase>",
                escape(&message),
                escape(&message)
            );
        }
    }
    out.push_str("  </testsuite>\n");
    if !report.cohorts.is_empty() {
        cohorts_suite(report, &format!("{suite}.cohorts"), &mut out);
    }
    out.push_str("</testsuites>\n");
    out
}

/// Each observed fleet's end-to-end delivery as properties
/// (`delivery.FLEET.lost`, ...), none when no fleet was observed.
fn delivery_properties(report: &Report) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for d in &report.delivery {
        let mut add = |what: &str, value: String| out.push((format!("delivery.{}.{what}", d.fleet), value));
        add("taken", d.expected.to_string());
        add("delivered", d.delivered.to_string());
        add("lost", d.lost.to_string());
        add("duplicated", d.duplicates.to_string());
        add("p99_ms", format!("{:.3}", d.latency_ms.p99));
    }
    out
}

/// The run's sessions as properties, when it has them (an MQTT run's;
/// none for HTTP): sessions opened and how long opening took, what the
/// idle sessions did, and the untimed QoS 0 heartbeats with the sentence
/// that says why they have no latency.
fn session_properties(t: &super::Stats) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !super::html::has_sessions(t) {
        return out;
    }
    out.push(("sessions_opened", t.connects.to_string()));
    if let Some(o) = &t.session_open_ms {
        out.push(("session_open_p50_ms", format!("{:.3}", o.p50)));
        out.push(("session_open_p99_ms", format!("{:.3}", o.p99)));
        out.push(("session_open_max_ms", format!("{:.3}", o.max)));
    }
    if let Some(s) = &t.sessions {
        out.push(("session_keepalives", s.keepalives.to_string()));
        out.push(("session_inbound", s.inbound.to_string()));
        out.push(("session_closed", s.closed.to_string()));
        out.push(("session_reopened", s.reopened.to_string()));
        out.push(("session_reopen_failed", s.reopen_failed.to_string()));
    }
    if t.unacknowledged > 0 {
        out.push(("unacknowledged", t.unacknowledged.to_string()));
        out.push(("unacknowledged_note", super::html::UNACKNOWLEDGED.to_string()));
    }
    out
}

/// The cohorts' suite: a passing case per fleet and agent version.
fn cohorts_suite(report: &Report, suite: &str, out: &mut String) {
    let rows = cohorts::rows(report);
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"0\" errors=\"0\" skipped=\"0\" time=\"{:.3}\" timestamp=\"{}\">",
        escape(suite),
        rows.len(),
        report.elapsed_s,
        escape(report.started_at.trim_end_matches('Z'))
    );
    for c in rows {
        let results = format!(
            "sent {}, ok {}, failed {}, error rate {}; latency p50 {:.2} ms, p99 {:.2} ms",
            c.sent,
            c.ok,
            c.failed,
            Unit::Fraction.format(c.error_rate),
            c.p50_ms,
            c.p99_ms
        );
        let _ = writeln!(
            out,
            "    <testcase classname=\"{}\" name=\"{}@{}\" time=\"0\">\n      <system-out>{}</system-out>\n    </testcase>",
            escape(suite),
            escape(c.fleet),
            escape(c.agent_version),
            escape(&results)
        );
    }
    out.push_str("  </testsuite>\n");
}
