#!/usr/bin/env bash
# Installs a CUDA 13.0 build toolchain (nvcc, headers, cudart, cuBLAS, cuRAND, NVRTC) from
# NVIDIA's PyPI wheels into a user prefix, plus a link-time stub for libcuda.so.1, so that
# `cargo build --features cuda` (candle-core 0.11 + cudarc 0.19, dynamic linking) works on a
# machine with no GPU. The binary it builds runs on a machine whose NVIDIA driver supports
# CUDA 13.0 (driver >= 580) and whose GPU has compute capability CUDA_COMPUTE_CAP (default 90:
# H100/H200). Run it from the project root (it reads cudarc's sources through cargo).
#
#   bash .ci/cuda-setup.sh                  # once per machine (about 650 MB of wheels)
#   source "${PCONV_CUDA_PREFIX:-$HOME/.cache/pconv-cuda13}/env.sh"
#   cargo build --release --features cuda   # first build 10-20 min on 2 cores (candle-kernels)
#
# Keep nvcc at 13.0.x: nvcc 13.1+ emits PTX ISA 9.1, which a CUDA 13.0 driver cannot load.
set -euo pipefail
PREFIX=${PCONV_CUDA_PREFIX:-$HOME/.cache/pconv-cuda13}
PYTHON=${PYTHON:-python3}
WHEELS=(
  nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35
)
# cuDNN (about 500 MB more) for candle's `cudnn` feature: PCONV_CUDNN=1 bash setup.sh
[[ ${PCONV_CUDNN:-0} == 1 ]] && WHEELS+=(nvidia-cudnn-cu13==9.21.1.3)
CU="$PREFIX/py/nvidia/cu13"
CR="$PREFIX/cuda"
if [[ ! -x "$CU/bin/nvcc" || ! -f "$CU/lib/libcublas.so.13" || ! -f "$CU/nvvm/bin/cicc" ]] \
   || [[ ${PCONV_CUDNN:-0} == 1 && ! -e "$PREFIX/py/nvidia/cudnn/lib/libcudnn.so.9" ]]; then
  mkdir -p "$PREFIX/wheels"
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$PREFIX/wheels" \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 "${WHEELS[@]}"
  "$PYTHON" -m pip install -q --no-deps --no-index --upgrade --target "$PREFIX/py" "$PREFIX"/wheels/*.whl
  rm -rf "$PREFIX/wheels"
fi

# A /usr/local/cuda-shaped root.
mkdir -p "$CR/lib64/stubs"
for d in bin include nvvm; do ln -sfn "$CU/$d" "$CR/$d"; done
for f in "$CU"/lib/*.so* "$CU"/lib/*.a; do [[ -e $f ]] && ln -sfn "$f" "$CR/lib64/$(basename "$f")"; done
for l in cudart.so.13 cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13; do
  ln -sfn "lib$l" "$CR/lib64/lib${l%%.so*}.so"
done
for f in "$PREFIX"/py/nvidia/cudnn/lib/libcudnn*.so.9; do
  [[ -e $f ]] && ln -sfn "$f" "$CR/lib64/$(basename "$f")" && ln -sfn "$(basename "$f")" "$CR/lib64/$(basename "${f%.9}")"
done
[[ -d "$PREFIX/py/nvidia/cudnn/include" ]] && ln -sfn "$PREFIX/py/nvidia/cudnn/include" "$CR/include-cudnn"

# Link-time stub for the driver library: every cu* entry point that cudarc declares, each
# returning CUDA_ERROR_NO_DEVICE. It only satisfies the linker; it must never be on the
# library path of the GPU machine, where the real libcuda.so.1 is used.
cargo fetch -q
sys=$(cargo metadata --format-version 1 --all-features | "$PYTHON" -c '
import json, os, sys
pkgs = json.load(sys.stdin)["packages"]
print([os.path.dirname(p["manifest_path"]) for p in pkgs if p["name"] == "cudarc"][0])')/src/driver/sys/mod.rs
grep -hoE '^\s+fn cu[A-Za-z0-9_]+\(' "$sys" | sed -E 's/^\s+fn //; s/\($//' | sort -u \
  | awk '{printf "int %s(void) { return 100; }\n", $1}' > "$CR/lib64/stubs/libcuda_stub.c"
gcc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$CR/lib64/stubs/libcuda.so" "$CR/lib64/stubs/libcuda_stub.c"

cat > "$PREFIX/env.sh" <<ENV
export CUDA_HOME="$CR" CUDA_PATH="$CR" CUDA_ROOT="$CR" CUDA_TOOLKIT_ROOT_DIR="$CR"
export NVCC="$CR/bin/nvcc" PATH="$CR/bin:\$PATH"
export CUDARC_CUDA_VERSION=13000 CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}
export LIBRARY_PATH="$CR/lib64:$CR/lib64/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
ENV
"$CR/bin/nvcc" --version | tail -1
echo "ready: source $PREFIX/env.sh && cargo build --release --features cuda"
