#!/usr/bin/env bash
# The default run with and without its precision stop, interleaved on one machine: rounds of
# `pconv-bench run --precision off` and `pconv-bench run` (the built-in suite, 1 %), each
# timed by the wall clock. Prints, per mode and round, the wall time, the median and largest
# ci95_rel over the records, and the samples taken; then, per pair of runs, the spread of the
# ratio of the records' medians (off against off is the machine's own drift between runs).
#
#   scripts/precision-ab.sh [--bin target/release/pconv-bench] [--rounds 2] [--out DIR]
set -euo pipefail
bin=target/release/pconv-bench rounds=2 out=$(mktemp -d)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "precision-ab: unknown option '$1': allowed are --bin, --rounds, --out" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
for ((i = 1; i <= rounds; i++)); do
  for mode in off on; do
    extra=()
    [[ $mode == off ]] && extra=(--precision off)
    start=$(date +%s.%N)
    "$bin" run "${extra[@]}" --quiet --json "$out/$mode-$i.json" >/dev/null
    end=$(date +%s.%N)
    echo "$i $mode $(python3 -c "print(f'{$end - $start:.1f}')")" >>"$out/wall.txt"
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics as st, sys
out, rounds = sys.argv[1], int(sys.argv[2])
wall = {(r, m): w for r, m, w in (l.split() for l in open(f"{out}/wall.txt"))}
load = lambda m, r: json.load(open(f"{out}/{m}-{r}.json"))["records"]
for m in ("off", "on"):
    for r in range(1, rounds + 1):
        rel = [x["stats"]["ci95_rel"] for x in load(m, r)]
        n = [x["stats"]["samples"] for x in load(m, r)]
        print(f"{m:3} round {r}: {wall[(str(r), m)]} s wall, median ci95_rel {100 * st.median(rel):.3f} %, "
              f"max {100 * max(rel):.3f} %, samples median {st.median(n):.0f}, total {sum(n)}")
def spread(a, b):
    q = sorted(abs(y["stats"]["median_ms"] / x["stats"]["median_ms"] - 1) for x, y in zip(a, b))
    return f"median {100 * st.median(q):.1f} %, p90 {100 * q[int(0.9 * len(q))]:.1f} %, max {100 * q[-1]:.1f} %"
for a, b in [(("off", 1), ("off", 2)), (("on", 1), ("on", 2))] + [(("off", r), ("on", r)) for r in range(1, rounds + 1)]:
    if max(a[1], b[1]) <= rounds:
        print(f"|median ratio - 1|, {a[0]}{a[1]} vs {b[0]}{b[1]}: {spread(load(*a), load(*b))}")
PY
