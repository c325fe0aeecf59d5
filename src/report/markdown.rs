//! The Markdown summary (`--summary-md`), sized for a CI job summary: the
//! verdict first, then the tables a reviewer needs (thresholds, fleets,
//! and the cohorts by agent version when the scenario breaks results down).

use std::fmt::Write as _;

use super::html::{UNACKNOWLEDGED, has_sessions};
use super::{Report, cohorts};
use crate::gate::Unit;

/// Renders the report's summary as GitHub-flavoured Markdown.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let s = &report.scenario;
    let passed = report.thresholds_passed();
    let _ = writeln!(
        out,
        "## {} fleetstorm: {}\n",
        if !passed {
            "❌"
        } else if report.interrupted || !report.generator.kept_up {
            "⚠️"
        } else {
            "✅"
        },
        cell(&s.name)
    );
    let _ = writeln!(
        out,
        "Against `{}` ({}), seed {}, {:.1} s of {:.1} s planned, started {}{}.{}\n",
        s.destination(),
        s.target.connections,
        s.seed,
        report.duration_s,
        s.planned_duration_s,
        report.started_at,
        report.fleetstorm_version.as_ref().map(|v| format!(", by fleetstorm {v}")).unwrap_or_default(),
        if report.interrupted { " **Interrupted.**" } else { "" }
    );
    if let Some(a) = &report.aborted {
        let _ = writeln!(out, "**Aborted** at {:.0} s: `{}` (was {}).\n", a.at_s, a.expr, a.actual_text);
    }
    if !report.thresholds.is_empty() {
        let _ = writeln!(out, "**Thresholds:** {}.\n", report.thresholds_line());
        out.push_str("| | threshold | actual |\n|---|---|---|\n");
        for t in &report.thresholds {
            let what = if t.abort { format!("abort if `{}`", t.expr) } else { format!("`{}`", t.expr) };
            let mark = if t.ok { "✅" } else { "❌" };
            let _ = writeln!(out, "| {mark} {} | {what} | {} |", t.outcome(), cell(&t.actual_text));
        }
        out.push('\n');
    }
    if let Some(scale) = &report.scenario.scale {
        let _ = writeln!(out, "**{}**\n", cell(&scale.describe()));
    }
    let _ = writeln!(out, "**Generator:** {}\n", report.generator.verdict);
    if let Some(pool) = &report.generator.pool {
        let _ = writeln!(out, "**Pool:** {}\n", cell(&pool.verdict));
    }
    if let Some(why) = report.no_success() {
        let _ = writeln!(out, "**FAILED:** {}\n", cell(&why));
    }
    out.push_str(
        "| fleet | offered/s | achieved/s | sent | ok | failed | missed | late | error rate | p50 ms | p75 ms | p95 ms | p99 ms | p99.9 ms | max ms | conn. wait p99 ms |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for r in report.rows() {
        let name = r.name.as_deref().map_or("**total**".to_string(), cell);
        let l = &r.latency_ms;
        // A fleet with nothing timed (QoS 0) has no latency to show.
        let latency = if r.untimed() {
            "— | — | — | — | — | —".to_string()
        } else {
            format!("{:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}", l.p50, l.p75, l.p95, l.p99, l.p999, l.max)
        };
        let _ = writeln!(
            out,
            "| {name} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {latency} | {:.2} |",
            r.offered_rate,
            r.achieved_rate,
            r.sent,
            r.ok,
            r.failed,
            r.missed,
            r.late,
            Unit::Fraction.format(r.error_rate()),
            r.connection_wait_ms.p99
        );
    }
    if report.rows().any(has_sessions) {
        sessions(report, &mut out);
    }
    if !report.delivery.is_empty() {
        out.push_str(
            "\n**Delivery, observed end to end** (taken: acknowledged at QoS 1, written at QoS 0; timed from the \
             intended time):\n\n\
             | fleet | taken | delivered | lost | duplicated | p50 ms | p99 ms | max ms |\n\
             |---|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for d in &report.delivery {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
                cell(&d.fleet),
                d.expected,
                d.delivered,
                d.lost,
                d.duplicates,
                d.latency_ms.p50,
                d.latency_ms.p99,
                d.latency_ms.max
            );
        }
    }
    if !report.cohorts.is_empty() {
        out.push_str(
            "\n**By agent version:**\n\n\
             | fleet | agent version | sent | ok | failed | error rate | p50 ms | p99 ms |\n\
             |---|---|--:|--:|--:|--:|--:|--:|\n",
        );
        for c in cohorts::rows(report) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.2} | {:.2} |",
                cell(c.fleet),
                cell(c.agent_version),
                c.sent,
                c.ok,
                c.failed,
                Unit::Fraction.format(c.error_rate),
                c.p50_ms,
                c.p99_ms
            );
        }
    }
    let failures: Vec<String> =
        report.totals.errors.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(out, "\nFailures: {}.", if failures.is_empty() { "none".into() } else { failures.join(", ") });
    if report.totals.retry_pending > 0 {
        let _ = writeln!(
            out,
            "Retries pending at the end: {} (neither ok nor failed; out of the error rate).",
            report.totals.retry_pending
        );
    }
    if let Some(f) = &report.totals.freshness {
        let _ = writeln!(
            out,
            "Device freshness: {} of {} devices went stale, {} never succeeded; largest gap p99 {}.",
            f.stale_devices,
            f.devices,
            f.never_ok,
            Unit::Millis.format(f.max_gap_ms.p99)
        );
    }
    out
}

/// The sessions' table (an MQTT run's): per fleet, sessions opened and
/// how long opening took, what the idle sessions did, and the untimed
/// QoS 0 heartbeats with the sentence that says why they have no latency.
fn sessions(report: &Report, out: &mut String) {
    out.push_str(
        "\n**Sessions:**\n\n\
         | fleet | sessions opened | opening p50 ms | p99 ms | max ms | keep-alives | inbound | closed | reopened | reopen failed | unacknowledged |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for r in report.rows().filter(|r| has_sessions(r)) {
        let name = r.name.as_deref().map_or("**total**".to_string(), cell);
        let open = match &r.session_open_ms {
            Some(o) => format!("{:.2} | {:.2} | {:.2}", o.p50, o.p99, o.max),
            None => "— | — | —".to_string(),
        };
        let idle = match &r.sessions {
            Some(s) => {
                format!("{} | {} | {} | {} | {}", s.keepalives, s.inbound, s.closed, s.reopened, s.reopen_failed)
            }
            None => "— | — | — | — | —".to_string(),
        };
        let _ = writeln!(out, "| {name} | {} | {open} | {idle} | {} |", r.connects, r.unacknowledged);
    }
    if report.rows().any(|r| r.unacknowledged > 0) {
        let _ = writeln!(out, "\n{}.", cell(UNACKNOWLEDGED));
    }
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
