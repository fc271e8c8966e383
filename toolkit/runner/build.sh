#!/bin/sh
# Build pte_runner against the shared libraries of an executorch wheel, with plain compiler flags.
#
#   build.sh ARCH EXECUTORCH_DIR OUTPUT RPATH
#
#   ARCH            x86_64 (host g++) or aarch64 (aarch64-linux-gnu-g++ cross compiler)
#   EXECUTORCH_DIR  the wheel's executorch/ folder (holds include/ and lib/); for aarch64 the unpacked aarch64 wheel
#   OUTPUT          path of the binary to write
#   RPATH           where the binary finds libexecutorch*.so at run time (/opt/executorch/lib inside the rootfs)
#
# Why not CMake: the wheel's executorch-config.cmake defines its imported targets only on CMake >= 3.28 (Debian 12
# has 3.25), and its fallback variables need the same flags spelled out anyway. The flags below are those variables:
#   C10_USING_CUSTOM_GENERATED_MACROS  the vendored c10 headers otherwise want a header only a PyTorch build makes
#   ET_EVENT_TRACER_ENABLED            the shipped libraries are built with it; class layouts must match
#   ET_USE_THREADPOOL                  same, for the thread-pool declarations
# The XNNPACK backend and the kernel libraries only register themselves from static initialisers, so they are
# linked with --no-as-needed; otherwise the linker drops them and loading a program fails with "Missing operator".
set -eu

arch=$1
et=$2
output=$3
rpath=$4
here=$(cd "$(dirname "$0")" && pwd)

case "$arch" in
  x86_64) cxx=${CXX:-g++} ;;
  aarch64) cxx=${CXX_AARCH64:-aarch64-linux-gnu-g++} ;;
  *) echo "build.sh: unknown arch '$arch' (x86_64 or aarch64)" >&2; exit 64 ;;
esac

exec "$cxx" -std=c++17 -O2 -Wall -Wno-deprecated-declarations \
  -DC10_USING_CUSTOM_GENERATED_MACROS -DET_EVENT_TRACER_ENABLED -DET_USE_THREADPOOL \
  -I"$et/include" -I"$et/include/executorch/runtime/core/portable_type/c10" -I"$here" \
  "$here/pte_runner.cpp" -o "$output" \
  -L"$et/lib" -Wl,-rpath-link,"$et/lib" -Wl,-rpath,"$rpath" \
  -Wl,--push-state,--no-as-needed \
  -lexecutorch_backend_xnnpack -lexecutorch_kernels_optimized -lexecutorch_kernels_quantized \
  -Wl,--pop-state \
  -lexecutorch_threadpool -lexecutorch
