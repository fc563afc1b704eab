#!/usr/bin/env python3
"""PyTorch reference timings for a pconv-bench run, in pconv-bench's JSON schema.

Reads a results file written by `pconv-bench run --json PLAN.json`, builds every operator it
measured (same op, kernel, groups / n_div / forward, expansion, activation, bottlenecks, shape,
batch, layers, threads, dtype) as PyTorch modules the way the official FasterNet code and
ultralytics build them (BN folded into the convolution before timing, as both do for
inference), checks each against a float64 evaluation of the same module, and times it the
way pconv-bench does: warm-up (at least 3 runs, then until the plan's warm-up time), then one
sample = one forward through all layers followed by a device synchronise, at least 10 samples,
until the plan's measurement time. Records carry only what was measured for them.

    python3 scripts/torch_reference.py --plan results/cpu-x.json --json results/cpu-x-torch.json

A single run of this script next to a single pconv-bench run is no comparison on a machine
that drifts: use scripts/native_vs_torch.py, which interleaves rounds of both.

CPU: torch.set_num_threads(record threads). CUDA (--device cuda): cudnn.benchmark on, TF32 off
(pconv-bench's default), torch.cuda.synchronize() after every forward.

Records of `pass` train are timed as pconv-bench times them: one sample = one training step
(gradients reset to None, the forward, loss = output.sum(), loss.backward(), synchronise),
verified first, as pconv-bench verifies, on one layer against a float64 copy of it (output,
input gradient and every weight gradient, for a random upstream gradient). PConv's slicing forward cannot train (autograd
refuses its in-place write), as FasterNet's code says.
"""
import copy
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

TOLERANCE = {"f32": 1e-4, "f16": 1e-2, "bf16": 5e-2}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
MIN_WARMUP_RUNS, MIN_SAMPLES, MAX_SAMPLES = 3, 10, 10_000  # pconv-bench's Budget
NOISY_REL_IQR = 0.10


# ---------------------------------------------------------------------------------------
# Modules, as the official FasterNet code (models/fasternet.py) and ultralytics build them


class PConv(nn.Module):
    """Partial_conv3 of the official FasterNet code."""

    def __init__(self, dim, n_div, k, forward):
        super().__init__()
        self.dim_conv3 = dim // n_div
        self.dim_untouched = dim - self.dim_conv3
        self.partial_conv3 = nn.Conv2d(self.dim_conv3, self.dim_conv3, k, 1, k // 2, bias=False)
        self.forward = self.forward_slicing if forward == "slicing" else self.forward_split_cat

    def forward_slicing(self, x):
        x = x.clone()  # keep the original input intact for the residual connection later
        x[:, : self.dim_conv3, :, :] = self.partial_conv3(x[:, : self.dim_conv3, :, :])
        return x

    def forward_split_cat(self, x):
        x1, x2 = torch.split(x, [self.dim_conv3, self.dim_untouched], dim=1)
        x1 = self.partial_conv3(x1)
        return torch.cat((x1, x2), 1)


ACTS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


class MLPBlock(nn.Module):
    """FasterNet's block (MLPBlock, drop_path and layer scale off):
    x + PWConv(h->c)(act(BN(PWConv(c->h)(PConv(x)))))."""

    def __init__(self, dim, n_div, k, forward, expansion, act):
        super().__init__()
        hidden = dim * expansion
        self.spatial_mixing = PConv(dim, n_div, k, forward)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False), nn.BatchNorm2d(hidden), ACTS[act](),
            nn.Conv2d(hidden, dim, 1, bias=False))

    def forward(self, x):
        return x + self.mlp(self.spatial_mixing(x))

    def fuse(self):
        self.mlp = nn.Sequential(fuse_conv_bn_eval(self.mlp[0], self.mlp[1]), self.mlp[2],
                                 self.mlp[3])


class Conv(nn.Module):
    """ultralytics' Conv: conv (no bias) + BN + SiLU; fuse() folds BN as model.fuse() does."""

    def __init__(self, c1, c2, k=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, 1, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def fuse(self):
        self.conv = fuse_conv_bn_eval(self.conv, self.bn)
        self.bn = nn.Identity()


class Bottleneck(nn.Module):
    """ultralytics' Bottleneck as C2f uses it: e = 1, shortcut on, two k x k Convs."""

    def __init__(self, c, k):
        super().__init__()
        self.cv1, self.cv2 = Conv(c, c, k), Conv(c, c, k)

    def forward(self, x):
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    """ultralytics' C2f (e = 0.5); `faster` swaps each Bottleneck for a FasterNet block with
    SiLU (the usual C2f_Faster of YOLO PConv ports)."""

    def __init__(self, c, n, k, faster=None):
        super().__init__()
        self.c = c // 2
        self.cv1 = Conv(c, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c, 1)
        if faster is None:
            self.m = nn.ModuleList(Bottleneck(self.c, k) for _ in range(n))
        else:
            n_div, forward, expansion = faster
            self.m = nn.ModuleList(MLPBlock(self.c, n_div, k, forward, expansion, "silu")
                                   for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


def layer(r, op=None):
    c = int(r["shape"].split("x")[0])
    k = r["kernel"]
    op = op or r["op"]
    if op in ("pconv_pw", "dw_pw", "gconv_pw"):
        first = {"pconv_pw": "pconv", "dw_pw": "dwconv", "gconv_pw": "gconv"}[op]
        return nn.Sequential(layer(r, first), nn.Conv2d(c, c, 1, 1, 0, bias=False))
    if op == "pconv":
        return PConv(c, r["n_div"], k, r["forward"])
    if op == "fasternet_block":
        return MLPBlock(c, r["n_div"], k, r["forward"], r["expansion"], r["act"])
    if op == "c2f":
        return C2f(c, r["bottlenecks"], k)
    if op == "c2f_faster":
        return C2f(c, r["bottlenecks"], k, (r["n_div"], r["forward"], r["expansion"]))
    groups = {"conv": 1, "pwconv": 1, "gconv": r.get("groups"), "dwconv": c}.get(op)
    if groups is None:
        raise ValueError(f"operator '{op}' has no PyTorch module in this script")
    return nn.Conv2d(c, c, k, 1, k // 2, groups=groups, bias=False)


def build(r, seed):
    """`layers` stacked layers with unit-variance weights (pconv-bench's scheme) and random
    inference BN statistics, BN folded into the convolutions."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(*[layer(r) for _ in range(r["layers"])])
    uniform = lambda shape, lo, hi: torch.rand(shape, generator=gen) * (hi - lo) + lo
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
                bound = math.sqrt(3.0 / fan_in)
                m.weight.copy_(uniform(m.weight.shape, -bound, bound))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(uniform(m.weight.shape, 0.5, 1.5))
                m.bias.copy_(uniform(m.bias.shape, -0.1, 0.1))
                m.running_mean.copy_(uniform(m.running_mean.shape, -0.1, 0.1))
                m.running_var.copy_(uniform(m.running_var.shape, 0.5, 1.5))
        for m in model.modules():
            if isinstance(m, MLPBlock):
                # pconv-bench scales the block's last PWConv by 1/2, so ten residual blocks
                # keep their activations bounded.
                m.mlp[3].weight.mul_(0.5)
    model.eval()
    for m in list(model.modules()):
        if hasattr(m, "fuse"):
            m.fuse()
    return model


# ---------------------------------------------------------------------------------------
# Cost beyond the paper's model, statistics, timing


def pconv_copies(c, cp, forward):
    """Elements PyTorch's PConv forward copies per image plane: cat copies all c channels
    (split_cat); clone copies all c, then copy_ writes the c_p conv output in (slicing)."""
    if forward == "split_cat":
        return 2 * c, "torch.cat copies all c channels"
    return 2 * c + 2 * cp, "clone copies all c channels; copy_ writes the c_p conv output in"


def torch_copies(r):
    """(elements per image per layer, description) that PyTorch's modules copy."""
    c, h, w = (int(v) for v in r["shape"].split("x"))
    hw, op = h * w, r["op"]
    if op in ("pconv", "pconv_pw", "fasternet_block"):
        per_plane, what = pconv_copies(c, c // r["n_div"], r["forward"])
        if r.get("pass", "infer") == "train":
            # split's backward concatenates the two parts' gradients: all c channels again.
            return 2 * per_plane * hw, what + "; the backward of split concatenates all c channels' gradients"
        return per_plane * hw, what
    if op in ("c2f", "c2f_faster"):
        half, n = c // 2, r["bottlenecks"]
        elements, what = 2 * (2 + n) * half * hw, [f"torch.cat copies all (2 + n)·c/2 = {(2 + n) * half} channels"]
        if op == "c2f_faster":
            per_plane, inner = pconv_copies(half, half // r["n_div"], r["forward"])
            elements += n * per_plane * hw
            what.append(f"each of the {n} bottlenecks: {inner}")
        return elements, "; ".join(what)
    return 0, ""


def torch_cost(r):
    """The plan's cost model (the operator's, implementation-independent), with PyTorch's own
    copies in place of the planned implementation's."""
    cost = dict(r["cost"])
    per_image, what = torch_copies(r)
    size = cost["memory_bytes"] // cost["memory_elements"]
    n = per_image * r["batch"] * r["layers"]
    cost.update(copy_elements=n, copy_bytes=n * size, copies=what)
    return cost


def quantile(sorted_v, q):
    pos = q * (len(sorted_v) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_v[lo] + (sorted_v[hi] - sorted_v[lo]) * (pos - lo)


def median_interval(s, confidence=0.95):
    """pconv-bench's median_interval_sorted: order statistics at the exact binomial ranks."""
    n = len(s)
    tail, ln_2n = (1 - confidence) / 2, n * math.log(2)
    ln_choose, cdf, rank = 0.0, 0.0, 0
    for k in range(n):
        cdf += math.exp(ln_choose - ln_2n)
        if cdf > tail:
            break
        rank = k + 1
        ln_choose += math.log(n - k) - math.log(k + 1)
    return (s[0], s[-1]) if rank == 0 else (s[rank - 1], s[n - rank])


def median_interval_rel(s):
    med = quantile(s, 0.5)
    lo, hi = median_interval(s)
    return max(med - lo, hi - med) / med if med > 0 else 0.0


MIN_STOP_SAMPLES, MIN_STOP_TIME_S = 20, 0.3  # pconv-bench's precision stop


def precise_enough(samples, target):
    """pconv-bench's stats::precise_enough."""
    n = len(samples)
    if n < MIN_STOP_SAMPLES:
        return False
    s = sorted(samples)
    if median_interval_rel(s) > target:
        return False
    half = n // 2
    first, second = sorted(samples[:half]), sorted(samples[half:])
    return abs(quantile(first, 0.5) - quantile(second, 0.5)) <= 2 * target * quantile(s, 0.5)


def summary(samples):
    """pconv-bench's Summary::from_samples (type-7 quantiles, Tukey fences, n - 1 std)."""
    s = sorted(samples)
    n = len(s)
    mean = sum(s) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in s) / (n - 1)) if n > 1 else 0.0
    p25, med, p75 = quantile(s, 0.25), quantile(s, 0.5), quantile(s, 0.75)
    iqr = p75 - p25
    lo, hi = p25 - 1.5 * iqr, p75 + 1.5 * iqr
    rel = iqr / med if med > 0 else 0.0
    ci_lo, ci_hi = median_interval(s)
    return {
        "samples": n, "median_ms": med, "mean_ms": mean, "std_ms": std, "min_ms": s[0],
        "max_ms": s[-1], "p25_ms": p25, "p75_ms": p75, "iqr_ms": iqr, "rel_iqr": rel,
        "outliers": sum(1 for x in s if x < lo or x > hi), "noisy": rel > NOISY_REL_IQR,
        "ci95_lo_ms": ci_lo, "ci95_hi_ms": ci_hi, "ci95_rel": median_interval_rel(s),
    }


def rates(cost, latency_ms, batch):
    s = latency_ms / 1e3
    return {
        "latency_ms": latency_ms,
        "throughput_img_per_s": batch / s,
        "gmac_per_s": cost["macs"] / s / 1e9,
        "gflop_per_s": cost["flop"] / s / 1e9,
        "gb_per_s": cost["memory_bytes"] / s / 1e9,
        "gb_per_s_with_copies": (cost["memory_bytes"] + cost["copy_bytes"]) / s / 1e9,
    }


def measure(run, sync, warmup_s, measure_s, precision=None):
    """pconv-bench's measure::measure: every sample is exactly one forward and one sync; with
    a precision, the same early stop (after the minimum sampling time, checked after every
    sample to 100, then every 5 % more)."""
    start, warm_runs = time.perf_counter(), 0
    while warm_runs < MIN_WARMUP_RUNS or time.perf_counter() - start < warmup_s:
        run()
        sync()
        warm_runs += 1
    warm_s = time.perf_counter() - start
    samples, start, next_check = [], time.perf_counter(), MIN_SAMPLES
    min_stop = min(max(measure_s, 0.0) / 4, MIN_STOP_TIME_S)
    while len(samples) < MAX_SAMPLES and (len(samples) < MIN_SAMPLES
                                          or time.perf_counter() - start < measure_s):
        t0 = time.perf_counter()
        run()
        sync()
        samples.append((time.perf_counter() - t0) * 1e3)
        n = len(samples)
        if precision and n >= next_check and time.perf_counter() - start >= min_stop:
            if precise_enough(samples, precision):
                break
            next_check = n + (1 if n < 100 else n // 20)
    return warm_runs, warm_s, samples


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def steady_allocator():
    """Same glibc malloc settings as pconv-bench (device::steady_allocator): freed buffers
    stay in the process, so page faults do not depend on which operator ran before."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)   # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


IDENTITY_KEYS = ("op", "variant", "kernel", "groups", "n_div", "forward", "expansion", "act",
                 "bottlenecks", "shape", "batch", "layers", "dtype", "threads", "pass")
RECORD_KEYS = ("op", "variant", "kernel", "groups", "n_div", "partial_channels", "forward",
               "expansion", "act", "bottlenecks", "shape", "batch", "layers", "pass")


def check(what, got, want, tol, label):
    """max |got - want| / max |want| within tol (NaN fails); returns (abs, rel)."""
    err = (got.double().cpu() - want).abs().max().item()
    scale = want.abs().max().item()
    rel = err / scale if scale > 0 else err
    if not rel <= tol:
        raise RuntimeError(f"torch {label}: {what} rel err {rel:.3e} > {tol}")
    return err, rel


def verify_train(model, x, dev, dtype, tol, label, seed):
    """One training step with a random upstream gradient g (loss = sum(y * g)) against the
    same step of a float64 copy: output, input gradient, every weight gradient. A ReLU input
    at the kink can fall on either side in f32: the float64 copy takes each ReLU's decisions
    (which inputs pass) from the f32 run, so the comparison measures rounding only."""
    gen = torch.Generator().manual_seed(seed ^ 0x9BAD)
    ref_model = copy.deepcopy(model).double()
    model = model.to(dev, dtype)
    masks, hooks = {}, []
    pairs = [(m, r) for m, r in zip(model.modules(), ref_model.modules()) if isinstance(m, nn.ReLU)]
    for i, (m, r) in enumerate(pairs):
        hooks.append(m.register_forward_hook(
            lambda mod, inp, out, i=i: masks.__setitem__(i, (inp[0] > 0).detach().cpu())))
        hooks.append(r.register_forward_hook(
            lambda mod, inp, out, i=i: inp[0] * masks[i].to(inp[0].dtype)))
    xm = x.detach().clone().to(dev, dtype).requires_grad_(True)
    y = model(xm)
    g = torch.rand(y.shape, generator=gen, dtype=torch.float64) * 2 - 1
    (y * g.to(dev, dtype)).sum().backward()
    xr = x.detach().double().requires_grad_(True)
    yr = ref_model(xr)
    (yr * g).sum().backward()
    for h in hooks:
        h.remove()
    worst = [check("output", y.detach(), yr.detach(), tol, label),
             check("input gradient", xm.grad, xr.grad, tol, label)]
    for i, (p, pr) in enumerate(zip(model.parameters(), ref_model.parameters())):
        worst.append(check(f"weight gradient {i + 1}", p.grad, pr.grad, tol, label))
    err, rel = max(e for e, _ in worst), max(r for _, r in worst)
    checks = [f"one layer's output, input gradient and {len(worst) - 2} weight gradient(s) match "
              f"the layer evaluated in float64 (rel err {rel:.2e} <= {tol:.0e})"]
    return model, err, rel, checks


def measure_record(r, dev, seed, warmup_s, measure_s, precision=None):
    """Builds, verifies and times one planned record in PyTorch; returns the torch record."""
    if dev.type == "cpu":
        torch.set_num_threads(r["threads"])
    dtype = DTYPES[r["dtype"]]
    c, h, w = (int(v) for v in r["shape"].split("x"))
    gen = torch.Generator().manual_seed(seed ^ 0x1A7E)
    x = torch.rand((r["batch"], c, h, w), generator=gen) * 2 - 1
    model = build(r, seed)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    tol = TOLERANCE[r["dtype"]]
    label = f"{r['op']} {r['variant']} at {r['shape']}"
    if r.get("pass", "infer") == "train":
        if r.get("forward") == "slicing":
            raise RuntimeError(f"torch {label}: the slicing forward is inference-only (autograd "
                               "refuses its in-place write); train split_cat")
        # Folding BN leaves a bias that does not require grad: with BN frozen (folded), the
        # folded weight and bias are what trains, as in pconv-bench.
        for p in model.parameters():
            p.requires_grad_(True)
        # One layer is verified, as pconv-bench verifies one: through ten, f32 and f64 drift
        # apart and a ReLU whose input sits at its kink in one of them flips a gradient.
        one = build(dict(r, layers=1), seed)
        for p in one.parameters():
            p.requires_grad_(True)
        _, err, rel, checks = verify_train(one, x, dev, dtype, tol, label, seed)
        model = model.to(dev, dtype)
        params = list(model.parameters())
        xd = x.detach().clone().to(dev, dtype).requires_grad_(True)

        def step():
            for p in params:
                p.grad = None
            xd.grad = None
            model(xd).sum().backward()

        warm_runs, warm_s, samples = measure(step, sync, warmup_s, measure_s, precision)
    else:
        with torch.inference_mode():
            ref = model.double()(x.double())
            model = model.to(dev, dtype)
            xd = x.to(dev, dtype)
            err, rel = check("output", model(xd), ref, tol, label)
            checks = [f"matches the module evaluated in float64 (rel err {rel:.2e} <= {tol:.0e})"]
            warm_runs, warm_s, samples = measure(lambda: model(xd), sync, warmup_s, measure_s,
                                                 precision)
    stats = summary(samples)
    cost = torch_cost(r)
    rec = {k: r[k] for k in RECORD_KEYS if r.get(k) is not None}
    rec.update(
        implementation="torch",
        dtype=r["dtype"],
        # The plan's own device label when it ran on this kind of device ("cuda" and
        # "cuda:0" would otherwise not pair up in report and compare).
        device=r["device"] if r["device"].split(":")[0] == dev.type else str(dev),
        threads=r["threads"],
        cost=cost,
        kernel_path="torch",
        verification={
            "input": f"{r['batch']}x{c}x{h}x{w}", "kernel_path": "torch",
            "max_abs_err": err, "max_rel_err": rel, "tolerance": tol,
            "checks": checks,
        },
        warmup={"runs": warm_runs, "time_s": warm_s},
        stats=stats,
        rates=rates(cost, stats["median_ms"], r["batch"]),
        samples_ms=samples,
        repetitions=[len(samples)],
    )
    if r.get("paper") is not None:
        rec["paper"] = r["paper"]  # the paper's row for this shape: a reference, not a measurement
    return rec


def main():
    steady_allocator()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", required=True, help="a pconv-bench results JSON: what to time")
    ap.add_argument("--json", required=True, help="where to write the torch results")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: the plan's)")
    ap.add_argument("--measure-time", type=float, default=None,
                    help="seconds per operator (default: the plan's measure_time_s)")
    ap.add_argument("--warmup-time", type=float, default=None,
                    help="warm-up seconds per operator (default: the plan's warmup_time_s)")
    ap.add_argument("--quiet", action="store_true", help="no line per record on stderr")
    args = ap.parse_args()

    try:
        plan = json.load(open(args.plan))
    except (OSError, ValueError) as e:
        sys.exit(f"error: cannot read plan '{args.plan}': {e}")
    if plan.get("tool", {}).get("name") != "pconv-bench":
        sys.exit(f"error: '{args.plan}' is not a pconv-bench result")
    device = args.device or plan["device"]["kind"].split(":")[0]
    dev = torch.device("cuda" if device.startswith("cuda") else "cpu")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    cfg = plan["config"]
    measure_s = args.measure_time if args.measure_time is not None else cfg["measure_time_s"]
    warmup_s = args.warmup_time if args.warmup_time is not None else cfg["warmup_time_s"]
    seed = cfg["seed"]

    seen, records = set(), []
    for r in plan["records"]:
        if r["implementation"] == "torch":
            continue
        key = tuple(r.get(k) for k in IDENTITY_KEYS)
        if key in seen:
            continue
        seen.add(key)
        try:
            rec = measure_record(r, dev, seed, warmup_s, measure_s, cfg.get("precision"))
        except (RuntimeError, ValueError) as e:
            sys.exit(f"error: {e}")
        records.append(rec)
        if not args.quiet:
            s = rec["stats"]
            print(f"torch {r['op']:15} {r['variant']:34} {r['shape']:10} {s['median_ms']:9.4f} ms "
                  f"({s['samples']} samples, {rec['warmup']['runs']} warm-up)", file=sys.stderr)

    out = {
        "schema_version": plan["schema_version"],
        "mode": plan.get("mode", "run"),
        "tool": {**plan["tool"], "git_commit": git_commit(), "torch_version": torch.__version__,
                 "features": ["torch"]},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": sys.argv,
        "complete": True,
        "device": plan["device"],
        "config": dict(cfg, impl=["torch"], warmup_time_s=warmup_s, measure_time_s=measure_s),
        "config_source": plan.get("config_source", args.plan),
        "records": records,
        "failures": [],
    }
    if dev.type == "cuda":
        kind = plan["device"]["kind"] if plan["device"]["kind"].startswith("cuda") else "cuda:0"
        out["device"] = dict(plan["device"], kind=kind, name=torch.cuda.get_device_name(0))
    target = os.path.realpath(args.json)
    tmp = f"{target}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    os.replace(tmp, target)
    if not args.quiet:
        print(f"wrote {len(records)} torch records to {args.json} "
              f"(torch {torch.__version__}, {platform.processor() or platform.machine()})",
              file=sys.stderr)


if __name__ == "__main__":
    main()
