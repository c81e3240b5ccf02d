#!/usr/bin/env python3
"""PyTorch baselines for moekit's MoE layer benchmark, on the same GPU and shapes.

Two pipelines per point, bf16, random weights, SwiGLU experts, softmax top-k routing (group-limited
sigmoid for DeepSeek-V3, shared expert included):
  - `hf_loop`: a per-expert Python loop, as Hugging Face's MoE blocks run;
  - `grouped_mm`: route, sort by expert, two `torch._grouped_mm` calls around SwiGLU, index_add.
and `gemms`: the grouped GEMMs alone (the two `torch._grouped_mm` calls and SwiGLU between them)
on rows already sorted by expert, to set beside moekit's expert_up + expert_down stages.
It also measures the two ceilings of the floor in the same run: the bf16 matmul rate (8192^3) and
the device-to-device copy bandwidth (bytes read + written).

With `--quantize fp8` (the anchor for `moekit bench --quantize fp8 --compare`), the experts are FP8
(e4m3) as PyTorch serves them on Hopper: per-output-channel weight scales, activations quantized
per row (rowwise scales) before each GEMM, and the same pipeline names on `torch._scaled_grouped_mm`:
  - `grouped_mm`: route, sort, quantize the rows, `_scaled_grouped_mm`, SwiGLU, quantize,
    `_scaled_grouped_mm`, index_add (the shared expert on `torch._scaled_mm`);
  - `gemms`: the two `_scaled_grouped_mm` calls with SwiGLU and its quantization between them, on
    rows already sorted and quantized (moekit's permute writes FP8 rows too).
The matmul ceiling is then `torch._scaled_mm` at 8192^3 (e4m3, rowwise scales, bf16 out), and the
floors count one byte per weight. No `hf_loop` in that mode.

Custom shapes as `moekit bench --shape` takes them: `--shape E,K,H,I[,S]` (repeatable) and
`--routing METHOD[,GROUPS,KEPT]`, their rows named as moekit's so `moekit bench --compare` pairs
them (bench/baseline_shapes.py holds the presets and the command line, without torch).

Usage: python3 bench/torch_baseline.py [--presets a,b] [--shape E,K,H,I[,S] ...] [--routing METHOD[,GROUPS,KEPT]]
                                       [--tokens 1,16,...] [--quantize fp8] [--json FILE]
"""
import json
import math
import statistics

import torch

from baseline_shapes import parse_args

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


E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0


def quantize_rows(x):
    """e4m3 values and float32 scales (amax / 448 per row of the last dimension): x ~ q * scale."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12)
    scale = amax / E4M3_MAX
    q = (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)
    return q, scale.squeeze(-1)


def measure_fp8_ceiling(n=8192):
    """torch._scaled_mm on e4m3 [n, n] x [n, n] with rowwise scales, bf16 out: TFLOP/s."""
    a = torch.randn(n, n, device='cuda').to(E4M3)
    b = torch.randn(n, n, device='cuda').to(E4M3).t()  # column-major, as _scaled_mm wants
    scale_a = torch.ones(n, 1, device='cuda')
    scale_b = torch.ones(1, n, device='cuda')
    ms = time_ms(lambda _: torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16), [None])
    del a, b
    return 2 * n ** 3 / (ms * 1e-3) / 1e12


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
    def __init__(self, shape):
        """shape: a baseline_shapes.LayerShape."""
        g = torch.Generator(device='cuda').manual_seed(0)
        rand = lambda *dims, fan: (torch.rand(*dims, device='cuda', generator=g, dtype=torch.bfloat16) * 2 - 1) / math.sqrt(fan)
        experts, hidden, inter, shared = shape.experts, shape.hidden, shape.inter, shape.shared
        self.E, self.K, self.H, self.I = experts, shape.top_k, hidden, inter
        self.routing = shape.routing
        self.router = rand(experts, hidden, fan=hidden)
        self.bias = torch.rand(experts, device='cuda', generator=g) * 0.1
        self.w13 = rand(experts, 2 * inter, hidden, fan=hidden)   # [E, 2I, H]: gate rows then up rows
        self.w2 = rand(experts, hidden, inter, fan=inter)         # [E, H, I]
        self.shared = (rand(2 * shared, hidden, fan=hidden), rand(hidden, shared, fan=shared)) if shared else None

    def route(self, x):
        logits = (x @ self.router.T).float()
        method, groups, kept, scale = self.routing
        if method == 'softmax_topk':
            weights, ids = torch.softmax(logits, -1).topk(self.K, -1)
            return weights / weights.sum(-1, keepdim=True), ids
        if method == 'topk_softmax':
            top, ids = logits.topk(self.K, -1)
            return torch.softmax(top, -1), ids
        scores = logits.sigmoid()
        choice = scores + self.bias
        per_group = self.E // groups
        group_scores = choice.view(x.shape[0], groups, per_group).topk(min(2, per_group), -1).values.sum(-1)
        keep = torch.zeros_like(group_scores).scatter_(1, group_scores.topk(kept, -1).indices, 1)
        masked = choice.masked_fill(keep.repeat_interleave(per_group, -1) == 0, float('-inf'))
        ids = masked.topk(self.K, -1).indices
        weights = scores.gather(1, ids)
        return weights / weights.sum(-1, keepdim=True) * scale, ids

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


class Fp8Layer(Layer):
    """The same layer with e4m3 experts (per-output-channel scales) on torch._scaled_grouped_mm."""

    def __init__(self, *args):
        super().__init__(*args)
        self.w13q, self.w13s = self.quantize_experts(self.w13)  # [E, 2I, H] e4m3, [E, 2I]
        self.w2q, self.w2s = self.quantize_experts(self.w2)     # [E, H, I], [E, H]
        if self.shared is not None:
            self.shared_q = [quantize_rows(w) for w in self.shared]  # ([2S, H], [2S]), ([H, S], [H])
        del self.w13, self.w2
        torch.cuda.empty_cache()

    @staticmethod
    def quantize_experts(w):
        """Per-output-channel e4m3, one expert at a time (a float32 copy of all of DeepSeek-V3's would be 30 GB)."""
        pairs = [quantize_rows(w[e]) for e in range(w.shape[0])]
        return torch.stack([q for q, _ in pairs]), torch.stack([s for _, s in pairs])

    @staticmethod
    def scaled_linear(xq, xs, wq, ws):
        """e4m3 [M, K] (rowwise scales xs) x e4m3 [N, K] (per-channel scales ws)^T -> bf16 [M, N]."""
        return torch._scaled_mm(xq, wq.t(), scale_a=xs[:, None], scale_b=ws[None, :], out_dtype=torch.bfloat16)

    def shared_out(self, x):
        if self.shared is None:
            return 0
        (w13q, w13s), (w2q, w2s) = self.shared_q
        h = self.scaled_linear(*quantize_rows(x), w13q, w13s)
        a = torch.nn.functional.silu(h[:, : h.shape[1] // 2]) * h[:, h.shape[1] // 2:]
        return self.scaled_linear(*quantize_rows(a), w2q, w2s)

    def gemms(self, rows, offsets):
        """rows: (e4m3 [M, H], scales [M]) sorted by expert."""
        q, s = rows
        h = torch._scaled_grouped_mm(q, self.w13q.transpose(1, 2), s, self.w13s, offs=offsets,
                                     out_dtype=torch.bfloat16, use_fast_accum=True)
        a = torch.nn.functional.silu(h[:, : self.I]) * h[:, self.I:]
        aq, a_s = quantize_rows(a)
        return torch._scaled_grouped_mm(aq, self.w2q.transpose(1, 2), a_s, self.w2s, offs=offsets,
                                        out_dtype=torch.bfloat16, use_fast_accum=True)

    def grouped_mm(self, x):
        weights, ids = self.route(x)
        order, offsets = self.sort(ids)
        token = order // self.K
        y = self.gemms(quantize_rows(x[token]), offsets)
        out = torch.zeros_like(x, dtype=torch.float32)
        out.index_add_(0, token, y.float() * weights.flatten()[order, None])
        return out.to(x.dtype) + self.shared_out(x)


def floors(layer, tokens, shared, matmul_tflops, copy_tbps, bytes_per_weight=2):
    E, K, H, I = layer.E, layer.K, layer.H, layer.I
    flops = 2 * tokens * K * 3 * H * I + 2 * tokens * 3 * H * shared + 2 * tokens * H * E
    active = E * (1 - (1 - K / E) ** tokens)
    weight_bytes = (active * 3 * H * I + 3 * H * shared) * bytes_per_weight
    floor_ms = max(flops / (matmul_tflops * 1e12), weight_bytes / (copy_tbps * 1e12)) * 1e3
    return flops, weight_bytes, floor_ms


def main():
    args = parse_args()
    fp8 = args.quantize == 'fp8'
    matmul_tflops, copy_tbps = measure_ceilings()
    bf16_matmul_tflops = matmul_tflops
    if fp8:
        matmul_tflops = measure_fp8_ceiling()
        print(f'# {torch.cuda.get_device_name()}  FP8 matmul {matmul_tflops:.0f} TFLOP/s (bf16 {bf16_matmul_tflops:.0f})  '
              f'copy {copy_tbps:.2f} TB/s  experts: e4m3 on torch._scaled_grouped_mm')
    else:
        print(f'# {torch.cuda.get_device_name()}  matmul {matmul_tflops:.0f} TFLOP/s  copy {copy_tbps:.2f} TB/s')
    rows = []
    for name, shape in args.layers:
        top_k, hidden, inter, shared = shape.top_k, shape.hidden, shape.inter, shape.shared
        layer = (Fp8Layer if fp8 else Layer)(shape)
        for tokens in map(int, args.tokens.split(',')):
            inputs = [torch.randn(tokens, hidden, device='cuda', dtype=torch.bfloat16) for _ in range(ROTATIONS)]
            flops, weight_bytes, floor_ms = floors(layer, tokens, shared, matmul_tflops, copy_tbps, 1 if fp8 else 2)
            with torch.inference_mode():
                sorted_inputs = []
                for x in inputs:
                    order, offsets = layer.sort(layer.route(x)[1])
                    rows_in = x[order // top_k]
                    sorted_inputs.append((quantize_rows(rows_in) if fp8 else rows_in, offsets))
            for pipeline in ('grouped_mm', 'gemms', 'hf_loop'):
                if pipeline == 'hf_loop' and (tokens > args.skip_loop_above or fp8):
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
                           matmul_ceiling_tflops=matmul_tflops, copy_ceiling_tbps=copy_tbps, gpu=torch.cuda.get_device_name(),
                           quantize=args.quantize or 'none', bf16_matmul_ceiling_tflops=bf16_matmul_tflops)
                rows.append(row)
                print(f'{name:31s} {pipeline:10s} T={tokens:6d} {ms:9.3f} ms  floor {floor_ms:8.3f} ms  '
                      f'{row["tflops"]:7.1f} TFLOP/s  {row["weight_gbps"]:8.1f} GB/s')
            del inputs, sorted_inputs
        del layer
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
