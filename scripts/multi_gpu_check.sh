#!/usr/bin/env bash
# The multi-GPU checklist (issue 5), in one command for a machine with 2 or 4 GPUs: build, then
# every (moeTp, moeEp) factorization of the GPU count and of 2 on the five fixtures and on a
# Mixtral-sized random layer, each of ProcessGroup's collectives, the rank-failure scenarios, the
# two-"node" run on loopback with NCCL on its socket transport, and the parallel bench. Logs go to
# $OUT (or ./gpu-out).
# Usage (on the GPU machine): source .device/prelude.sh && bash scripts/multi_gpu_check.sh [build] [tests] [nodes] [bench]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/gpu-out}"
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0 # NVLink multicast stays off on these machines
gpus=$(nvidia-smi -L | wc -l)
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(build tests nodes bench)
status=0

launch() { node dist/cli/main.js launch "$@"; }

# One logged step; a failing step marks the run failed but the others still run.
step() {
  local name=$1
  shift
  echo "=== $name"
  "$@" > "$out/$name.log" 2>&1
  local code=$?
  grep -E "PASS|FAIL|holds|all passed|failed|error|Error" "$out/$name.log" | grep -v "^\s*$" | tail -40
  echo "--- $name: exit $code"
  [ $code -eq 0 ] || status=1
}

build() { bash scripts/gpu_check.sh build 2>&1 | tail -5; }

tests() {
  local sizes=(2)
  [ "$gpus" -ge 4 ] && sizes=(4 2)
  for n in "${sizes[@]}"; do
    step "fixtures-nproc$n" launch --nproc "$n" test/gpu/multi/parallel_fixtures.js
    step "random-mixtral-nproc$n" launch --nproc "$n" test/gpu/multi/parallel_random.js
    step "stats-gather-nproc$n" launch --nproc "$n" test/gpu/multi/stats_gather.js
    step "collectives-nproc$n" launch --nproc "$n" test/gpu/multi/collectives.js
    step "wide-ep-nproc$n" launch --nproc "$n" test/gpu/multi/wide_ep.js
    step "captured-decode-nproc$n" launch --nproc "$n" test/gpu/multi/captured_decode.js
  done
  step collective-failures node test/gpu/multi/collective_failures.js
}

# Two launchers on one host acting as two nodes, each with half the GPUs, NCCL forced onto sockets.
nodes() {
  local per=$((gpus / 2)) port=29611
  local first second
  first=$(seq -s, 0 $((per - 1)))
  second=$(seq -s, "$per" $((gpus - 1)))
  echo "=== two-nodes ($per GPUs each: $first | $second)"
  local common=(--nproc "$per" --nnodes 2 --master-addr 127.0.0.1 --master-port $port test/gpu/multi/parallel_fixtures.js)
  export NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET
  CUDA_VISIBLE_DEVICES=$first launch --node-rank 0 "${common[@]}" > "$out/two-nodes-0.log" 2>&1 &
  local node0=$!
  CUDA_VISIBLE_DEVICES=$second launch --node-rank 1 "${common[@]}" > "$out/two-nodes-1.log" 2>&1
  local code1=$?
  wait $node0
  local code0=$?
  unset NCCL_P2P_DISABLE NCCL_SHM_DISABLE NCCL_DEBUG NCCL_DEBUG_SUBSYS
  grep -hE "PASS|FAIL|all passed|failed" "$out"/two-nodes-*.log | sort | uniq -c | sort -rn | head -8
  grep -hoE "Using network [A-Za-z]+" "$out"/two-nodes-*.log | sort | uniq -c
  echo "--- two-nodes: exit $code0 $code1"
  [ $code0 -eq 0 ] && [ $code1 -eq 0 ] || status=1
}

bench() {
  local sizes=(2)
  [ "$gpus" -ge 4 ] && sizes=(2 4)
  for n in "${sizes[@]}"; do
    step "bench-parallel-nproc$n" launch --nproc "$n" dist/cli/main.js bench --parallel --device cuda --json "$out/bench-parallel-$n.json"
    tail -30 "$out/bench-parallel-nproc$n.log"
    # Wide EP at 4096 tokens per rank (issue 17's target: DeepSeek-V3-shaped experts).
    step "bench-wide-ep-nproc$n" launch --nproc "$n" dist/cli/main.js bench --parallel --dispatch all_to_all --tokens 512,4096 --warmup 2 --runs 10 --json "$out/bench-wide-ep-$n.json"
    tail -8 "$out/bench-wide-ep-nproc$n.log"
    # The same with FP8 experts: rows out as FP8 with their scales (about half the bytes).
    step "bench-wide-ep-fp8-nproc$n" launch --nproc "$n" dist/cli/main.js bench --parallel --dispatch all_to_all --quantize fp8 --preset deepseek-v3 --tokens 512,4096 --warmup 2 --runs 10 --json "$out/bench-wide-ep-fp8-$n.json"
    tail -4 "$out/bench-wide-ep-fp8-nproc$n.log"
  done
}

echo "$gpus GPUs: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
for s in "${steps[@]}"; do "$s"; done
exit $status
