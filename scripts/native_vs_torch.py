#!/usr/bin/env python3
"""Native (pconv-bench) against PyTorch, measured in interleaved rounds on one machine.

A shared machine drifts by 10 % and more within minutes, so a ratio of two runs made apart is
no measurement. This runs the suite in rounds -- pconv-bench, then PyTorch on the same plan,
then pconv-bench again, ... -- and reports, per record, the median over rounds of the
per-round ratio median(native) / median(PyTorch), beside the smallest and largest round.

    python3 scripts/native_vs_torch.py --config configs/table1.toml --rounds 3 \\
        --out results/cpu-xeon-2c-1t-table1

writes OUT-native.json (the native rounds pooled by `pconv-bench merge`), OUT-torch.json (the
PyTorch rounds pooled), OUT-native-vs-torch.json (per-round ratios) and prints a Markdown
table (also saved as OUT-native-vs-torch.md). Extra `run` arguments follow `--`, for example
`-- --threads 2`, `-- --shapes 96x56x56` or `-- --pass infer,train` (training steps: PyTorch
times loss.backward() the same way).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
IDENTITY = ("op", "variant", "shape", "batch", "threads", "layers", "dtype", "pass")


def key(r):
    # Files from before passes existed time the forward.
    return tuple(r.get(k, "infer" if k == "pass" else None) for k in IDENTITY)


def medians(path):
    with open(path) as f:
        return {key(r): r["stats"]["median_ms"] for r in json.load(f)["records"]}


def write_atomic(path, text):
    target = os.path.realpath(path)
    tmp = f"{target}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, target)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="target/release/pconv-bench", help="the pconv-bench binary")
    ap.add_argument("--config", default="configs/table1.toml", help="suite file")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (at least 3)")
    ap.add_argument("--out", required=True, help="output prefix, e.g. results/cpu-x-1t-table1")
    ap.add_argument("run_args", nargs="*", help="extra `pconv-bench run` arguments (after --)")
    args = ap.parse_args()
    if args.rounds < 3:
        sys.exit(f"error: --rounds {args.rounds} is not allowed: at least 3 rounds")
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"error: --bin '{args.bin}' is not an executable (cargo build --release first)")
    tmp = tempfile.mkdtemp(prefix="native-vs-torch-")
    natives, torches = [], []
    # The plan PyTorch follows (points and budgets): the first native round, which runs first.
    plan = f"{tmp}/native-1.json"
    for i in range(1, args.rounds + 1):
        n_path, t_path = f"{tmp}/native-{i}.json", f"{tmp}/torch-{i}.json"

        def native():
            print(f"round {i}/{args.rounds}: pconv-bench (native)", file=sys.stderr)
            subprocess.run([args.bin, "run", "--config", args.config, "--impl", "native",
                            "--quiet", *args.run_args, "--json", n_path], check=True,
                           stdout=subprocess.DEVNULL)

        def torch():
            print(f"round {i}/{args.rounds}: PyTorch", file=sys.stderr)
            subprocess.run([sys.executable, f"{HERE}/torch_reference.py", "--plan", plan,
                            "--json", t_path, "--quiet"], check=True)

        # ABBA order: neither side always runs right after the other.
        for side in ((native, torch) if i % 2 else (torch, native)):
            side()
        natives.append(n_path)
        torches.append(t_path)
    subprocess.run([args.bin, "merge", *natives, "--json", f"{args.out}-native.json"], check=True)
    subprocess.run([args.bin, "merge", *torches, "--json", f"{args.out}-torch.json"], check=True)

    rounds = [(medians(n), medians(t)) for n, t in zip(natives, torches)]
    rows, missing = [], []
    every = {k for n, t in rounds for k in (*n, *t)}
    for k in [k for k in rounds[0][0]] + sorted(every - set(rounds[0][0]), key=str):
        ratios = [n[k] / t[k] for n, t in rounds if k in n and k in t]
        if len(ratios) < len(rounds):
            missing.append(dict(zip(IDENTITY, k)))
            continue
        rows.append({
            **dict(zip(IDENTITY, k)),
            "native_median_ms": [n[k] for n, _ in rounds],
            "torch_median_ms": [t[k] for _, t in rounds],
            "ratio_per_round": ratios,
            "ratio_median": statistics.median(ratios),
        })
    with open(natives[0]) as f:
        first = json.load(f)
    with open(torches[0]) as f:
        torch_version = json.load(f)["tool"].get("torch_version")
    summary = {
        "what": "per record: median over interleaved rounds of median(native) / median(PyTorch)",
        "rounds": args.rounds,
        "command": sys.argv,
        "device": first["device"],
        "tool": first["tool"],
        "torch_version": torch_version,
        "config": first["config"],
        "records": rows,
        "missing": missing,
    }
    write_atomic(f"{args.out}-native-vs-torch.json", json.dumps(summary, indent=2) + "\n")
    lines = [
        f"{first['device']['name']}, {first['config']['dtype'][0]}, PyTorch {torch_version}, "
        f"{args.rounds} interleaved rounds; ratio = median over rounds of "
        "median(native) / median(PyTorch) (below 1: native faster)",
        "",
        "| op | variant | shape | threads | pass | native ms | PyTorch ms | native / PyTorch | rounds (min-max) |",
        "|---|---|---|--:|---|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['op']} | {r['variant']} | {r['shape']} | {r['threads']} | {r['pass']} | "
            f"{statistics.median(r['native_median_ms']):.3f} | "
            f"{statistics.median(r['torch_median_ms']):.3f} | {r['ratio_median']:.2f} | "
            f"{min(r['ratio_per_round']):.2f}-{max(r['ratio_per_round']):.2f} |")
    text = "\n".join(lines) + "\n"
    if missing:
        text += "\nNot in every round of both sides (no ratio): " + "; ".join(
            f"{m['op']} {m['variant']} {m['shape']}" for m in missing) + "\n"
    write_atomic(f"{args.out}-native-vs-torch.md", text)
    print(text)
    if missing:
        sys.exit(f"error: {len(missing)} record(s) were not measured in every round by both sides")


if __name__ == "__main__":
    main()
