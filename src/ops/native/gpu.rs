//! The GPU forward of the native layers as data: the kernels' CUDA C source and the plan of
//! launches each layer makes. Both compile without the `cuda` feature, so the tests run the
//! kernels' own source on the CPU (as C, one thread covering the grid) in every build, and
//! `cuda.rs` only carries the plan out on the device.

#![cfg_attr(not(feature = "cuda"), allow(dead_code))]

use super::{uses_direct, Geometry, NativeLayer};
use crate::ops::kernel_path;
use crate::ops::{OpKind, PConvForward};

/// The kernels, compiled by NVRTC at run time in a CUDA build.
pub(super) const SOURCE: &str = r#"
extern "C" __global__ void pcb_grouped_conv(
    const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
    int n, int c, int h, int wd, int k, int groups, long long x_image, long long y_image)
{
    const long long total = (long long)n * c * h * wd;
    const int cg = c / groups, pad = k / 2;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int ox = (int)(i % wd);
        long long t = i / wd;
        const int oy = (int)(t % h); t /= h;
        const int oc = (int)(t % c);
        const long long b = t / c;
        const float* xb = x + b * x_image + (long long)(oc / cg) * cg * h * wd;
        const float* wo = w + (long long)oc * cg * k * k;
        float acc = 0.f;
        for (int ic = 0; ic < cg; ++ic) {
            const float* xp = xb + (long long)ic * h * wd;
            const float* wp = wo + ic * k * k;
            for (int ky = 0; ky < k; ++ky) {
                const int iy = oy + ky - pad;
                if (iy < 0 || iy >= h) continue;
                for (int kx = 0; kx < k; ++kx) {
                    const int ix = ox + kx - pad;
                    if (ix >= 0 && ix < wd) acc = fmaf(__ldg(wp + ky * k + kx), __ldg(xp + iy * wd + ix), acc);
                }
            }
        }
        y[b * y_image + (long long)oc * h * wd + (long long)oy * wd + ox] = acc;
    }
}

// col[b][(ic*k + ky)*k + kx][oy*wd + ox] for the first c channels of each image of x.
extern "C" __global__ void pcb_im2col(
    const float* __restrict__ x, float* __restrict__ col,
    int n, int c, int h, int wd, int k, long long x_image)
{
    const long long hw = (long long)h * wd;
    const long long rows = (long long)c * k * k;
    const long long total = (long long)n * rows * hw;
    const int pad = k / 2;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long p = i % hw;
        long long t = i / hw;
        const int row = (int)(t % rows);
        const long long b = t / rows;
        const int kx = row % k, ky = (row / k) % k, ic = row / (k * k);
        const int oy = (int)(p / wd), ox = (int)(p % wd);
        const int iy = oy + ky - pad, ix = ox + kx - pad;
        col[i] = (iy >= 0 && iy < h && ix >= 0 && ix < wd)
            ? __ldg(x + b * x_image + (long long)ic * hw + (long long)iy * wd + ix) : 0.f;
    }
}

// y[b][from .. from + count) = x[b][from .. from + count) for images of `image` elements.
extern "C" __global__ void pcb_copy_range(
    const float* __restrict__ x, float* __restrict__ y,
    int n, long long from, long long count, long long image)
{
    const long long total = (long long)n * count;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long off = (i / count) * image + from + i % count;
        y[off] = x[off];
    }
}
"#;

/// The direct kernel's launch: the first `g.c` channels of images of `x_image` floats in, the
/// first `g.c` channels of images of `y_image` floats out, every group in one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Grouped {
    pub g: Geometry,
    pub groups: usize,
    pub x_image: usize,
    pub y_image: usize,
}

/// im2col of the first `g.c` channels of images of `x_image` floats into a dense
/// (n, g.c·k², h·w) buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Im2col {
    pub g: Geometry,
    pub x_image: usize,
}

/// The arguments of one column-major strided-batched GEMM, C_b = A_b · B_b (alpha 1, beta 0),
/// each operand starting `*_offset` floats into its buffer (a group's slice of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GemmArgs {
    pub a_offset: usize,
    pub b_offset: usize,
    pub c_offset: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub stride_a: usize,
    pub ldb: usize,
    pub stride_b: usize,
    pub ldc: usize,
    pub stride_c: usize,
    pub batch: usize,
}

/// One launch of a layer's forward, with every number it gets: the plan is a pure function
/// (tested on the CPU), and `forward` only carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// y[b][from .. from + count) = x[b][from .. from + count) for images of `image` floats.
    Copy {
        from: usize,
        count: usize,
        image: usize,
    },
    Grouped(Grouped),
    Im2col(Im2col),
    /// A = the im2col buffer (or x itself for a 1x1 conv), B = the weight, C = y.
    Gemm {
        args: GemmArgs,
        a_is_x: bool,
    },
}

/// The launches of one layer on `n` images of c x h x w.
pub(super) fn plan(layer: &NativeLayer, n: usize, c: usize, h: usize, w: usize) -> Vec<Step> {
    let (image, hw) = (c * h * w, h * w);
    let g = Geometry {
        c,
        h,
        w,
        k: layer.k,
    };
    let mut steps = Vec::new();
    let (conv, groups) = match layer.kind {
        OpKind::PConv => {
            let from = match layer.forward {
                PConvForward::SplitCat => layer.partial * hw, // only the untouched channels
                PConvForward::Slicing => 0,                   // the clone: every channel
            };
            if from < image {
                steps.push(Step::Copy {
                    from,
                    count: image - from,
                    image,
                });
            }
            (
                Geometry {
                    c: layer.partial,
                    ..g
                },
                1,
            )
        }
        _ => (g, layer.groups),
    };
    // DWConv and groups of few channels: the direct kernel. Groups of many channels (GConv
    // g=16 at 768x7x7: 48 per group) are GEMMs like any conv, one per group. The cut-over is
    // the CPU's rule; it has not been measured on a GPU yet.
    let cg = conv.c / groups;
    if uses_direct(cg, hw) {
        kernel_path::note(kernel_path::DIRECT);
        steps.push(Step::Grouped(Grouped {
            g: conv,
            groups,
            x_image: image,
            y_image: image,
        }));
        return steps;
    }
    let rows = conv.c * conv.k * conv.k;
    let group_rows = cg * conv.k * conv.k;
    let a_is_x = conv.k == 1; // a 1x1 conv's im2col is the input itself
    kernel_path::note(if a_is_x {
        kernel_path::GEMM
    } else {
        kernel_path::IM2COL_GEMM
    });
    if !a_is_x {
        steps.push(Step::Im2col(Im2col {
            g: conv,
            x_image: image,
        }));
    }
    // Row-major y_b (c x hw) = W (c x K) · col_b (K x hw) is column-major
    // y_bᵀ (hw x c) = col_bᵀ (hw x K) · Wᵀ (K x c): m = hw, n = c, k = K. Group g is the
    // same product on its slices: K_g = cg·k² rows of col_b from g·K_g, the cg weight rows
    // from g·cg, the cg output channels from g·cg; batched over the n images.
    for grp in 0..groups {
        steps.push(Step::Gemm {
            args: GemmArgs {
                a_offset: grp * group_rows * hw,
                b_offset: grp * cg * group_rows,
                c_offset: grp * cg * hw,
                m: hw,
                n: cg,
                k: group_rows,
                lda: hw,
                stride_a: if a_is_x { image } else { rows * hw },
                ldb: group_rows,
                stride_b: 0,
                ldc: hw,
                stride_c: image,
                batch: n,
            },
            a_is_x,
        });
    }
    steps
}

/// Floats of im2col workspace a plan needs (0 when it has no im2col step).
pub(super) fn workspace_floats(steps: &[Step], n: usize) -> usize {
    steps
        .iter()
        .map(|s| match s {
            Step::Im2col(i) => n * i.g.c * i.g.k * i.g.k * i.g.h * i.g.w,
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// A layer's reusable im2col workspace, as sizes: it grows (one allocation) only when a plan
/// needs more than it holds, so after verification and warm-up at the timed shape a timed
/// forward allocates nothing but its output.
#[derive(Debug, Default)]
pub(super) struct Workspace {
    /// Floats held.
    pub floats: usize,
    /// Allocations made so far.
    pub allocations: usize,
}

impl Workspace {
    /// Makes room for `floats`; true when that took a new allocation.
    pub fn reserve(&mut self, floats: usize) -> bool {
        if floats <= self.floats {
            return false;
        }
        self.floats = floats;
        self.allocations += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// CUDA's built-ins for one thread of a one-thread grid: every grid-stride loop then
    /// visits every element, so the kernels run as plain C on the CPU.
    const SHIM: &str = r#"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef struct { long long x; } dim_t;
static const dim_t blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
#define __global__
#define __restrict__ restrict
#define __ldg(p) (*(p))
"#;

    /// `kernel FILES... SIZES... ARGS...`: loads raw f32 files, runs one kernel, writes the
    /// output file back (the argument order is each kernel's signature).
    const DRIVER: &str = r#"
static float* load(const char* path, long long n) {
    FILE* f = fopen(path, "rb");
    float* p = malloc((size_t)(n > 0 ? n : 1) * 4);
    if (!f || fread(p, 4, (size_t)n, f) != (size_t)n) { fprintf(stderr, "cannot read %s\n", path); exit(2); }
    fclose(f);
    return p;
}
static void save(const char* path, const float* p, long long n) {
    FILE* f = fopen(path, "wb");
    fwrite(p, 4, (size_t)n, f);
    fclose(f);
}
#define I(i) atoll(argv[i])
int main(int argc, char** argv) {
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "grouped") && argc == 16) {
        float *x = load(argv[2], I(5)), *w = load(argv[3], I(6)), *y = load(argv[4], I(7));
        pcb_grouped_conv(x, w, y, (int)I(8), (int)I(9), (int)I(10), (int)I(11), (int)I(12), (int)I(13), I(14), I(15));
        save(argv[4], y, I(7));
    } else if (!strcmp(argv[1], "im2col") && argc == 12) {
        float *x = load(argv[2], I(4)), *col = load(argv[3], I(5));
        pcb_im2col(x, col, (int)I(6), (int)I(7), (int)I(8), (int)I(9), (int)I(10), I(11));
        save(argv[3], col, I(5));
    } else if (!strcmp(argv[1], "copy") && argc == 10) {
        float *x = load(argv[2], I(4)), *y = load(argv[3], I(5));
        pcb_copy_range(x, y, (int)I(6), I(7), I(8), I(9));
        save(argv[3], y, I(5));
    } else {
        fprintf(stderr, "bad command\n");
        return 2;
    }
    return 0;
}
"#;

    /// The kernels compiled for the CPU with the system C compiler.
    struct CpuKernels {
        dir: tempfile::TempDir,
        exe: PathBuf,
    }

    impl CpuKernels {
        fn build() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let c = dir.path().join("kernels.c");
            let exe = dir.path().join("kernels");
            let src = format!("{SHIM}{}{DRIVER}", SOURCE.replace("extern \"C\" ", ""));
            std::fs::write(&c, src).unwrap();
            let out = Command::new("cc")
                .args(["-std=c99", "-O1", "-o"])
                .arg(&exe)
                .arg(&c)
                .arg("-lm")
                .output()
                .expect("a C compiler `cc` runs the CUDA kernels on the CPU");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            Self { dir, exe }
        }

        fn file(&self, name: &str, data: &[f32]) -> PathBuf {
            let p = self.dir.path().join(name);
            let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(&p, bytes).unwrap();
            p
        }

        fn read(path: &Path) -> Vec<f32> {
            std::fs::read(path)
                .unwrap()
                .chunks(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        }

        /// Runs `kernel` on the buffers (the last one is written back) and the integers.
        fn run(&self, kernel: &str, bufs: &mut [&mut Vec<f32>], ints: &[usize]) {
            let paths: Vec<PathBuf> = bufs
                .iter()
                .enumerate()
                .map(|(i, b)| self.file(&format!("b{i}"), b))
                .collect();
            let out = Command::new(&self.exe)
                .arg(kernel)
                .args(&paths)
                .args(bufs.iter().map(|b| b.len().to_string()))
                .args(ints.iter().map(usize::to_string))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{kernel}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let last = bufs.len() - 1;
            *bufs[last] = Self::read(&paths[last]);
        }
    }

    /// Column-major C_b = A_b · B_b, as cublasGemmStridedBatchedEx computes it.
    fn gemm(a: &[f32], b: &[f32], c: &mut [f32], s: &GemmArgs) {
        let (a, b, c) = (&a[s.a_offset..], &b[s.b_offset..], &mut c[s.c_offset..]);
        for batch in 0..s.batch {
            let (a, b) = (&a[batch * s.stride_a..], &b[batch * s.stride_b..]);
            for j in 0..s.n {
                for i in 0..s.m {
                    let acc: f64 = (0..s.k)
                        .map(|l| f64::from(a[i + l * s.lda]) * f64::from(b[l + j * s.ldb]))
                        .sum();
                    c[batch * s.stride_c + i + j * s.ldc] = acc as f32;
                }
            }
        }
    }

    /// Carries out a layer's plan on the CPU: the kernels as C, cuBLAS as `gemm`.
    fn run_plan(k: &CpuKernels, layer: &NativeLayer, x: &[f32], n: usize, g: Geometry) -> Vec<f32> {
        run_steps(k, layer, plan(layer, n, g.c, g.h, g.w), x, n)
    }

    /// Carries out `steps` on the CPU into an output that starts as NaN, so an element no
    /// step writes is caught by the comparison.
    fn run_steps(
        k: &CpuKernels,
        layer: &NativeLayer,
        steps: Vec<Step>,
        x: &[f32],
        n: usize,
    ) -> Vec<f32> {
        let mut xb = x.to_vec();
        let mut wb = layer.weight.clone();
        let mut y = vec![f32::NAN; x.len()];
        let mut col = Vec::new();
        for step in steps {
            match step {
                Step::Copy { from, count, image } => {
                    k.run("copy", &mut [&mut xb, &mut y], &[n, from, count, image])
                }
                Step::Grouped(s) => {
                    let q = s.g;
                    let ints = [n, q.c, q.h, q.w, q.k, s.groups, s.x_image, s.y_image];
                    k.run("grouped", &mut [&mut xb, &mut wb, &mut y], &ints)
                }
                Step::Im2col(s) => {
                    let q = s.g;
                    col = vec![f32::NAN; n * q.c * q.k * q.k * q.h * q.w];
                    let ints = [n, q.c, q.h, q.w, q.k, s.x_image];
                    k.run("im2col", &mut [&mut xb, &mut col], &ints)
                }
                Step::Gemm { args, a_is_x } => {
                    let a = if a_is_x { &xb } else { &col };
                    gemm(a, &wb, &mut y, &args)
                }
            }
        }
        y
    }

    /// Every path of the GPU forward (direct, im2col + GEMM, 1x1 GEMM on the input, PConv's
    /// copies) against the f64 reference, with the kernels' own source run on the CPU.
    #[test]
    fn gpu_plans_match_the_reference_when_run_on_the_cpu() {
        let kernels = CpuKernels::build();
        use super::super::tests::spec;
        use PConvForward::{Slicing, SplitCat};
        let cases = [
            spec(OpKind::DWConv, "19x9x7", 3, None, None, SplitCat),
            spec(OpKind::GConv, "96x9x9", 3, Some(16), None, SplitCat),
            spec(OpKind::GConv, "64x6x6", 5, Some(2), None, SplitCat), // 32 per group: direct
            spec(OpKind::GConv, "96x7x7", 3, Some(2), None, SplitCat), // 48 per group: GEMMs
            spec(OpKind::GConv, "160x5x6", 1, Some(4), None, SplitCat), // 1x1 GEMMs on x
            spec(OpKind::Conv, "40x9x7", 3, None, None, SplitCat),     // im2col + GEMM
            spec(OpKind::Conv, "6x5x5", 5, None, None, SplitCat),      // direct
            spec(OpKind::PWConv, "33x5x6", 1, None, None, SplitCat),   // GEMM on x
            spec(OpKind::PConv, "70x7x9", 3, None, Some(2), Slicing),  // c_p = 35: GEMM
            spec(OpKind::PConv, "70x7x9", 3, None, Some(2), SplitCat),
            spec(OpKind::PConv, "10x7x9", 5, None, Some(3), SplitCat), // c_p = 3: direct
            spec(OpKind::PConv, "136x5x5", 1, None, Some(4), Slicing), // 1x1 on 34 of 136
        ];
        let n = 2;
        for s in &cases {
            let m = s.map;
            let weights = ops::random_weights(s, 1, 17);
            let layer = NativeLayer::new(s, &weights[0]);
            let x = ops::uniform(n * m.c * m.h * m.w, 1.0, &mut ops::seeded_rng(9));
            let g = Geometry {
                c: m.c,
                h: m.h,
                w: m.w,
                k: s.kernel,
            };
            let y = run_plan(&kernels, &layer, &x, n, g);
            let wide = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
            let reference =
                crate::ops::reference::reference_forward(s, &wide(&weights[0].data), &wide(&x), n);
            let (_, rel) = crate::ops::reference::compare(&wide(&y), &reference);
            assert!(
                rel < 1e-5,
                "{} {} at {}: rel err {rel} (plan {:?})",
                s.kind,
                s.variant(),
                m,
                plan(&layer, n, m.c, m.h, m.w)
            );
        }
    }

    /// A grouped GEMM plan is one GEMM per group on that group's slices; the im2col
    /// workspace is allocated once and reused by every later forward of the same shape.
    #[test]
    fn grouped_gemms_slice_by_group_and_the_workspace_is_allocated_once() {
        use super::super::tests::spec;
        let s = spec(
            OpKind::GConv,
            "768x7x7",
            3,
            Some(16),
            None,
            PConvForward::SplitCat,
        );
        let weights = ops::random_weights(&s, 1, 17);
        let layer = NativeLayer::new(&s, &weights[0]);
        let steps = plan(&layer, 32, 768, 7, 7);
        let gemms: Vec<&GemmArgs> = steps
            .iter()
            .filter_map(|st| match st {
                Step::Gemm { args, .. } => Some(args),
                _ => None,
            })
            .collect();
        assert_eq!(gemms.len(), 16);
        assert_eq!((gemms[1].n, gemms[1].k), (48, 48 * 9));
        assert_eq!(gemms[1].a_offset, 48 * 9 * 49);
        assert_eq!(gemms[1].b_offset, 48 * 48 * 9);
        assert_eq!(gemms[1].c_offset, 48 * 49);
        let mut ws = Workspace::default();
        let need = workspace_floats(&steps, 32);
        assert_eq!(need, 32 * 768 * 9 * 49);
        // Verification (batch 2), then warm-up and timing (batch 32): one growth each,
        // then nothing for any number of timed forwards.
        assert!(ws.reserve(workspace_floats(&plan(&layer, 2, 768, 7, 7), 2)));
        assert!(ws.reserve(need));
        for _ in 0..100 {
            assert!(!ws.reserve(workspace_floats(&plan(&layer, 32, 768, 7, 7), 32)));
        }
        assert_eq!(ws.allocations, 2);
        // DWConv needs no workspace at all.
        let dw = spec(
            OpKind::DWConv,
            "96x56x56",
            3,
            None,
            None,
            PConvForward::SplitCat,
        );
        let dw_layer = NativeLayer::new(&dw, &ops::random_weights(&dw, 1, 1)[0]);
        assert_eq!(workspace_floats(&plan(&dw_layer, 32, 96, 56, 56), 32), 0);
    }

    /// The check above can fail: a PConv plan without its copy step leaves the untouched
    /// channels unwritten (NaN), and the comparison must reject that.
    #[test]
    fn a_plan_missing_its_copy_step_fails_the_comparison() {
        let kernels = CpuKernels::build();
        let s = super::super::tests::spec(
            OpKind::PConv,
            "70x7x9",
            3,
            None,
            Some(2),
            PConvForward::SplitCat,
        );
        let (m, n) = (s.map, 2);
        let weights = ops::random_weights(&s, 1, 17);
        let layer = NativeLayer::new(&s, &weights[0]);
        let x = ops::uniform(n * m.c * m.h * m.w, 1.0, &mut ops::seeded_rng(9));
        let steps: Vec<Step> = plan(&layer, n, m.c, m.h, m.w)
            .into_iter()
            .filter(|step| !matches!(step, Step::Copy { .. }))
            .collect();
        let y = run_steps(&kernels, &layer, steps, &x, n);
        let wide = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
        let reference =
            crate::ops::reference::reference_forward(&s, &wide(&weights[0].data), &wide(&x), n);
        let (abs, rel) = crate::ops::reference::compare(&wide(&y), &reference);
        assert!(
            abs.is_nan() && rel.is_nan(),
            "unwritten channels passed: abs {abs}, rel {rel}"
        );
    }
}
