"""Dense and grouped bf16 GEMM rates of a GPU in short bursts and held for seconds, with the clocks.

`moekit bench` measures its matmul ceiling as bursts (ten 8192^3 products, each awaited), the way
most benchmarks do; a long MoE forward instead keeps the GPU busy for tens of milliseconds, and an
H200 may then reach its power limit and lower its clocks (bench/NOTES.md, v12). This times GEMMs
both ways so the rates can be set beside the clocks they ran at:
  burst:     each product timed alone, the GPU idle between them (median of `--runs`);
  sustained: products queued back to back for about `--seconds`, timed in blocks of 20 by events
             (median block), while `nvidia-smi -lms 50` samples the SM clock and power beside them.
Two GEMMs: `torch.mm` at size^3 (cuBLAS), and `torch._grouped_mm` on Mixtral-8x7B's up projection
at 16384 tokens (8 experts of 4096 rows, K 4096, N 28672; PyTorch's CUTLASS grouped GEMM).

Usage: python3 bench/sustained_matmul.py [--size 8192] [--runs 10] [--seconds 3] [--json FILE]
"""
import argparse
import json
import statistics
import subprocess
import time

import torch

BLOCK = 20           # products per timed block when sustained
SAMPLE_MS = 50       # nvidia-smi's sampling interval


def timed_blocks(fn, blocks):
    """Queues `blocks` blocks of BLOCK calls back to back; ms per call of each block."""
    events = [torch.cuda.Event(enable_timing=True) for _ in range(blocks + 1)]
    events[0].record()
    for block in range(blocks):
        for _ in range(BLOCK):
            fn()
        events[block + 1].record()
    events[-1].synchronize()
    return [events[i].elapsed_time(events[i + 1]) / BLOCK for i in range(blocks)]


def burst_ms(fn, runs):
    times = []
    for _ in range(runs):
        time.sleep(0.05)  # idle between products, as a benchmark's awaited runs are
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def sustained(fn, seconds, one_ms):
    """ms per call held for about `seconds`, and nvidia-smi's SM clock and power meanwhile."""
    sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader,nounits",
                                f"-lms={SAMPLE_MS}"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # nvidia-smi's start-up, before the work
        blocks = max(1, round(seconds * 1e3 / (one_ms * BLOCK)))
        times = timed_blocks(fn, blocks)
    finally:
        sampler.terminate()
    readings = []
    for line in sampler.communicate()[0].splitlines():
        try:
            sm, power = (float(value) for value in line.split(","))
            readings.append((sm, power))
        except ValueError:
            pass
    busy = [r for r in readings if r[1] > 300] or readings  # the samples while the products ran
    return {
        "ms": statistics.median(times),
        "sm_mhz": statistics.median(r[0] for r in busy),
        "min_sm_mhz": min(r[0] for r in busy),
        "power_w": statistics.median(r[1] for r in busy),
        "samples": len(busy),
    }


def measure(name, fn, flops, runs, seconds):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    burst = burst_ms(fn, runs)
    held = sustained(fn, seconds, burst)
    return {
        "gemm": name,
        "burst_tflops": flops / burst / 1e9,
        "sustained_tflops": flops / held["ms"] / 1e9,
        "sustained_sm_mhz": held["sm_mhz"],
        "sustained_min_sm_mhz": held["min_sm_mhz"],
        "sustained_power_w": held["power_w"],
        "sustained_samples": held["samples"],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    n = args.size
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    results = [measure(f"torch.mm {n}^3", lambda: torch.mm(a, b), 2 * n**3, args.runs, args.seconds)]

    experts, rows, depth, cols = 8, 4096, 4096, 28672
    x = torch.randn(experts * rows, depth, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(experts, cols, depth, device="cuda", dtype=torch.bfloat16) / depth**0.5
    offsets = torch.arange(1, experts + 1, device="cuda", dtype=torch.int32) * rows
    results.append(measure("torch._grouped_mm Mixtral up, 16384 tokens", lambda: torch._grouped_mm(x, w.transpose(1, 2), offs=offsets),
                           2 * experts * rows * depth * cols, args.runs, args.seconds))

    report = {"gpu": torch.cuda.get_device_name(), "results": results}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
