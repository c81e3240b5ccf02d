// The multi-GPU benchmark's plan sweep, load accounting and report, on the CPU (the timed run itself
// needs NCCL and GPUs: `moekit launch --nproc N moekit bench --parallel`, scripts/multi_gpu_check.sh).
import { describe, expect, it } from 'vitest';

import {
  benchPlans, formatParallelHeader, formatParallelRow, loadImbalance, parallelRow, planName, rankPairs, type ParallelPoint,
} from '../lib/bench/parallel';
import { randomHostWeights } from '../lib/bench/parallel_run';
import { findPreset } from '../lib/bench/presets';
import { forwardFlops } from '../lib/bench/roofline';
import { MoELayer, resolvePlan, shardForRank, Tensor } from '../lib/index';
import { swigluConfig } from './helpers/configs';

const mixtral = findPreset('mixtral-8x7b')!.config; // E 8, I 14336
const config = swigluConfig({ hidden: 32, intermediate: 48, experts: 8, topK: 2 });

describe('bench --parallel plans', () => {
  it('sweeps every factorization of the group the layer allows, TP first', () => {
    expect(benchPlans(4, {}, mixtral).plans.map(planName)).toEqual(['tp4×ep1', 'tp2×ep2', 'tp1×ep4']);
    // 16 ranks: EP 16 does not divide Mixtral's 8 experts, and says so.
    const { plans, skipped } = benchPlans(16, {}, mixtral);
    expect(plans.map(planName)).toEqual(['tp16×ep1', 'tp8×ep2', 'tp4×ep4', 'tp2×ep8']);
    expect(skipped).toEqual(['tp1×ep16: moeEpSize 16 does not divide the expert count 8']);
  });

  it('or times the one plan the sizes name, refusing one that does not fit', () => {
    expect(benchPlans(4, { moeEpSize: 2 }, mixtral).plans).toEqual([{ worldSize: 4, moeTpSize: 2, moeEpSize: 2 }]);
    expect(benchPlans(4, { moeTpSize: 4 }, mixtral).plans.map(planName)).toEqual(['tp4×ep1']);
    expect(() => benchPlans(4, { moeTpSize: 3 }, mixtral)).toThrow(/must equal the group size 4/);
  });
});

describe('expert-load imbalance', () => {
  const counts = Int32Array.of(10, 0, 0, 0, 2, 2, 2, 2); // 18 routed pairs

  it('counts each rank\'s routed pairs: its experts under EP, everything under TP', () => {
    expect(rankPairs(counts, resolvePlan(2, { moeEpSize: 2 }, config), config)).toEqual([10, 8]);
    expect(rankPairs(counts, resolvePlan(4, { moeEpSize: 4 }, config), config)).toEqual([10, 0, 4, 4]);
    expect(rankPairs(counts, resolvePlan(2, { moeTpSize: 2 }, config), config)).toEqual([18, 18]);
    // Hybrid tp2×ep2: ranks 0 and 1 hold experts 0-3, ranks 2 and 3 experts 4-7.
    expect(rankPairs(counts, resolvePlan(4, { moeTpSize: 2, moeEpSize: 2 }, config), config)).toEqual([10, 10, 8, 8]);
  });

  it('is max/mean: 1 when even, N when one rank of N does everything', () => {
    expect(loadImbalance([18, 18])).toBe(1);
    expect(loadImbalance([10, 0, 4, 4])).toBeCloseTo(10 / 4.5, 12);
    expect(loadImbalance([9, 0, 0])).toBe(3);
    expect(loadImbalance([0, 0])).toBe(1);
  });

  it('from the expert counts of sharded forwards, which every rank computes alike', async () => {
    const host = async (shape: number[], seed: number) => {
      using tensor = Tensor.random(shape, { seed, scale: 0.2 });
      return { dtype: 'float32' as const, shape, data: (await tensor.toArray()) as Float32Array };
    };
    const weights = { router: await host([8, 32], 1), w13: await host([8, 96, 32], 2), w2: await host([8, 32, 48], 3) };
    using x = Tensor.random([24, 32], { seed: 4 });
    const plan = resolvePlan(4, { moeEpSize: 4 }, config);
    const counts: Int32Array[] = [];
    for (let rank = 0; rank < 4; rank++) {
      using layer = MoELayer.fromWeights(config, weights, { shard: shardForRank(plan, config, rank) });
      using result = layer.forward(x);
      counts.push((await result.expertCounts.toArray()) as Int32Array);
    }
    for (const rankCounts of counts) expect(Array.from(rankCounts)).toEqual(Array.from(counts[0]!));
    const perRank = rankPairs(counts[0]!, plan, config);
    expect(perRank.reduce((sum, pairs) => sum + pairs, 0)).toBe(24 * 2);
    expect(perRank).toEqual([0, 1, 2, 3].map((rank) => counts[0]![2 * rank]! + counts[0]![2 * rank + 1]!));
  });
});

describe('bench --parallel rows', () => {
  const point: ParallelPoint = {
    preset: 'mixtral-8x7b',
    config: mixtral,
    plan: { worldSize: 2, moeTpSize: 1, moeEpSize: 2 },
    device: 'cuda:0',
    deviceName: 'NVIDIA H200',
    dtype: 'bfloat16',
    tokens: 16,
    ranks: [{ ms: 2, allReduceMs: 0.5 }, { ms: 2.5, allReduceMs: 0.25 }],
    stageMs: { router: 0.1, expert_up: 1, all_reduce: 0.5 },
    expertCounts: [Int32Array.of(8, 8, 8, 0, 4, 4, 0, 0), Int32Array.of(4, 4, 4, 4, 4, 4, 4, 4)],
  };

  it('take the slowest rank\'s time, the mean all-reduce share and the mean imbalance over inputs', () => {
    const row = parallelRow(point);
    expect(row).toMatchObject({
      preset: 'mixtral-8x7b', tokens: 16, worldSize: 2, moeTpSize: 1, moeEpSize: 2, msPerForward: 2.5,
      rankMs: [2, 2.5], rankAllReduceMs: [0.5, 0.25], rankPairs: [(24 + 16) / 2, (8 + 16) / 2],
      stageMs: point.stageMs,
    });
    expect(row.allReduceShare).toBeCloseTo((0.25 + 0.1) / 2, 12);
    // Input 1: [24, 8] → 24/16 = 1.5; input 2: [16, 16] → 1.
    expect(row.loadImbalance).toBeCloseTo(1.25, 12);
    expect(row.tflops).toBeCloseTo(forwardFlops(mixtral, 16) / 2.5e-3 / 1e12, 9);
  });

  it('print the plan, the all-reduce share and the load, then every stage with all_reduce last', () => {
    expect(formatParallelHeader().split(/\s{2,}/)).toEqual(['preset', 'plan', 'tokens', 'ms/forward', 'all_reduce share', 'load max/mean', 'TFLOP/s',
      'router', 'routing', 'permute', 'expert_up', 'expert_down', 'shared', 'combine', 'all_reduce']);
    const cells = formatParallelRow(parallelRow(point)).split(/\s+/);
    expect(cells.slice(0, 6)).toEqual(['mixtral-8x7b', 'tp1×ep2', '16', '2.500', '17.5%', '1.25']);
    expect(cells.slice(7)).toEqual(['0.100', '-', '-', '1.000', '-', '-', '-', '0.500']);
  });
});

describe('bench --parallel weights', () => {
  it('are the random layer\'s weights, brought to the host for each rank to shard', async () => {
    const preset = findPreset('deepseek-v3-mini')!;
    const host = await randomHostWeights(preset, 'float32', 'cpu');
    expect(host.correctionBias?.dtype).toBe('float32');
    using fromHost = MoELayer.fromWeights(preset.config, host);
    using random = MoELayer.random(preset.config, { seed: 0 });
    using x = Tensor.random([5, preset.config.hiddenSize], { seed: 3 });
    using a = fromHost.forward(x);
    using b = random.forward(x);
    expect(Array.from(await a.output.toArray())).toEqual(Array.from(await b.output.toArray()));
  });
});
