//! The HTML report: one self-contained file (inline CSS and SVG, no
//! script, nothing fetched) with the summary tables and the plots.

use std::fmt::Write as _;

use super::{Report, cohorts, plots};
use crate::gate::Unit;

pub use super::markup::escape;

pub(crate) const STYLE: &str = r#"
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d232a;
       max-width: 940px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #dde3ea; }
.meta { color: #5a6672; margin: 0 0 12px; }
.verdicts span { display: inline-block; padding: 3px 10px; margin: 0 6px 6px 0; border-radius: 12px; font-weight: 600; }
.pass { background: #ddf4e4; color: #14632c; } .fail { background: #fbe0e0; color: #8a1c1c; } .warn { background: #fff1cf; color: #6b4e00; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e7ebef; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f6f8; font-weight: 600; }
figure { margin: 18px 0; } figcaption { color: #5a6672; font-size: 13px; }
figure svg { max-width: 100%; height: auto; border: 1px solid #e7ebef; }
"#;

/// Renders the whole report as one HTML page.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let s = &report.scenario;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>fleetstorm: {}</title><style>{STYLE}</style></head><body>\n",
        escape(&s.name)
    );
    let _ = writeln!(out, "<h1>fleetstorm run “{}”</h1>", escape(&s.name));
    let _ = writeln!(
        out,
        "<p class=\"meta\">against {} · {} · seed {} · started {} · ran {:.1} s of {:.1} s planned{}{}</p>",
        escape(&s.destination()),
        escape(&s.target.connections),
        s.seed,
        escape(&report.started_at),
        report.duration_s,
        s.planned_duration_s,
        if report.interrupted { " · <strong>interrupted</strong>" } else { "" },
        report.fleetstorm_version.as_ref().map(|v| format!(" · fleetstorm {}", escape(v))).unwrap_or_default()
    );
    out.push_str("<div class=\"verdicts\">");
    verdicts(report, &mut out);
    out.push_str("</div>\n");

    out.push_str("<h2>Heartbeats</h2>\n");
    counts_table(report, &mut out);
    out.push_str("<h2>Latency (ms)</h2>\n");
    latency_table(report, &mut out);
    if report.rows().any(has_sessions) {
        out.push_str("<h2>Sessions</h2>\n");
        sessions_table(report, &mut out);
    }
    if !report.delivery.is_empty() {
        out.push_str("<h2>Delivery, observed end to end</h2>\n");
        delivery_table(report, &mut out);
    }
    if !report.cohorts.is_empty() {
        out.push_str("<h2>Cohorts by agent version</h2>\n");
        cohorts_table(report, &mut out);
    }
    if !report.thresholds.is_empty() {
        out.push_str("<h2>Thresholds</h2>\n");
        thresholds_table(report, &mut out);
    }
    out.push_str("<h2>Failures</h2>\n");
    failures(report, &mut out);
    out.push_str("<h2>Device freshness</h2>\n");
    freshness_table(report, &mut out);
    out.push_str("<h2>Plots</h2>\n");
    for plot in plots::all(report) {
        let _ = writeln!(
            out,
            "<figure id=\"{}\"><h3>{}</h3>{}<figcaption>{}</figcaption></figure>",
            plot.id,
            escape(plot.title),
            plot.svg,
            escape(&plot.caption)
        );
    }
    out.push_str("</body></html>\n");
    out
}

fn verdicts(report: &Report, out: &mut String) {
    let mut badge = |class: &str, text: String| {
        let _ = write!(out, "<span class=\"{class}\">{}</span>", escape(&text));
    };
    if let Some(a) = &report.aborted {
        badge("fail", format!("aborted at {:.0} s: {} (was {})", a.at_s, a.expr, a.actual_text));
    }
    match (report.thresholds.len(), report.failed_thresholds()) {
        (0, _) => badge("warn", "no thresholds".into()),
        (_, 0) => badge("pass", format!("thresholds: {}", report.thresholds_line())),
        _ => badge("fail", format!("thresholds: {}", report.thresholds_line())),
    }
    badge(if report.generator.kept_up { "pass" } else { "fail" }, format!("generator {}", report.generator.verdict));
    if let Some(pool) = &report.generator.pool {
        let class = match pool.limit {
            super::PoolLimit::None => "pass",
            super::PoolLimit::Backend | super::PoolLimit::Bursts | super::PoolLimit::Unknown => "warn",
            super::PoolLimit::Pool => "fail",
        };
        badge(class, format!("pool: {}", pool.verdict));
    }
    if let Some(why) = report.no_success() {
        badge("fail", format!("FAILED: {why}"));
    }
    if let Some(scale) = &report.scenario.scale {
        badge("warn", scale.describe());
    }
    if report.totals.retry_pending > 0 {
        badge("warn", format!("{} retries pending at the end (out of the error rate)", report.totals.retry_pending));
    }
    if report.interrupted && report.aborted.is_none() {
        badge("warn", "interrupted".into());
    }
}

fn counts_table(report: &Report, out: &mut String) {
    out.push_str(
        "<table><tr><th>fleet</th><th>offered/s</th><th>achieved/s</th><th>scheduled</th><th>sent</th>\
         <th>missed</th><th>ok</th><th>failed</th><th>error rate</th></tr>\n",
    );
    for r in report.rows() {
        let name = r.label();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            r.offered_rate,
            r.achieved_rate,
            r.scheduled,
            r.sent,
            r.missed,
            r.ok,
            r.failed,
            Unit::Fraction.format(r.error_rate())
        );
    }
    out.push_str("</table>\n");
}

fn latency_table(report: &Report, out: &mut String) {
    out.push_str(
        "<table><tr><th>fleet</th><th></th><th>p50</th><th>p75</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>\n",
    );
    for r in report.rows() {
        let name = r.label();
        for (what, p) in r.series() {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{what}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                escape(name),
                p.p50,
                p.p75,
                p.p90,
                p.p95,
                p.p99,
                p.p999,
                p.max,
                p.mean
            );
        }
    }
    out.push_str("</table>\n");
}

/// Whether a row has sessions of its own to show (an MQTT fleet's: its
/// sessions' openings, idle counts or untimed QoS 0 heartbeats); an HTTP
/// row has none, so HTTP reports stay as they were.
pub(crate) fn has_sessions(r: &super::Stats) -> bool {
    r.session_open_ms.is_some() || r.sessions.is_some() || r.unacknowledged > 0
}

/// The sentence that goes with `unacknowledged`.
pub(crate) const UNACKNOWLEDGED: &str = "unacknowledged: heartbeats published at QoS 0, written with nothing to time \
    them to; they are ok but have no latency, and a fleet with no other has no latency rows";

/// Per fleet with sessions: how many were opened (connects) and how long
/// opening took, what the idle sessions did, and the untimed QoS 0
/// heartbeats.
fn sessions_table(report: &Report, out: &mut String) {
    out.push_str(
        "<table id=\"sessions\"><tr><th>fleet</th><th>sessions opened</th><th>opening p50 ms</th><th>p99 ms</th>\
         <th>max ms</th><th>keep-alives</th><th>inbound</th><th>closed</th><th>reopened</th><th>reopen failed</th>\
         <th>unacknowledged</th></tr>\n",
    );
    let dash = || "—".to_string();
    for r in report.rows().filter(|r| has_sessions(r)) {
        let open = |f: fn(&super::Percentiles) -> f64| {
            r.session_open_ms.as_ref().map_or_else(dash, |o| format!("{:.2}", f(o)))
        };
        let count =
            |f: fn(&crate::stats::SessionCounts) -> u64| r.sessions.as_ref().map_or_else(dash, |s| f(s).to_string());
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(r.label()),
            r.connects,
            open(|o| o.p50),
            open(|o| o.p99),
            open(|o| o.max),
            count(|s| s.keepalives),
            count(|s| s.inbound),
            count(|s| s.closed),
            count(|s| s.reopened),
            count(|s| s.reopen_failed),
            r.unacknowledged
        );
    }
    out.push_str("</table>\n");
    if report.rows().any(|r| r.unacknowledged > 0) {
        let _ = writeln!(out, "<p>{}</p>", escape(UNACKNOWLEDGED));
    }
}

/// Per observed fleet (`observe`): what its observer saw of the messages
/// the broker took, and how long from each one's intended time to its
/// delivery.
fn delivery_table(report: &Report, out: &mut String) {
    out.push_str(
        "<table id=\"delivery\"><tr><th>fleet</th><th>taken by the broker</th><th>delivered</th><th>lost</th>\
         <th>duplicated</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>\n",
    );
    for d in &report.delivery {
        let lost = if d.lost > 0 { format!("<strong>{}</strong>", d.lost) } else { "0".to_string() };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{lost}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            escape(&d.fleet),
            d.expected,
            d.delivered,
            d.duplicates,
            d.latency_ms.p50,
            d.latency_ms.p99,
            d.latency_ms.max
        );
    }
    out.push_str("</table>\n");
    out.push_str(
        "<p>Taken: acknowledged by the broker (QoS 1) or written to it (QoS 0). Timed from each message's intended \
         time to its delivery to fleetstorm's own subscriber, on one clock.</p>\n",
    );
}

/// Per fleet and agent version (`breakdown = ["agent_version"]`): a
/// heartbeat counts with the version it carried.
fn cohorts_table(report: &Report, out: &mut String) {
    out.push_str(
        "<table id=\"cohorts\"><tr><th>fleet</th><th>agent version</th><th>sent</th><th>ok</th><th>failed</th>\
         <th>error rate</th><th>p50 ms</th><th>p99 ms</th></tr>\n",
    );
    for c in cohorts::rows(report) {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            escape(c.fleet),
            escape(c.agent_version),
            c.sent,
            c.ok,
            c.failed,
            Unit::Fraction.format(c.error_rate),
            c.p50_ms,
            c.p99_ms
        );
    }
    out.push_str("</table>\n");
}

fn thresholds_table(report: &Report, out: &mut String) {
    out.push_str("<table><tr><th>threshold</th><th>kind</th><th>actual</th><th>result</th></tr>\n");
    for t in &report.thresholds {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            escape(&t.expr),
            if t.abort { "abort" } else { "end" },
            escape(&t.actual_text),
            if t.ok { "pass" } else { "fail" },
            t.outcome()
        );
    }
    out.push_str("</table>\n");
}

fn failures(report: &Report, out: &mut String) {
    let failures: Vec<String> =
        report.totals.errors.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k}: {n}")).collect();
    let _ = writeln!(
        out,
        "<p>failures by class: {}<br>answers by code: {}</p>",
        escape(&if failures.is_empty() { "none".to_string() } else { failures.join(", ") }),
        escape(&report.totals.codes_line())
    );
}

fn freshness_table(report: &Report, out: &mut String) {
    out.push_str(
        "<table><tr><th>fleet</th><th>devices due</th><th>stale after</th><th>stale</th><th>never ok</th>\
         <th>largest gap p50</th><th>p99</th><th>max</th></tr>\n",
    );
    for r in report.rows() {
        let name = r.label();
        let Some(f) = &r.freshness else { continue };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            f.devices,
            f.stale_after_s.map_or("—".to_string(), |s| Unit::Millis.format(s * 1000.0)),
            f.stale_devices,
            f.never_ok,
            Unit::Millis.format(f.max_gap_ms.p50),
            Unit::Millis.format(f.max_gap_ms.p99),
            Unit::Millis.format(f.max_gap_ms.max)
        );
    }
    out.push_str("</table>\n");
}
