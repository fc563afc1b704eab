#!/usr/bin/env python3
"""PyTorch reference timings for a pconv-bench run, in pconv-bench's JSON schema.

Reads a results file written by `pconv-bench run --json PLAN.json`, builds every operator it
measured (same op, kernel, groups / n_div / forward, shape, batch, layers, threads, dtype) in
PyTorch, checks it against a float64 evaluation of the same module, times it with
torch.utils.benchmark under torch.inference_mode(), and writes the records with
`"implementation": "torch"` so `pconv-bench report PLAN.json TORCH.json` shows them side by side.

    python3 scripts/torch_reference.py --plan results/cpu-x.json --json results/cpu-x-torch.json

CPU: torch.set_num_threads(record threads). CUDA (--device cuda): cudnn.benchmark on, TF32 off
(matching pconv-bench's default), synchronised timing (torch.utils.benchmark does it).
"""
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
import torch.nn.functional as F
import torch.utils.benchmark as benchmark

TOLERANCE = {"f32": 1e-4, "f16": 1e-2, "bf16": 5e-2}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


class PConv(nn.Module):
    """Partial_conv3 of the official FasterNet code (models/fasternet.py)."""

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


def layer(r, op=None):
    c = int(r["shape"].split("x")[0])
    k = r["kernel"]
    op = op or r["op"]
    if op in ("pconv_pw", "dw_pw", "gconv_pw"):
        # Composites: the first operator, then a 1x1 convolution c -> c.
        first = layer(r, op.removesuffix("_pw").replace("dw", "dwconv"))
        return nn.Sequential(first, nn.Conv2d(c, c, 1, 1, 0, bias=False))
    if op == "pconv":
        return PConv(c, r["n_div"], k, r["forward"])
    groups = {"conv": 1, "pwconv": 1, "gconv": r.get("groups"), "dwconv": c}[op]
    return nn.Conv2d(c, c, k, 1, k // 2, groups=groups, bias=False)


def build(r, seed):
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(*[layer(r) for _ in range(r["layers"])])
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p.shape[1] * p.shape[2] * p.shape[3]
            bound = math.sqrt(3.0 / fan_in)  # unit variance, as pconv-bench's weights
            p.copy_(torch.rand(p.shape, generator=gen) * 2 * bound - bound)
    return model.eval()


def quantile(sorted_v, q):
    pos = q * (len(sorted_v) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_v[lo] + (sorted_v[hi] - sorted_v[lo]) * (pos - lo)


def summary(samples):
    s = sorted(samples)
    n = len(s)
    mean = sum(s) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in s) / (n - 1)) if n > 1 else 0.0
    p25, med, p75 = quantile(s, 0.25), quantile(s, 0.5), quantile(s, 0.75)
    iqr = p75 - p25
    lo, hi = p25 - 1.5 * iqr, p75 + 1.5 * iqr
    rel = iqr / med if med > 0 else 0.0
    return {
        "samples": n, "median_ms": med, "mean_ms": mean, "std_ms": std, "min_ms": s[0],
        "max_ms": s[-1], "p25_ms": p25, "p75_ms": p75, "iqr_ms": iqr, "rel_iqr": rel,
        "outliers": sum(1 for x in s if x < lo or x > hi), "noisy": rel > 0.10,
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


def torch_copies(r, cost):
    """PyTorch's PConv forwards copy like candle's: cat (split_cat) or clone + copy_ (slicing)."""
    cost = dict(cost)
    if r["op"] not in ("pconv", "pconv_pw"):
        cost.update(copy_elements=0, copy_bytes=0, copies="")
        return cost
    c, h, w = (int(v) for v in r["shape"].split("x"))
    cp, hw = r["partial_channels"], h * w
    size = cost["memory_bytes"] // cost["memory_elements"]
    per_image = 2 * c * hw if r["forward"] == "split_cat" else 2 * c * hw + 2 * cp * hw
    what = ("torch.cat copies all c channels" if r["forward"] == "split_cat"
            else "clone copies all c channels; copy_ writes the c_p conv output in")
    n = per_image * r["batch"] * r["layers"]
    cost.update(copy_elements=n, copy_bytes=n * size, copies=what)
    return cost


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


def main():
    steady_allocator()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", required=True, help="a pconv-bench results JSON: what to time")
    ap.add_argument("--json", required=True, help="where to write the torch results")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: the plan's)")
    ap.add_argument("--measure-time", type=float, default=None,
                    help="seconds per operator (default: the plan's measure_time_s)")
    args = ap.parse_args()

    plan = json.load(open(args.plan))
    if plan.get("tool", {}).get("name") != "pconv-bench":
        sys.exit(f"error: '{args.plan}' is not a pconv-bench result")
    device = args.device or plan["device"]["kind"].split(":")[0]
    dev = torch.device("cuda" if device.startswith("cuda") else "cpu")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    measure = args.measure_time if args.measure_time is not None else plan["config"]["measure_time_s"]
    seed = plan["config"]["seed"]

    seen, records = set(), []
    todo = [r for r in plan["records"] if r["implementation"] != "torch"]
    for r in todo:
        key = (r["op"], r["variant"], r["shape"], r["batch"], r["layers"], r["dtype"], r["threads"])
        if key in seen:
            continue
        seen.add(key)
        if dev.type == "cpu":
            torch.set_num_threads(r["threads"])
        dtype = DTYPES[r["dtype"]]
        c, h, w = (int(v) for v in r["shape"].split("x"))
        gen = torch.Generator().manual_seed(seed ^ 0x1A7E)
        x = (torch.rand((r["batch"], c, h, w), generator=gen) * 2 - 1)
        model = build(r, seed)
        with torch.inference_mode():
            ref = model.double()(x.double())
            model = model.to(dev, dtype)
            xd = x.to(dev, dtype)
            out = model(xd).double().cpu()
            err = (out - ref).abs().max().item()
            rel = err / ref.abs().max().item()
            tol = TOLERANCE[r["dtype"]]
            if not rel <= tol:
                sys.exit(f"error: torch {r['op']} {r['variant']} at {r['shape']}: rel err {rel:.3e} > {tol}")
            t0 = time.perf_counter()
            timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": xd},
                                    num_threads=r["threads"] if dev.type == "cpu" else 1)
            # Warm-up, which also picks how many runs make one block (torch.utils.benchmark
            # times blocks of runs: per-run timer overhead would swamp microsecond ops).
            number = timer.blocked_autorange(min_run_time=min(0.5, measure)).number_per_run
            warm = time.perf_counter() - t0
            times, start = [], time.perf_counter()
            while len(times) < 10 or time.perf_counter() - start < measure:
                times.append(timer.timeit(number).times[0])
        samples = [t * 1e3 for t in times]
        stats = summary(samples)
        cost = torch_copies(r, r["cost"])
        rec = dict(r)
        rec.update(
            implementation="torch",
            # The plan's own device label when it ran on this kind of device ("cuda" and
            # "cuda:0" would otherwise not pair up in report and compare).
            device=r["device"] if r["device"].split(":")[0] == dev.type else str(dev),
            cost=cost,
            verification={
                "input": f"{r['batch']}x{c}x{h}x{w}", "max_abs_err": err, "max_rel_err": rel,
                "tolerance": tol,
                "checks": [f"matches the module evaluated in float64 (rel err {rel:.2e} <= {tol:.0e})"],
            },
            warmup={"runs": 0, "time_s": warm},
            stats=stats,
            rates=rates(cost, stats["median_ms"], r["batch"]),
            samples_ms=samples,
        )
        records.append(rec)
        print(f"torch {r['op']:7} {r['variant']:22} {r['shape']:10} {stats['median_ms']:9.4f} ms "
              f"({number} runs/sample, {len(samples)} samples)", file=sys.stderr)

    out = dict(plan)
    out.update(
        tool={**plan["tool"], "git_commit": git_commit(), "torch_version": torch.__version__,
              "features": ["torch"]},
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        command=sys.argv,
        complete=True,
        records=records,
        failures=[],
    )
    out["config"] = dict(plan["config"], impl=["torch"])
    if dev.type == "cuda":
        kind = plan["device"]["kind"] if plan["device"]["kind"].startswith("cuda") else "cuda:0"
        out["device"] = dict(plan["device"], kind=kind, name=torch.cuda.get_device_name(0))
    tmp = f"{args.json}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    os.replace(tmp, args.json)
    print(f"wrote {len(records)} torch records to {args.json} "
          f"(torch {torch.__version__}, {platform.processor() or platform.machine()})", file=sys.stderr)


if __name__ == "__main__":
    main()
