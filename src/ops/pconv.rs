//! Partial convolution (FasterNet): a k x k conv on the first c_p = c / n_div channels, the
//! other c - c_p channels passed through untouched.

use candle_core::{Result, Tensor};
use candle_nn::Module;

use super::{conv::CandleConv, Copies, OpSpec, PConvForward};

/// c_p = c / n_div, integer division as the official code's `dim // n_div`.
pub fn partial_channels(c: usize, n_div: usize) -> usize {
    c / n_div.max(1)
}

/// PConv on stock candle ops.
pub struct CandlePConv {
    conv: CandleConv,
    partial: usize,
    forward: PConvForward,
}

impl CandlePConv {
    pub fn new(spec: &OpSpec, weight: Tensor) -> Self {
        Self {
            conv: CandleConv::new(spec, weight),
            partial: spec.conv_channels(),
            forward: spec.forward.unwrap_or(PConvForward::SplitCat),
        }
    }
}

impl Module for CandlePConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = x.dim(1)?;
        match self.forward {
            PConvForward::SplitCat => {
                let head = self.conv.forward(&x.narrow(1, 0, self.partial)?)?;
                let tail = x.narrow(1, self.partial, c - self.partial)?;
                Tensor::cat(&[&head, &tail], 1)
            }
            PConvForward::Slicing => {
                // `Tensor::clone` shares storage; `copy` is the deep clone the official code
                // makes so that `slice_set` cannot corrupt a residual that aliases `x`.
                // A strided view (C2f's split) copies into a fresh contiguous tensor, which
                // `slice_set` needs; a contiguous input is deep-copied.
                let out = if x.is_contiguous() {
                    x.copy()?
                } else {
                    x.contiguous()?
                };
                let head = self.conv.forward(&x.narrow(1, 0, self.partial)?)?;
                out.slice_set(&head, 1, 0)?;
                Ok(out)
            }
        }
    }
}

/// What the candle forwards copy beyond the paper's model (reads plus writes, per image).
pub fn candle_copies(spec: &OpSpec) -> Copies {
    let hw = (spec.map.h * spec.map.w) as u64;
    let c = spec.map.c as u64;
    let cp = spec.conv_channels() as u64;
    match spec.forward.unwrap_or(PConvForward::SplitCat) {
        PConvForward::SplitCat => Copies {
            elements_per_image: 2 * c * hw,
            description: "cat copies all c channels (c_p conv output + c - c_p untouched)".into(),
        },
        PConvForward::Slicing => Copies {
            elements_per_image: 2 * c * hw + 2 * cp * hw,
            description: "clone copies all c channels; slice_set copies the c_p conv output in"
                .into(),
        },
    }
}
