//! The report's plots, drawn with plotters' SVG backend from a [`Report`]
//! alone (so a saved report renders again): rates, latency and failures
//! over time, sessions over time (a run of sessions'), the latency
//! percentile distribution, device freshness.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Report, Stats};
use crate::stats::{self, OutcomeClass};

/// One plot: an id for the page (and tests), a title, and its SVG.
pub struct Plot {
    pub id: &'static str,
    pub title: &'static str,
    /// What the reader should take from it.
    pub caption: String,
    pub svg: String,
}

pub(crate) const SIZE: (u32, u32) = (880, 340);
pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

pub(crate) type DrawResult = Result<(), Box<dyn std::error::Error>>;
pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Draw = fn(&Report, &Area<'_>) -> DrawResult;
/// Points of a line, in chart coordinates.
pub(crate) type Points = Vec<(f64, f64)>;

/// Every plot of a report, in page order.
pub fn all(report: &Report) -> Vec<Plot> {
    let plots: [(&'static str, &'static str, String, Draw); 5] = [
        (
            "plot-rate",
            "Offered and achieved rate",
            "Heartbeats per second whose intended time fell in each second (offered) and that were sent (achieved). \
             A gap between them means the generator or the device's own pacing held heartbeats back."
                .into(),
            rate_over_time,
        ),
        (
            "plot-latency",
            "Latency over time",
            "p50 and p99 of the heartbeats that ended in each second, measured from their intended send time \
             (coordinated omission corrected)."
                .into(),
            latency_over_time,
        ),
        (
            "plot-errors",
            "Failures over time",
            "Failed heartbeats per second by class, and missed heartbeats (never sent: the device was still busy)."
                .into(),
            errors_over_time,
        ),
        (
            "plot-distribution",
            "Latency percentile distribution",
            "The whole run's latency and service time by percentile, HdrHistogram style: the x axis is 1/(1-q), \
             so each step right is a further nine (90%, 99%, 99.9%...)."
                .into(),
            percentile_distribution,
        ),
        (
            "plot-freshness",
            "Device freshness",
            "Each device's largest gap without a successful heartbeat, by percentile of devices, per fleet; the \
             dashed lines are the fleets' staleness bounds."
                .into(),
            freshness,
        ),
    ];
    let mut plots: Vec<(&'static str, &'static str, String, Draw)> = plots.into();
    // A run of sessions (MQTT's): how they came up, went down and came
    // back, after the heartbeats' own failures; an HTTP run has none.
    if report.timeline.iter().any(|s| s.sessions_open.is_some()) {
        let sessions = (
            "plot-sessions",
            "Sessions over time",
            "Devices' sessions open at the end of each second, and sessions opened (first openings and \
             reopenings) and ended (lost, closed by the far end, or by their devices going silent) per second."
                .into(),
            sessions_over_time as Draw,
        );
        plots.insert(3, sessions);
    }
    plots
        .into_iter()
        .map(|(id, title, caption, draw)| Plot { id, title, caption, svg: svg(|area| draw(report, area)) })
        .collect()
}

/// One chart as SVG text; if it cannot be drawn, a paragraph saying why.
pub(crate) fn svg(draw: impl FnOnce(&Area<'_>) -> DrawResult) -> String {
    let mut svg = String::new();
    let drawn = {
        let area = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        area.fill(&WHITE).map_err(|e| e.to_string()).and_then(|()| {
            draw(&area).map_err(|e| e.to_string())?;
            area.present().map_err(|e| e.to_string())
        })
    };
    match drawn {
        Ok(()) => svg,
        Err(e) => format!("<p class=\"plot-error\">this plot could not be drawn: {}</p>", super::markup::escape(&e)),
    }
}

fn seconds(report: &Report) -> f64 {
    report.timeline.last().map_or(1, |s| s.t + s.width_s.max(1)) as f64
}

/// A named line in a chart's legend.
pub(crate) type Line = (String, RGBColor, Points);

/// One point per second of the timeline, at the middle of its second.
/// One point per timeline entry, at its middle; counts become rates per
/// second (a folded entry of a long run covers several seconds).
fn per_second(report: &Report, value: impl Fn(&super::SecondStats) -> f64) -> Points {
    report
        .timeline
        .iter()
        .map(|s| {
            let width = s.width_s.max(1) as f64;
            (s.t as f64 + width / 2.0, value(s) / width)
        })
        .collect()
}

/// One point per timeline entry that had outcomes: a latency figure, not a rate.
fn per_entry(report: &Report, value: impl Fn(&super::SecondStats) -> f64) -> Points {
    report
        .timeline
        .iter()
        .filter(|s| s.sent + s.missed > 0)
        .map(|s| (s.t as f64 + s.width_s.max(1) as f64 / 2.0, value(s)))
        .collect()
}

/// A chart over the run's seconds: the lines, from 0 to just above the highest.
fn time_chart(report: &Report, area: &Area<'_>, y_desc: &str, lines: Vec<Line>) -> DrawResult {
    let top = lines.iter().flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y)).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..seconds(report), 0.0..top)?;
    chart.configure_mesh().x_desc("seconds").y_desc(y_desc).draw()?;
    draw_lines(&mut chart, lines)
}

fn rate_over_time(report: &Report, area: &Area<'_>) -> DrawResult {
    let lines = vec![
        ("offered".into(), PALETTE[7], per_second(report, |s| s.offered as f64)),
        ("achieved (sent)".into(), PALETTE[0], per_second(report, |s| s.sent as f64)),
        ("ok".into(), PALETTE[2], per_second(report, |s| s.ok as f64)),
    ];
    time_chart(report, area, "heartbeats / s", lines)
}

fn latency_over_time(report: &Report, area: &Area<'_>) -> DrawResult {
    // Seconds in which nothing ended have no percentiles: left out.
    let lines = vec![
        ("p50".into(), PALETTE[0], per_entry(report, |s| s.p50_ms)),
        ("p99".into(), PALETTE[3], per_entry(report, |s| s.p99_ms)),
    ];
    time_chart(report, area, "latency (ms)", lines)
}

fn errors_over_time(report: &Report, area: &Area<'_>) -> DrawResult {
    let count =
        |class: OutcomeClass| move |s: &super::SecondStats| s.errors.get(class.as_str()).copied().unwrap_or(0) as f64;
    let mut lines: Vec<Line> = OutcomeClass::FAILED
        .into_iter()
        .filter(|class| report.timeline.iter().any(|s| count(*class)(s) > 0.0))
        .enumerate()
        .map(|(i, class)| (class.to_string(), PALETTE[(i + 3) % PALETTE.len()], per_second(report, count(class))))
        .collect();
    lines.push(("missed".into(), PALETTE[7], per_second(report, |s| s.missed as f64)));
    if report.timeline.iter().any(|s| s.retries > 0) {
        lines.push(("retries sent".into(), PALETTE[4], per_second(report, |s| s.retries as f64)));
    }
    time_chart(report, area, "per second", lines)
}

fn sessions_over_time(report: &Report, area: &Area<'_>) -> DrawResult {
    // Open at the end of each entry, from none at the start.
    let open: Points = std::iter::once((0.0, 0.0))
        .chain(report.timeline.iter().filter_map(|s| Some(((s.t + s.width_s.max(1)) as f64, s.sessions_open? as f64))))
        .collect();
    let mut lines = vec![("open".into(), PALETTE[0], open)];
    // Reports written before the timeline counted openings have only the gauge.
    if report.timeline.iter().any(|s| s.sessions_opened.is_some()) {
        let count = |n: Option<u64>| n.unwrap_or(0) as f64;
        lines.push(("opened / s".into(), PALETTE[2], per_second(report, |s| count(s.sessions_opened))));
        lines.push(("ended / s".into(), PALETTE[3], per_second(report, |s| count(s.sessions_ended))));
    }
    time_chart(report, area, "sessions, sessions / s", lines)
}

/// Points (1/(1-q), value in ms) of a histogram of µs, from q = 0 to the
/// last recorded value, as HdrHistogram's percentile plots draw them.
fn percentile_points(h: &hdrhistogram::Histogram<u64>) -> Points {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points = Vec::new();
    for v in h.iter_quantiles(4) {
        let q = v.quantile_iterated_to();
        if q >= 1.0 {
            break;
        }
        points.push((1.0 / (1.0 - q), h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0));
    }
    points
}

fn percentile_distribution(report: &Report, area: &Area<'_>) -> DrawResult {
    let totals = &report.totals;
    let lines: Vec<Line> = [
        ("latency", PALETTE[3], &totals.histograms.latency),
        ("service time", PALETTE[0], &totals.histograms.service_time),
    ]
    .into_iter()
    .filter_map(|(name, color, encoded)| {
        let h = stats::decode_histogram(encoded).ok()?;
        let mut points = percentile_points(&h);
        // End the line at the maximum, placed one step past the last nine.
        if let Some(&(x, _)) = points.last() {
            points.push((x * 10.0, h.max() as f64 / 1000.0));
        }
        Some((name.to_string(), color, points))
    })
    .collect();
    let x_max = lines.iter().flat_map(|(_, _, p)| p.iter().map(|(x, _)| *x)).fold(10.0, f64::max).min(1e7);
    let nines = x_max.log10().ceil().max(1.0);
    let y_max = lines.iter().flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y)).fold(0.1, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d((1.0..10f64.powf(nines)).log_scale(), 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("ms")
        .x_label_formatter(&|x| {
            let q = 100.0 * (1.0 - 1.0 / x);
            let text = format!("{q:.4}");
            format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
        })
        .draw()?;
    draw_lines(&mut chart, lines)
}

fn freshness(report: &Report, area: &Area<'_>) -> DrawResult {
    // Per fleet: (name, points (share of devices in %, gap in s), bound in s).
    let fleets: Vec<(String, Points, Option<f64>)> = report
        .fleets
        .iter()
        .filter_map(|f: &Stats| {
            let fresh = f.freshness.as_ref()?;
            let h = stats::decode_histogram(&fresh.histogram).ok().filter(|h| !h.is_empty())?;
            let mut points: Vec<(f64, f64)> = (0..=200)
                .map(|i| {
                    let q = f64::from(i) / 200.0;
                    (q * 100.0, h.value_at_quantile(q) as f64 / 1e6)
                })
                .collect();
            points.dedup();
            Some((f.name.clone().unwrap_or_default(), points, fresh.stale_after_s))
        })
        .collect();
    let y_max =
        fleets.iter().flat_map(|(_, p, bound)| p.iter().map(|(_, y)| *y).chain(*bound)).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..100.0, 0.0..y_max)?;
    chart.configure_mesh().x_desc("% of devices").y_desc("largest gap (s)").draw()?;
    let mut lines = Vec::new();
    for (i, (name, points, bound)) in fleets.into_iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        if let Some(b) = bound {
            let dashes = DashedLineSeries::new(vec![(0.0, b), (100.0, b)], 6, 4, color.mix(0.7).stroke_width(1));
            chart.draw_series(dashes)?;
        }
        lines.push((name, color, points));
    }
    draw_lines(&mut chart, lines)
}

/// Draws the lines, 2 px wide (the browser test tells data from grid
/// lines by that), and their legend.
pub(crate) fn draw_lines<'a, 'b: 'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    lines: Vec<Line>,
) -> DrawResult
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    for (name, color, points) in lines {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}
