#!/usr/bin/env bash
# The whole GPU check in one go, from the repo root on a machine with an NVIDIA GPU and a
# binary built with --features cuda (docs/cuda.md): prints the GPU, verifies every operator on
# the GPU against the CPU reference and times the default CUDA suite (native and candle),
# times the same plan in PyTorch in interleaved rounds, measures DRAM traffic with Nsight
# Compute beside the paper's memory model, and runs the blocks on CUDA; every file lands in
# $OUT (default gpu-results/).
#
#   BIN=path/to/pconv-bench OUT=gpu-results PY=python3 bash scripts/gpu-check.sh
set -uo pipefail
BIN=${BIN:-target/release/pconv-bench}
OUT=${OUT:-gpu-results}
PY=${PY:-python3}
mkdir -p "$OUT"
# cuBLAS, NVRTC and cuDNN from a CUDA install, or from the nvidia-*-cu13 wheels PyTorch brings.
wheel_libs=$("$PY" - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
print(":".join(sorted({d for r in roots for d in glob.glob(os.path.join(r, "*", "lib")) + glob.glob(os.path.join(r, "cu13", "lib"))})))
PY
)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${wheel_libs:+:$wheel_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

log() { printf '\n== %s (%ss)\n' "$1" "$SECONDS" | tee -a "$OUT/gpu-check.log"; }
status=0

log "GPU"
nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9-')
gpu=${gpu:-gpu}
"$BIN" --version | tee -a "$OUT/gpu-check.log"

log "Table 1 on CUDA, batch 32: verify on the GPU, then time (native, candle)"
"$BIN" run --config configs/table1-cuda.toml --json "$OUT/cuda-$gpu-table1.json" 2>&1 | tee "$OUT/table1.txt" || status=1

log "native against PyTorch, interleaved rounds (cudnn.benchmark on, TF32 off, one sync per sample)"
"$PY" scripts/native_vs_torch.py --bin "$BIN" --config configs/table1-cuda.toml --rounds 3 \
  --out "$OUT/cuda-$gpu-table1" 2>&1 | tee "$OUT/torch.txt" || status=1

log "side by side: the interleaved native and PyTorch files, one column group each"
"$BIN" report "$OUT/cuda-$gpu-table1-native.json" "$OUT/cuda-$gpu-table1-torch.json" --by device \
  --format markdown --output "$OUT/cuda-$gpu-table1-by-device.md" 2>&1 || status=1

log "measured DRAM traffic (Nsight Compute) beside the paper's memory model, 192x28x28, batch 32"
# One record per profile (each PConv forward on its own), so each row gets its own kernels.
items="conv: gconv: dwconv: pconv:slicing pconv:split_cat pwconv:"
if command -v ncu >/dev/null 2>&1; then
  for item in $items; do
    op=${item%%:*} fwd=${item#*:} name=${item/:/-}; name=${name%-}
    args=(run --device cuda --ops "$op" --shapes 192x28x28 --batch 32 --layers 1 --impl native
      --warmup-time 0 --measure-time 0 --quiet ${fwd:+--pconv-forward "$fwd"})
    "$BIN" "${args[@]}" --json "$OUT/ncu-$name.json" >/dev/null || status=1
    ncu --metrics dram__bytes_read.sum,dram__bytes_write.sum --csv --launch-count 400 \
      "$BIN" "${args[@]}" > "$OUT/ncu-$name.csv" 2>"$OUT/ncu-$name.err" || status=1
  done
  "$PY" - "$OUT" $items <<'PY' | tee "$OUT/ncu-dram.md" || status=1
import csv, json, statistics, sys, collections
out, items = sys.argv[1], sys.argv[2:]
print("| op | variant | model MB per forward | measured DRAM MB per forward (median per kernel, summed) |")
print("|---|---|--:|--:|")
for item in items:
    name = item.rstrip(":").replace(":", "-")
    (rec,) = json.load(open(f"{out}/ncu-{name}.json"))["records"]
    rows = [r for r in csv.reader(l for l in open(f"{out}/ncu-{name}.csv") if l.startswith('"'))]
    head, body = rows[0], rows[1:]
    k, m, v = head.index("Kernel Name"), head.index("Metric Name"), head.index("Metric Value")
    unit = head.index("Metric Unit")
    scale = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}
    per_kernel = collections.defaultdict(list)
    for r in body:
        if r[k].startswith("pcb_") or "gemm" in r[k].lower():
            per_kernel[(r[k], r[m])].append(float(r[v].replace(",", "")) * scale.get(r[unit], 1))
    measured = sum(statistics.median(x) for x in per_kernel.values()) / 1e6
    print(f"| {rec['op']} | {rec['variant']} | {rec['cost']['memory_bytes'] / 1e6:.2f} | {measured:.2f} |")
PY
else
  echo "ncu not found: skipped" | tee -a "$OUT/gpu-check.log"
fi

log "TF32 on, for the record of what it changes (candle and native GEMMs)"
"$BIN" run --config configs/table1-cuda.toml --ops conv,pwconv --tf32 on \
  --json "$OUT/cuda-$gpu-table1-tf32.json" 2>&1 | tee "$OUT/tf32.txt" || status=1

log "blocks on CUDA (candle), batch 32"
"$BIN" run --config configs/blocks.toml --device cuda --impl candle --batch 32 \
  --json "$OUT/cuda-$gpu-blocks.json" 2>&1 | tee "$OUT/blocks.txt" || status=1

log "done (status $status)"
exit $status
