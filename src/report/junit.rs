//! JUnit XML (`--junit`): one test case per threshold, so CI systems list
//! the gates natively. A failing threshold is a `<failure>` whose message
//! gives the actual value against the condition.

use std::fmt::Write as _;

use super::Report;
use super::html::escape;

/// Renders the report's thresholds as a JUnit XML document.
pub fn render(report: &Report) -> String {
    let tests = report.thresholds.len();
    let failures = report.failed_thresholds();
    let suite = format!("fleetstorm.{}", report.scenario.name);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"fleetstorm\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\">",
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
        ("target", format!("{}{}", report.scenario.target.url, report.scenario.target.path)),
        ("seed", report.scenario.seed.to_string()),
        ("duration_s", format!("{:.3}", report.duration_s)),
        ("interrupted", report.interrupted.to_string()),
        ("generator", report.generator.verdict.clone()),
        ("pool", report.generator.pool.as_ref().map_or_else(|| "none".to_string(), |p| p.verdict.clone())),
        ("connection_wait_p99_ms", format!("{:.3}", report.totals.connection_wait_ms.p99)),
        ("late", report.totals.late.to_string()),
        ("retry_pending", report.totals.retry_pending.to_string()),
    ] {
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
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
