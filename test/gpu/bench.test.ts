// The benchmark's device timing and ceilings on a GPU: CUDA events around queued work, stage times
// of a forward, and cuBLAS (loaded at run time) agreeing with moekit's linear.
import { describe, expect, it } from 'vitest';

import { measureCeilings } from '../../lib/bench/ceilings';
import { ClockSampler } from '../../lib/bench/telemetry';
import { elapsedTimes, recordEvent, StageTimer } from '../../lib/bench/events';
import { timeForward } from '../../lib/bench/timing';
import { MoELayer, Tensor, linear } from '../../lib/index';
import { addon } from '../../lib/native';
import { swigluConfig } from '../helpers/configs';
import { relativeError } from '../helpers/fixtures';
import { GPU, HAS_GPU } from './gpu';

describe.skipIf(!HAS_GPU)('benchmark timing on a GPU', () => {
  it('CUDA events time the work queued between them', async () => {
    using weight = Tensor.random([4096, 4096], { device: GPU, dtype: 'bfloat16', seed: 1 });
    using x = Tensor.random([4096, 4096], { device: GPU, dtype: 'bfloat16', seed: 2 });
    const start = recordEvent(GPU);
    const idle = recordEvent(GPU);
    for (let i = 0; i < 4; i++) linear(x, weight).dispose();
    const busy = recordEvent(GPU);
    const [zero, none, four] = await elapsedTimes([start, idle, busy]);
    expect(zero).toBe(0);
    expect(none!).toBeLessThan(four!);
    // Four 4096³ products: at most ~1 PFLOP/s is physically possible on today's GPUs.
    expect(four!).toBeGreaterThan((4 * 2 * 4096 ** 3) / 1e15 * 1e3);
  });

  it('NVML reads the GPU\'s clocks and power, and a sampler summarizes them over queued work', async () => {
    expect(addon().nvmlInfo()).toMatchObject({ available: true, problem: '' });
    const reading = addon().gpuReading(0);
    expect(reading.smClockMHz).toBeGreaterThan(0);
    expect(reading.memoryClockMHz).toBeGreaterThan(0);
    expect(reading.powerLimitW).toBeGreaterThan(reading.powerW * 0.1);
    expect(() => addon().gpuReading(4096)).toThrow(expect.objectContaining({ code: 'E_CUDA' }));
    using weight = Tensor.random([8192, 8192], { device: GPU, dtype: 'bfloat16', seed: 1 });
    using x = Tensor.random([8192, 8192], { device: GPU, dtype: 'bfloat16', seed: 2 });
    const sampler = ClockSampler.start(GPU)!;
    const start = recordEvent(GPU);
    for (let i = 0; i < 40; i++) linear(x, weight).dispose();
    await elapsedTimes([start, recordEvent(GPU)]);
    const summary = sampler.stop()!;
    expect(summary.samples).toBeGreaterThanOrEqual(2);
    expect(summary.busySamples).toBeGreaterThanOrEqual(1);
    expect(summary.smClockMHz).toBeGreaterThan(0);
    expect(summary.maxPowerW).toBeGreaterThanOrEqual(summary.powerW);
    expect(sampler.stop()!.samples).toBe(summary.samples);  // stopped: no more readings
  });

  it('a StageTimer splits a forward into its stages', async () => {
    const config = swigluConfig({ hidden: 1024, intermediate: 512, experts: 16, topK: 2 });
    using layer = MoELayer.random(config, { device: GPU, dtype: 'bfloat16', seed: 1 });
    using x = Tensor.random([256, 1024], { device: GPU, dtype: 'bfloat16', seed: 2 });
    const timer = new StageTimer(GPU);
    using result = layer.forward(x, { profiler: timer });
    const { totalMs, stages } = await timer.times();
    expect(Object.keys(stages)).toEqual(['router', 'routing', 'permute', 'expert_up', 'expert_down', 'combine']);
    expect(Object.values(stages).reduce((sum, ms) => sum + ms, 0)).toBeCloseTo(totalMs, 6);
    expect(totalMs).toBeGreaterThan(0);
    expect(result.output.shape).toEqual([256, 1024]);
  });

  it('times decode-sized forwards as graph replays too, and only those', async () => {
    const config = swigluConfig({ hidden: 1024, intermediate: 512, experts: 16, topK: 2 });
    using layer = MoELayer.random(config, { device: GPU, dtype: 'bfloat16', seed: 1 });
    const options = { warmup: 1, runs: 3, graphMaxTokens: 4 };
    const decode = await timeForward(layer, 4, options);
    expect(decode.graphMs).toBeGreaterThan(0);
    expect(Number.isFinite(decode.graphMs)).toBe(true);
    expect(decode.ms).toBeGreaterThan(0);
    expect(decode.clocks!.samples).toBeGreaterThanOrEqual(1);  // read over the row's runs (NVML)
    const prefill = await timeForward(layer, 5, options);
    expect(prefill.graphMs).toBeUndefined();
  });

  it('cuBLAS, where it loads, computes what linear computes', async (context) => {
    const cublas = addon().cublasInfo();
    if (!cublas.available) {
      console.log(`cuBLAS parity skipped: ${cublas.problem}`);
      context.skip();
    }
    for (const dtype of ['bfloat16', 'float32'] as const) {
      using a = Tensor.random([200, 320], { device: GPU, dtype, seed: 3 });
      using b = Tensor.random([144, 320], { device: GPU, dtype, seed: 4 });
      using c = Tensor.empty([200, 144], { device: GPU, dtype });
      addon().cublasGemm(0, { a: a.toNative(), b: b.toNative(), c: c.toNative() });
      using expected = linear(a, b);
      const error = relativeError(await c.toFloat32Array(), await expected.toFloat32Array());
      expect(error, dtype).toBeLessThanOrEqual(dtype === 'float32' ? 1e-5 : 1e-2);
    }
  });

  it('measures both ceilings and says what it timed', async () => {
    const ceilings = await measureCeilings(GPU, 'bfloat16');
    expect(ceilings.matmulTflops).toBeGreaterThan(1);
    expect(ceilings.copyGBps).toBeGreaterThan(100);
    expect(ceilings.matmulSource).toMatch(addon().cublasInfo().available ? /^cuBLAS \d+\.\d+\.\d+ GEMM bfloat16 8192×8192×8192/ : /^moekit linear .*NOT cuBLAS/);
    expect(ceilings.copySource).toMatch(/1024 MiB/);
    expect(ceilings.matmulClocks!.smClockMHz).toBeGreaterThan(0);
  });
});
