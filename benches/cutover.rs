//! Which CPU kernel wins where: every kernel that can run a convolution timed against the
//! others in interleaved rounds (A, B, C, A, B, C, ...), on the convolutions the Table 1 and
//! sweep suites run (Conv, GConv's groups, DWConv, PConv's partial conv, PWConv), one layer, batch 1,
//! f32. Per case it prints each kernel's median (median over rounds of the round's median),
//! its time over the fastest kernel's (median of per-round ratios), and whether the
//! dispatcher (`conv_kernel`) picks the fastest. Before timing, each kernel's output is
//! checked against the first kernel's. PConv's cases time its partial conv as a dense conv of
//! c_p channels: the direct stencil's gather and copy-back of those channels, which the layer
//! pays, are left out, so the comparison leans towards the stencil if anything.
//!
//!     cargo bench --bench cutover                     # every case, 1 thread
//!     cargo bench --bench cutover -- --threads 2 --k 3
//!     cargo bench --bench cutover -- --table1         # Table 1's convolutions only
//!     cargo bench --bench cutover -- --table1 --only "pwconv 1x1 96x56x56"

use std::time::Instant;

use pconv_bench::ops::native::{conv_kernel, ConvKernel, NativeLayer};
use pconv_bench::ops::{self, FeatureMap, OpKind, OpSpec};

const MAPS: [&str; 4] = ["96x56x56", "192x28x28", "384x14x14", "768x7x7"];
const ROUNDS: usize = 5;
/// Forwards per kernel per round (the round's median is over these).
const REPS: usize = 9;

struct Case {
    label: String,
    spec: OpSpec,
}

fn conv(kind: OpKind, map: FeatureMap, k: usize, groups: Option<usize>) -> OpSpec {
    OpSpec {
        groups,
        ..OpSpec::plain(kind, k, map)
    }
}

/// The convolutions of the Table 1 suite (`table1`) or of Table 1 plus the sweep, as the
/// native layers run them: PConv's partial conv is a dense conv on its c_p channels.
fn cases(table1: bool, kernels: &[usize]) -> Vec<Case> {
    let mut out = Vec::new();
    for map in MAPS {
        let m: FeatureMap = map.parse().expect("bench maps parse");
        for &k in kernels {
            let (groups, n_divs): (&[usize], &[usize]) = if table1 {
                (&[16], &[4])
            } else {
                (&[4, 8, 16], &[2, 4, 8, 16])
            };
            out.push(Case {
                label: format!("conv {k}x{k} {map}"),
                spec: conv(OpKind::Conv, m, k, None),
            });
            for &g in groups {
                out.push(Case {
                    label: format!("gconv {k}x{k} g={g} {map}"),
                    spec: conv(OpKind::GConv, m, k, Some(g)),
                });
            }
            out.push(Case {
                label: format!("dwconv {k}x{k} {map}"),
                spec: conv(OpKind::DWConv, m, k, None),
            });
            for &d in n_divs {
                let partial = FeatureMap { c: m.c / d, ..m };
                out.push(Case {
                    label: format!("pconv {k}x{k} n_div={d} {map} (conv of {})", partial.c),
                    spec: conv(OpKind::Conv, partial, k, None),
                });
            }
        }
        out.push(Case {
            label: format!("pwconv 1x1 {map}"),
            spec: conv(OpKind::PWConv, m, 1, None),
        });
    }
    out
}

/// Prints a one-line error and exits with status 2, before anything is measured or printed.
fn usage_error(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| match v.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => panic!("{flag} {v}: a positive integer is allowed"),
            })
    };
    let threads = value("--threads").unwrap_or(1);
    let kernels: Vec<usize> = value("--k").map_or(vec![3, 5, 7], |k| vec![k]);
    let table1 = args.iter().any(|a| a == "--table1");
    // Cases whose label contains this text (all where absent).
    let only = args.iter().position(|a| a == "--only").map(|i| {
        match args
            .get(i + 1)
            .filter(|v| !v.is_empty() && !v.starts_with("--"))
        {
            Some(v) => v.clone(),
            None => usage_error(
                "--only needs the text of a case's label, such as \"pwconv 1x1 96x56x56\"",
            ),
        }
    });
    let all = cases(table1, &kernels);
    if let Some(o) = &only {
        if !all.iter().any(|c| c.label.contains(o.as_str())) {
            usage_error(&format!(
                "--only '{o}' matches no case of this run; labels look like \"conv 3x3 96x56x56\" \
                 or \"pwconv 1x1 768x7x7\" (with --table1, the k of --k, or 3, 5 and 7)"
            ));
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    println!(
        "{threads} thread(s), batch 1, f32, {ROUNDS} interleaved rounds of {REPS} forwards per \
         kernel; ratio = median over rounds of kernel / fastest kernel in that round\n"
    );
    println!("| convolution | cg | kernel | median ms | / fastest | dispatcher |");
    println!("|---|--:|---|--:|--:|---|");
    let mut wrong = 0;
    for case in all
        .into_iter()
        .filter(|c| only.as_ref().is_none_or(|o| c.label.contains(o.as_str())))
    {
        let s = &case.spec;
        let FeatureMap { c, h, w } = s.map;
        let cg = c / s.conv_groups();
        let weights = ops::random_weights(s, 1, 2303);
        let layers: Vec<(ConvKernel, NativeLayer)> = ConvKernel::ALL
            .into_iter()
            .filter_map(|kern| NativeLayer::forced(s, &weights[0], kern).map(|l| (kern, l)))
            .collect();
        if layers.len() <= 2 {
            continue; // no register-blocked kernel can run it: the older rule decides
        }
        let x = ops::uniform(c * h * w, 1.0, &mut ops::seeded_rng(1));
        let mut out = vec![0f32; x.len()];
        // Each kernel writes into a NaN-filled buffer, so an element it skips shows.
        let outputs: Vec<Vec<f32>> = layers
            .iter()
            .map(|(_, l)| {
                out.fill(f32::NAN);
                pool.install(|| l.run(&x, &mut out, 1, h, w));
                out.clone()
            })
            .collect();
        for ((kern, _), o) in layers.iter().zip(&outputs) {
            let scale = outputs[0].iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = o
                .iter()
                .zip(&outputs[0])
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            // f32::max ignores NaN: a skipped element fails the finiteness check instead.
            assert!(
                o.iter().all(|v| v.is_finite()) && err <= 1e-4 * scale,
                "{}: {kern:?} disagrees by {err}",
                case.label
            );
        }
        // times[kernel][round]
        let mut times = vec![Vec::new(); layers.len()];
        for _ in 0..ROUNDS {
            for (i, (_, l)) in layers.iter().enumerate() {
                let mut samples: Vec<f64> = (0..REPS)
                    .map(|_| {
                        let t = Instant::now();
                        pool.install(|| l.run(&x, &mut out, 1, h, w));
                        t.elapsed().as_secs_f64() * 1e3
                    })
                    .collect();
                times[i].push(median(&mut samples));
            }
        }
        let fastest_per_round: Vec<f64> = (0..ROUNDS)
            .map(|r| times.iter().map(|t| t[r]).fold(f64::INFINITY, f64::min))
            .collect();
        let ratios: Vec<f64> = times
            .iter()
            .map(|t| {
                let mut r: Vec<f64> = t
                    .iter()
                    .zip(&fastest_per_round)
                    .map(|(a, f)| a / f)
                    .collect();
                median(&mut r)
            })
            .collect();
        let best = (0..layers.len())
            .min_by(|&a, &b| ratios[a].total_cmp(&ratios[b]))
            .expect("at least one kernel");
        let picked = conv_kernel(c, s.conv_groups(), (h, w), s.kernel);
        if picked != layers[best].0
            && ratios[layers
                .iter()
                .position(|(k, _)| *k == picked)
                .unwrap_or(best)]
                > 1.03
        {
            wrong += 1;
        }
        for (i, (kern, _)) in layers.iter().enumerate() {
            let mut t = times[i].clone();
            println!(
                "| {} | {cg} | {kern:?} | {:.3} | {:.2} | {} |",
                case.label,
                median(&mut t),
                ratios[i],
                if *kern == picked { "picked" } else { "" }
            );
        }
    }
    println!("\ncases where the dispatcher's pick is over 3 % slower than the fastest: {wrong}");
}
