"""The dense bf16 matmul rate of a GPU in short bursts and held for seconds, with its SM clock.

`moekit bench` measures its matmul ceiling as bursts (ten 8192^3 products, each awaited), the way
most benchmarks do; a long MoE forward instead keeps the GPU busy for tens of milliseconds, and an
H200 then reaches its power limit and lowers its clocks (bench/NOTES.md, v12). This times the same
product both ways so the two rates can be set side by side:
  burst:     each product timed alone, the GPU idle between them (median of `--runs`);
  sustained: products back to back for `--seconds`, timed in blocks of 20 (median block).
The SM clock and power are read with nvidia-smi after each block.

Usage: python3 bench/sustained_matmul.py [--size 8192] [--runs 10] [--seconds 3] [--json FILE]
"""
import argparse
import json
import statistics
import subprocess
import time

import torch

BLOCK = 20  # products per timed block when sustained


def clocks():
    out = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout.split("\n")[0]
    sm, power = (float(value) for value in out.split(","))
    return sm, power


def timed(fn, count):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(count):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / count


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

    def product():
        return torch.mm(a, b)

    flops = 2 * n**3
    for _ in range(3):
        product()
    torch.cuda.synchronize()

    bursts = []
    for _ in range(args.runs):
        time.sleep(0.05)  # idle between products, as the awaited runs of a benchmark are
        bursts.append(timed(product, 1))
    burst_clock = clocks()

    blocks, readings = [], []
    deadline = time.time() + args.seconds
    while time.time() < deadline:
        blocks.append(timed(product, BLOCK))
        readings.append(clocks())

    result = {
        "gpu": torch.cuda.get_device_name(),
        "size": n,
        "burst_tflops": flops / statistics.median(bursts) / 1e9,
        "burst_sm_mhz_after": burst_clock[0],
        "sustained_tflops": flops / statistics.median(blocks) / 1e9,
        "sustained_sm_mhz": statistics.median(r[0] for r in readings),
        "sustained_power_w": statistics.median(r[1] for r in readings),
        "sustained_blocks": len(blocks),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
