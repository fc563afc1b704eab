//! Direct grouped convolution: a zero-padded copy of each group's input planes, then one
//! k x k stencil pass per (output channel, input channel). DWConv is the case of one channel
//! per group; small groups (GConv with few channels per group) use it too.

use rayon::prelude::*;

use super::simd::stencil;
use super::Geometry;

/// Scratch of one worker: the padded input planes of a group, an accumulator plane per
/// output channel of a block, and that block's packed weights.
struct Scratch {
    padded: Vec<f32>,
    acc: Vec<f32>,
    w: Vec<f32>,
}

/// out = conv(x, weight) with `groups` groups, NCHW, stride 1, padding k / 2.
/// `weight` is (c, c / groups, k, k); `x` and `out` hold `n` images of `g.c` channels.
pub fn grouped_conv(
    x: &[f32],
    weight: &[f32],
    out: &mut [f32],
    n: usize,
    g: &Geometry,
    groups: usize,
) {
    let Geometry { c, h, w, k } = *g;
    let cg = c / groups;
    let pad = k / 2;
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    // One padded plane plus k floats of slack: the stencil's junk columns read past the
    // last row by up to k - 1.
    let plane_stride = hp * wp + k;
    let unit = cg * h * w;
    let blocks = super::simd::block_for(cg, k);
    debug_assert_eq!(x.len(), n * c * h * w);
    debug_assert_eq!(out.len(), x.len());

    let work = |scratch: &mut Scratch, (u, (xs, os)): (usize, (&[f32], &mut [f32]))| {
        let group = u % groups;
        // Interior rows are overwritten for every unit; borders and slack stay zero.
        for ci in 0..cg {
            let dst = &mut scratch.padded[ci * plane_stride..];
            for y in 0..h {
                let from = &xs[(ci * h + y) * w..][..w];
                dst[(y + pad) * wp + pad..][..w].copy_from_slice(from);
            }
        }
        for oc0 in (0..cg).step_by(blocks) {
            // Weights of output channels oc0..oc0 + blocks for one input channel, packed
            // [b][ky][kx] as the stencil wants them.
            for ci in 0..cg {
                for b in 0..blocks {
                    let from = &weight[((group * cg + oc0 + b) * cg + ci) * k * k..][..k * k];
                    scratch.w[b * k * k..][..k * k].copy_from_slice(from);
                }
                let src = &scratch.padded[ci * plane_stride..][..plane_stride];
                stencil(&mut scratch.acc, src, wp, &scratch.w, k, blocks, ci > 0);
            }
            for b in 0..blocks {
                let plane = &mut os[(oc0 + b) * h * w..][..h * w];
                let acc = &scratch.acc[b * h * wp..][..h * wp];
                for y in 0..h {
                    plane[y * w..][..w].copy_from_slice(&acc[y * wp..][..w]);
                }
            }
        }
    };
    let init = || Scratch {
        padded: vec![0.0; cg * plane_stride],
        acc: vec![0.0; blocks * h * wp],
        w: vec![0.0; blocks * k * k],
    };
    let units = x.chunks(unit).zip(out.chunks_mut(unit)).enumerate();
    if rayon::current_num_threads() > 1 {
        x.par_chunks(unit)
            .zip(out.par_chunks_mut(unit))
            .enumerate()
            .for_each_init(init, work);
    } else {
        let mut scratch = init();
        units.for_each(|item| work(&mut scratch, item));
    }
}
