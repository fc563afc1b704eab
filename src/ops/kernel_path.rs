//! Which kernels a forward really ran, so a record can say that the path it timed is the
//! path it verified.
//!
//! The native dispatchers pick a kernel per layer from its shape (channels per group, map
//! size, kernel size), and the GEMM paths pick a schedule from the batch and the thread
//! count (band height, what runs in parallel). Each dispatch site calls [`note`] with the
//! kernel and, where it has one, its schedule (`im2col_gemm[rows=4/7,par=bands:2]`);
//! [`traced`] runs a closure and returns what was noted on this thread while it ran, in
//! first-use order. Dispatch always happens on the thread that called the forward (the
//! parallel work comes after the choice), so a trace taken around a forward sees every
//! choice it made. The direct stencil has no schedule in its label: each (image, group)
//! unit runs the same code whether the units are spread over threads or not.

use std::cell::RefCell;

/// A direct stencil (DWConv, and convolutions with few channels per group).
pub const DIRECT: &str = "direct";
/// A register-blocked direct convolution with output channels in the vector lanes
/// (channels per group in multiples of 16).
pub const BLOCKED_OC: &str = "blocked_oc";
/// A register-blocked direct convolution with pixels in the vector lanes (channels per
/// group in multiples of 4 or 6).
pub const BLOCKED_PX: &str = "blocked_px";
/// A depthwise convolution with 16 channels in the vector lanes (channels in multiples of
/// 16).
pub const BLOCKED_DW: &str = "blocked_dw";
/// im2col bands feeding a GEMM (k > 1).
pub const IM2COL_GEMM: &str = "im2col_gemm";
/// A plain GEMM over the input planes (1x1 convolutions, the blocks' pointwise layers,
/// patch embeddings after space-to-depth).
pub const GEMM: &str = "gemm";
/// A weight gradient as per-tap correlations (DWConv, few channels per group).
pub const WGRAD_DIRECT: &str = "wgrad_direct";
/// A weight gradient as im2col bands feeding one GEMM per group.
pub const WGRAD_GEMM: &str = "wgrad_gemm";
/// Stock candle ops: candle picks its own kernels.
pub const CANDLE: &str = "candle";

thread_local! {
    static TRACE: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Records that `kernel` (with its schedule, if any) is about to run (a no-op outside
/// [`traced`]).
pub(crate) fn note(kernel: &str) {
    TRACE.with(|t| {
        if let Some(seen) = t.borrow_mut().as_mut() {
            if !seen.iter().any(|k| k == kernel) {
                seen.push(kernel.to_string());
            }
        }
    });
}

/// `kernel` with a schedule: `kernel[schedule]`.
pub(crate) fn scheduled(kernel: &str, schedule: &str) -> String {
    format!("{kernel}[{schedule}]")
}

/// Runs `f` and returns its result with the kernels it ran, joined with `+` in first-use
/// order (`im2col_gemm+gemm`), or [`CANDLE`] when no native kernel ran.
pub fn traced<R>(f: impl FnOnce() -> R) -> (R, String) {
    let outer = TRACE.with(|t| t.replace(Some(Vec::new())));
    let result = f();
    let seen = TRACE.with(|t| t.replace(outer)).unwrap_or_default();
    let path = if seen.is_empty() {
        CANDLE.to_string()
    } else {
        seen.join("+")
    };
    (result, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_lists_each_kernel_once_in_first_use_order() {
        let ((), path) = traced(|| {
            note(IM2COL_GEMM);
            note(GEMM);
            note(IM2COL_GEMM);
        });
        assert_eq!(path, "im2col_gemm+gemm");
        let ((), none) = traced(|| ());
        assert_eq!(none, CANDLE);
    }

    #[test]
    fn nested_traces_do_not_leak_into_each_other() {
        let (inner, outer) = traced(|| {
            note(DIRECT);
            let ((), inner) = traced(|| note(GEMM));
            inner
        });
        assert_eq!((inner.as_str(), outer.as_str()), ("gemm", "direct"));
        note(GEMM); // outside any trace: ignored, no panic
    }
}
