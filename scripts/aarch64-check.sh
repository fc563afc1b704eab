#!/usr/bin/env bash
# pconv-bench on aarch64 Linux, checked from an x86-64 machine: cross-builds for
# aarch64-unknown-linux-gnu, runs the library's unit tests and a smoke run of the binary under
# qemu-user (so every native kernel's aarch64 path, and the gemm crate's NEON kernels, are
# verified against the f64 reference), and checks in the disassembly that the direct
# stencil's inner loops use NEON fused multiply-adds (fmla on vector registers). Installs the
# Rust target, the cross linker and qemu-user when they are missing. Emulated timings mean
# nothing and are thrown away.
#
#   bash scripts/aarch64-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
T=aarch64-unknown-linux-gnu
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

rustup target list --installed | grep -qx "$T" || rustup target add "$T"
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu qemu-user >/dev/null
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc

echo "== unit tests under qemu-aarch64 ($SECONDS s)"
cargo test --release --lib --target "$T"

echo "== binary and a smoke run under qemu-aarch64 ($SECONDS s)"
cargo build --release --target "$T" 2>&1 | tee "${TMPDIR:-/tmp}/aarch64-build.log"
if grep -q '^warning' "${TMPDIR:-/tmp}/aarch64-build.log"; then
  echo "the aarch64 build has warnings (above)" >&2
  exit 1
fi
bin=target/$T/release/pconv-bench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER "$bin" run --config configs/ci.toml --quiet \
  --json "$out/ci.json" >/dev/null
python3 - "$out/ci.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["device"]["arch"] == "aarch64", d["device"]
assert d["complete"] is True and not d["failures"], d["failures"]
recs = d["records"]
assert len(recs) == 24, len(recs)
for r in recs:
    assert r["verification"]["max_rel_err"] <= r["verification"]["tolerance"], r
    assert r["kernel_path"] == r["verification"]["kernel_path"] != "", r
native = {r["kernel_path"] for r in recs if r["implementation"] == "native"}
print(f"aarch64 smoke run ok: {len(recs)} records verified (native kernel paths: {sorted(native)})")
PY

echo "== NEON in the direct stencil ($SECONDS s)"
# The stencil versions (simd::stencil_neon, NEON intrinsics) are inlined into simd::stencil
# (or, if the compiler inlines that too, into direct::grouped_conv): count fused multiply-adds
# on vector registers (fmla vN.4s) against scalar ones (fmadd sN, the n % 4 tails) there.
aarch64-linux-gnu-objdump -d --no-show-raw-insn -C "$bin" |
  awk '/^[0-9a-f]+ <.*(native::simd::stencil|native::direct::grouped_conv).*>:$/ {on=1} /^$/ {on=0} on' \
  >"$out/stencil.s"
vector=$(grep -cE 'fmla[[:space:]]+v[0-9]+\.4s' "$out/stencil.s" || true)
scalar=$(grep -cE 'fmadd[[:space:]]+s[0-9]+' "$out/stencil.s" || true)
echo "simd::stencil and direct::grouped_conv: $(wc -l <"$out/stencil.s") instructions, $vector fmla on v.4s, $scalar scalar fmadd"
if [[ $vector -lt 10 ]]; then
  echo "the direct stencil does not use NEON fused multiply-adds" >&2
  exit 1
fi
echo "aarch64 check ok ($SECONDS s)"
