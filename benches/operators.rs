//! Criterion benches: one group per operator, each implementation at a small shape and at
//! the paper's Table 1 shapes, one layer, batch 1, f32, on the current rayon pool
//! (RAYON_NUM_THREADS sets it). For kernel work:
//!
//!     cargo bench --bench operators -- --save-baseline before
//!     cargo bench --bench operators -- --baseline before      # after a change
//!     cargo bench --bench operators -- dwconv/native           # one group / impl

use std::time::Duration;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use pconv_bench::ops::{self, Dtype, Implementation, OpKind, OpSpec, PConvForward};

const SHAPES: [&str; 5] = ["32x16x16", "96x56x56", "192x28x28", "384x14x14", "768x7x7"];

fn spec(kind: OpKind, forward: Option<PConvForward>, map: &str) -> OpSpec {
    OpSpec {
        kind,
        kernel: if kind == OpKind::PWConv { 1 } else { 3 },
        groups: (kind == OpKind::GConv).then_some(16),
        n_div: (kind == OpKind::PConv).then_some(4),
        forward,
        expansion: None,
        act: None,
        model: None,
        bottlenecks: None,
        map: map.parse().expect("bench shapes parse"),
    }
}

fn bench_op(c: &mut Criterion, name: &str, kind: OpKind, forward: Option<PConvForward>) {
    let device = Device::Cpu;
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for map in SHAPES {
        let s = spec(kind, forward, map);
        let m = s.map;
        let x = ops::tensor_from(
            ops::uniform(m.elements(), 1.0, &mut ops::seeded_rng(1)),
            &[1, m.c, m.h, m.w],
            &device,
            Dtype::F32,
        )
        .expect("input");
        let weights = ops::random_weights(&s, 1, 2303);
        for imp in [Implementation::Native, Implementation::Candle] {
            let stack =
                ops::build(&s, imp, &weights, &device, Dtype::F32).expect("operator builds");
            group.bench_with_input(BenchmarkId::new(imp.as_str(), map), &x, |b, x| {
                b.iter(|| stack.forward(x).expect("forward"))
            });
        }
    }
    group.finish();
}

fn operators(c: &mut Criterion) {
    bench_op(c, "conv", OpKind::Conv, None);
    bench_op(c, "gconv", OpKind::GConv, None);
    bench_op(c, "dwconv", OpKind::DWConv, None);
    bench_op(
        c,
        "pconv_slicing",
        OpKind::PConv,
        Some(PConvForward::Slicing),
    );
    bench_op(
        c,
        "pconv_split_cat",
        OpKind::PConv,
        Some(PConvForward::SplitCat),
    );
    bench_op(c, "pwconv", OpKind::PWConv, None);
}

criterion_group!(benches, operators);
criterion_main!(benches);
