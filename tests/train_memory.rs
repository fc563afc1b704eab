//! A training step's counted peak heap stays under the memory preflight's estimate (which
//! refuses points that cannot fit), for both implementations. Alone in its own test binary:
//! the counting allocator counts every thread.

use candle_core::Device;
use pconv_bench::heap::peak_during;
use pconv_bench::memory::estimate;
use pconv_bench::ops::{self, Dtype, Implementation, OpKind, OpSpec, PConvForward, Pass};
use pconv_bench::plan::Point;

#[test]
fn the_preflight_estimate_covers_the_counted_peak_of_a_training_step() {
    let layers = 3;
    for (kind, map, batch) in [
        (OpKind::Conv, "64x28x28", 2),
        (OpKind::Conv, "256x7x7", 1),
        (OpKind::DWConv, "96x28x28", 2),
        (OpKind::GConv, "96x14x14", 1),
        (OpKind::PConv, "96x28x28", 2),
        (OpKind::PConvPw, "64x14x14", 1),
        (OpKind::FasterNetBlock, "48x14x14", 2),
        (OpKind::C2f, "32x14x14", 2),
        (OpKind::C2fFaster, "64x14x14", 1),
    ] {
        let block = matches!(kind, OpKind::FasterNetBlock | OpKind::C2fFaster);
        let spec = OpSpec {
            expansion: block.then_some(2),
            act: block.then_some(pconv_bench::ops::Act::Gelu),
            bottlenecks: matches!(kind, OpKind::C2f | OpKind::C2fFaster).then_some(2),
            groups: (kind == OpKind::GConv).then_some(16),
            n_div: pconv_bench::plan::has_pconv_forward(kind).then_some(4),
            forward: pconv_bench::plan::has_pconv_forward(kind).then_some(PConvForward::SplitCat),
            ..OpSpec::plain(kind, 3, map.parse().unwrap())
        };
        for implementation in [Implementation::Native, Implementation::Candle] {
            let weights = ops::random_weights(&spec, layers, 1);
            let step = ops::build_train(&spec, implementation, &weights, &Device::Cpu, Dtype::F32)
                .unwrap();
            let m = spec.map;
            let x = ops::tensor_from(
                ops::timed_input(&spec, batch, 1),
                &[batch, m.c, m.h, m.w],
                &Device::Cpu,
                Dtype::F32,
            )
            .unwrap();
            let x = step.input(x).unwrap();
            let (r, peak) = peak_during(|| step.step(&x, None).map(drop));
            r.unwrap();
            let point = Point {
                spec: spec.clone(),
                implementation,
                dtype: Dtype::F32,
                batch,
                threads: 1,
                pass: Pass::Train,
            };
            // The step is a timed run: its part of the estimate must cover it alone.
            let estimate = estimate(&point, layers, false).unwrap().timed;
            // The step holds at least the gradients of its weights and its input.
            let floor = (spec.cost().weight_elements * layers as u64
                + (batch * m.c * m.h * m.w) as u64)
                * 4;
            assert!(
                (floor..=estimate).contains(&peak),
                "{kind} {map} {implementation}: peak {peak} outside [{floor}, {estimate}]"
            );
        }
    }
}
