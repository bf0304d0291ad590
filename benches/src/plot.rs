//! `shmwire bench --plot DIR`: one SVG per mode with the latency
//! distribution of every case of the run (shmwire and every peer, the limit
//! included) as a CDF over a log-scale latency axis, drawn from the
//! histograms the harness recorded.
//!
//! Drawn by plotters' SVG backend alone: text is written as SVG `<text>`
//! (sized by an estimate), so no font or system library is needed.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::harness::BenchResult;
use super::Report;

/// Chart size in pixels.
const SIZE: (u32, u32) = (1200, 760);

/// The CDF of `hist`: `(latency ns, fraction of samples ≤ it)` at every
/// recorded value, with the first sample's value at fraction 0 so the curve
/// starts on the axis.
pub fn cdf_points(hist: &Histogram<u64>) -> Vec<(f64, f64)> {
    let total = hist.len();
    if total == 0 {
        return Vec::new();
    }
    let mut points = vec![(hist.min().max(1) as f64, 0.0)];
    for v in hist.iter_recorded() {
        let x = hist.highest_equivalent(v.value_iterated_to()).max(1) as f64;
        points.push((x, v.count_since_last_iteration() as f64));
    }
    let mut seen = 0.0;
    for p in points.iter_mut().skip(1) {
        seen += p.1;
        p.1 = seen / total as f64;
    }
    points
}

/// Writes the report's latency CDF to `path` (an `.svg`): one line per case,
/// each named in the legend.
pub fn write_cdf(report: &Report, path: &Path) -> BenchResult<()> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = report
        .cases
        .iter()
        .map(|c| (c.name, cdf_points(&c.hist)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let lo = series
        .iter()
        .map(|(_, p)| p[0].0)
        .fold(f64::MAX, f64::min)
        .min(1e9);
    let hi = series
        .iter()
        .map(|(_, p)| p[p.len() - 1].0)
        .fold(1.0, f64::max);
    // Whole decades around the data, so the log axis has readable ticks.
    let lo = 10f64.powf(lo.max(1.0).log10().floor());
    let hi = 10f64.powf(hi.max(lo * 10.0).log10().ceil());

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let m = &report.machine;
    let caption = format!(
        "shmwire bench {}: latency per operation (CDF), {} CPUs, {}",
        report.mode, m.cores, m.cpu_model
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("latency per operation, ns (log scale)")
        .y_desc("fraction of operations at or below")
        .x_label_formatter(&|x| format_ns(*x))
        .draw()?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        // The limit is the reference line: drawn thicker.
        let width = if name.starts_with("limit/") { 3 } else { 2 };
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(width),
            ))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(width))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

/// `1500` → `1.5µs`: tick labels of the latency axis.
fn format_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{}s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{}ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{}µs", ns / 1e3)
    } else {
        format!("{ns}ns")
    }
}
