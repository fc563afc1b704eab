//! The program that made tests/golden/reference.json, against the API of commit 113d752 (it
//! does not build at later commits): `git worktree add /tmp/old 113d752`, copy this file to
//! /tmp/old/examples/fingerprint.rs, `cargo build --release --example fingerprint`, and run it
//! with the cases (the specs of reference.json, with op/shape spelled kind/map) as its argument.
//! Fingerprints of weights, verification inputs and f64 reference outputs (old layout).
use pconv_bench::model::{self, Model, Weights};
use pconv_bench::ops::{self, OpSpec};

fn stats(v: &[f64]) -> [f64; 6] {
    let s: f64 = v.iter().sum();
    let q: f64 = v.iter().map(|x| x * x).sum();
    let w: f64 = v.iter().enumerate().map(|(i, x)| (i as f64 + 1.0) * x).sum();
    [v.len() as f64, s, q, w, v[0], v[v.len() - 1]]
}

fn main() {
    let seed = 2303u64;
    let n = 2usize;
    let mut out = Vec::new();
    let cases: Vec<OpSpec> = serde_json::from_str(&std::env::args().nth(1).unwrap()).unwrap();
    for spec in cases {
        let weights = ops::random_weights(&spec, 1, seed);
        let flat: Vec<f64> = weights.iter().flat_map(|w| w.data.iter().map(|&v| f64::from(v))).collect();
        let c = spec.map.c * spec.map.h * spec.map.w;
        let x = ops::uniform(n * c, 1.0, &mut ops::seeded_rng(seed ^ 0x5eed));
        let xf: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let wide: Vec<Vec<f64>> = weights.iter().map(|w| w.data.iter().map(|&v| f64::from(v)).collect()).collect();
        let y = ops::reference_layer(&spec, &wide, &xf, n);
        out.push(serde_json::json!({"spec": spec, "weights": stats(&flat), "input": stats(&xf), "reference": stats(&y)}));
    }
    let arch: &'static model::Arch = "fasternet-t0".parse().unwrap();
    let m = Model::new(arch, 96).unwrap();
    let w = Weights::random(&m, seed);
    let mut flat: Vec<f64> = Vec::new();
    let wd = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    flat.extend(wd(&w.stem.weight)); flat.extend(wd(&w.stem.bias));
    for (i, stage) in w.blocks.iter().enumerate() {
        for b in stage { for s in b { flat.extend(wd(&s.data)); } }
        if i < 3 { flat.extend(wd(&w.merges[i].weight)); flat.extend(wd(&w.merges[i].bias)); }
    }
    flat.extend(wd(&w.head_conv)); flat.extend(wd(&w.fc_weight)); flat.extend(wd(&w.fc_bias));
    let x = model::random_input(&m, n, seed);
    let xf = wd(&x);
    let y = model::reference(&m, &w, &xf, n);
    out.push(serde_json::json!({"model": "fasternet-t0", "resolution": 96, "weights": stats(&flat), "input": stats(&xf), "reference": stats(&y)}));
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
