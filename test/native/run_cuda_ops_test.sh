#!/usr/bin/env bash
# Builds the standalone CUDA harness (test/native/cuda_ops_test.cu + native/cuda + native/cpu) with
# nvcc, the same -gencode targets as CMakeLists.txt, and runs it.
#
#   test/native/run_cuda_ops_test.sh              build, run the full harness (MOEKIT_GEMM=sm90|small_m|mma
#                                                 in the environment forces a grouped GEMM family)
#   test/native/run_cuda_ops_test.sh --fp8        build, run only the FP8 tests
#   test/native/run_cuda_ops_test.sh --wq         build, run only the weight-only tests
#   test/native/run_cuda_ops_test.sh --sanitize   also run it (--quick) under compute-sanitizer
#                                                 memcheck and racecheck
#   test/native/run_cuda_ops_test.sh --build-only
#
# BUILD_DIR (default build/native-test) holds objects and the binary; LOG_DIR, if set, receives
# one log per run. Exits non-zero if the build, any check or any sanitizer run fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

BUILD_DIR=${BUILD_DIR:-build/native-test}
NVCC=${NVCC:-nvcc}
JOBS=${JOBS:-$(nproc)}
SANITIZE=0
BUILD_ONLY=0
HARNESS_ARGS=()
for argument in "$@"; do
  case "$argument" in
    --sanitize) SANITIZE=1 ;;
    --build-only) BUILD_ONLY=1 ;;
    --fp8) HARNESS_ARGS+=(--fp8) ;;
    --wq) HARNESS_ARGS+=(--wq) ;;
    *) echo "unknown option $argument" >&2; exit 2 ;;
  esac
done

# The addon's architectures (CMakeLists.txt), or only those in MOEKIT_CUDA_SASS (e.g. "90a").
GENCODE=()
for arch in ${MOEKIT_CUDA_SASS:-80 90a}; do GENCODE+=("-gencode=arch=compute_$arch,code=sm_$arch"); done
FLAGS=(-std=c++17 -O3 --expt-relaxed-constexpr -lineinfo -Inative
  "${GENCODE[@]}"
  -gencode=arch=compute_90,code=compute_90
  -Xcompiler=-Wall,-Wextra,-pthread)

mkdir -p "$BUILD_DIR/objects"
# The sm90 instantiations take the longest to compile: they start first.
SOURCES=(native/cuda/sm90/*.cu native/core/*.cc native/cuda/*.cu native/cuda/*.cc native/cpu/*.cc test/native/*.cu)
echo "compiling ${#SOURCES[@]} sources with $($NVCC --version | tail -1) ($JOBS jobs)"
printf '%s\n' "${SOURCES[@]}" | xargs -P "$JOBS" -I{} bash -c \
  'object="$0/objects/$(echo "$1" | tr / _).o"; exec "$2" "${@:3}" -c "$1" -o "$object"' \
  "$BUILD_DIR" {} "$NVCC" "${FLAGS[@]}"
OBJECTS=()
for source in "${SOURCES[@]}"; do OBJECTS+=("$BUILD_DIR/objects/$(echo "$source" | tr / _).o"); done
"$NVCC" "${FLAGS[@]}" "${OBJECTS[@]}" -o "$BUILD_DIR/cuda_ops_test" -lpthread
echo "built $BUILD_DIR/cuda_ops_test"
[ "$BUILD_ONLY" = 1 ] && exit 0

# Runs a command, teeing its output into $LOG_DIR/<name>.log when LOG_DIR is set.
run_logged() {
  local name=$1
  shift
  if [ -n "${LOG_DIR:-}" ]; then
    mkdir -p "$LOG_DIR"
    "$@" 2>&1 | tee "$LOG_DIR/$name.log"
    return "${PIPESTATUS[0]}"
  fi
  "$@"
}

status=0
run_logged harness "$BUILD_DIR/cuda_ops_test" "${HARNESS_ARGS[@]}" || status=1
if [ "$SANITIZE" = 1 ]; then
  SANITIZER=${SANITIZER:-compute-sanitizer}
  # The harness provokes an out-of-memory error on purpose: API errors are not memcheck findings.
  run_logged memcheck "$SANITIZER" --tool memcheck --report-api-errors no --error-exitcode 3 \
    "$BUILD_DIR/cuda_ops_test" --quick || status=1
  run_logged racecheck "$SANITIZER" --tool racecheck --error-exitcode 3 \
    "$BUILD_DIR/cuda_ops_test" --quick || status=1
  run_logged synccheck "$SANITIZER" --tool synccheck --error-exitcode 3 "$BUILD_DIR/cuda_ops_test" --quick || status=1
fi
exit "$status"
