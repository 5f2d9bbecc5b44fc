//! The scaling sweeps drawn as a PNG: one panel per sweep and figure, the parameter on
//! the x axis (logarithmic where it spans orders of magnitude).

use crate::bench::scaling::{ScalingReport, Sweep};
use anyhow::anyhow;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1500, 900);

/// What one panel shows of a sweep.
#[derive(Clone, Copy)]
enum Figure {
    Throughput,
    Extra,
}

/// Draws the report's six panels (throughput and second figure of each sweep) to `path`.
pub fn draw(report: &ScalingReport, path: &Path) -> anyhow::Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((2, 3));
    let panels = report
        .sweeps()
        .into_iter()
        .flat_map(|s| [(s, Figure::Throughput), (s, Figure::Extra)]);
    // Column by column: a sweep's throughput above its second figure.
    let order = [0, 3, 1, 4, 2, 5];
    for ((sweep, figure), &at) in panels.zip(order.iter()) {
        panel(&areas[at], sweep, figure)?;
    }
    root.present()
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
}

fn register_font() -> anyhow::Result<()> {
    static LOADED: OnceLock<bool> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, ttf_noto_sans::REGULAR).is_ok()
    });
    anyhow::ensure!(*loaded, "the embedded font does not load");
    Ok(())
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    sweep: &Sweep,
    figure: Figure,
) -> anyhow::Result<()> {
    let points: Vec<(f64, f64)> = sweep
        .points
        .iter()
        .map(|p| match figure {
            Figure::Throughput => (p.x, p.events_per_s / 1e3),
            Figure::Extra => (p.x, p.extra),
        })
        .collect();
    if points.is_empty() {
        return Ok(());
    }
    let y_desc = match figure {
        Figure::Throughput => "thousand events/s (one thread)",
        Figure::Extra => sweep.extra,
    };
    let (x_min, x_max) = bounds(points.iter().map(|p| p.0));
    let (_, y_max) = bounds(points.iter().map(|p| p.1));
    let y = 0.0..(y_max * 1.15).max(1.0);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(format!("{y_desc} by {}", sweep.parameter), (FONT, 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64);
    if sweep.log_x {
        let chart = builder.build_cartesian_2d((x_min..x_max * 1.5).log_scale(), y)?;
        axes_and_curve(chart, sweep.parameter, y_desc, &points)
    } else {
        let chart = builder.build_cartesian_2d((x_min - 0.5)..(x_max + 0.5), y)?;
        axes_and_curve(chart, sweep.parameter, y_desc, &points)
    }
}

fn axes_and_curve<'a, X>(
    mut chart: ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, RangedCoordf64>>,
    x_desc: &str,
    y_desc: &str,
    points: &[(f64, f64)],
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .light_line_style(WHITE)
        .x_label_formatter(&|x| whole(*x))
        .y_label_formatter(&|y| whole(*y))
        .draw()?;
    let color = RGBColor(31, 100, 180);
    chart.draw_series(LineSeries::new(
        points.iter().copied(),
        color.stroke_width(2),
    ))?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    Ok(())
}

fn whole(v: f64) -> String {
    format!("{v:.0}")
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}
