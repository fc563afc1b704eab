//! Expands a suite into the points to measure: the cartesian product of its lists.

use crate::config::Suite;
use crate::ops::{Dtype, Implementation, OpKind, OpSpec, PConvForward, Pass};

/// One thing to verify and time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Point {
    pub spec: OpSpec,
    pub implementation: Implementation,
    pub dtype: Dtype,
    pub batch: usize,
    pub threads: usize,
    /// The forward alone, or a training step.
    pub pass: Pass,
}

/// Whether `kind`'s variants carry a PConv forward (slicing or split_cat).
pub fn has_pconv_forward(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::PConv | OpKind::PConvPw | OpKind::FasterNetBlock | OpKind::C2fFaster
    )
}

/// Whether `spec` can run `pass`: PConv's slicing forward is inference-only (FasterNet's code
/// says so: it overwrites in place the input its conv's backward needs).
pub fn runs(spec: &OpSpec, pass: Pass) -> bool {
    pass == Pass::Infer || spec.forward != Some(PConvForward::Slicing)
}

/// What expanding the suite leaves out, for people (empty when nothing).
pub fn notes(suite: &Suite) -> Vec<String> {
    let slicing = suite.pconv_forward.contains(&PConvForward::Slicing)
        && suite.ops.iter().any(|&o| has_pconv_forward(o));
    if suite.pass.contains(&Pass::Train) && slicing {
        vec!["pass train skips the slicing forward: FasterNet's code marks it inference-only (it overwrites in place the input its conv's weight gradient needs); split_cat is timed for training".into()]
    } else {
        Vec::new()
    }
}

/// The operator variants of one kind at one shape (PWConv ignores the kernel list).
fn variants(suite: &Suite, kind: OpKind, map: crate::ops::FeatureMap) -> Vec<OpSpec> {
    let base = |kernel| OpSpec::plain(kind, kernel, map);
    match kind {
        OpKind::PWConv => vec![base(1)],
        OpKind::Conv | OpKind::DWConv | OpKind::DwPw => {
            suite.kernel.iter().map(|&k| base(k)).collect()
        }
        OpKind::GConv | OpKind::GConvPw => suite
            .kernel
            .iter()
            .flat_map(|&k| {
                suite.groups.iter().map(move |&g| OpSpec {
                    groups: Some(g),
                    ..base(k)
                })
            })
            .collect(),
        OpKind::PConv | OpKind::PConvPw => suite
            .kernel
            .iter()
            .flat_map(|&k| {
                suite.n_div.iter().flat_map(move |&n| {
                    suite.pconv_forward.iter().map(move |&f| OpSpec {
                        n_div: Some(n),
                        forward: Some(f),
                        ..base(k)
                    })
                })
            })
            .collect(),
        OpKind::FasterNetBlock => variants(suite, OpKind::PConv, map)
            .into_iter()
            .flat_map(|p| {
                suite.expansion.iter().flat_map(move |&e| {
                    let p = p.clone();
                    suite.act.iter().map(move |&a| OpSpec {
                        kind,
                        expansion: Some(e),
                        act: Some(a),
                        ..p.clone()
                    })
                })
            })
            .collect(),
        // Whole networks: one per model (the shape is the input image).
        OpKind::FasterNet => suite
            .models
            .iter()
            .map(|&m| crate::ops::fasternet::spec(m, map))
            .collect(),
        // YOLO's C2f: the bottleneck's k x k convs, times n.
        OpKind::C2f => with_bottlenecks(suite, variants(suite, OpKind::Conv, map), kind),
        // The FasterNet bottleneck takes the block's lists (its activation is YOLO's SiLU).
        OpKind::C2fFaster => with_bottlenecks(
            suite,
            variants(suite, OpKind::FasterNetBlock, map)
                .into_iter()
                .filter(|v| v.act == suite.act.first().copied())
                .map(|v| OpSpec {
                    act: Some(crate::ops::Act::Silu),
                    ..v
                })
                .collect(),
            kind,
        ),
    }
}

/// Each inner variant once per bottleneck count, as `kind`.
fn with_bottlenecks(suite: &Suite, inner: Vec<OpSpec>, kind: OpKind) -> Vec<OpSpec> {
    inner
        .into_iter()
        .flat_map(|v| {
            suite.bottlenecks.iter().map(move |&n| OpSpec {
                kind,
                bottlenecks: Some(n),
                ..v.clone()
            })
        })
        .collect()
}

/// Every point of the suite, grouped by thread count (so one thread pool serves a run of
/// points), then dtype, batch, operator, variant, shape and implementation.
pub fn expand(suite: &Suite) -> Vec<Point> {
    let mut points = Vec::new();
    for &threads in &suite.threads {
        for &dtype in &suite.dtype {
            for &batch in &suite.batch {
                for &kind in &suite.ops {
                    // Variant-major, shape-minor: the table reads like the paper's Table 1.
                    let per_shape: Vec<Vec<OpSpec>> = suite
                        .shapes
                        .iter()
                        .map(|&m| variants(suite, kind, m))
                        .collect();
                    for v in 0..per_shape[0].len() {
                        for &pass in &suite.pass {
                            for specs in &per_shape {
                                for &implementation in &suite.implementations {
                                    if !runs(&specs[v], pass) {
                                        continue;
                                    }
                                    points.push(Point {
                                        spec: specs[v].clone(),
                                        implementation,
                                        dtype,
                                        batch,
                                        threads,
                                        pass,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::ops::Implementation;

    #[test]
    fn table1_expands_to_24_points_per_implementation() {
        let suite = config::load(None).unwrap().suite;
        assert_eq!(
            suite.implementations,
            [Implementation::Native, Implementation::Candle]
        );
        let points = expand(&suite);
        assert_eq!(points.len(), 48);
        for imp in &suite.implementations {
            let n = points.iter().filter(|p| p.implementation == *imp).count();
            assert_eq!(n, 24);
        }
        let pconv = points.iter().filter(|p| p.spec.kind == OpKind::PConv);
        assert_eq!(pconv.count(), 16);
        // Implementations side by side: native first, then candle, at each point.
        assert_eq!(points[0].implementation, Implementation::Native);
        assert_eq!(points[1].spec, points[0].spec);
        assert!(points.iter().all(|p| p.spec.validate().is_ok()));
        // Variant-major: the first eight points are Conv at the four shapes.
        let first: Vec<String> = points[..8]
            .iter()
            .step_by(2)
            .map(|p| p.spec.map.to_string())
            .collect();
        assert_eq!(first, ["96x56x56", "192x28x28", "384x14x14", "768x7x7"]);
    }

    #[test]
    fn sweep_lists_multiply() {
        let mut suite = config::load(None).unwrap().suite;
        suite.ops = vec![OpKind::PConv, OpKind::GConv, OpKind::PWConv];
        suite.kernel = vec![3, 5, 7];
        suite.n_div = vec![2, 4, 8];
        suite.groups = vec![4, 8, 16];
        suite.shapes = vec!["96x56x56".parse().unwrap()];
        suite.dtype = vec![Dtype::F32, Dtype::F16];
        suite.implementations = vec![Implementation::Candle];
        // PConv 3 kernels x 3 n_div x 2 forwards + GConv 3 x 3 + PWConv 1, twice (dtypes).
        assert_eq!(expand(&suite).len(), (18 + 9 + 1) * 2);
    }
}
