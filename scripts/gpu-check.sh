#!/usr/bin/env bash
# The one GPU session: run from the repo root on the GPU machine with a binary built here
# with --features cuda (README, "CUDA"). In one go it prints the GPU, checks the no-GPU
# message path is not hit, verifies every operator on the GPU against the CPU reference and
# times the default CUDA suite (native and candle), times the same plan in PyTorch, and runs
# the blocks on CUDA; every file lands in $OUT (default gpu-results/).
#
#   BIN=devcarry/pconv-bench OUT=$OUT bash scripts/gpu-check.sh
set -uo pipefail
BIN=${BIN:-devcarry/pconv-bench}
OUT=${OUT:-gpu-results}
PY=${PY:-$(ls /opt/torch/.venv/bin/python3 2>/dev/null || command -v python3)}
mkdir -p "$OUT"
torch_lib=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib 2>/dev/null | head -1)
cudnn_lib=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/cudnn/lib 2>/dev/null | head -1)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${torch_lib:+:$torch_lib}${cudnn_lib:+:$cudnn_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

log() { printf '\n== %s (%ss)\n' "$1" "$SECONDS" | tee -a "$OUT/gpu-check.log"; }
status=0

log "GPU"
nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9-')
gpu=${gpu:-gpu}
"$BIN" --version | tee -a "$OUT/gpu-check.log"

log "Table 1 on CUDA, batch 32: verify on the GPU, then time (native, candle)"
"$BIN" run --config configs/table1-cuda.toml --json "$OUT/cuda-$gpu-table1.json" 2>&1 | tee "$OUT/table1.txt" || status=1

log "the same plan in PyTorch (cudnn.benchmark on, TF32 off)"
"$PY" scripts/torch_reference.py --plan "$OUT/cuda-$gpu-table1.json" --device cuda \
  --json "$OUT/cuda-$gpu-table1-torch.json" 2>&1 | tee "$OUT/torch.txt" || status=1

log "side by side"
"$BIN" report "$OUT/cuda-$gpu-table1.json" "$OUT/cuda-$gpu-table1-torch.json" --format markdown \
  > "$OUT/cuda-$gpu-table1.md" 2>&1 || status=1

log "TF32 on, for the record of what it changes (candle and native GEMMs)"
"$BIN" run --config configs/table1-cuda.toml --ops conv,pwconv --tf32 on \
  --json "$OUT/cuda-$gpu-table1-tf32.json" 2>&1 | tee "$OUT/tf32.txt" || status=1

log "blocks on CUDA (candle), batch 32"
"$BIN" run --config configs/blocks.toml --device cuda --impl candle --batch 32 \
  --json "$OUT/cuda-$gpu-blocks.json" 2>&1 | tee "$OUT/blocks.txt" || status=1

log "done (status $status)"
exit $status
