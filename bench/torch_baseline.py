#!/usr/bin/env python3
"""PyTorch baselines for moekit's MoE layer benchmark, on the same GPU and shapes.

Two pipelines per point, bf16, random weights, softmax top-k routing (group-limited sigmoid for
DeepSeek-V3, shared expert included):
  - `hf_loop`: a per-expert Python loop, as Hugging Face's MoE blocks run;
  - `grouped_mm`: route, sort by expert, two `torch._grouped_mm` calls around SwiGLU, index_add.
and `gemms`: the grouped GEMMs alone (the two `torch._grouped_mm` calls and SwiGLU between them)
on rows already sorted by expert, to set beside moekit's expert_up + expert_down stages.
It also measures the two ceilings of the floor in the same run: the bf16 matmul rate (8192^3) and
the device-to-device copy bandwidth (bytes read + written).

Usage: python3 bench/torch_baseline.py [--presets a,b] [--tokens 1,16,...] [--json FILE]
"""
import argparse
import json
import math
import statistics

import torch

PRESETS = {
    # name: (experts, top_k, hidden, intermediate, shared_intermediate, deepseek_routing)
    'mixtral-8x7b': (8, 2, 4096, 14336, 0, False),
    'qwen3-30b-a3b': (128, 8, 2048, 768, 0, False),
    'deepseek-v3': (256, 8, 7168, 2048, 2048, True),
}
DEFAULT_TOKENS = [1, 16, 128, 1024, 4096, 16384]
WARMUP = 3
REPEATS = 20
ROTATIONS = 4  # distinct inputs cycled through so the L2 cache does not flatter small points


def time_ms(fn, inputs):
    """Median milliseconds of fn(input) over REPEATS runs, inputs rotated, CUDA events."""
    for i in range(WARMUP):
        fn(inputs[i % len(inputs)])
    times = []
    for i in range(REPEATS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(inputs[i % len(inputs)])
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure_ceilings():
    n = 8192
    a = torch.randn(n, n, device='cuda', dtype=torch.bfloat16)
    b = torch.randn(n, n, device='cuda', dtype=torch.bfloat16)
    ms = time_ms(lambda _: a @ b, [None])
    matmul_tflops = 2 * n ** 3 / (ms * 1e-3) / 1e12
    src = torch.empty(1 << 30, device='cuda', dtype=torch.uint8)
    dst = torch.empty_like(src)
    ms = time_ms(lambda _: dst.copy_(src), [None])
    copy_tbps = 2 * src.numel() / (ms * 1e-3) / 1e12
    del a, b, src, dst
    torch.cuda.empty_cache()
    return matmul_tflops, copy_tbps


class Layer:
    def __init__(self, experts, top_k, hidden, inter, shared, deepseek):
        g = torch.Generator(device='cuda').manual_seed(0)
        rand = lambda *shape, fan: (torch.rand(*shape, device='cuda', generator=g, dtype=torch.bfloat16) * 2 - 1) / math.sqrt(fan)
        self.E, self.K, self.H, self.I = experts, top_k, hidden, inter
        self.deepseek = deepseek
        self.router = rand(experts, hidden, fan=hidden)
        self.bias = torch.rand(experts, device='cuda', generator=g) * 0.1
        self.w13 = rand(experts, 2 * inter, hidden, fan=hidden)   # [E, 2I, H]: gate rows then up rows
        self.w2 = rand(experts, hidden, inter, fan=inter)         # [E, H, I]
        self.shared = (rand(2 * shared, hidden, fan=hidden), rand(hidden, shared, fan=shared)) if shared else None

    def route(self, x):
        logits = (x @ self.router.T).float()
        if not self.deepseek:
            weights, ids = torch.softmax(logits, -1).topk(self.K, -1)
            return weights / weights.sum(-1, keepdim=True), ids
        scores = logits.sigmoid()
        choice = scores + self.bias
        groups = choice.view(x.shape[0], 8, -1).topk(2, -1).values.sum(-1)
        keep = torch.zeros_like(groups).scatter_(1, groups.topk(4, -1).indices, 1)
        masked = choice.masked_fill(keep.repeat_interleave(self.E // 8, -1) == 0, float('-inf'))
        ids = masked.topk(self.K, -1).indices
        weights = scores.gather(1, ids)
        return weights / weights.sum(-1, keepdim=True) * 2.5, ids

    def shared_out(self, x):
        if self.shared is None:
            return 0
        h = x @ self.shared[0].T
        return (torch.nn.functional.silu(h[:, : h.shape[1] // 2]) * h[:, h.shape[1] // 2:]) @ self.shared[1].T

    def hf_loop(self, x):
        weights, ids = self.route(x)
        out = torch.zeros_like(x)
        for e in ids.unique().tolist():
            token, slot = (ids == e).nonzero(as_tuple=True)
            h = x[token] @ self.w13[e].T
            y = (torch.nn.functional.silu(h[:, : self.I]) * h[:, self.I:]) @ self.w2[e].T
            out.index_add_(0, token, (y * weights[token, slot, None]).to(x.dtype))
        return out + self.shared_out(x)

    def sort(self, ids):
        flat = ids.flatten()
        order = flat.argsort(stable=True)
        offsets = torch.bincount(flat, minlength=self.E).cumsum(0).to(torch.int32)
        return order, offsets

    def gemms(self, rows, offsets):
        h = torch._grouped_mm(rows, self.w13.transpose(1, 2), offs=offsets)
        a = torch.nn.functional.silu(h[:, : self.I]) * h[:, self.I:]
        return torch._grouped_mm(a, self.w2.transpose(1, 2), offs=offsets)

    def grouped_mm(self, x):
        weights, ids = self.route(x)
        order, offsets = self.sort(ids)
        token = order // self.K
        y = self.gemms(x[token], offsets)
        out = torch.zeros_like(x, dtype=torch.float32)
        out.index_add_(0, token, y.float() * weights.flatten()[order, None])
        return out.to(x.dtype) + self.shared_out(x)


def floors(layer, tokens, shared, matmul_tflops, copy_tbps):
    E, K, H, I = layer.E, layer.K, layer.H, layer.I
    flops = 2 * tokens * K * 3 * H * I + 2 * tokens * 3 * H * shared + 2 * tokens * H * E
    active = E * (1 - (1 - K / E) ** tokens)
    weight_bytes = (active * 3 * H * I + 3 * H * shared) * 2
    floor_ms = max(flops / (matmul_tflops * 1e12), weight_bytes / (copy_tbps * 1e12)) * 1e3
    return flops, weight_bytes, floor_ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--presets', default=','.join(PRESETS))
    parser.add_argument('--tokens', default=','.join(map(str, DEFAULT_TOKENS)))
    parser.add_argument('--json')
    parser.add_argument('--skip-loop-above', type=int, default=4096, help='skip hf_loop above this many tokens')
    args = parser.parse_args()
    matmul_tflops, copy_tbps = measure_ceilings()
    print(f'# {torch.cuda.get_device_name()}  matmul {matmul_tflops:.0f} TFLOP/s  copy {copy_tbps:.2f} TB/s')
    rows = []
    for name in args.presets.split(','):
        experts, top_k, hidden, inter, shared, deepseek = PRESETS[name]
        layer = Layer(experts, top_k, hidden, inter, shared, deepseek)
        for tokens in map(int, args.tokens.split(',')):
            inputs = [torch.randn(tokens, hidden, device='cuda', dtype=torch.bfloat16) for _ in range(ROTATIONS)]
            flops, weight_bytes, floor_ms = floors(layer, tokens, shared, matmul_tflops, copy_tbps)
            with torch.inference_mode():
                sorted_inputs = []
                for x in inputs:
                    order, offsets = layer.sort(layer.route(x)[1])
                    sorted_inputs.append((x[order // top_k], offsets))
            for pipeline in ('grouped_mm', 'gemms', 'hf_loop'):
                if pipeline == 'hf_loop' and tokens > args.skip_loop_above:
                    continue
                with torch.inference_mode():
                    if pipeline == 'gemms':
                        ms = time_ms(lambda pair: layer.gemms(*pair), sorted_inputs)
                    else:
                        ms = time_ms(getattr(layer, pipeline), inputs)
                # The gemms row's rate counts the routed experts' FLOPs alone (no router, no shared expert).
                row_flops = 2 * tokens * top_k * 3 * hidden * inter if pipeline == 'gemms' else flops
                row = dict(preset=name, pipeline=pipeline, tokens=tokens, ms=ms, floor_ms=floor_ms,
                           tflops=row_flops / (ms * 1e-3) / 1e12, weight_gbps=weight_bytes / (ms * 1e-3) / 1e9,
                           matmul_ceiling_tflops=matmul_tflops, copy_ceiling_tbps=copy_tbps, gpu=torch.cuda.get_device_name())
                rows.append(row)
                print(f'{name:14s} {pipeline:10s} T={tokens:6d} {ms:9.3f} ms  floor {floor_ms:8.3f} ms  '
                      f'{row["tflops"]:7.1f} TFLOP/s  {row["weight_gbps"]:8.1f} GB/s')
            del inputs, sorted_inputs
        del layer
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
