#!/usr/bin/env python3
"""torch._grouped_mm on the shapes of bench/native/gemm_sm90_bench.cu, for comparison.

Per model and token count (random top-k routing, bf16): GEMM1 = x[rows, H] @ w13[E, 2I, H]^T
(no fused activation: torch's GEMM alone) and GEMM2 = h[rows, I] @ w2[E, H, I]^T, grouped by the
expert offsets. Four routings and inputs rotate so L2 does not hold one call's operands for the
next; the median of CUDA-event timings is reported, in the bench's RESULT line format.

Usage: python3 bench/native/gemm_sm90_torch.py [--tokens 128,1024,4096,16384] [--models mixtral,...]
"""
import argparse
import statistics

import torch

MODELS = {  # name: (experts, top_k, hidden, intermediate)
    'mixtral-8x7b': (8, 2, 4096, 14336),
    'qwen3-30b-a3b': (128, 8, 2048, 768),
    'deepseek-v3': (256, 8, 7168, 2048),
}
VARIANTS = 4
WARMUP = 2
REPEATS = 7


def routing_offsets(experts, top_k, tokens, generator):
    """Cumulative row ends per expert (int32, as _grouped_mm wants) of a random top-k routing."""
    ids = torch.rand(tokens, experts, device='cuda', generator=generator).topk(top_k, -1).indices
    return torch.bincount(ids.flatten(), minlength=experts).cumsum(0).to(torch.int32)


def time_ms(fn):
    for i in range(WARMUP):
        fn(i % VARIANTS)
    times = []
    for r in range(REPEATS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for v in range(VARIANTS):
            fn(v)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / VARIANTS)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--tokens', default='128,1024,4096,16384')
    parser.add_argument('--models', default='')
    args = parser.parse_args()
    tokens_list = [int(t) for t in args.tokens.split(',')]
    wanted = [m for m in args.models.split(',') if m]
    generator = torch.Generator(device='cuda').manual_seed(7)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for name, (E, K, H, I) in MODELS.items():
        if wanted and not any(name.startswith(w) for w in wanted):
            continue
        w13 = (torch.rand(E, 2 * I, H, device='cuda', dtype=torch.bfloat16, generator=generator) - 0.5) * 0.1
        w2 = (torch.rand(E, H, I, device='cuda', dtype=torch.bfloat16, generator=generator) - 0.5) * 0.1
        for tokens in tokens_list:
            rows = tokens * K
            offs = [routing_offsets(E, K, tokens, generator) for _ in range(VARIANTS)]
            xs = [torch.rand(rows, H, device='cuda', dtype=torch.bfloat16, generator=generator) - 0.5 for _ in range(VARIANTS)]
            hs = [torch.rand(rows, I, device='cuda', dtype=torch.bfloat16, generator=generator) - 0.5 for _ in range(VARIANTS)]
            ms1 = time_ms(lambda v: torch._grouped_mm(xs[v], w13.transpose(1, 2), offs=offs[v]))
            ms2 = time_ms(lambda v: torch._grouped_mm(hs[v], w2.transpose(1, 2), offs=offs[v]))
            f1, f2 = 2 * rows * 2 * I * H, 2 * rows * H * I
            print(f"RESULT {name:<14} T={tokens:<5} {'torch':<9} gemm1 {ms1:9.3f} ms {f1 / ms1 / 1e9:6.1f} TFLOP/s | "
                  f"gemm2 {ms2:9.3f} ms {f2 / ms2 / 1e9:6.1f} TFLOP/s | both {(f1 + f2) / (ms1 + ms2) / 1e9:6.1f} TFLOP/s",
                  flush=True)
            del xs, hs
        del w13, w2
        torch.cuda.empty_cache()


if __name__ == '__main__':
    main()
