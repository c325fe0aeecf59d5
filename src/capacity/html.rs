//! The capacity report as one self-contained HTML page: the answer, the
//! devices it means, the steps, and two plots over offered load: latency
//! percentiles, and achieved against offered rate (the saturation curve).

use std::fmt::Write as _;

use plotters::prelude::*;

use super::{CapacityReport, CapacityVerdict};
use crate::report::html::{STYLE, escape};
use crate::report::plots::{self, Area, DrawResult, Line, PALETTE, draw_lines};

/// Renders the whole capacity report as one HTML page.
pub fn render(report: &CapacityReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>fleetstorm capacity: {}</title><style>{STYLE}</style></head><body>\n",
        escape(&report.scenario)
    );
    let _ = writeln!(out, "<h1>fleetstorm capacity “{}”</h1>", escape(&report.scenario));
    let _ = writeln!(
        out,
        "<p class=\"meta\">against {} · seed {} · started {} · SLO: {} · {} steps of {:.0} s (after {:.0} s of warm-up)</p>",
        escape(&report.target),
        report.seed,
        escape(&report.started_at),
        escape(&report.slo.join(", ")),
        report.settings.strategy,
        report.settings.step_duration_s,
        report.settings.warmup_s
    );
    let class = match report.verdict {
        CapacityVerdict::Found | CapacityVerdict::MaxRateReached => "pass",
        CapacityVerdict::BelowStart => "fail",
        CapacityVerdict::Inconclusive | CapacityVerdict::Interrupted => "warn",
    };
    let _ = writeln!(
        out,
        "<div class=\"verdicts\"><span class=\"{class}\">{}</span></div>",
        escape(&report.verdict.to_string())
    );
    let _ = writeln!(out, "<p><strong>{}</strong></p>", escape(&report.answer));
    if let Some(k) = report.knee_rate {
        let _ = writeln!(
            out,
            "<p>Knee: p99 latency starts climbing above {} heartbeats/s.</p>",
            crate::units::thousands(k.round() as u64)
        );
    }
    if let (Some(limit), Some(detail)) = (&report.limit, &report.limit_detail) {
        let _ = writeln!(out, "<p>First limit: <strong>{}</strong> ({}).</p>", escape(limit), escape(detail));
    }
    if !report.devices.is_empty() && report.highest_good_rate.is_some() {
        out.push_str("<h2>In devices</h2>\n<table><tr><th>interval</th><th>devices</th><th>with headroom</th></tr>\n");
        for d in &report.devices {
            let _ = writeln!(
                out,
                "<tr><td>{} s</td><td>{}</td><td>{} ({:.0}% free)</td></tr>",
                d.interval_s,
                crate::units::thousands(d.devices),
                crate::units::thousands(d.with_headroom),
                report.settings.headroom * 100.0
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("<h2>Steps</h2>\n<table><tr><th>step</th><th>devices</th><th>offered /s</th><th>achieved /s</th>\
                  <th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>errors</th><th>lag p99 ms</th><th>verdict</th></tr>\n");
    for s in &report.steps {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td>\
             <td>{:.2}%</td><td>{:.2}</td><td title=\"{}\">{}</td></tr>",
            s.step,
            crate::units::thousands(s.devices),
            s.offered_rate,
            s.achieved_rate,
            s.p50_ms,
            s.p99_ms,
            s.p999_ms,
            s.error_rate * 100.0,
            s.schedule_lag_p99_ms,
            escape(&s.reason),
            escape(&s.verdict.to_string())
        );
    }
    out.push_str("</table>\n");
    let figures = [
        (
            "plot-latency-vs-load",
            "Latency percentiles against offered load",
            "p50, p99 and p99.9 latency of each measured step (from intended send times), by the rate it offered.",
            plots::svg(|area| latency_vs_load(report, area)),
        ),
        (
            "plot-saturation",
            "Achieved against offered load",
            "Heartbeats per second sent, and answered without error, against those offered, step by step; the dashed \
             line is achieved = offered. Where the curves leave it, the system saturates.",
            plots::svg(|area| saturation(report, area)),
        ),
    ];
    for (id, title, caption, svg) in figures {
        let _ = writeln!(out, "<h2>{title}</h2>\n<figure id=\"{id}\">{svg}<figcaption>{caption}</figcaption></figure>");
    }
    out.push_str("</body></html>\n");
    out
}

/// The steps in order of offered rate, with `value` of each.
fn by_rate(report: &CapacityReport, value: impl Fn(&super::StepResult) -> f64) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = report.steps.iter().map(|s| (s.offered_rate, value(s))).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

fn top(lines: &[Line], of: impl Fn(&(f64, f64)) -> f64) -> f64 {
    lines.iter().flat_map(|(_, _, p)| p.iter().map(&of)).fold(1.0, f64::max) * 1.1
}

fn latency_vs_load(report: &CapacityReport, area: &Area<'_>) -> DrawResult {
    let lines: Vec<Line> = vec![
        ("p50".into(), PALETTE[0], by_rate(report, |s| s.p50_ms)),
        ("p99".into(), PALETTE[3], by_rate(report, |s| s.p99_ms)),
        ("p99.9".into(), PALETTE[4], by_rate(report, |s| s.p999_ms)),
    ];
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..top(&lines, |p| p.0), 0.0..top(&lines, |p| p.1))?;
    chart.configure_mesh().x_desc("offered heartbeats / s").y_desc("latency (ms)").draw()?;
    draw_lines(&mut chart, lines)
}

fn saturation(report: &CapacityReport, area: &Area<'_>) -> DrawResult {
    let lines: Vec<Line> = vec![
        ("achieved (sent)".into(), PALETTE[0], by_rate(report, |s| s.achieved_rate)),
        ("answered without error".into(), PALETTE[2], by_rate(report, |s| s.achieved_rate * (1.0 - s.error_rate))),
    ];
    let x_max = top(&lines, |p| p.0);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..x_max)?;
    chart.configure_mesh().x_desc("offered heartbeats / s").y_desc("heartbeats / s").draw()?;
    chart.draw_series(DashedLineSeries::new([(0.0, 0.0), (x_max, x_max)], 6, 4, PALETTE[7].stroke_width(1)))?;
    draw_lines(&mut chart, lines)
}
