#!/usr/bin/env bash
# The GPU machine's checklist, in one command (device time is scarce): build with CUDA, run the GPU
# test suite, run it again under compute-sanitizer (memcheck, racecheck) without the real-sized
# layers, and benchmark. Logs and JSON go to $OUT (or ./gpu-out).
# Usage (on the GPU machine): source .device/prelude.sh && bash scripts/gpu_check.sh [build|test|families|sanitize|bench|wq|profile]...
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/gpu-out}"
mkdir -p "$out"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(build test families sanitize bench)

build() {
  # The CUDA build of the addon (16 cores there), then the TypeScript.
  MOEKIT_CUDA=ON node scripts/install.js --build-from-source 2>&1 | tail -20 && npx tsc -p tsconfig.json && node dist/cli/main.js info
}

gpu_tests() {
  npx vitest run test/gpu --no-file-parallelism --reporter=verbose 2>&1 | tee "$out/gpu-tests.log" | grep -E "✓|×|skipped|Tests|relative error|FAIL" | tail -80
}

# Every grouped GEMM family forced in turn (MOEKIT_GEMM; a call the family cannot take falls back):
# the native harness against the CPU backend, and the GPU op and fixture suites. mma is the sm_80
# (A100-class) path, run here on the Hopper GPU.
families() {
  JOBS=$(nproc) bash test/native/run_cuda_ops_test.sh --build-only > "$out/harness-build.log" 2>&1 || { tail -20 "$out/harness-build.log"; return 1; }
  # sm90-pingpong: sm90 with its ping-pong schedule forced on every 16-bit call
  # (MOEKIT_SM90_SCHEDULE), which the rule would give only large plain products. sm90-registers:
  # sm90 storing every output from registers (MOEKIT_SM90_STORES) instead of by TMA. auto-gathercopy:
  # the automatic choice, with every gathered call taking the gathered copy (MOEKIT_GEMM_GATHER)
  # instead of the kernels that gather themselves.
  for run in sm90 sm90-pingpong sm90-registers small_m mma auto-gathercopy; do
    local family=${run%%-*} schedule=auto prefill=auto gather=auto stores=auto
    [ "$run" = sm90-pingpong ] && schedule=pingpong
    [ "$run" = sm90-registers ] && stores=registers
    [ "$run" = auto-gathercopy ] && gather=copy
    # sm90 takes weight-only calls in its main loop only up to a mean of 512 rows per expert: the
    # harness and tests force that kernel for every call it can take.
    [ "$family" = sm90 ] && prefill=in_loop
    local env=(MOEKIT_GEMM=$family MOEKIT_WQ_PREFILL=$prefill MOEKIT_SM90_SCHEDULE=$schedule MOEKIT_SM90_STORES=$stores
      MOEKIT_GEMM_GATHER=$gather)
    env "${env[@]}" build/native-test/cuda_ops_test > "$out/harness-$run.log" 2>&1
    echo "harness ${env[*]}: exit $? ($(tail -1 "$out/harness-$run.log"))"
    grep -E "^FAIL" "$out/harness-$run.log" | head -10
    env "${env[@]}" npx vitest run --no-file-parallelism test/gpu/ops_parity.test.ts test/gpu/gather_rows.test.ts test/gpu/fixtures.test.ts test/gpu/fp8.test.ts test/gpu/weight_only.test.ts test/gpu/fused_moe.test.ts > "$out/gpu-tests-$run.log" 2>&1
    echo "GPU ops and fixtures ${env[*]}: exit $? ($(grep -E "Tests " "$out/gpu-tests-$run.log" | tail -1))"
  done
}

sanitize() {
  for tool in memcheck racecheck; do
    # API error reports are off: the out-of-memory tests provoke cudaErrorMemoryAllocation on
    # purpose, and the tests themselves assert how each CUDA error surfaces.
    MOEKIT_SKIP_LARGE=1 compute-sanitizer --tool "$tool" --report-api-errors no --target-processes all --print-limit 20 \
      node node_modules/vitest/vitest.mjs run --no-file-parallelism test/gpu/ops_parity.test.ts test/gpu/fixtures.test.ts test/gpu/capture_and_memory.test.ts test/gpu/op_faults.test.ts test/gpu/fused_moe.test.ts \
      > "$out/sanitizer-$tool.log" 2>&1
    echo "compute-sanitizer $tool: exit $?"
    grep -E "ERROR SUMMARY|Tests " "$out/sanitizer-$tool.log" | sort | uniq -c
  done
}

bench() {
  # moekit (ceilings measured in its own run, per-stage CUDA-event times), then PyTorch on the same
  # GPU, then one Markdown table of the two side by side (moekit ms, torch._grouped_mm ms, speed-up,
  # floor, moekit/floor, TFLOP/s, stage ms), ready for bench/NOTES.md.
  node dist/cli/main.js bench --device cuda:0 --json "$out/bench-moekit.json" 2>&1 | tee "$out/bench-moekit.log"
  python3 bench/torch_baseline.py --json "$out/bench-torch.json" 2>&1 | tee "$out/bench-torch.log"
  node dist/cli/main.js bench --from "$out/bench-moekit.json" --compare "$out/bench-torch.json" 2>&1 | tee "$out/bench-compare.md"
  # AGAINST=an earlier run's JSON (the version before, on the same GPU kind): this run beside it.
  if [ -n "${AGAINST:-}" ]; then
    node dist/cli/main.js bench --from "$out/bench-moekit.json" --against "$AGAINST" 2>&1 | tee "$out/bench-against.md"
  fi
}

# The sm90 weight-only kernel (sm90/kernel_wq.cuh) on its own: the harness's weight-only checks
# with every call it can take forced into it, under memcheck and racecheck, then one ncu profile of
# the kernel on Mixtral's first GEMM at 1024 tokens (bench/NOTES.md, wq-v2: where its time goes).
wq() {
  [ -x build/native-test/cuda_ops_test ] || JOBS=$(nproc) bash test/native/run_cuda_ops_test.sh --build-only > "$out/harness-build.log" 2>&1
  # Each tile height on every call (the short tile then also takes experts of several row tiles).
  for height in short tall; do
    MOEKIT_GEMM=sm90 MOEKIT_WQ_PREFILL=in_loop_$height build/native-test/cuda_ops_test --wq > "$out/wq-$height.log" 2>&1
    echo "harness --wq, sm90 in-loop $height tile: exit $? ($(tail -1 "$out/wq-$height.log"))"
    for tool in memcheck racecheck; do
      MOEKIT_GEMM=sm90 MOEKIT_WQ_PREFILL=in_loop_$height compute-sanitizer --tool "$tool" --report-api-errors no \
        build/native-test/cuda_ops_test --wq --quick > "$out/wq-$height-$tool.log" 2>&1
      echo "compute-sanitizer $tool (sm90 in-loop $height tile, --wq --quick): exit $? $(grep 'ERROR SUMMARY' "$out/wq-$height-$tool.log" | tail -1)"
    done
  done
  ncu --kernel-name regex:groupedGemmWqKernel --launch-count 1 --set full -o "$out/wq-profile" \
    node dist/cli/main.js bench --device cuda:0 --preset mixtral-8x7b --quantize int4 --tokens 1024 --warmup 0 --runs 1 --quiet > "$out/wq-ncu.log" 2>&1
  echo "ncu: exit $?"
  ncu --import "$out/wq-profile.ncu-rep" --page details 2>/dev/null | grep -E "Duration|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Compute \(SM\) Throughput|stalled" | head -12
}

# Where a forward's time goes (bench/NOTES.md, v2): every kernel of one-token graph replays of
# Qwen3-30B-A3B and DeepSeek-V3, then the DRAM and L2 traffic of DeepSeek-V3's two grouped GEMMs
# at 16384 tokens (the router's GEMM is the first launch, skipped). ncu locks the clocks at base,
# so its durations are longer than the bench's.
profile() {
  ncu --kernel-name regex:"skinny|routing|sortFew|gather|stream|combine|Gemm|activation" --section SpeedOfLight \
    node scripts/decode_replays.js 1 qwen3-30b-a3b deepseek-v3 > "$out/decode-kernels.log" 2>&1
  echo "ncu, one-token replays: exit $?"
  grep -E "^  [a-zA-Z_].*\(|Duration" "$out/decode-kernels.log" | sed -E 's/\(CUtensorMap.*//' | cut -c1-110 > "$out/decode-kernels.txt"
  head -40 "$out/decode-kernels.txt"
  local metrics=dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sectors_srcunit_tex_op_read.sum
  metrics+=,lts__t_sectors_srcunit_tex_op_read_lookup_miss.sum,lts__t_sectors_srcunit_ltcfabric.sum
  ncu --kernel-name regex:groupedGemmKernel --launch-skip 1 --launch-count 2 --metrics "$metrics" \
    node dist/cli/main.js bench --device cuda:0 --preset deepseek-v3 --tokens 16384 --warmup 0 --runs 1 --quiet > "$out/gemm-memory.log" 2>&1
  echo "ncu, DeepSeek-V3 GEMMs at 16384 tokens: exit $?"
  grep -E "groupedGemmKernel|dram__|lts__" "$out/gemm-memory.log" | sed -E 's/\(CUtensorMap.*//' | head -14
}

for step in "${steps[@]}"; do
  echo "=== $step"
  case "$step" in
    build) build ;;
    test) gpu_tests ;;
    families) families ;;
    sanitize) sanitize ;;
    bench) bench ;;
    wq) wq ;;
    profile) profile ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
