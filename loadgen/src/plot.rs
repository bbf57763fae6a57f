//! The latency CDF as a PNG (plotters' bitmap backend). Text is drawn with plotters' pure-Rust
//! `ab_glyph` renderer from a TrueType file found on the machine (DejaVu Sans on Debian), so
//! no system font libraries are linked.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// Where a sans-serif TrueType font usually lives; the first readable one is used.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// The points plotted per curve at most: enough for a smooth curve, small enough to draw fast.
const MAX_POINTS: usize = 2000;

/// Registers a font under "sans-serif" once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = FONT_CANDIDATES
                .iter()
                .find_map(|path| std::fs::read(path).ok())
                .ok_or_else(|| {
                    format!(
                        "no TrueType font found (looked for {}); install fonts-dejavu-core",
                        FONT_CANDIDATES.join(", ")
                    )
                })?;
            // plotters keeps fonts for the life of the process; so does this one copy.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| "the font file is not a usable TrueType font".to_owned())
        })
        .clone()
        .map_err(|why| anyhow!(why))
}

/// Draws the CDF of each named series of ascending latencies (ms) to `path`.
pub fn latency_cdf(path: &Path, title: &str, series: &[(&str, &[f64])]) -> Result<()> {
    ensure_font()?;
    let samples = series.iter().flat_map(|(_, s)| s.iter().copied());
    let (low, high) = samples.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if high <= 0.0 {
        bail!("no latency samples to plot");
    }
    // A log axis needs a positive start; sub-0.1 ms latencies are not distinguished anyway.
    let x_range = (low.max(0.1) * 0.9)..(high * 1.1);

    let root = BitMapBackend::new(path, (1000, 620)).into_drawing_area();
    let draw = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(draw)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range.log_scale(), 0.0..1.0)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("cumulative fraction ≤ x (deliveries, or posts)")
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()
        .map_err(draw)?;
    let colors = [BLUE, RED, GREEN, MAGENTA];
    for (index, (name, sorted)) in series.iter().enumerate() {
        if sorted.is_empty() {
            continue;
        }
        let color = colors[index % colors.len()];
        let n = sorted.len();
        let step = n.div_ceil(MAX_POINTS).max(1);
        let points = (0..n)
            .step_by(step)
            .chain(std::iter::once(n - 1))
            .map(|i| (sorted[i].max(0.1), (i + 1) as f64 / n as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(draw)?
            .label(format!("{name} (n={n})"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}
