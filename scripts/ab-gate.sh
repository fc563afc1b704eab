#!/usr/bin/env bash
# The regression gate: base and head measured on the same machine in the same job,
# interleaved in ABBA order (base, head, head, base, ...), each side's rounds pooled with `pconv-bench
# merge`, then `pconv-bench compare`. Absolute times from another machine never enter.
#
#   scripts/ab-gate.sh --base BASE_BIN --head HEAD_BIN [options] [-- compare options]
#
# Options:
#   --rounds N         interleaved rounds per side (default 5; at least 3: from 2, compare's
#                      t interval has one degree of freedom and can only say inconclusive)
#   --config PATH      suite to run (default configs/ci.toml)
#   --out DIR          keep every round's JSON and the report here (default: a temp folder)
#   --base-args "..."  extra `run` arguments for the base side (word-split)
#   --head-args "..."  extra `run` arguments for the head side (e.g. --inject-delay-us 2000)
# Everything after `--` goes to `compare` (e.g. --threshold 5% --fail-on-inconclusive).
#
# Both binaries run the same suite file (the head's checkout's, by default): a base build
# that cannot read it fails with exit 2. Writes OUT/gate.md (the Markdown report) and exits
# with compare's code: 0 pass, 1 regression / missing record, 2 bad input; a `run` that
# fails ends the gate with its own code (3: an operator failed verification, 4: a run-time
# error such as a failed write).
set -euo pipefail

die() { echo "ab-gate: $*" >&2; exit 2; }

base="" head="" rounds=5 config="configs/ci.toml" out="" base_args="" head_args=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base) base="${2:?--base needs a binary}"; shift 2 ;;
    --head) head="${2:?--head needs a binary}"; shift 2 ;;
    --rounds) rounds="${2:?--rounds needs a number}"; shift 2 ;;
    --config) config="${2:?--config needs a path}"; shift 2 ;;
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    --base-args) base_args="${2?}"; shift 2 ;;
    --head-args) head_args="${2?}"; shift 2 ;;
    --) shift; break ;;
    *) die "unknown option '$1': allowed are --base, --head, --rounds, --config, --out, --base-args, --head-args, --" ;;
  esac
done
[[ -x "$base" ]] || die "--base '$base' is not an executable pconv-bench binary"
[[ -x "$head" ]] || die "--head '$head' is not an executable pconv-bench binary"
[[ "$rounds" =~ ^[0-9]+$ && "$rounds" -ge 3 ]] || die "--rounds '$rounds' is not allowed: give an integer >= 3"
[[ -f "$config" ]] || die "--config '$config' is not a file"
if [[ -z "$out" ]]; then
  out=$(mktemp -d)
else
  mkdir -p "$out"
fi

# shellcheck disable=SC2206  # word-splitting the extra arguments is the point
base_extra=($base_args)
# shellcheck disable=SC2206
head_extra=($head_args)
base_files=() head_files=()
run_base() {
  echo "ab-gate: round $i/$rounds: base" >&2
  "$base" run --config "$config" --quiet "${base_extra[@]}" --json "$out/base-$i.json" >/dev/null
  base_files+=("$out/base-$i.json")
}
run_head() {
  echo "ab-gate: round $i/$rounds: head" >&2
  "$head" run --config "$config" --quiet "${head_extra[@]}" --json "$out/head-$i.json" >/dev/null
  head_files+=("$out/head-$i.json")
}
# ABBA order (base first in odd rounds, head first in even ones), so neither side always
# runs on a machine the other has just warmed or heated.
for ((i = 1; i <= rounds; i++)); do
  if ((i % 2)); then run_base; run_head; else run_head; run_base; fi
done
# The head binary pools both sides, so both files have one schema.
"$head" merge "${base_files[@]}" --json "$out/base.json"
"$head" merge "${head_files[@]}" --json "$out/head.json"
set +e
"$head" compare "$out/base.json" "$out/head.json" --format markdown "$@" >"$out/gate.md"
rc=$?
set -e
cat "$out/gate.md"
echo "ab-gate: report in $out/gate.md, compare exit $rc" >&2
exit "$rc"
