//! SVG plots of a result (plotters' SVG backend: no system font or image libraries needed):
//! 1. latency vs MACs, log-log, one colour per operator: cheap-FLOPs operators do not sit
//!    where their FLOPs say;
//! 2. achieved GMAC/s vs n_div (PConv) and groups (GConv), Conv and DWConv as horizontal
//!    references, one panel per shape;
//! 3. latency vs kernel size per operator, one panel per shape.

use std::path::Path;

use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::ops::{FeatureMap, OpKind, PConvForward};
use crate::output::Output;
use crate::record::{Record, RunResult};

/// Resolves an SVG output of option `flag`, refusing before any work a path this build
/// cannot write. A stream (`-`, `/dev/stdout`, a named pipe, `/dev/null`) takes SVG
/// whatever its name; a file must be named `.svg`.
pub fn output(path: &Path, flag: &str) -> Result<Output> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let out = Output::resolve(path, flag)?;
    if out.is_stream() {
        return Ok(out);
    }
    match ext.as_deref() {
        Some("svg") => Ok(out),
        Some("png") => Err(Error::Invalid(format!(
            "cannot write {flag} '{}': PNG needs system font libraries this build avoids; write .svg and convert it (e.g. rsvg-convert -o plot.png plot.svg)",
            path.display()
        ))),
        _ => Err(Error::Invalid(format!(
            "cannot write {flag} '{}': unknown extension, allowed is .svg (or -, a device or a named pipe)",
            path.display()
        ))),
    }
}

fn color(op: OpKind) -> RGBColor {
    match op {
        OpKind::Conv => RGBColor(214, 39, 40),
        OpKind::GConv => RGBColor(255, 127, 14),
        OpKind::DWConv => RGBColor(31, 119, 180),
        OpKind::PConv => RGBColor(44, 160, 44),
        OpKind::PWConv => RGBColor(148, 103, 189),
        OpKind::PConvPw => RGBColor(23, 190, 207),
        OpKind::DwPw => RGBColor(140, 86, 75),
        OpKind::GConvPw => RGBColor(227, 119, 194),
        OpKind::FasterNetBlock => RGBColor(188, 189, 34),
        OpKind::C2f => RGBColor(127, 127, 127),
        OpKind::C2fFaster => RGBColor(0, 0, 0),
        OpKind::FasterNet => RGBColor(96, 96, 160),
    }
}

/// A short point label: the variant without the obvious.
fn short(r: &Record) -> String {
    match r.spec.kind {
        OpKind::GConv | OpKind::GConvPw => {
            format!("g{} k{}", r.spec.groups.unwrap_or(0), r.spec.kernel)
        }
        OpKind::C2f => format!("n={} k{}", r.spec.bottlenecks.unwrap_or(1), r.spec.kernel),
        OpKind::PConv | OpKind::PConvPw | OpKind::FasterNetBlock | OpKind::C2fFaster => format!(
            "n{} k{}{}",
            r.spec.n_div.unwrap_or(0),
            r.spec.kernel,
            if r.spec.forward == Some(PConvForward::Slicing) {
                " s"
            } else {
                ""
            }
        ),
        OpKind::PWConv => "1x1".into(),
        _ => format!("k{}", r.spec.kernel),
    }
}

/// Values a log axis can show: positive and far from overflow (a hand-edited file can hold
/// 1e308, whose padded range would be infinite).
fn plottable(v: f64) -> bool {
    (1e-30..1e30).contains(&v)
}

/// (lo, hi) of plottable values, widened by `pad` on a log scale.
fn log_range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| plottable(*v))
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (0.1, 10.0);
    }
    (lo / pad, hi * pad)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Draw = std::result::Result<(), String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A log axis over [lo, hi] with ticks only at 1, 2 and 5 x 10^n (only at the decades when
/// those would be more than 12), so no two ticks print the same label.
type LogAxis = WithKeyPoints<LogCoord<f64>>;

fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let mut ticks: Vec<f64> = (a..=b)
        .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
        .filter(|t| (lo..=hi).contains(t))
        .collect();
    if ticks.len() > 12 {
        ticks.retain(|t| (t.log10() - t.log10().round()).abs() < 1e-9);
    }
    while ticks.len() > 12 {
        ticks = ticks.into_iter().step_by(2).collect();
    }
    ticks
}

fn log_axis(lo: f64, hi: f64) -> LogAxis {
    (lo..hi).log_scale().with_key_points(log_ticks(lo, hi))
}

/// A tick label without trailing zeros: `0.5`, `2`, `100`, `0.0000002`.
fn tick(v: &f64) -> String {
    // Enough decimals for the leading digit of any 1, 2, 5 x 10^n tick.
    let decimals = (-v.abs().log10().floor()).clamp(0.0, 30.0) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s.as_str()
    };
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

const LABEL_FONT: (&str, u32) = ("sans-serif", 14);
const POINT_FONT: u32 = 12;

type LogLog<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<LogAxis, LogAxis>>;

/// A point's hover text, placed where the chart drew the point.
pub struct Tip {
    pub at: (i32, i32),
    pub text: String,
}

/// A record's hover text: everything that identifies it, and its numbers.
fn tip_text(r: &Record) -> String {
    format!(
        "{} {} at {} ({}, batch {}, {} thread{}): {:.3} ms, {:.1} GMAC/s",
        r.spec.kind,
        r.variant,
        r.spec.map,
        r.implementation,
        r.batch,
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        r.stats.median_ms,
        r.rates.gmac_per_s
    )
}

/// Adds each tip as an invisible circle with an SVG `<title>` over its point, so hovering
/// any point in a browser names it, labelled or not.
fn with_tips(mut svg: String, tips: &[Tip]) -> String {
    let Some(end) = svg.rfind("</svg>") else {
        return svg;
    };
    let mut g = String::from("<g class=\"tips\">\n");
    for t in tips {
        g += &format!(
            "<circle cx=\"{}\" cy=\"{}\" r=\"7\" fill=\"#000\" fill-opacity=\"0\"><title>{}</title></circle>\n",
            t.at.0,
            t.at.1,
            super::html::esc(&t.text)
        );
    }
    g += "</g>\n";
    svg.insert_str(end, &g);
    svg
}

/// Axis-aligned pixel boxes of the labels placed so far.
#[derive(Default)]
struct Placed(Vec<(i32, i32, i32, i32)>);

impl Placed {
    /// Claims the box of a `chars`-long label at `at` unless it overlaps one already
    /// placed.
    fn claim(&mut self, at: (i32, i32), chars: usize) -> bool {
        let w = (chars as f64 * POINT_FONT as f64 * 0.55).ceil() as i32;
        let h = POINT_FONT as i32 + 2;
        let b = (at.0, at.1, at.0 + w, at.1 + h);
        let free = self
            .0
            .iter()
            .all(|o| b.2 <= o.0 || o.2 <= b.0 || b.3 <= o.1 || o.3 <= b.1);
        if free {
            self.0.push(b);
        }
        free
    }
}

/// One coloured point per record and a legend entry per operator; a text label beside a
/// point only where it overlaps no other label or point and stays inside the plotting area
/// (every point of these scatter charts gets a hover tip).
fn scatter_by_op<'a, 'b: 'a>(
    chart: &mut LogLog<'a, 'b>,
    recs: &[&Record],
    xy: impl Fn(&Record) -> (f64, f64),
    label: impl Fn(&Record) -> String,
    legend_at: SeriesLabelPosition,
    tips: &mut Vec<Tip>,
) -> Draw {
    // Every point is an obstacle for the labels, and labels stay inside the plotting area.
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let inside = |at: (i32, i32), chars: usize| {
        let w = (chars as f64 * POINT_FONT as f64 * 0.55).ceil() as i32;
        at.0 >= xs.start
            && at.0 + w <= xs.end
            && at.1 >= ys.start
            && at.1 + POINT_FONT as i32 <= ys.end
    };
    let mut placed = Placed(
        recs.iter()
            .map(|r| {
                let (x, y) = chart.backend_coord(&xy(r));
                (x - 4, y - 4, x + 4, y + 4)
            })
            .collect(),
    );
    for op in OpKind::ALL {
        let pts: Vec<&Record> = recs
            .iter()
            .copied()
            .filter(|r| r.spec.kind == *op)
            .collect();
        if pts.is_empty() {
            continue;
        }
        let c = color(*op);
        chart
            .draw_series(pts.iter().map(|r| Circle::new(xy(r), 4, c.filled())))
            .map_err(err)?
            .label(op.as_str())
            .legend(move |(x, y)| Circle::new((x, y), 4, c.filled()));
        let mut texts = Vec::new();
        for r in &pts {
            let at = chart.backend_coord(&xy(r));
            tips.push(Tip {
                at,
                text: tip_text(r),
            });
            let text = label(r);
            let spot = (at.0 + 6, at.1 - 4);
            if inside(spot, text.chars().count()) && placed.claim(spot, text.chars().count()) {
                texts.push((text, xy(r)));
            }
        }
        chart
            .draw_series(texts.into_iter().map(|(t, p)| {
                EmptyElement::at(p)
                    + Text::new(t, (6, -4), ("sans-serif", POINT_FONT).into_font().color(&c))
            }))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(LABEL_FONT)
        .position(legend_at)
        .draw()
        .map_err(err)
}

fn latency_vs_macs(area: &Area, recs: &[&Record], many_shapes: bool, tips: &mut Vec<Tip>) -> Draw {
    let (x0, x1) = log_range(recs.iter().map(|r| r.cost.macs as f64 / 1e6), 1.6);
    let (y0, y1) = log_range(recs.iter().map(|r| r.stats.median_ms), 1.6);
    let mut chart = ChartBuilder::on(area)
        .caption("1. latency vs multiply-adds (log-log)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(log_axis(x0, x1), log_axis(y0, y1))
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .label_style(LABEL_FONT)
        .axis_desc_style(LABEL_FONT)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .x_desc("MMACs per run (the paper's FLOPs)")
        .y_desc("median latency (ms)")
        .draw()
        .map_err(err)?;
    let label = |r: &Record| {
        if many_shapes {
            format!("{} c{}", short(r), r.spec.map.c)
        } else {
            short(r)
        }
    };
    scatter_by_op(
        &mut chart,
        recs,
        |r| (r.cost.macs as f64 / 1e6, r.stats.median_ms),
        label,
        SeriesLabelPosition::UpperLeft,
        tips,
    )
}

/// Records of one shape, one kernel size.
fn at<'a>(recs: &[&'a Record], map: FeatureMap, kernel: usize) -> Vec<&'a Record> {
    recs.iter()
        .copied()
        .filter(|r| r.spec.map == map && r.spec.kernel == kernel)
        .collect()
}

fn gmacs_vs_ratio(area: &Area, recs: &[&Record], map: FeatureMap, kernel: usize) -> Draw {
    let here = at(recs, map, kernel);
    let ymax = here
        .iter()
        .filter(|r| r.spec.kind != OpKind::PWConv)
        .map(|r| r.rates.gmac_per_s)
        .fold(1.0, f64::max);
    // x is log2(n_div or groups), labelled with the value itself.
    let xmax = here
        .iter()
        .filter_map(|r| r.spec.n_div.or(r.spec.groups))
        .map(|v| (v as f64).log2())
        .fold(2.0, f64::max)
        + 0.5;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("2. GMAC/s vs n_div / groups, {map}, k={kernel}"),
            ("sans-serif", 15),
        )
        .margin(8)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0f64..xmax, 0.0..ymax * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .label_style(LABEL_FONT)
        .axis_desc_style(LABEL_FONT)
        .x_desc("n_div (PConv), groups (GConv)")
        .y_desc("GMAC/s")
        .y_label_formatter(&tick)
        .x_labels(xmax.ceil() as usize + 1)
        .x_label_formatter(&|v| format!("{}", 2f64.powf(*v).round()))
        .draw()
        .map_err(err)?;
    let mut line = |label: String, op: OpKind, mut pts: Vec<(f64, f64)>, dashed: bool| -> Draw {
        if pts.is_empty() {
            return Ok(());
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let c = color(op);
        if dashed {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, c.stroke_width(2)))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 6, y)], c.stroke_width(2))
                });
        } else {
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
        }
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
        Ok(())
    };
    let log2 = |v: Option<usize>| (v.unwrap_or(1) as f64).log2();
    for fwd in [PConvForward::SplitCat, PConvForward::Slicing] {
        let pts = here
            .iter()
            .filter(|r| r.spec.kind == OpKind::PConv && r.spec.forward == Some(fwd))
            .map(|r| (log2(r.spec.n_div), r.rates.gmac_per_s))
            .collect();
        line(
            format!("pconv {fwd}"),
            OpKind::PConv,
            pts,
            fwd == PConvForward::Slicing,
        )?;
    }
    let pts = here
        .iter()
        .filter(|r| r.spec.kind == OpKind::GConv)
        .map(|r| (log2(r.spec.groups), r.rates.gmac_per_s))
        .collect();
    line("gconv".into(), OpKind::GConv, pts, false)?;
    for op in [OpKind::Conv, OpKind::DWConv] {
        if let Some(r) = here.iter().find(|r| r.spec.kind == op) {
            let y = r.rates.gmac_per_s;
            line(
                format!("{op} (reference)"),
                op,
                vec![(0.0, y), (xmax, y)],
                true,
            )?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(err)
}

fn latency_vs_kernel(area: &Area, recs: &[&Record], map: FeatureMap) -> Draw {
    let here: Vec<&Record> = recs
        .iter()
        .copied()
        .filter(|r| r.spec.map == map && r.spec.kind != OpKind::PWConv)
        .collect();
    let kmax = here.iter().map(|r| r.spec.kernel).max().unwrap_or(3) as f64;
    let mut kernels: Vec<f64> = here.iter().map(|r| r.spec.kernel as f64).collect();
    kernels.sort_by(f64::total_cmp);
    kernels.dedup();
    let (y0, y1) = log_range(here.iter().map(|r| r.stats.median_ms), 1.5);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("3. latency vs kernel size, {map}"),
            ("sans-serif", 15),
        )
        .margin(8)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0f64..kmax + 1.0, log_axis(y0, y1))
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .label_style(LABEL_FONT)
        .axis_desc_style(LABEL_FONT)
        .x_labels(kmax as usize + 2)
        // Ticks at every integer, labels at the kernel sizes measured.
        .x_label_formatter(&|v| {
            if kernels.iter().any(|k| (k - v).abs() < 1e-9) {
                format!("{v:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&tick)
        .x_desc("kernel size k")
        .y_desc("median latency (ms)")
        .draw()
        .map_err(err)?;
    // One series per operator: GConv at its first group count, PConv at n_div 4 (else its
    // first) with split_cat (else slicing).
    let first = |f: fn(&Record) -> Option<usize>, op: OpKind, prefer: usize| {
        let vals: Vec<usize> = here
            .iter()
            .filter(|r| r.spec.kind == op)
            .filter_map(|r| f(r))
            .collect();
        if vals.contains(&prefer) {
            Some(prefer)
        } else {
            vals.first().copied()
        }
    };
    let groups = first(|r| r.spec.groups, OpKind::GConv, 16);
    let n_div = first(|r| r.spec.n_div, OpKind::PConv, 4);
    let fwd = if here
        .iter()
        .any(|r| r.spec.forward == Some(PConvForward::SplitCat))
    {
        PConvForward::SplitCat
    } else {
        PConvForward::Slicing
    };
    for op in [OpKind::Conv, OpKind::GConv, OpKind::DWConv, OpKind::PConv] {
        let mut pts: Vec<(f64, f64)> = here
            .iter()
            .filter(|r| r.spec.kind == op)
            .filter(|r| op != OpKind::GConv || r.spec.groups == groups)
            .filter(|r| {
                op != OpKind::PConv || (r.spec.n_div == n_div && r.spec.forward == Some(fwd))
            })
            .map(|r| (r.spec.kernel as f64, r.stats.median_ms))
            .collect();
        if pts.is_empty() {
            continue;
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let c = color(op);
        let label = match op {
            OpKind::GConv => format!("gconv g={}", groups.unwrap_or(0)),
            OpKind::PConv => format!("pconv n_div={} {fwd}", n_div.unwrap_or(0)),
            _ => op.to_string(),
        };
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)
}

/// The records a figure shows: one implementation, dtype, batch and thread count (the first
/// such combination, native preferred), so every point is comparable.
fn selection(result: &RunResult) -> Vec<&Record> {
    use crate::ops::{Implementation, Pass};
    // The forward first (the paper's figures are of forwards), then a training step.
    let pick = [
        |r: &&Record| r.implementation == Implementation::Native && r.pass == Pass::Infer,
        |r: &&Record| r.pass == Pass::Infer,
        |r: &&Record| r.implementation == Implementation::Native,
    ]
    .iter()
    .find_map(|want| result.records.iter().find(want))
    .or(result.records.first());
    let Some(p) = pick else { return Vec::new() };
    result
        .records
        .iter()
        .filter(|r| {
            r.implementation == p.implementation
                && r.dtype == p.dtype
                && r.batch == p.batch
                && r.threads == p.threads
                && r.device == p.device
                && r.pass == p.pass
        })
        .collect()
}

/// Renders the three figures as one SVG document.
pub fn render_svg(result: &RunResult) -> Result<String> {
    let recs = selection(result);
    let Some(first) = recs.first() else {
        return Err(Error::Invalid(
            "nothing to plot: the result has no records".into(),
        ));
    };
    let mut shapes: Vec<FeatureMap> = Vec::new();
    for r in &recs {
        if !shapes.contains(&r.spec.map) {
            shapes.push(r.spec.map);
        }
    }
    let kernel = recs
        .iter()
        .map(|r| r.spec.kernel)
        .filter(|&k| k > 1)
        .min()
        .unwrap_or(3);
    let cols = shapes.len() as u32;
    // At most 1400 px wide, so the figure is read at its own size on a laptop screen.
    let (width, height) = ((480 * cols.max(2)).min(1400), 1300);
    let title = format!(
        "pconv-bench {}: {} ({}), {} {}, batch {}, {} thread{}, {} layers{}",
        result.config.name,
        result.device.kind,
        result.device.name,
        first.implementation,
        first.dtype,
        first.batch,
        first.threads,
        if first.threads == 1 { "" } else { "s" },
        first.layers,
        if first.pass == crate::ops::Pass::Train {
            ", training steps"
        } else {
            ""
        }
    );
    let mut svg = String::new();
    let mut tips = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let mut draw = || -> Draw {
            root.fill(&WHITE).map_err(err)?;
            let root = root.titled(&title, ("sans-serif", 20)).map_err(err)?;
            let (top, bottom) = root.split_vertically(480);
            latency_vs_macs(&top, &recs, shapes.len() > 1, &mut tips)?;
            let (mid, low) = bottom.split_vertically(400);
            let mids = mid.split_evenly((1, shapes.len()));
            let lows = low.split_evenly((1, shapes.len()));
            for ((m, l), map) in mids.iter().zip(&lows).zip(&shapes) {
                gmacs_vs_ratio(m, &recs, *map, kernel)?;
                latency_vs_kernel(l, &recs, *map)?;
            }
            root.present().map_err(err)
        };
        draw().map_err(|e| Error::Invalid(format!("plotting failed: {e}")))?;
    }
    Ok(with_tips(svg, &tips))
}

/// Writes the figures to `out`.
pub fn write(out: &Output, result: &RunResult) -> Result<()> {
    out.write(render_svg(result)?.as_bytes())
}

/// The classic roofline chart (log-log): the compute ceiling, the bandwidth slope, and one
/// labelled point per record at its arithmetic intensity.
pub fn render_roofline_svg(result: &RunResult) -> Result<String> {
    let Some(profile) = &result.profile else {
        return Err(Error::Invalid(
            "the results carry no device profile: measure with --profile PATH or --calibrate to draw a roofline".into(),
        ));
    };
    let recs = selection(result);
    let Some(first) = recs.first() else {
        return Err(Error::Invalid(
            "nothing to plot: the result has no records".into(),
        ));
    };
    let Some(c) = profile.for_threads(first.threads) else {
        return Err(Error::Invalid(format!(
            "the profile has no ceilings for {} thread(s)",
            first.threads
        )));
    };
    let (peak, bw) = (c.compute.value, c.copy.value);
    if !plottable(peak) || !plottable(bw) {
        return Err(Error::Invalid(format!(
            "the profile's ceilings (peak {peak} GFLOP/s, bandwidth {bw} GB/s) are not positive numbers below 1e30"
        )));
    }
    let ridge = peak / bw;
    let (x0, x1) = log_range(
        recs.iter()
            .map(|r| r.cost.arithmetic_intensity_flop_per_byte)
            .chain([ridge]),
        2.0,
    );
    let (y0, _) = log_range(
        recs.iter().map(|r| r.rates.gflop_per_s).chain([x0 * bw]),
        2.0,
    );
    let y1 = peak * 2.0;
    let title = format!(
        "roofline: {} ({}), {} {}, {} thread{}{}: peak {:.0} GFLOP/s, copy bandwidth {:.1} GB/s",
        result.device.name,
        result.device.kind,
        first.implementation,
        first.dtype,
        first.threads,
        if first.threads == 1 { "" } else { "s" },
        if first.pass == crate::ops::Pass::Train {
            ", training steps"
        } else {
            ""
        },
        peak,
        bw
    );
    let mut svg = String::new();
    let mut tips = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 750)).into_drawing_area();
        let mut draw = || -> Draw {
            root.fill(&WHITE).map_err(err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&title, ("sans-serif", 17))
                .margin(15)
                .x_label_area_size(45)
                .y_label_area_size(70)
                .build_cartesian_2d(log_axis(x0, x1), log_axis(y0, y1))
                .map_err(err)?;
            chart
                .configure_mesh()
                .light_line_style(TRANSPARENT)
                .label_style(LABEL_FONT)
                .axis_desc_style(LABEL_FONT)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .x_desc("arithmetic intensity (FLOP per byte, paper's memory model)")
                .y_desc("achieved GFLOP/s")
                .draw()
                .map_err(err)?;
            let roof: Vec<(f64, f64)> = vec![(x0, x0 * bw), (ridge, peak), (x1, peak)];
            chart
                .draw_series(LineSeries::new(roof, BLACK.stroke_width(2)))
                .map_err(err)?
                .label(format!("min({peak:.0} GFLOP/s, intensity x {bw:.1} GB/s)"))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2))
                });
            scatter_by_op(
                &mut chart,
                &recs,
                |r| {
                    (
                        r.cost.arithmetic_intensity_flop_per_byte,
                        r.rates.gflop_per_s,
                    )
                },
                |r| format!("{} c{}", short(r), r.spec.map.c),
                SeriesLabelPosition::LowerRight,
                &mut tips,
            )?;
            root.present().map_err(err)
        };
        draw().map_err(|e| Error::Invalid(format!("plotting failed: {e}")))?;
    }
    Ok(with_tips(svg, &tips))
}

/// Writes the roofline chart to `out`.
pub fn write_roofline(out: &Output, result: &RunResult) -> Result<()> {
    out.write(render_roofline_svg(result)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_are_one_two_five_and_print_once_each() {
        assert_eq!(
            log_ticks(0.8, 120.0),
            [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
        // Nine decades: only the powers of ten, thinned to at most 12.
        let wide = log_ticks(1e-3, 1e6);
        assert!(wide.len() <= 12, "{wide:?}");
        assert!(wide
            .iter()
            .all(|t| (t.log10() - t.log10().round()).abs() < 1e-9));
        let labels: Vec<String> = log_ticks(0.3, 300.0).iter().map(tick).collect();
        assert_eq!(
            labels,
            ["0.5", "1", "2", "5", "10", "20", "50", "100", "200"]
        );
        let mut unique = labels.clone();
        unique.dedup();
        assert_eq!(unique, labels);
    }

    #[test]
    fn every_point_has_a_tip_where_it_was_drawn_and_labels_do_not_overlap() {
        let result: RunResult =
            serde_json::from_str(include_str!("../../results/cpu-xeon-2c-1t-sweep.json")).unwrap();
        let svg = render_svg(&result).unwrap();
        let tips = &svg[svg.find("<g class=\"tips\">").expect("tips")..];
        let n = tips.matches("<title>").count();
        assert_eq!(n, selection(&result).len());
        // Each tip sits on a circle plotters drew.
        for t in tips.split("<circle").skip(1).take(20) {
            let cx = t.split("cx=\"").nth(1).unwrap().split('"').next().unwrap();
            let cy = t.split("cy=\"").nth(1).unwrap().split('"').next().unwrap();
            assert!(
                svg.contains(&format!("<circle cx=\"{cx}\" cy=\"{cy}\" r=\"4\"")),
                "no point at {cx},{cy}"
            );
        }
        let mut placed = Placed::default();
        assert!(placed.claim((0, 0), 10));
        assert!(!placed.claim((20, 5), 10), "overlapping box refused");
        assert!(placed.claim((0, 40), 10));
    }
}
