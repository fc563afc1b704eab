//! Peak memory of a point, estimated before anything runs, so a batch or shape that cannot
//! fit is refused with its numbers (exit 2) instead of aborting the process mid-run.
//!
//! The estimate counts what a point holds at once, in checked arithmetic (a size that would
//! overflow 64 bits is "more than any machine has"):
//! - verification (one layer at the timed batch): its tensors, f32 host copies of its input
//!   (before and after), its output and PConv's other forward's output, the f64 reference's
//!   input, output and intermediates on at most three images, the layer's weights;
//! - timing (the point's batch): the input, the previous and the next activation, the widest
//!   intermediates of one layer (a block's hidden width, C2f's concat buffer), the weights of
//!   every layer, and the im2col workspaces (per-thread bands for the native CPU kernels; on
//!   CUDA one whole-batch column matrix per native layer; one group's for candle).
//!
//! Verification ends before timing starts, so the need is the larger of the two.

use crate::error::{Error, Result};
use crate::ops::{FeatureMap, Implementation, OpKind};
use crate::plan::Point;

/// Floats of one native im2col band per thread (`gemm_conv::BAND_FLOATS`, with headroom for
/// the minimum band width).
const NATIVE_BAND_FLOATS: u64 = 1 << 20;

/// Activations of one image's widest intermediates, in units of c x h x w, beyond the
/// input and the output (upper bounds; see the module comment).
fn extra_activations(p: &Point) -> u64 {
    let s = &p.spec;
    let e = s.expansion.unwrap_or(1) as u64;
    let n = s.bottlenecks.unwrap_or(1) as u64;
    match s.kind {
        // PConv's partial result / the composite's middle tensor.
        OpKind::PConv | OpKind::PConvPw | OpKind::DwPw | OpKind::GConvPw => 1,
        // PConv output, hidden e·c, its activation.
        OpKind::FasterNetBlock => 1 + 2 * e,
        // Concat of (2 + n)·c/2 channels, cv1's output, a bottleneck's temporaries.
        OpKind::C2f => (2 + n).div_ceil(2) + 2,
        OpKind::C2fFaster => (2 + n).div_ceil(2) + 2 + e,
        _ => 0,
    }
}

/// Floats of one worker's scratch in the register-blocked kernels beyond 6 padded planes
/// (a Channels super-block's partial sums: at most 32 tiles of 8 x 48).
const NATIVE_BLOCKED_SCRATCH_FLOATS: u64 = 1 << 14;

/// Floats the register-blocked kernels hold for a native CPU point with `layers` layers,
/// where any of its convolutions can run them (AVX-512; for k = 1 only where the dispatcher
/// picks them): each worker's padded slab (a group's channels over all rows, at most the
/// input's c: a block's 3x3 convs are no wider; 16 channels for DWConv; none for 1x1, whose
/// tiles read the planes in place) and scratch, and a packed copy of every layer's weights
/// (two when training: the input gradient's layer packs its own).
fn blocked_floats(p: &Point, layers: u64) -> Option<u64> {
    use crate::ops::native::simd::{isa, Isa};
    let s = &p.spec;
    let k = s.kernel as u64;
    let FeatureMap { c, h, w } = s.map;
    let on_blocked = |channels: usize, groups: usize| {
        crate::ops::native::conv_kernel(channels, groups, (h, w), 1)
            == crate::ops::native::ConvKernel::BlockedOc
    };
    // A composite's PWConv (c -> c) dispatches on its own.
    let pointwise_part = matches!(s.kind, OpKind::PConvPw | OpKind::DwPw | OpKind::GConvPw);
    if isa() != Isa::Avx512
        || (k == 1
            && !on_blocked(s.conv_channels(), s.conv_groups())
            && !(pointwise_part && on_blocked(c, 1)))
    {
        return Some(0);
    }
    let c = if s.kind == OpKind::DWConv {
        c.min(16)
    } else {
        c
    };
    let padded_plane = (h as u64 + k - 1).checked_mul(w as u64 + k - 1)?;
    let slab_channels = if k == 1 { 0 } else { c as u64 };
    let per_worker = padded_plane.checked_mul(slab_channels)?.checked_add(
        padded_plane
            .checked_mul(6)?
            .max(NATIVE_BLOCKED_SCRATCH_FLOATS),
    )?;
    let copies = if p.pass == crate::ops::Pass::Train {
        2
    } else {
        1
    };
    let packed = s
        .cost()
        .weight_elements
        .checked_mul(layers)?
        .checked_mul(copies)?;
    per_worker
        .checked_mul(p.threads as u64)?
        .checked_add(packed)
}

/// Bytes of the convolution workspaces for `batch` images and `layers` layers: for the
/// native CPU kernels per-thread im2col bands, or the register-blocked kernels' slabs,
/// scratch and packed weights, whichever is larger (shared by the layers); on CUDA one column
/// matrix of the whole batch and every channel of the conv per layer (each native layer keeps its own, reused
/// across forwards; none where the direct kernel runs); for candle the column matrix of one
/// group, live one layer at a time.
fn im2col_bytes(p: &Point, batch: u64, layers: u64, on_gpu: bool) -> Option<u64> {
    let s = &p.spec;
    let FeatureMap { h, w, .. } = s.map;
    let k = s.kernel as u64;
    if k == 1 {
        // No im2col; where a 1x1 runs the register-blocked kernel, its packed weights.
        return match (p.implementation, on_gpu) {
            (Implementation::Native, false) => blocked_floats(p, layers)?.checked_mul(4),
            _ => Some(0),
        };
    }
    let channels = s.conv_channels();
    let cg = channels / s.conv_groups().max(1);
    let plane = (h as u64).checked_mul(w as u64)?.checked_mul(k * k)?;
    let group_image = plane.checked_mul(cg as u64)?;
    let floats = match (p.implementation, on_gpu) {
        (Implementation::Native, false) => {
            let threads = p.threads as u64;
            let bands = NATIVE_BAND_FLOATS
                .checked_mul(threads)?
                .min(group_image.checked_mul(batch)?);
            bands.max(blocked_floats(p, layers)?)
        }
        (Implementation::Native, true) if crate::ops::native::uses_direct(cg, h * w) => 0,
        (Implementation::Native, true) => plane
            .checked_mul(channels as u64)?
            .checked_mul(batch)?
            .checked_mul(layers)?,
        _ => group_image.checked_mul(batch)?,
    };
    floats.checked_mul(4)
}

/// Estimated peak bytes of `p` with `layers` stacked layers; None when the size overflows.
/// `on_gpu`: the timed buffers live on a CUDA device (verification's reference on the host
/// is then `host_bytes`' concern, see [`host_and_device_bytes`]).
pub fn host_and_device_bytes(p: &Point, layers: usize, on_gpu: bool) -> Option<(u64, u64)> {
    let s = &p.spec;
    if s.kind == OpKind::FasterNet {
        // A whole network keeps its own account (stages of different widths).
        let need = crate::ops::fasternet::Model::of(s).peak_bytes(p.batch)?;
        return Some(if on_gpu { (need, need) } else { (need, 0) });
    }
    let Estimate {
        verify_device,
        verify_host,
        timed,
    } = estimate(p, layers, on_gpu)?;
    if on_gpu {
        // The host keeps the reference and the copies read back; the device the rest.
        Some((verify_host, timed.max(verify_device)))
    } else {
        Some((verify_device.checked_add(verify_host)?.max(timed), 0))
    }
}

/// The parts of a point's estimate: verification ends before timing starts.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    /// Verification's buffers where the point runs.
    pub verify_device: u64,
    /// Verification's host copies and f64 reference.
    pub verify_host: u64,
    /// Timing at the point's batch and layers (a training step's whole peak included).
    pub timed: u64,
}

/// The estimate of a layer-stack point (not a whole network), in parts.
pub fn estimate(p: &Point, layers: usize, on_gpu: bool) -> Option<Estimate> {
    let s = &p.spec;
    let elem = p.dtype.size_bytes();
    let image = s.map.elements() as u64;
    let batch = p.batch as u64;
    let live = 3 + extra_activations(p);
    let weights_per_layer = s.cost().weight_elements.checked_mul(elem)?;
    // Verification: one layer at the timed batch (its tensors, plus f32 host copies of the
    // input before and after, the output and, for PConv, the other forward's output), and the
    // f64 reference on at most three images.
    let reference_images = batch.min(3);
    let verify_device = image
        .checked_mul(batch)?
        .checked_mul(live)?
        .checked_mul(elem)?
        .checked_add(weights_per_layer)?
        .checked_add(im2col_bytes(p, batch, 1, on_gpu)?)?;
    let verify_host = image
        .checked_mul(batch)?
        .checked_mul(4 * 4)?
        .checked_add(image.checked_mul(reference_images)?.checked_mul(live * 8)?)?
        .checked_add(weights_per_layer.checked_mul(2)?)?;
    // Timing at the point's batch.
    let timed = image
        .checked_mul(batch)?
        .checked_mul(live)?
        .checked_mul(elem)?
        .checked_add(weights_per_layer.checked_mul(layers as u64)?)?
        .checked_add(im2col_bytes(p, batch, layers as u64, on_gpu)?)?;
    let (verify_host, timed) = if p.pass == crate::ops::Pass::Train {
        // A training step also keeps, per layer, what its backward needs and the layer's
        // output (the next layer's input), each with a gradient of its size while the
        // backward passes it (candle's autograd keeps every intermediate of its graph and
        // makes temporaries in the backward: twice that), and makes a gradient per weight with
        // up to two more temporaries of its size (candle transposes and sums them; measured
        // peaks: docs/training.md, tests/train_memory.rs). Its f64 reference runs on the
        // images verification compares (`verify::train_images`): input, upstream gradient,
        // output, input gradient and the intermediates the backward needs.
        let hw = (s.map.h * s.map.w) as u64;
        let kept = crate::ops::saved_per_pixel(s)
            .checked_mul(hw)?
            .checked_add(image)?;
        let copies = if p.implementation == crate::ops::Implementation::Native {
            2
        } else {
            4
        };
        let step = kept
            .checked_mul(batch)?
            .checked_mul(elem)?
            .checked_mul(copies * layers as u64)?
            .checked_add(weights_per_layer.checked_mul(3 * layers as u64)?)?;
        let compared = crate::verify::train_images(p.batch).len() as u64;
        let reference = kept
            .checked_add(4 * image)?
            .checked_mul(compared)?
            .checked_mul(8)?
            .checked_add(weights_per_layer.checked_mul(16)?)?;
        (
            verify_host.checked_add(reference)?,
            timed.checked_add(step)?,
        )
    } else {
        (verify_host, timed)
    };
    Some(Estimate {
        verify_device,
        verify_host,
        timed,
    })
}

/// Bytes the kernel reports as available for new allocations (`MemAvailable`), if known.
pub fn available_host_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Bytes in a human unit (binary prefixes), e.g. `1.50 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// Bytes free on the CUDA device, if this build can ask.
#[cfg(feature = "cuda")]
fn available_device_bytes(device: &candle_core::Device) -> Option<u64> {
    match device {
        candle_core::Device::Cuda(d) => d
            .cuda_stream()
            .context()
            .mem_get_info()
            .ok()
            .map(|(free, _)| free as u64),
        _ => None,
    }
}

#[cfg(not(feature = "cuda"))]
fn available_device_bytes(_device: &candle_core::Device) -> Option<u64> {
    None
}

/// Refuses, before anything runs, a point whose buffers cannot fit in the memory available
/// (host: MemAvailable; CUDA: the device's free memory). Returns the largest need (host
/// plus device bytes) for the up-front estimate.
pub fn check_points(points: &[Point], layers: usize, device: &candle_core::Device) -> Result<u64> {
    let on_gpu = device.is_cuda();
    let host_free = available_host_bytes();
    let device_free = if on_gpu {
        available_device_bytes(device)
    } else {
        None
    };
    let mut largest = 0u64;
    for p in points {
        let label = || {
            format!(
                "{} {} at {}, batch {}",
                p.spec.kind,
                p.spec.variant(),
                p.spec.map,
                p.batch
            )
        };
        let shrink = if p.spec.kind == OpKind::FasterNet {
            "reduce --batch or --resolution"
        } else {
            "reduce --batch or the shape"
        };
        let Some((host, dev)) = host_and_device_bytes(p, layers, on_gpu) else {
            return Err(Error::Invalid(format!(
                "{}: its buffers would need more than 2^64 bytes: {shrink}",
                label()
            )));
        };
        let refuse = |need: u64, free: u64, what: &str| {
            Err(Error::Invalid(format!(
                "{}: needs about {} ({need} bytes) of {what}, {} ({free} bytes) available: {shrink}",
                label(),
                human_bytes(need),
                human_bytes(free)
            )))
        };
        if let Some(free) = host_free.filter(|&f| host > f) {
            return refuse(host, free, "host memory");
        }
        if let Some(free) = device_free.filter(|&f| dev > f) {
            return refuse(dev, free, "device memory");
        }
        largest = largest.max(host.saturating_add(dev));
    }
    Ok(largest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Dtype, OpSpec};

    fn point(kind: OpKind, map: &str, batch: usize, imp: Implementation) -> Point {
        Point {
            spec: OpSpec::plain(kind, 3, map.parse().unwrap()),
            implementation: imp,
            dtype: Dtype::F32,
            batch,
            threads: 1,
            pass: crate::ops::Pass::Infer,
        }
    }

    #[test]
    fn the_estimate_covers_the_buffers_a_point_allocates() {
        // Conv 3x3 at 96x56x56, batch 1, native: verification dominates: 3 live f32
        // activations, 4 f32 host copies, and the f64 reference's 3 activations of the one
        // image, plus weights and bands.
        let p = point(OpKind::Conv, "96x56x56", 1, Implementation::Native);
        let (host, device) = host_and_device_bytes(&p, 10, false).unwrap();
        assert_eq!(device, 0);
        let image = 96 * 56 * 56;
        assert!(host >= image * (3 * 4 + 4 * 4 + 3 * 8), "{host}");
        assert!(host < 64 << 20, "{host}");
        // candle at batch 32 holds the whole im2col matrix: 32 x 3136 x 864 floats.
        let c = point(OpKind::Conv, "96x56x56", 32, Implementation::Candle);
        let (host, _) = host_and_device_bytes(&c, 10, false).unwrap();
        assert!(host >= 32 * 3136 * 864 * 4, "{host}");
    }

    #[test]
    fn on_cuda_every_native_layer_holds_a_whole_batch_column_matrix_of_all_channels() {
        // GConv g=16 at 768x7x7 runs as GEMMs there (48 channels per group), from one
        // im2col of all 768 channels per layer, kept by each of the 10 layers.
        let mut p = point(OpKind::GConv, "768x7x7", 32, Implementation::Native);
        p.spec.groups = Some(16);
        let (host, device) = host_and_device_bytes(&p, 10, true).unwrap();
        let columns = 10 * 32 * 768 * 9 * 49 * 4;
        assert!(device >= columns, "{device} < {columns}");
        assert!(
            host < device,
            "the host keeps only verification's share: {host}"
        );
        // DWConv runs the direct kernel there: no column matrix.
        let dw = point(OpKind::DWConv, "768x7x7", 32, Implementation::Native);
        let (_, dw_device) = host_and_device_bytes(&dw, 10, true).unwrap();
        assert!(dw_device < 32 * 768 * 49 * 4 * 4, "{dw_device}");
    }

    #[test]
    fn a_1x1_on_the_blocked_kernel_counts_its_packed_weights() {
        let pw = |kind: OpKind, map: &str| {
            let mut p = point(kind, map, 1, Implementation::Native);
            p.spec.kernel = 1;
            host_and_device_bytes(&p, 10, false).unwrap().0
        };
        // 768x7x7 runs the channel-lanes kernel on AVX-512: ten packed copies of its 768 x 768
        // weights (23.6 MB) besides the layers' own, also as a 1x1 DWConv + PWConv's second
        // part; 384x14x14 runs the GEMM.
        let packed = 10 * 768 * 768 * 4;
        let small = pw(OpKind::PWConv, "384x14x14");
        let avx512 = crate::ops::native::simd::isa() == crate::ops::native::simd::Isa::Avx512;
        for kind in [OpKind::PWConv, OpKind::DwPw] {
            let big = pw(kind, "768x7x7");
            if avx512 {
                assert!(big >= 2 * packed, "{kind:?}: {big}");
            } else {
                assert!(big < 2 * packed, "{kind:?}: {big}");
            }
        }
        assert!(small < 2 * 10 * 384 * 384 * 4, "{small}");
    }

    #[test]
    fn absurd_sizes_overflow_to_none_instead_of_wrapping() {
        let p = point(
            OpKind::Conv,
            "4096x4096x4096",
            usize::MAX / 2,
            Implementation::Candle,
        );
        assert_eq!(host_and_device_bytes(&p, 10, false), None);
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(parse_mem_available(text), Some(2 << 20));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(12), "12 B");
    }
}
