// LayerStats (lib/serve/layer_stats.ts), the addInt32 op it sums with, and memoryInfo.
import { describe, expect, it } from 'vitest';

import { addInt32, LayerStats, memoryInfo, MoELayer, synchronize, Tensor } from '../lib/index';
import { expectThrows } from './helpers/errors';
import { swigluConfig } from './helpers/configs';

const config = swigluConfig({ hidden: 16, intermediate: 24, experts: 6, topK: 2 });

describe('addInt32', () => {
  it('adds into the accumulator on the device, wrapping in two\'s complement', async () => {
    using accumulator = Tensor.fromArray([1, -2, 2147483647], [3], { dtype: 'int32' });
    using input = Tensor.fromArray([10, 20, 1], [3], { dtype: 'int32' });
    addInt32(accumulator, input);
    addInt32(accumulator, input);
    expect(Array.from(await accumulator.toArray())).toEqual([21, 38, -2147483647]);
  });

  it('names a bad argument', () => {
    using counts = Tensor.fromArray([1, 2], [2], { dtype: 'int32' });
    using floats = Tensor.fromArray([1, 2], [2]);
    using longer = Tensor.fromArray([1, 2, 3], [3], { dtype: 'int32' });
    expectThrows(() => addInt32(counts, floats), 'E_DTYPE', /input/);
    expectThrows(() => addInt32(counts, longer), 'E_SHAPE', /input has 3 elements but accumulator has 2/);
  });
});

describe('LayerStats', () => {
  it('counts forwards, tokens and routed pairs per expert, in windows between reads', async () => {
    using layer = MoELayer.random(config, { seed: 1 });
    using stats = new LayerStats(layer);
    const expected = new Array<number>(config.numExperts).fill(0);
    const run = async (tokens: number, seed: number) => {
      using x = Tensor.random([tokens, config.hiddenSize], { seed });
      using result = layer.forward(x);
      stats.record(result.expertCounts, tokens);
      const counts = Array.from(await result.expertCounts.toArray());
      counts.forEach((count, expert) => (expected[expert]! += count));
      return counts;
    };
    await run(5, 1);
    await run(3, 2);
    const first = await stats.read();
    expect(first.window).toMatchObject({ forwards: 2, tokens: 8, expertPairs: expected });
    expect(first.window.expertPairs.reduce((a, b) => a + b, 0)).toBe(8 * config.routing.topK);
    expect(first.window.loadImbalance).toBeCloseTo(Math.max(...expected) / (16 / config.numExperts), 10);
    expect(first.total).toEqual(first.window);

    const secondCounts = await run(7, 3);
    const second = await stats.read();
    expect(second.window).toMatchObject({ forwards: 1, tokens: 7, expertPairs: secondCounts });
    expect(second.total).toMatchObject({ forwards: 3, tokens: 15, expertPairs: expected });

    const idle = await stats.read();
    expect(idle.window).toEqual({ forwards: 0, tokens: 0, expertPairs: new Array(config.numExperts).fill(0), loadImbalance: null });
    expect(idle.total.forwards).toBe(3);
  });
});

describe('memoryInfo', () => {
  it('reports the CPU tensors held and the machine\'s memory', async () => {
    // Releases still queued from earlier tests would lower the count between the two reads.
    await synchronize('cpu');
    const before = memoryInfo('cpu');
    using big = Tensor.empty([1024, 1024]);
    const during = memoryInfo('cpu');
    expect(during.device).toBe('cpu');
    expect(during.inUseBytes - before.inUseBytes).toBeGreaterThanOrEqual(big.nbytes);
    expect(during.reservedBytes).toBe(during.inUseBytes);
    expect(during.totalBytes).toBeGreaterThan(0);
    expect(during.freeBytes).toBeLessThanOrEqual(during.totalBytes);
  });

  it('refuses a malformed device', () => {
    expectThrows(() => memoryInfo('gpu' as never), 'E_DEVICE', /expected 'cpu' or 'cuda:N', got "gpu"/);
  });
});
