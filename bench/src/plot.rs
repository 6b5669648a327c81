//! The benchmark's plots (SVG, drawn with `plotters`): latency p50/p99 per measure on a log
//! scale, and throughput against client concurrency next to the library's presign rate.

use std::{path::Path, time::Duration};

use plotters::prelude::*;

/// What the plots show.
#[derive(Default)]
pub struct Data {
    /// (measure, p50, p99).
    pub latency: Vec<(String, Duration, Duration)>,
    /// (series, concurrency, signatures per second).
    pub throughput: Vec<(String, usize, f64)>,
    /// Library presignatures per second on the same cores.
    pub library_rate: f64,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3).max(0.01)
}

/// Writes `latency.svg` and `throughput.svg` into `dir`.
pub fn write(d: &Data, dir: &Path) -> anyhow::Result<()> {
    latency(d, &dir.join("latency.svg"))?;
    throughput(d, &dir.join("throughput.svg"))?;
    Ok(())
}

fn latency(d: &Data, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1000, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let n = d.latency.len().max(1);
    let top = d.latency.iter().map(|x| ms(x.2)).fold(100.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "sign latency: p50 (bar) and p99 (cross), ms, log scale; targets 10 and 50 ms dashed",
            ("sans-serif", 17),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n).into_segmented(), (1.0..top).log_scale())
        .map_err(err)?;
    let names: Vec<String> = d.latency.iter().map(|x| x.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(n + 1)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc("ms")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(d.latency.iter().enumerate().map(|(i, x)| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 1.0),
                    (SegmentValue::Exact(i + 1), ms(x.1)),
                ],
                BLUE.mix(0.6).filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))
        .map_err(err)?;
    chart
        .draw_series(
            d.latency.iter().enumerate().map(|(i, x)| {
                Cross::new((SegmentValue::CenterOf(i), ms(x.2)), 6, RED.stroke_width(2))
            }),
        )
        .map_err(err)?;
    for target in [10.0, 50.0] {
        chart
            .draw_series(DashedLineSeries::new(
                vec![
                    (SegmentValue::Exact(0), target),
                    (SegmentValue::Exact(n), target),
                ],
                6,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn throughput(d: &Data, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (700, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let max_c = d.throughput.iter().map(|x| x.1).max().unwrap_or(1) as f64;
    let top = d
        .throughput
        .iter()
        .map(|x| x.2)
        .fold(d.library_rate, f64::max)
        * 1.3;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "signatures per second against client concurrency",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (0.8..max_c * 1.25).log_scale(),
            (0.01..top.max(1.0)).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc("signatures/s")
        .draw()
        .map_err(err)?;
    let warm: Vec<(f64, f64)> = d
        .throughput
        .iter()
        .filter(|x| x.0 == "warm")
        .map(|x| (x.1 as f64, x.2))
        .collect();
    chart
        .draw_series(LineSeries::new(warm.clone(), BLUE.stroke_width(2)))
        .map_err(err)?
        .label("warm (pool filled)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
    chart
        .draw_series(warm.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))
        .map_err(err)?;
    chart
        .draw_series(
            d.throughput
                .iter()
                .filter(|x| x.0 == "drained")
                .map(|x| Circle::new((x.1 as f64, x.2), 6, GREEN.filled())),
        )
        .map_err(err)?
        .label("pool drained (full signing)")
        .legend(|(x, y)| Circle::new((x + 9, y), 4, GREEN.filled()));
    chart
        .draw_series(LineSeries::new(
            vec![(0.8, d.library_rate), (max_c * 1.25, d.library_rate)],
            RED.stroke_width(1),
        ))
        .map_err(err)?
        .label("library presign rate, same cores")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plot: {e:?}")
}
