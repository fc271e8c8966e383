#!/bin/sh
# Build the C++ sample app (classify_pte) and the tokenizer check tool (xlnet_tokenize).
#
#   build.sh ARCH EXECUTORCH_DIR OUT_DIR [RPATH]
#
#   ARCH            native (this machine's g++: on the Pi itself, or an x86_64 host), x86_64 (g++) or
#                   aarch64 (cross-compile with aarch64-linux-gnu-g++)
#   EXECUTORCH_DIR  an executorch 1.5.1 wheel's executorch/ folder (holds include/ and lib/), for the target's arch
#   OUT_DIR         where classify_pte and xlnet_tokenize are written
#   RPATH           where classify_pte finds libexecutorch*.so at run time (default: EXECUTORCH_DIR/lib)
#
# The flags are toolkit/runner/build.sh's (the .pte runner the toolkit validates artifacts with), for the same
# reasons: the wheel's vendored c10 headers need C10_USING_CUSTOM_GENERATED_MACROS, its libraries are built with
# ET_EVENT_TRACER_ENABLED and ET_USE_THREADPOOL (class layouts must match), and the XNNPACK backend and kernel
# libraries register themselves from static initialisers, so they are linked with --no-as-needed.
set -eu

if [ $# -lt 3 ]; then
  echo "usage: $0 native|x86_64|aarch64 EXECUTORCH_DIR OUT_DIR [RPATH]" >&2
  exit 64
fi
arch=$1
et=$2
out=$3
rpath=${4:-$et/lib}
here=$(cd "$(dirname "$0")" && pwd)

case "$arch" in
  native|x86_64) cxx=${CXX:-g++} ;;
  aarch64) cxx=${CXX_AARCH64:-aarch64-linux-gnu-g++} ;;
  *) echo "build.sh: unknown arch '$arch' (native, x86_64 or aarch64)" >&2; exit 64 ;;
esac
if [ ! -f "$et/lib/libexecutorch.so" ]; then
  echo "build.sh: $et/lib/libexecutorch.so not found: pass the executorch/ folder of an executorch wheel" >&2
  exit 66
fi
mkdir -p "$out"

# The tokenizer tool needs no executorch.
"$cxx" -std=c++17 -O2 -Wall -Wextra \
  "$here/xlnet_tokenize.cpp" "$here/xlnet_tokenizer.cpp" -o "$out/xlnet_tokenize"

"$cxx" -std=c++17 -O2 -Wall -Wno-deprecated-declarations \
  -DC10_USING_CUSTOM_GENERATED_MACROS -DET_EVENT_TRACER_ENABLED -DET_USE_THREADPOOL \
  -I"$et/include" -I"$et/include/executorch/runtime/core/portable_type/c10" \
  "$here/classify_pte.cpp" "$here/xlnet_tokenizer.cpp" -o "$out/classify_pte" \
  -L"$et/lib" -Wl,-rpath-link,"$et/lib" -Wl,-rpath,"$rpath" \
  -Wl,--push-state,--no-as-needed \
  -lexecutorch_backend_xnnpack -lexecutorch_kernels_optimized -lexecutorch_kernels_quantized \
  -Wl,--pop-state \
  -lexecutorch_threadpool -lexecutorch
