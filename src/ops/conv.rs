//! Conv, GConv, DWConv and PWConv: one grouped convolution covers all four
//! (Conv: g = 1; DWConv: g = c; PWConv: k = 1, g = 1).

use candle_core::{Result, Tensor};
use candle_nn::Module;

use super::{LayerCost, OpSpec};

/// Cost of a k x k convolution with `groups` groups, c in and c out, on an h x w map.
/// FLOPs (MACs) = h·w·k²·c²/g; memory = h·w·2c + k²·c²/g (docs/paper.md).
pub fn grouped_conv_cost(c: usize, h: usize, w: usize, k: usize, groups: usize) -> LayerCost {
    let (c, hw, k2, g) = (c as u64, (h * w) as u64, (k * k) as u64, groups as u64);
    let weight_elements = k2 * c * c / g;
    LayerCost {
        macs: hw * weight_elements,
        activation_elements: hw * 2 * c,
        weight_elements,
    }
}

/// Stock candle convolution: `Tensor::conv2d` with groups (candle runs one conv per group
/// and concatenates, which is part of what this implementation measures).
pub struct CandleConv {
    weight: Tensor,
    padding: usize,
    groups: usize,
}

impl CandleConv {
    pub fn new(spec: &OpSpec, weight: Tensor) -> Self {
        Self {
            weight,
            padding: spec.kernel / 2,
            groups: spec.conv_groups(),
        }
    }
}

impl Module for CandleConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, self.padding, 1, 1, self.groups)
    }
}
