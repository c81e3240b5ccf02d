// LayerStats (lib/serve/layer_stats.ts), the addInt32 op it sums with, and memoryInfo.
import { describe, expect, it } from 'vitest';

import { addInt32, gatherLayerStats, LayerStats, memoryInfo, MoELayer, synchronize, Tensor, type LayerStatsSnapshot, type StatsGroup } from '../lib/index';
import { packSnapshot, unpackSnapshot } from '../lib/serve/layer_stats';
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

describe('gatherLayerStats', () => {
  const snapshot = (forwards: number, tokens: number, pairs: number[]): LayerStatsSnapshot => {
    const total = { forwards, tokens, expertPairs: pairs, loadImbalance: Math.max(...pairs) / (pairs.reduce((a, b) => a + b, 0) / pairs.length) };
    return { total, window: { forwards: 1, tokens: 2, expertPairs: pairs.map(() => 0), loadImbalance: null } };
  };

  /**
   * Two ranks in one process: each allReduce is held until both ranks have queued theirs, then
   * each tensor gets the other's values added (addInt32), as NCCL's sum would leave it.
   */
  function pairOfGroups(): StatsGroup[] {
    let pending: Array<{ tensor: Tensor; done: () => void }> = [];
    const exchange = async (tensor: Tensor) => {
      await new Promise<void>((resolve) => {
        pending.push({ tensor, done: resolve });
        if (pending.length < 2) return;
        const [a, b] = pending as [{ tensor: Tensor; done: () => void }, { tensor: Tensor; done: () => void }];
        pending = [];
        void (async () => {
          using aCopy = Tensor.fromArray(await a.tensor.toArray(), a.tensor.shape, { dtype: 'int32' });
          using bCopy = Tensor.fromArray(await b.tensor.toArray(), b.tensor.shape, { dtype: 'int32' });
          addInt32(a.tensor, bCopy);
          addInt32(b.tensor, aCopy);
          a.done();
          b.done();
        })();
      });
    };
    return [0, 1].map((rank) => {
      let queued: Tensor | undefined;
      return {
        rank,
        worldSize: 2,
        device: 'cpu' as const,
        allReduce: (tensor: Tensor) => { queued = tensor; },
        synchronize: async () => exchange(queued!),
      };
    });
  }

  it('packs counts past int32 exactly and recomputes the load imbalance', () => {
    const big = snapshot(3_000_000_000, 5_000_000_000_123, [2 ** 40 + 7, 1, 2 ** 31, 0]);
    const back = unpackSnapshot(packSnapshot(big), 4);
    expect(back).toEqual(big);
    expectThrows(() => packSnapshot(snapshot(2 ** 61, 1, [1])), 'E_INVALID_ARGUMENT', /count .* not an integer in \[0, 2\^60\)/);
  });

  it("gives every rank all ranks' snapshots in rank order", async () => {
    const [zero, one] = pairOfGroups() as [StatsGroup, StatsGroup];
    const mine = [snapshot(3, 40, [10, 30, 40, 0]), snapshot(5, 60, [2 ** 33, 1, 2, 3])];
    const [atZero, atOne] = await Promise.all([gatherLayerStats(zero, mine[0]!), gatherLayerStats(one, mine[1]!)]);
    expect(atZero).toEqual(mine);
    expect(atOne).toEqual(mine);
  });

  it('rejects on every rank when the ranks count different numbers of experts', async () => {
    const [zero, one] = pairOfGroups() as [StatsGroup, StatsGroup];
    const results = await Promise.allSettled([gatherLayerStats(zero, snapshot(1, 1, [1, 2])), gatherLayerStats(one, snapshot(1, 1, [1, 2, 3]))]);
    for (const result of results) {
      expect(result.status).toBe('rejected');
      expect((result as PromiseRejectedResult).reason).toMatchObject({ code: 'E_INVALID_ARGUMENT', message: expect.stringMatching(/rank \d counts \d experts/) });
    }
  });

  it('with one rank returns its own snapshot', async () => {
    const group: StatsGroup = { rank: 0, worldSize: 1, device: 'cpu', allReduce: () => {}, synchronize: async () => {} };
    const mine = snapshot(2, 9, [4, 5]);
    expect(await gatherLayerStats(group, mine)).toEqual([mine]);
  });
});
