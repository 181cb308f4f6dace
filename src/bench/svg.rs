//! The SVG chart (plotters): each case's fraction of the copy bandwidth, grouped by shape and
//! rows, one bar colour per format. Text is left to the SVG viewer, so no font files are needed.

use super::suite::SuiteResult;
use crate::quant::Format;
use plotters::prelude::*;

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

/// The chart as an SVG document.
pub fn chart(r: &SuiteResult, title: &str) -> Result<String, String> {
    let mut groups: Vec<(usize, usize, usize)> = Vec::new();
    let mut formats: Vec<Format> = Vec::new();
    for c in &r.cases {
        if !groups.contains(&(c.n, c.k, c.rows)) {
            groups.push((c.n, c.k, c.rows));
        }
        if !formats.contains(&c.format) {
            formats.push(c.format);
        }
    }
    let fraction = |c: &super::suite::Case| c.bytes_per_second() / r.copy.rate();
    let top = r.cases.iter().map(fraction).fold(0.0f64, f64::max).max(0.05) * 1.15;
    let width = (groups.len() as u32 * 40 * formats.len().max(1) as u32 / 2).clamp(640, 1600);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 420)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..groups.len().max(1) as f64, 0f64..top)
            .map_err(err)?;
        let group_label = |x: &f64| {
            let i = x.floor() as usize;
            match groups.get(i) {
                Some((n, k, rows)) if (x - i as f64 - 0.5).abs() < 1e-9 => format!("{n}x{k} r{rows}"),
                _ => String::new(),
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len() * 2 + 1)
            .x_label_formatter(&group_label)
            .y_desc("fraction of copy bandwidth")
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .draw()
            .map_err(err)?;
        let slot = 0.8 / formats.len().max(1) as f64;
        for (fi, format) in formats.iter().enumerate() {
            let colour = PALETTE[fi % PALETTE.len()];
            let bars = r.cases.iter().filter(|c| c.format == *format).filter_map(|c| {
                let g = groups.iter().position(|g| *g == (c.n, c.k, c.rows))? as f64;
                let x0 = g + 0.1 + fi as f64 * slot;
                Some(Rectangle::new([(x0, 0.0), (x0 + slot * 0.9, fraction(c))], colour.filled()))
            });
            chart
                .draw_series(bars)
                .map_err(err)?
                .label(format.name())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
