//! The answer a reader runs the suite for: at each shape, on this device, is PConv faster
//! than the operators it replaces, and does it reach more FLOPS (multiply-adds per second)
//! than DWConv and GConv, as the paper claims?
//!
//! Records are grouped by everything but the operator (shape, kernel size, implementation,
//! dtype, device, batch, threads, layers). In each group every PConv setting (n_div) meets
//! every rival: DWConv and GConv (the operators the paper says PConv beats in FLOPS) and
//! Conv (the yardstick); for the composites PConv+PWConv meets DWConv+PWConv, GConv+PWConv
//! and Conv, and C2f_Faster meets C2f. Where both PConv forwards ran, the faster one (by
//! median) speaks for PConv and the other's cost is stated.
//!
//! Each latency ratio gets the interval `compare` uses (a percentile bootstrap that resamples
//! whole repetitions first, widened by a t interval across repetitions when both sides have
//! several). A ratio whose interval holds 1 is "no difference
//! measured", never a winner. The FLOPS ratio GMAC/s(PConv) / GMAC/s(other) equals
//! MACs(PConv) / MACs(other) × latency(other) / latency(PConv), the MAC ratio times the latency
//! ratio, so its interval is the latency interval scaled.
//!
//! Answers are computed within one results file: records of different runs were not measured
//! side by side (`report` on several files answers each file on its own).

use serde::{Deserialize, Serialize};

use crate::measure::stats::{groups, median_ratio_ci};
use crate::ops::{Dtype, FeatureMap, Implementation, OpKind, Pass};
use crate::record::Record;

/// Confidence level of every interval in the answer.
pub const CONFIDENCE: f64 = 0.95;

/// Bootstrap resamples per ratio (as `compare`).
const RESAMPLES: usize = crate::compare::RESAMPLES;

/// An estimate with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    fn scaled(self, by: f64) -> Interval {
        Interval {
            estimate: self.estimate * by,
            lo: self.lo * by,
            hi: self.hi * by,
        }
    }

    fn inverse(self) -> Interval {
        Interval {
            estimate: 1.0 / self.estimate,
            lo: 1.0 / self.hi,
            hi: 1.0 / self.lo,
        }
    }

    /// Which side of 1 the whole interval lies on.
    fn finding(self) -> Finding {
        if self.lo > 1.0 {
            Finding::PconvFaster
        } else if self.hi < 1.0 {
            Finding::OtherFaster
        } else {
            Finding::NoDifference
        }
    }
}

/// What a latency interval says (ratio other / PConv).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// The whole interval above 1: PConv takes less time.
    PconvFaster,
    /// The whole interval below 1: the other operator takes less time.
    OtherFaster,
    /// The interval holds 1.
    NoDifference,
}

/// Whether the paper's FLOPS claim holds in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Claim {
    /// PConv's FLOPS exceed every DWConv's and GConv's, whole intervals above 1.
    Holds,
    /// Some DWConv or GConv reaches more FLOPS, whole interval below 1.
    DoesNotHold,
    /// Some interval holds 1.
    NotSettled,
    /// No DWConv or GConv ran beside this PConv.
    NotTested,
}

/// One operator of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub op: OpKind,
    pub variant: String,
    pub median_ms: f64,
    pub gmac_per_s: f64,
}

impl Side {
    fn of(r: &Record) -> Side {
        Side {
            op: r.spec.kind,
            variant: r.variant.clone(),
            median_ms: r.stats.median_ms,
            gmac_per_s: r.rates.gmac_per_s,
        }
    }

    /// `PConv 3x3 n_div=4 split_cat`.
    pub fn label(&self) -> String {
        format!("{} {}", paper_name(self.op), self.variant)
    }
}

/// The PConv forward that did not speak for PConv, and what it costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherForward {
    pub side: Side,
    /// median(other forward) / median(chosen forward), with its interval.
    pub slower_by: Interval,
    /// `pconv_faster` when the chosen forward is measurably faster.
    pub finding: Finding,
}

/// PConv against one rival.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versus {
    pub other: Side,
    /// median(other) / median(PConv): above 1, PConv takes less time.
    pub latency_ratio: Interval,
    /// GMAC/s of PConv / GMAC/s of the other.
    pub flops_ratio: Interval,
    pub finding: Finding,
    /// True for the rivals of the paper's FLOPS claim (DWConv, GConv and their composites).
    pub in_claim: bool,
}

/// One group's answer for one PConv setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub shape: FeatureMap,
    pub kernel: usize,
    pub implementation: Implementation,
    pub dtype: Dtype,
    pub device: String,
    pub batch: usize,
    pub threads: usize,
    pub layers: usize,
    /// `infer` or `train`: every record of the answer ran this pass.
    #[serde(default, skip_serializing_if = "Pass::is_infer")]
    pub pass: Pass,
    pub pconv: Side,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_forward: Option<OtherForward>,
    pub versus: Vec<Versus>,
    pub claim: Claim,
    /// Training answers only, when PConv's forward ran beside them: its training step's
    /// median over its forward's (what a step costs in forwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_vs_forward: Option<StepVsForward>,
}

/// A training step's median over the forward's, for the same operator and setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepVsForward {
    /// The forward's median, ms.
    pub forward_ms: f64,
    pub ratio: Interval,
}

impl Answer {
    /// `96x56x56, native f32, batch 1, 1 thread, 10 layers`.
    pub fn heading(&self) -> String {
        format!(
            "{}, {} {}, {}, batch {}, {} thread{}, {} layers{}",
            self.shape,
            self.implementation,
            self.dtype,
            self.device,
            self.batch,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.layers,
            if self.pass == Pass::Train {
                ", training step (forward + backward)"
            } else {
                ""
            }
        )
    }

    /// Words for the step against the forward: `a training step takes 2.95x its forward
    /// (4.901 ms) [2.91, 2.99]`.
    pub fn step_text(&self) -> Option<String> {
        let s = self.step_vs_forward.as_ref()?;
        Some(format!(
            "a {} training step takes {}x its forward ({:.3} ms) {}",
            paper_name(self.pconv.op),
            sig3(s.ratio.estimate),
            s.forward_ms,
            bounds(s.ratio)
        ))
    }

    /// Words for one rival: `DWConv 2.39x faster [2.31, 2.47]; PConv reaches 2.51x its
    /// FLOPS [2.43, 2.60]`.
    pub fn versus_text(&self, v: &Versus) -> String {
        let name = paper_name(v.other.op);
        let me = paper_name(self.pconv.op);
        let time = match v.finding {
            Finding::PconvFaster => format!("{me} {}", faster(v.latency_ratio)),
            Finding::OtherFaster => format!("{name} {}", faster(v.latency_ratio.inverse())),
            Finding::NoDifference => format!(
                "no difference measured ({}x {})",
                sig3(v.latency_ratio.estimate),
                bounds(v.latency_ratio)
            ),
        };
        format!(
            "{time}; {me} reaches {}x its FLOPS {}",
            sig3(v.flops_ratio.estimate),
            bounds(v.flops_ratio)
        )
    }

    /// Words for the other forward, if both ran.
    pub fn forward_text(&self) -> Option<String> {
        let o = self.other_forward.as_ref()?;
        let other = o.side.variant.rsplit(' ').next().unwrap_or("other");
        let chosen = self.pconv.variant.rsplit(' ').next().unwrap_or("this");
        Some(match o.finding {
            Finding::PconvFaster => format!(
                "{chosen} {} than {other} ({:.3} ms)",
                faster(o.slower_by),
                o.side.median_ms
            ),
            _ => format!(
                "{chosen} vs {other} ({:.3} ms): no difference measured ({}x {})",
                o.side.median_ms,
                sig3(o.slower_by.estimate),
                bounds(o.slower_by)
            ),
        })
    }

    /// The claim line, over the claim's rivals that ran, or None when none did.
    pub fn claim_text(&self) -> Option<String> {
        let me = paper_name(self.pconv.op);
        let rivals: Vec<&str> = claim_rivals(self.pconv.op)
            .iter()
            .filter(|&&k| self.versus.iter().any(|v| v.other.op == k))
            .map(|&k| paper_name(k))
            .collect();
        let state = match self.claim {
            Claim::Holds => "holds",
            Claim::DoesNotHold => "does not hold",
            Claim::NotSettled => "not settled (an interval holds 1)",
            Claim::NotTested => return None,
        };
        Some(format!(
            "paper's claim, FLOPS({me}) > {}: {state}",
            rivals
                .iter()
                .map(|r| format!("FLOPS({r})"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// `2.39x faster [2.31, 2.47]`.
fn faster(i: Interval) -> String {
    format!("{}x faster {}", sig3(i.estimate), bounds(i))
}

/// `[2.31, 2.47]`.
fn bounds(i: Interval) -> String {
    format!("[{}, {}]", sig3(i.lo), sig3(i.hi))
}

/// Three decimals below 10 (ratios near 1 need them), fewer above.
fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The operator's name as the paper writes it.
pub fn paper_name(k: OpKind) -> &'static str {
    match k {
        OpKind::Conv => "Conv",
        OpKind::GConv => "GConv",
        OpKind::DWConv => "DWConv",
        OpKind::PConv => "PConv",
        OpKind::PWConv => "PWConv",
        OpKind::PConvPw => "PConv+PWConv",
        OpKind::DwPw => "DWConv+PWConv",
        OpKind::GConvPw => "GConv+PWConv",
        OpKind::FasterNetBlock => "FasterNet block",
        OpKind::C2f => "C2f",
        OpKind::C2fFaster => "C2f_Faster",
        OpKind::FasterNet => "FasterNet",
    }
}

/// The rivals a PConv-based operator is judged against in the FLOPS claim.
fn claim_rivals(k: OpKind) -> &'static [OpKind] {
    match k {
        OpKind::PConv => &[OpKind::DWConv, OpKind::GConv],
        OpKind::PConvPw => &[OpKind::DwPw, OpKind::GConvPw],
        _ => &[],
    }
}

/// Every rival of a PConv-based operator: the claim's, then the yardstick.
fn rivals(k: OpKind) -> &'static [OpKind] {
    match k {
        OpKind::PConv => &[OpKind::DWConv, OpKind::GConv, OpKind::Conv],
        OpKind::PConvPw => &[OpKind::DwPw, OpKind::GConvPw, OpKind::Conv],
        OpKind::C2fFaster => &[OpKind::C2f],
        _ => &[],
    }
}

/// Everything but the operator: records with equal keys ran the same work setting (a C2f
/// and a C2f_Faster only with the same number of bottlenecks).
fn setting(r: &Record) -> impl PartialEq + '_ {
    (
        r.spec.map,
        r.spec.kernel,
        r.implementation,
        r.dtype,
        &r.device,
        r.batch,
        r.threads,
        r.layers,
        r.spec.bottlenecks,
        r.pass,
    )
}

/// The operator's settings without its PConv forward.
fn but_forward(r: &Record) -> crate::ops::OpSpec {
    crate::ops::OpSpec {
        forward: None,
        ..r.spec.clone()
    }
}

/// median(b) / median(a) with its interval.
fn ratio(a: &Record, b: &Record, seed: u64) -> Interval {
    let ci = median_ratio_ci(
        &groups(&a.samples_ms, &a.repetitions),
        &groups(&b.samples_ms, &b.repetitions),
        CONFIDENCE,
        RESAMPLES,
        seed,
    );
    Interval {
        estimate: ci.ratio,
        lo: ci.lo,
        hi: ci.hi,
    }
}

/// The answers for `records`, in the order their PConv records first appear. Records
/// without samples (none are written) are skipped.
pub fn answers(records: &[Record]) -> Vec<Answer> {
    let usable: Vec<&Record> = records
        .iter()
        .filter(|r| !r.samples_ms.is_empty())
        .collect();
    let mut out = Vec::new();
    let mut done = vec![false; usable.len()];
    let mut seed = 0u64;
    for (i, p) in usable.iter().enumerate() {
        if done[i] || rivals(p.spec.kind).is_empty() {
            continue;
        }
        // One answer per setting and operator settings, both forwards together.
        let same_pconv = |r: &&Record| setting(r) == setting(p) && but_forward(r) == but_forward(p);
        for (j, r) in usable.iter().enumerate() {
            if same_pconv(r) {
                done[j] = true;
            }
        }
        let mut forwards: Vec<&Record> = usable.iter().filter(|r| same_pconv(r)).copied().collect();
        forwards.sort_by(|a, b| a.stats.median_ms.total_cmp(&b.stats.median_ms));
        let chosen = forwards[0];
        let other_forward = forwards
            .iter()
            .find(|o| o.spec.forward != chosen.spec.forward)
            .map(|o| {
                seed += 1;
                let slower_by = ratio(chosen, o, seed);
                OtherForward {
                    side: Side::of(o),
                    slower_by,
                    finding: slower_by.finding(),
                }
            });
        let mut versus = Vec::new();
        for &kind in rivals(p.spec.kind) {
            for o in usable
                .iter()
                .filter(|r| r.spec.kind == kind && setting(r) == setting(p))
            {
                seed += 1;
                let latency_ratio = ratio(chosen, o, seed);
                let macs = chosen.cost.macs as f64 / o.cost.macs as f64;
                versus.push(Versus {
                    other: Side::of(o),
                    latency_ratio,
                    flops_ratio: latency_ratio.scaled(macs),
                    finding: latency_ratio.finding(),
                    in_claim: claim_rivals(p.spec.kind).contains(&kind),
                });
            }
        }
        if versus.is_empty() && other_forward.is_none() {
            continue;
        }
        let in_claim: Vec<&Versus> = versus.iter().filter(|v| v.in_claim).collect();
        let claim = if in_claim.is_empty() {
            Claim::NotTested
        } else if in_claim.iter().all(|v| v.flops_ratio.lo > 1.0) {
            Claim::Holds
        } else if in_claim.iter().any(|v| v.flops_ratio.hi < 1.0) {
            Claim::DoesNotHold
        } else {
            Claim::NotSettled
        };
        let step_vs_forward = (chosen.pass == Pass::Train)
            .then(|| {
                usable.iter().find(|r| {
                    r.point()
                        == crate::plan::Point {
                            pass: Pass::Infer,
                            ..chosen.point()
                        }
                        && r.device == chosen.device
                        && r.layers == chosen.layers
                })
            })
            .flatten()
            .map(|f| {
                seed += 1;
                StepVsForward {
                    forward_ms: f.stats.median_ms,
                    ratio: ratio(f, chosen, seed),
                }
            });
        out.push(Answer {
            shape: chosen.spec.map,
            kernel: chosen.spec.kernel,
            implementation: chosen.implementation,
            dtype: chosen.dtype,
            device: chosen.device.clone(),
            batch: chosen.batch,
            threads: chosen.threads,
            layers: chosen.layers,
            pass: chosen.pass,
            pconv: Side::of(chosen),
            other_forward,
            versus,
            claim,
            step_vs_forward,
        });
    }
    out
}

/// The answers with the confidence they were computed at: the `verdicts` of a results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdicts {
    pub confidence: f64,
    pub answers: Vec<Answer>,
}

impl Verdicts {
    pub fn of(records: &[Record]) -> Option<Verdicts> {
        let answers = answers(records);
        (!answers.is_empty()).then_some(Verdicts {
            confidence: CONFIDENCE,
            answers,
        })
    }
}

/// The answer section as plain text (terminal and `report --format table`).
pub fn text(v: &Verdicts) -> String {
    let mut out = format!(
        "\nThe answer per shape ({:.0} % intervals; a latency ratio whose interval holds 1 is no difference):\n",
        v.confidence * 100.0
    );
    for a in &v.answers {
        out += &format!("\n{}\n", a.heading());
        let head = format!(
            "{:>9.3} ms  {:>7.1} GMAC/s",
            a.pconv.median_ms, a.pconv.gmac_per_s
        );
        out += &format!("  {:<34}{head}", a.pconv.label());
        if let Some(f) = a.forward_text() {
            out += &format!("   {f}");
        }
        out += "\n";
        for v in &a.versus {
            out += &format!(
                "  {:<34}{}\n",
                format!("vs {}", v.other.label()),
                a.versus_text(v)
            );
        }
        if let Some(c) = a.claim_text() {
            out += &format!("  {c}\n");
        }
        if let Some(t) = a.step_text() {
            out += &format!("  {t}\n");
        }
    }
    out
}

/// The answer section as Markdown.
pub fn markdown(v: &Verdicts) -> String {
    let mut out = format!(
        "\n### The answer per shape\n\n{:.0} % intervals; a latency ratio whose interval holds 1 is no difference.\n",
        v.confidence * 100.0
    );
    for a in &v.answers {
        out += &format!("\n**{}**\n\n", a.heading());
        out += &format!(
            "- {}: {:.3} ms, {:.1} GMAC/s{}\n",
            a.pconv.label(),
            a.pconv.median_ms,
            a.pconv.gmac_per_s,
            a.forward_text()
                .map(|f| format!("; {f}"))
                .unwrap_or_default()
        );
        for v in &a.versus {
            out += &format!("- vs {}: {}\n", v.other.label(), a.versus_text(v));
        }
        if let Some(c) = a.claim_text() {
            out += &format!("- {c}\n");
        }
        if let Some(t) = a.step_text() {
            out += &format!("- {t}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_holding_one_names_no_winner() {
        let i = |lo, hi| Interval {
            estimate: (lo + hi) / 2.0,
            lo,
            hi,
        };
        assert_eq!(i(1.02, 1.10).finding(), Finding::PconvFaster);
        assert_eq!(i(0.80, 0.97).finding(), Finding::OtherFaster);
        assert_eq!(i(0.98, 1.03).finding(), Finding::NoDifference);
        let inv = i(0.5, 0.8).inverse();
        assert!((inv.lo - 1.25).abs() < 1e-12 && (inv.hi - 2.0).abs() < 1e-12);
    }

    /// The committed Table 1 run with the 96x56x56 native records' samples replaced by
    /// known distributions: `ms(op, forward)` gives each one's centre.
    fn table1_with(ms: impl Fn(OpKind, Option<&str>) -> f64) -> Vec<Record> {
        let mut result: crate::record::RunResult =
            serde_json::from_str(include_str!("../results/cpu-xeon-2c-1t-table1.json")).unwrap();
        result.records.retain(|r| {
            r.spec.map.to_string() == "96x56x56" && r.implementation == Implementation::Native
        });
        for r in &mut result.records {
            let centre = ms(r.spec.kind, r.variant.rsplit(' ').next());
            // 60 samples, +-2 % around the centre, a different order per record.
            r.samples_ms = (0..60)
                .map(|i| {
                    centre * (1.0 + 0.02 * (((i * 37 + r.spec.kernel) % 61) as f64 / 30.0 - 1.0))
                })
                .collect();
            r.repetitions = vec![60];
            r.stats = crate::measure::Summary::from_samples(&r.samples_ms);
            r.rates = crate::record::Rates::new(&r.cost, r.stats.median_ms, r.batch);
        }
        result.records
    }

    #[test]
    fn each_rival_gets_the_finding_its_samples_support() {
        let records = table1_with(|op, fwd| match (op, fwd) {
            (OpKind::PConv, Some("slicing")) => 1.2,
            (OpKind::PConv, _) => 1.0,
            (OpKind::DWConv, _) => 0.5,
            (OpKind::GConv, _) => 2.0,
            (OpKind::Conv, _) => 1.0,
            _ => 1.0,
        });
        let a = answers(&records);
        assert_eq!(a.len(), 1, "{a:#?}");
        let a = &a[0];
        assert!(a.pconv.variant.ends_with("split_cat"), "{:?}", a.pconv);
        let of = a.other_forward.as_ref().unwrap();
        assert_eq!(of.finding, Finding::PconvFaster);
        assert!((of.slower_by.estimate - 1.2).abs() < 0.03, "{of:?}");
        let find = |k: OpKind| a.versus.iter().find(|v| v.other.op == k).unwrap();
        assert_eq!(find(OpKind::DWConv).finding, Finding::OtherFaster);
        assert_eq!(find(OpKind::GConv).finding, Finding::PconvFaster);
        assert_eq!(find(OpKind::Conv).finding, Finding::NoDifference);
        assert!(a
            .versus_text(find(OpKind::Conv))
            .starts_with("no difference measured"));
        assert!(a
            .versus_text(find(OpKind::DWConv))
            .starts_with("DWConv 2.0"));
        // FLOPS: DWConv does 27.09 M of PConv's 162.57 M MACs in half the time: 3x.
        let dw = find(OpKind::DWConv).flops_ratio;
        assert!((dw.estimate - 162.57 / 27.095 * 0.5).abs() < 0.1, "{dw:?}");
        assert_eq!(a.claim, Claim::Holds);
    }

    #[test]
    fn a_fast_enough_dwconv_breaks_the_claim_and_an_overlap_leaves_it_open() {
        let faster_dw = table1_with(|op, _| if op == OpKind::DWConv { 0.1 } else { 1.0 });
        assert_eq!(answers(&faster_dw)[0].claim, Claim::DoesNotHold);
        // GConv's FLOPS equal PConv's (same MACs, same time): not settled either way.
        let tie = table1_with(|op, _| if op == OpKind::DWConv { 0.5 } else { 1.0 });
        let a = &answers(&tie)[0];
        assert_eq!(a.claim, Claim::NotSettled);
        assert!(a
            .claim_text()
            .unwrap()
            .ends_with("not settled (an interval holds 1)"));
    }
}
