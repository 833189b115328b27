//! The harness results as one SVG chart (`results.svg`): end-to-end throughput against the raw
//! store and broker limits on the left, latency percentiles on the right (both on log scales),
//! each with the issue 5 targets drawn as dashed lines.
//!
//! Text is written as SVG `<text>` elements (plotters' SVG backend without its `ttf` feature),
//! so no font files or system libraries are needed; the viewer picks the sans-serif font.

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::RunResult;
use crate::report::Report;

/// Width of the chart, pixels.
const WIDTH: u32 = 1200;
/// Height of the chart, pixels.
const HEIGHT: u32 = 540;
/// Issue 5 end-to-end throughput target for the gRPC broker, bundles/s.
const TARGET_GRPC: f64 = 2000.0;
/// Issue 5 end-to-end throughput target for every other broker, bundles/s.
const TARGET_OTHER: f64 = 1000.0;
/// Issue 5 p99 latency target, ms.
const TARGET_P99_MS: f64 = 50.0;
/// Room under each panel for the rotated run labels, pixels.
const RUN_LABEL_AREA: u32 = 160;
/// Fraction of one run's slot taken by its group of bars.
const GROUP_WIDTH: f64 = 0.8;
/// Fraction of a panel's height the tallest bar may reach (the legend sits above).
const PLOT_FILL: f64 = 0.62;
const FONT: &str = "sans-serif";
const TARGET_COLOR: RGBColor = RGBColor(214, 39, 40);
const TARGET_OTHER_COLOR: RGBColor = RGBColor(255, 127, 14);

/// A value of one run, with the series name and bar colour.
type Series = (&'static str, RGBColor, fn(&RunResult) -> f64);

const THROUGHPUT_SERIES: [Series; 3] = [
    ("end-to-end", RGBColor(31, 119, 180), |r| r.throughput.per_second),
    ("store alone", RGBColor(44, 160, 44), |r| r.raw_store.per_second),
    ("broker alone", RGBColor(148, 103, 189), |r| r.raw_broker.per_second),
];

const LATENCY_SERIES: [Series; 4] = [
    ("p50", RGBColor(158, 202, 225), |r| r.latency.p50_ms),
    ("p90", RGBColor(66, 146, 198), |r| r.latency.p90_ms),
    ("p99", RGBColor(8, 69, 148), |r| r.latency.p99_ms),
    ("max", RGBColor(150, 150, 150), |r| r.latency.max_ms),
];

/// Failure to render the chart.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// Plotters could not lay out or draw an element; the message is plotters' own.
    #[error("drawing the benchmark chart: {0}")]
    Draw(String),
}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for ChartError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        ChartError::Draw(e.to_string())
    }
}

/// Renders `report` as one self-contained SVG document of 1200 × 540 pixels: a title with
/// `report.date` and `report.machine`, then two panels side by side.
///
/// - Left: per run (labelled `broker/store`) bars of the end-to-end throughput and of the raw
///   store and raw broker limits, in bundles/s on a log scale, with dashed target lines at
///   2,000/s (gRPC) and 1,000/s (the other brokers).
/// - Right: per run bars of the p50, p90, p99 and maximum latency, in ms on a log scale, with a
///   dashed line at the 50 ms p99 target.
///
/// A report without runs renders a single "no runs" panel listing `report.failures`.
/// Non-finite or negative figures are drawn as zero (the bottom of the axis).
///
/// # Errors
/// [`ChartError::Draw`] when plotters fails to lay out or draw an element.
pub fn svg(report: &Report) -> Result<String, ChartError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!("maestro-bench, {} ({})", report.date, report.machine);
        let body = root.titled(&title, (FONT, 22))?;
        if report.runs.is_empty() {
            no_runs(&body, report)?;
        } else {
            let (left, right) = body.split_horizontally(WIDTH / 2);
            throughput_panel(&left, &report.runs)?;
            latency_panel(&right, &report.runs)?;
        }
        root.present()?;
    }
    Ok(out)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// `v` if it is a finite positive number, else 0.
fn clean(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 { v } else { 0.0 }
}

fn run_label(r: &RunResult) -> String {
    format!("{}/{}", r.broker, r.store)
}

/// The x axis of both panels: run `i` spans `i..i + 1`, with its tick and label at the middle.
#[derive(Debug, Clone, Copy)]
struct RunAxis {
    runs: usize,
}

impl Ranged for RunAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.range()).map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        (0..self.runs).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.runs as f64
    }
}

/// The left and right edges of bar `k` of `of` in run `i`'s group.
fn bar_span(i: usize, k: usize, of: usize) -> (f64, f64) {
    let width = GROUP_WIDTH / of as f64;
    let x0 = i as f64 + (1.0 - GROUP_WIDTH) / 2.0 + k as f64 * width;
    (x0, x0 + width)
}

/// Draws the run labels under the x axis (whose own labels are hidden), reading bottom to
/// top and ending just under their tick; `bottom` is the y value of the axis.
fn run_labels<Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RunAxis, Y>>,
    labels: &[String],
    bottom: f64,
) -> Result<(), ChartError>
where
    Y: Ranged<ValueType = f64>,
{
    // The SVG backend anchors text before rotating it, so the anchor is the label's end.
    let style = TextStyle::from((FONT, 12).into_font().transform(FontTransform::Rotate270))
        .pos(Pos::new(HPos::Right, VPos::Center));
    chart.draw_series(labels.iter().enumerate().map(|(i, label)| {
        EmptyElement::at((i as f64 + 0.5, bottom)) + Text::new(label.clone(), (0, 10), style.clone())
    }))?;
    Ok(())
}

/// The upper end of a log axis from `low` whose data reach `high`, with room for the legend.
fn log_top(low: f64, high: f64) -> f64 {
    low * (high / low).powf(1.0 / PLOT_FILL)
}

/// One panel of grouped bars on a log axis (the bars start at its bottom).
struct Panel {
    caption: &'static str,
    y_desc: &'static str,
    series: &'static [Series],
    /// The axis reaches down to half the smaller of this and the smallest value, and up to
    /// the larger of this and the largest value.
    span: (f64, f64),
    y_label: fn(&f64) -> String,
    /// Dashed target lines: value, color, legend text.
    targets: &'static [(f64, RGBColor, &'static str)],
}

const THROUGHPUT_PANEL: Panel = Panel {
    caption: "Throughput (bundles/s, log scale)",
    y_desc: "bundles/s",
    series: &THROUGHPUT_SERIES,
    span: (TARGET_OTHER, TARGET_GRPC),
    y_label: |y| format!("{y:.0}"),
    targets: &[
        (TARGET_GRPC, TARGET_COLOR, "target grpc 2,000/s"),
        (TARGET_OTHER, TARGET_OTHER_COLOR, "target others 1,000/s"),
    ],
};

const LATENCY_PANEL: Panel = Panel {
    caption: "Latency at the offered rate (ms, log scale)",
    y_desc: "ms",
    series: &LATENCY_SERIES,
    span: (TARGET_P99_MS, TARGET_P99_MS),
    y_label: |y| format_ms(*y),
    targets: &[(TARGET_P99_MS, TARGET_COLOR, "target p99 50 ms")],
};

fn throughput_panel(area: &Area<'_>, runs: &[RunResult]) -> Result<(), ChartError> {
    bar_panel(area, runs, &THROUGHPUT_PANEL)
}

fn latency_panel(area: &Area<'_>, runs: &[RunResult]) -> Result<(), ChartError> {
    bar_panel(area, runs, &LATENCY_PANEL)
}

fn bar_panel(area: &Area<'_>, runs: &[RunResult], panel: &Panel) -> Result<(), ChartError> {
    let labels: Vec<String> = runs.iter().map(run_label).collect();
    let n = runs.len() as f64;
    let values: Vec<f64> = panel
        .series
        .iter()
        .flat_map(|(_, _, value)| runs.iter().map(|r| clean(value(r))))
        .filter(|v| *v > 0.0)
        .collect();
    let low = values.iter().copied().fold(panel.span.0, f64::min) / 2.0;
    let high = values.iter().copied().fold(panel.span.1, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(panel.caption, (FONT, 17))
        .margin(10)
        .x_label_area_size(RUN_LABEL_AREA)
        .y_label_area_size(60)
        .build_cartesian_2d(RunAxis { runs: runs.len() }, (low..log_top(low, high)).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_style((FONT, 1).into_font().color(&TRANSPARENT))
        .bold_line_style(BLACK.mix(0.15))
        .light_line_style(BLACK.mix(0.04))
        .y_desc(panel.y_desc)
        .y_label_formatter(&panel.y_label)
        .draw()?;
    run_labels(&mut chart, &labels, low)?;
    for (k, (name, color, value)) in panel.series.iter().enumerate() {
        let color = *color;
        chart
            .draw_series(runs.iter().enumerate().map(|(i, r)| {
                let (x0, x1) = bar_span(i, k, panel.series.len());
                Rectangle::new([(x0, low), (x1, clean(value(r)).max(low))], color.filled())
            }))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    for (target, color, text) in panel.targets {
        target_line(&mut chart, n, *target, *color, text)?;
    }
    legend(&mut chart)
}

/// Draws the legend of the series labelled so far in the panel's upper right corner.
fn legend<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RunAxis, Y>>,
) -> Result<(), ChartError>
where
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

/// Draws a dashed horizontal line at `y` across the panel, with `text` as its legend entry.
fn target_line<Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RunAxis, Y>>,
    n: f64,
    y: f64,
    color: RGBColor,
    text: &'static str,
) -> Result<(), ChartError>
where
    Y: Ranged<ValueType = f64>,
{
    let style = color.stroke_width(2);
    chart
        .draw_series(DashedLineSeries::new([(0.0, y), (n, y)], 8, 5, style))?
        .label(text)
        .legend(move |(x, ly)| PathElement::new([(x, ly), (x + 12, ly)], style));
    Ok(())
}

/// A latency tick label, ms: whole numbers from 10 up, more decimals below.
fn format_ms(ms: f64) -> String {
    if ms >= 10.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// The panel of a report without runs: "no runs" and the failures, one a line.
fn no_runs(area: &Area<'_>, report: &Report) -> Result<(), ChartError> {
    let (w, h) = area.dim_in_pixel();
    let (cx, cy) = (w as i32 / 2, h as i32 / 3);
    let big = (FONT, 28).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text("no runs", &big, (cx, cy))?;
    let small = (FONT, 14).into_font().color(&BLACK.mix(0.7)).pos(Pos::new(HPos::Center, VPos::Center));
    for (i, failure) in report.failures.iter().take(10).enumerate() {
        let line: String = failure.chars().take(140).collect();
        area.draw_text(&line, &small, (cx, cy + 40 + 20 * i as i32))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{Broker, StoreKind};
    use crate::limits::Rate;
    use crate::load::{Latency, RestList, Resync, Throughput};
    use crate::{Footprint, Params};

    fn run(broker: Broker, store: StoreKind, e2e: f64, p99: f64) -> RunResult {
        let rate = |per_second: f64| Rate { count: 1000, seconds: 1000.0 / per_second, per_second };
        RunResult {
            broker,
            store,
            durability: "fsync=on".into(),
            throughput: Throughput { bundles: 6000, seconds: 6000.0 / e2e, per_second: e2e },
            latency: Latency {
                offered_per_second: 500.0,
                bundles: 5000,
                p50_ms: p99 / 10.0,
                p90_ms: p99 / 3.0,
                p99_ms: p99,
                max_ms: p99 * 4.0,
            },
            raw_broker: rate(e2e * 5.0),
            raw_store: rate(e2e * 2.0),
            ratio_broker: 0.2,
            ratio_store: 0.5,
            rest: RestList {
                one_consumer_bundles: 600,
                one_consumer_ms: 20.0,
                all_bundles: 6000,
                all_ms: 150.0,
            },
            resync: Resync { bundles: 600, seconds: 0.4, runs: vec![0.4] },
            footprint: Footprint {
                start_rss_mib: 10.0,
                holding_bundles: 6000,
                holding_rss_mib: 40.0,
                listed_rss_mib: 45.0,
                cpu_s_per_1000: 0.8,
                idle_agents: 10_000,
                idle_rss_mib: 200.0,
                idle_connect_s: 20.0,
                idle_error: None,
            },
            cpu_e2e: crate::cpu::CpuSplit { server: 0.3, harness: 0.2, postgres: Some(0.3), broker: None },
            cpu_store_alone: crate::cpu::CpuSplit {
                server: 0.0,
                harness: 0.1,
                postgres: Some(0.2),
                broker: None,
            },
        }
    }

    fn report(runs: Vec<RunResult>, failures: Vec<String>) -> Report {
        Report {
            date: "2026-11-30T12:00:00Z".into(),
            machine: "2 CPUs, 8 GiB memory, x86_64".into(),
            params: Params::quick(),
            runs,
            failures,
            pgbench_write: None,
        }
    }

    #[test]
    fn the_table_gives_each_postgres_run_over_the_pgbench_write_limit() {
        let mut r = report(
            vec![
                run(Broker::Grpc, StoreKind::Postgres, 3000.0, 12.0),
                run(Broker::Grpc, StoreKind::Sqlite, 2000.0, 12.0),
            ],
            vec![],
        );
        let md = crate::report::markdown(&r);
        assert!(!md.contains("pgbench"), "no line without a measurement: {md}");
        r.pgbench_write =
            Some(crate::raw::WriteLimit { bundles_per_s: 12_000.0, clients: 2, batch: 128, tried: vec![] });
        let md = crate::report::markdown(&r);
        assert!(
            md.contains("12000 bundles/s (2 clients, 128 per transaction); e2e ÷ it: grpc 0.25."),
            "{md}"
        );
    }

    /// The contents of the `<text>` elements, trimmed, in document order.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("</text>")
            .filter_map(|chunk| chunk.rsplit_once("<text"))
            .filter_map(|(_, element)| element.split_once('>'))
            .map(|(_, body)| body.trim().to_owned())
            .collect()
    }

    fn assert_svg_document(svg: &str) {
        assert!(svg.starts_with("<svg"), "not an SVG document: {:?}", &svg[..svg.len().min(80)]);
        assert!(svg.trim_end().ends_with("</svg>"), "unterminated SVG");
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count(), "unbalanced <text>");
        assert!(!svg.contains("NaN") && !svg.contains("inf\""), "non-finite coordinates in the SVG");
    }

    #[test]
    fn two_runs_draw_labels_targets_and_title() {
        let r = report(
            vec![
                run(Broker::Grpc, StoreKind::Postgres, 2400.0, 12.0),
                run(Broker::Mosquitto, StoreKind::Sqlite, 800.0, 90.0),
            ],
            vec![],
        );
        let svg = svg(&r).expect("chart renders");
        assert_svg_document(&svg);
        let texts = texts(&svg);
        let count = |t: &str| texts.iter().filter(|x| *x == t).count();
        assert_eq!(texts[0], "maestro-bench, 2026-11-30T12:00:00Z (2 CPUs, 8 GiB memory, x86_64)");
        // Each run is labelled once per panel.
        assert_eq!(count("grpc/postgres"), 2, "{texts:?}");
        assert_eq!(count("mqtt/mosquitto/sqlite"), 2, "{texts:?}");
        for legend in [
            "end-to-end",
            "store alone",
            "broker alone",
            "target grpc 2,000/s",
            "target others 1,000/s",
            "p50",
            "p90",
            "p99",
            "max",
            "target p99 50 ms",
        ] {
            assert_eq!(count(legend), 1, "legend entry {legend:?} in {texts:?}");
        }
        assert_eq!(count("no runs"), 0);
        // One bar per run and series, 2 × (3 + 4), plus the background, 7 legend swatches and
        // the two legend boxes (fill and border each).
        assert_eq!(svg.matches("<rect").count(), 14 + 1 + 7 + 2 * 2, "bars, background, legends");
    }

    #[test]
    fn the_markdown_report_shows_where_the_cpu_went() {
        let md = crate::report::markdown(&report(
            vec![run(Broker::Grpc, StoreKind::Postgres, 3000.0, 20.0)],
            vec![],
        ));
        assert!(
            md.contains("| grpc | postgres | 0.30 / 0.20 / 0.30 / – = 0.80 | 0.10 / 0.20 = 0.30 | 0.38 |"),
            "{md}"
        );
        let mut old = run(Broker::Grpc, StoreKind::Postgres, 3000.0, 20.0);
        old.cpu_e2e = crate::cpu::CpuSplit::default();
        let md = crate::report::markdown(&report(vec![old], vec![]));
        assert!(
            !md.contains("CPU s per 1,000 bundles by process"),
            "results without the split show no table"
        );
    }

    #[test]
    fn empty_report_renders_no_runs_panel() {
        let r = report(vec![], vec!["postgres: no --postgres URL given".into()]);
        let svg = svg(&r).expect("chart renders");
        assert_svg_document(&svg);
        let texts = texts(&svg);
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert_eq!(texts[1], "no runs");
        assert_eq!(texts[2], "postgres: no --postgres URL given");
    }

    #[test]
    fn degenerate_figures_still_render() {
        let mut bad = run(Broker::Pubsub, StoreKind::Sqlite, 0.0, 0.0);
        bad.raw_store.per_second = f64::NAN;
        bad.latency.max_ms = f64::INFINITY;
        let svg = svg(&report(vec![bad], vec![])).expect("chart renders");
        assert_svg_document(&svg);
        assert!(texts(&svg).iter().any(|t| t == "pubsub/emulator/sqlite"));
    }

    #[test]
    fn axes_and_scales() {
        let axis = RunAxis { runs: 3 };
        assert_eq!(axis.key_points(10), vec![0.5, 1.5, 2.5]);
        assert_eq!(axis.map(&1.5, (0, 300)), 150);
        assert_eq!(bar_span(1, 0, 4), (1.1, 1.3));
        assert!((log_top(1.0, 100.0) - 100f64.powf(1.0 / PLOT_FILL)).abs() < 1e-9);
        assert_eq!(clean(f64::NAN), 0.0);
        assert_eq!(clean(-3.0), 0.0);
        assert_eq!(clean(7.5), 7.5);
        assert_eq!(format_ms(123.4), "123");
        assert_eq!(format_ms(2.34), "2.3");
        assert_eq!(format_ms(0.123), "0.12");
    }
}
