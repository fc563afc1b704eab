//! The small vocabulary types of a suite: operator kinds, PConv forwards, implementations,
//! dtypes and feature-map sizes. Each parses from, and prints as, the word users type.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares an enum whose variants are spelled as fixed words on the command line, in config
/// files and in JSON, with an error naming the allowed words.
macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            /// The allowed words, for error messages and `--help`.
            pub fn allowed() -> String {
                [$($word),+].join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.trim() {
                    $($word => Ok($name::$variant),)+
                    other => Err(format!("unknown {} '{}': allowed are {}", $what, other, $name::allowed())),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

word_enum!(
    /// The operator families the paper compares.
    OpKind, "op" {
        /// Regular k x k convolution, the yardstick.
        Conv = "conv",
        /// Grouped convolution.
        GConv = "gconv",
        /// Depthwise convolution (groups = c).
        DWConv = "dwconv",
        /// Partial convolution: a k x k conv on the first c / n_div channels.
        PConv = "pconv",
        /// Pointwise (1 x 1) convolution.
        PWConv = "pwconv",
        /// PConv then PWConv (c -> c): the paper's T-shaped receptive field (Eq. 7).
        PConvPw = "pconv_pw",
        /// DWConv then PWConv: depthwise separable (MobileNet).
        DwPw = "dw_pw",
        /// GConv then PWConv.
        GConvPw = "gconv_pw",
        /// FasterNet block: x + PWConv(e·c -> c)(act(BN(PWConv(c -> e·c)(PConv(x))))), BN
        /// folded into the first PWConv.
        FasterNetBlock = "fasternet_block",
        /// YOLOv8's C2f: 1x1 Conv c -> 2·(c/2), split, n bottlenecks (two k x k Convs and a
        /// shortcut each), concat of all (2 + n)·(c/2) channels, 1x1 Conv back to c; every
        /// Conv with BN folded and SiLU.
        C2f = "c2f",
        /// C2f whose bottlenecks are FasterNet blocks (PConv, PWConv c/2 -> e·c/2 with BN and
        /// SiLU, PWConv back, shortcut): the usual "C2f_Faster" of YOLO PConv ports.
        C2fFaster = "c2f_faster",
        /// A whole FasterNet classifier (stem, four stages of FasterNet blocks, merges, head)
        /// on a 3 x R x R image: one `model`.
        FasterNet = "fasternet",
    }
);

word_enum!(
    /// The FasterNet classifiers of the paper (ops/fasternet.rs has their architecture).
    Network, "model" {
        T0 = "fasternet-t0",
        T1 = "fasternet-t1",
        T2 = "fasternet-t2",
        S = "fasternet-s",
        M = "fasternet-m",
        L = "fasternet-l",
    }
);

word_enum!(
    /// Activation of the FasterNet block (C2f and C2f_Faster always use SiLU, as YOLO does).
    Act, "activation" {
        Relu = "relu",
        /// Exact (erf) GELU, as PyTorch's nn.GELU().
        Gelu = "gelu",
        /// x · sigmoid(x), YOLO's activation.
        Silu = "silu",
    }
);

impl Act {
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Act::Relu => v.max(0.0),
            Act::Gelu => 0.5 * v * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2)),
            Act::Silu => v / (1.0 + (-v).exp()),
        }
    }

    pub fn apply_f64(self, v: f64) -> f64 {
        match self {
            Act::Relu => v.max(0.0),
            Act::Gelu => 0.5 * v * (1.0 + libm::erf(v * std::f64::consts::FRAC_1_SQRT_2)),
            Act::Silu => v / (1.0 + (-v).exp()),
        }
    }

    /// The derivative at `v` (ReLU's is taken as 0 at 0, as PyTorch takes it; candle takes
    /// 1: verification allows for either at the kink).
    pub fn grad(self, v: f32) -> f32 {
        match self {
            Act::Relu => f32::from(u8::from(v > 0.0)),
            Act::Gelu => {
                let cdf = 0.5 * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2));
                let pdf = (-0.5 * v * v).exp()
                    * (0.5 * std::f32::consts::FRAC_2_SQRT_PI)
                    * std::f32::consts::FRAC_1_SQRT_2;
                cdf + v * pdf
            }
            Act::Silu => {
                let s = 1.0 / (1.0 + (-v).exp());
                s * (1.0 + v * (1.0 - s))
            }
        }
    }

    /// [`Act::grad`] in f64.
    pub fn grad_f64(self, v: f64) -> f64 {
        match self {
            Act::Relu => f64::from(u8::from(v > 0.0)),
            Act::Gelu => {
                let cdf = 0.5 * (1.0 + libm::erf(v * std::f64::consts::FRAC_1_SQRT_2));
                let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
                cdf + v * pdf
            }
            Act::Silu => {
                let s = 1.0 / (1.0 + (-v).exp());
                s * (1.0 + v * (1.0 - s))
            }
        }
    }
}

word_enum!(
    /// The two forwards of the official `Partial_conv3`.
    PConvForward, "PConv forward" {
        /// Clone the input, overwrite its first c_p channels (inference only).
        Slicing = "slicing",
        /// Split, convolve the first part, concatenate (training-safe; the default).
        SplitCat = "split_cat",
    }
);

word_enum!(
    /// Who computes the operator.
    Implementation, "implementation" {
        /// Purpose-built CPU kernels (f32): direct stencils and im2col + GEMM (`ops/native`).
        Native = "native",
        /// Stock candle ops (`conv2d` with groups, `narrow`, `cat`, `slice_set`).
        Candle = "candle",
        /// PyTorch, measured by `scripts/torch_reference.py` into the same schema (this
        /// binary reads such files but does not run PyTorch).
        Torch = "torch",
    }
);

word_enum!(
    /// What one timed run does: the forward alone, or a whole training step.
    Pass, "pass" {
        /// The forward through every layer.
        Infer = "infer",
        /// One training step: the forward through every layer, the loss sum(output), and the
        /// backward producing the gradients of the input and of every layer's weights.
        Train = "train",
    }
);

impl Pass {
    /// True for `infer`, the pass of files written before passes existed.
    pub fn is_infer(&self) -> bool {
        *self == Pass::Infer
    }
}

// word_enum! derives a fixed set of traits: the default is written out.
#[allow(clippy::derivable_impls)]
impl Default for Pass {
    fn default() -> Self {
        Pass::Infer
    }
}

word_enum!(
    /// Element type of activations and weights.
    Dtype, "dtype" {
        F32 = "f32",
        F16 = "f16",
        BF16 = "bf16",
    }
);

impl Implementation {
    /// Why this binary cannot run the implementation, if it cannot.
    pub fn not_runnable_here(self) -> Option<String> {
        (self == Implementation::Torch).then(|| {
            "implementation 'torch' is measured by scripts/torch_reference.py, not by this binary: allowed here are native, candle".to_string()
        })
    }
}

impl Dtype {
    pub fn candle(self) -> candle_core::DType {
        match self {
            Dtype::F32 => candle_core::DType::F32,
            Dtype::F16 => candle_core::DType::F16,
            Dtype::BF16 => candle_core::DType::BF16,
        }
    }

    pub fn size_bytes(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }

    /// Rounds an f32 to this dtype and back, as storing it in a tensor of this dtype does.
    pub fn round(self, v: f32) -> f32 {
        match self {
            Dtype::F32 => v,
            Dtype::F16 => half::f16::from_f32(v).to_f32(),
            Dtype::BF16 => half::bf16::from_f32(v).to_f32(),
        }
    }
}

/// A feature map c x h x w (channels, height, width), written `96x56x56`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FeatureMap {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl FeatureMap {
    pub fn elements(&self) -> usize {
        self.c * self.h * self.w
    }
}

impl fmt::Display for FeatureMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.c, self.h, self.w)
    }
}

impl FromStr for FeatureMap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid feature map '{s}': expected CxHxW, three positive integers (e.g. 96x56x56)")
        };
        let parts: Vec<&str> = s.trim().split(['x', 'X']).collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let mut dims = [0usize; 3];
        for (d, p) in dims.iter_mut().zip(&parts) {
            *d = p.parse().map_err(|_| bad())?;
            if *d == 0 {
                return Err(bad());
            }
        }
        Ok(FeatureMap {
            c: dims[0],
            h: dims[1],
            w: dims[2],
        })
    }
}

impl Serialize for FeatureMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FeatureMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_maps_parse_and_print() {
        let m: FeatureMap = "96x56x56".parse().unwrap();
        assert_eq!(
            m,
            FeatureMap {
                c: 96,
                h: 56,
                w: 56
            }
        );
        assert_eq!(m.to_string(), "96x56x56");
        for bad in ["96x56", "0x56x56", "axbxc", "", "96x56x56x1", "-1x5x5"] {
            let err = bad.parse::<FeatureMap>().unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn activation_derivatives_match_central_differences() {
        for act in Act::ALL {
            for &v in &[-3.0f64, -1.2, -0.3, 0.4, 1.1, 2.7] {
                let eps = 1e-6;
                let fd = (act.apply_f64(v + eps) - act.apply_f64(v - eps)) / (2.0 * eps);
                assert!((fd - act.grad_f64(v)).abs() < 1e-8, "{act} at {v}");
                assert!(
                    (act.grad(v as f32) as f64 - fd).abs() < 1e-6,
                    "{act} f32 at {v}"
                );
            }
        }
    }

    #[test]
    fn words_round_trip_and_unknown_ones_name_the_allowed() {
        for op in OpKind::ALL {
            assert_eq!(op.as_str().parse::<OpKind>().unwrap(), *op);
        }
        let err = "conv4".parse::<OpKind>().unwrap_err();
        assert!(err.contains("'conv4'") && err.contains("dwconv"), "{err}");
        assert_eq!(
            "split_cat".parse::<PConvForward>().unwrap(),
            PConvForward::SplitCat
        );
        assert_eq!(Dtype::BF16.round(1.0 + 1.0 / 512.0), 1.0);
    }
}
