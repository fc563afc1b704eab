#!/usr/bin/env bash
# Validates every workflow in .github/workflows against GitHub's workflow schema with
# action-validator (installed from npm into a cache folder on first use), and checks that a
# workflow with an unknown key is refused, so a pass means something.
#
#   bash scripts/check-workflows.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${PCONV_TOOLS:-$HOME/.cache/pconv-bench-tools}
validator="$tools/node_modules/.bin/action-validator"
if [[ ! -x $validator ]]; then
  mkdir -p "$tools"
  npm install --silent --prefix "$tools" @action-validator/core@0.6.0 @action-validator/cli@0.6.0
fi
for f in .github/workflows/*.yml; do
  "$validator" "$f"
  echo "valid: $f"
done
bad=$(mktemp --suffix=.yml)
trap 'rm -f "$bad"' EXIT
printf 'name: bad\non: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: "true"\n        bogus: 1\n' >"$bad"
if "$validator" "$bad" >/dev/null 2>&1; then
  echo "action-validator accepted a workflow with an unknown key" >&2
  exit 1
fi
