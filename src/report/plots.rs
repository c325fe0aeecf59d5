//! The report's plots, drawn with plotters' SVG backend from a [`Report`]
//! alone (so a saved report renders again): rates, latency and failures
//! over time, the latency percentile distribution, device freshness.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Report, Stats};
use crate::stats::{self, CLASSES};

/// One plot: an id for the page (and tests), a title, and its SVG.
pub struct Plot {
    pub id: &'static str,
    pub title: &'static str,
    /// What the reader should take from it.
    pub caption: String,
    pub svg: String,
}

const SIZE: (u32, u32) = (880, 340);
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

type DrawResult = Result<(), Box<dyn std::error::Error>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Draw = fn(&Report, &Area<'_>) -> DrawResult;
/// Points of a line, in chart coordinates.
type Points = Vec<(f64, f64)>;

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
    plots
        .into_iter()
        .map(|(id, title, caption, draw)| {
            let mut svg = String::new();
            let drawn = {
                let area = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
                area.fill(&WHITE).map_err(|e| e.to_string()).and_then(|()| {
                    draw(report, &area).map_err(|e| e.to_string())?;
                    area.present().map_err(|e| e.to_string())
                })
            };
            if let Err(e) = drawn {
                svg = format!("<p class=\"plot-error\">this plot could not be drawn: {}</p>", super::html::escape(&e));
            }
            Plot { id, title, caption, svg }
        })
        .collect()
}

fn seconds(report: &Report) -> f64 {
    (report.timeline.len().max(1)) as f64
}

fn rate_over_time(report: &Report, area: &Area<'_>) -> DrawResult {
    let t = &report.timeline;
    let top = t.iter().map(|s| s.offered.max(s.sent)).max().unwrap_or(0).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..seconds(report), 0.0..top)?;
    chart.configure_mesh().x_desc("seconds").y_desc("heartbeats / s").light_line_style(WHITE.mix(0.0)).draw()?;
    let series = [
        ("offered", PALETTE[7], t.iter().map(|s| s.offered).collect::<Vec<_>>()),
        ("achieved (sent)", PALETTE[0], t.iter().map(|s| s.sent).collect()),
        ("ok", PALETTE[2], t.iter().map(|s| s.ok).collect()),
    ];
    for (name, color, values) in series {
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(i, v)| (i as f64 + 0.5, *v as f64)),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    legend(&mut chart)
}

fn latency_over_time(report: &Report, area: &Area<'_>) -> DrawResult {
    let t = &report.timeline;
    let top = t.iter().map(|s| s.p99_ms.max(s.p50_ms)).fold(0.0, f64::max).max(0.1) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..seconds(report), 0.0..top)?;
    chart.configure_mesh().x_desc("seconds").y_desc("latency (ms)").draw()?;
    for (name, color, pick) in
        [("p50", PALETTE[0], (|s| s.p50_ms) as fn(&super::SecondStats) -> f64), ("p99", PALETTE[3], |s| s.p99_ms)]
    {
        chart
            .draw_series(LineSeries::new(
                t.iter().enumerate().filter(|(_, s)| s.sent + s.missed > 0).map(|(i, s)| (i as f64 + 0.5, pick(s))),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    legend(&mut chart)
}

fn errors_over_time(report: &Report, area: &Area<'_>) -> DrawResult {
    let t = &report.timeline;
    let mut series: Vec<(String, Vec<u64>)> = CLASSES[1..]
        .iter()
        .filter(|class| t.iter().any(|s| s.errors.get(**class).is_some_and(|n| *n > 0)))
        .map(|class| (class.to_string(), t.iter().map(|s| s.errors.get(*class).copied().unwrap_or(0)).collect()))
        .collect();
    series.push(("missed".into(), t.iter().map(|s| s.missed).collect()));
    let top = series.iter().flat_map(|(_, v)| v.iter()).copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..seconds(report), 0.0..top)?;
    chart.configure_mesh().x_desc("seconds").y_desc("per second").draw()?;
    for (i, (name, values)) in series.into_iter().enumerate() {
        let color = if name == "missed" { PALETTE[7] } else { PALETTE[(i + 3) % PALETTE.len()] };
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(i, v)| (i as f64 + 0.5, *v as f64)),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    legend(&mut chart)
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
    let lines: Vec<(&str, RGBColor, Points)> = [
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
        Some((name, color, points))
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
    for (name, color, points) in lines {
        chart
            .draw_series(LineSeries::new(
                points.into_iter().filter(|(x, _)| *x <= x_max * 10.0),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    legend(&mut chart)
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
    for (i, (name, points, bound)) in fleets.into_iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        if let Some(b) = bound {
            chart.draw_series(DashedLineSeries::new(
                vec![(0.0, b), (100.0, b)],
                6,
                4,
                color.mix(0.7).stroke_width(1),
            ))?;
        }
    }
    legend(&mut chart)
}

fn legend<'a, 'b: 'a, X: plotters::coord::ranged1d::Ranged, Y: plotters::coord::ranged1d::Ranged>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}
