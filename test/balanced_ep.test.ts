// Balanced Expert Parallel (ParallelOptions.placement, lib/parallel/placement.ts): ranks that hold
// a placement's slots, replicas of the busy experts included, add up to the unsharded layer, on
// the CPU backend (each rank built in this process, as test/weight_only_layer.test.ts does for
// plain TP/EP).
import { describe, expect, it } from 'vitest';

import { readMoEConfig } from '../lib/checkpoint/load';
import { MoELayer, planPlacement, Tensor, type ExpertPlacement } from '../lib/index';
import { checkShard, resolvePlan, shardForRank } from '../lib/parallel/plan';
import { expectThrows } from './helpers/errors';
import { fixtureDir, quantFixtureDir, relativeError } from './helpers/fixtures';

/** A deterministic input for `hidden` (a few more tokens than the fixtures' own, so replicas take turns). */
function input(tokens: number, hidden: number): Tensor {
  return Tensor.random([tokens, hidden], { seed: 5 });
}

/**
 * The unsharded layer's output and routing on x, and the sum of the ranks' outputs under a
 * TP × EP plan with a placement planned from that routing (one slot more per rank than plain EP,
 * so the busiest experts get replicas).
 */
async function compare(dir: string, tp: number, ep: number, tokens: number) {
  const config = readMoEConfig(dir, 0);
  using whole = await MoELayer.fromPretrained(dir, { layer: 0 });
  using x = input(tokens, config.hiddenSize);
  using full = whole.forward(x);
  const expected = await full.output.toFloat32Array();
  const loads = Array.from(await full.expertCounts.toArray(), Number);
  const placement = planPlacement(loads, { ranks: ep, slotsPerRank: config.numExperts / ep + 1 });
  const plan = resolvePlan(tp * ep, { moeTpSize: tp, moeEpSize: ep, placement }, config);
  const sum = new Float64Array(expected.length);
  for (let rank = 0; rank < tp * ep; rank++) {
    using layer = await MoELayer.fromPretrained(dir, { layer: 0, shard: shardForRank(plan, config, rank) });
    using result = layer.forward(x);
    // Routing is reported in experts, not slots: statistics and the balancer read the same ids.
    expect(Array.from(await result.topkIds.toArray())).toEqual(Array.from(await full.topkIds.toArray()));
    (await result.output.toFloat32Array()).forEach((value, i) => (sum[i]! += value));
  }
  return { placement, expected, sum, experts: config.numExperts };
}

describe('balanced Expert Parallel: a placement with replicas', () => {
  it.each([[1, 2], [2, 2]] as const)('Mixtral fixture, TP%i × EP%i: the ranks add up to the unsharded layer', async (tp, ep) => {
    const { placement, expected, sum, experts } = await compare(fixtureDir('mixtral'), tp, ep, 24);
    expect(placement.slotExperts.length).toBe(experts + ep);  // replicas: more slots than experts
    expect(relativeError(sum, expected)).toBeLessThanOrEqual(1e-6);
  });

  it('DeepSeek-V3 fixture (shared expert, grouped sigmoid routing), EP2: the same', async () => {
    const { expected, sum } = await compare(fixtureDir('deepseek_v3'), 1, 2, 24);
    expect(relativeError(sum, expected)).toBeLessThanOrEqual(1e-6);
  });

  it('gpt-oss MXFP4 fixture (quantized experts, biases), EP2: the same', async () => {
    const { expected, sum } = await compare(quantFixtureDir('gpt_oss_mxfp4'), 1, 2, 24);
    expect(relativeError(sum, expected)).toBeLessThanOrEqual(1e-6);
  });

  it('names what is wrong with a placement', () => {
    const config = readMoEConfig(fixtureDir('mixtral'), 0);
    const experts = config.numExperts;
    const placement: ExpertPlacement = { ranks: 2, slotsPerRank: experts / 2 + 1, slotExperts: [...Array.from({ length: experts }, (_, e) => e), 0, 1] };
    expectThrows(() => resolvePlan(4, { moeEpSize: 4, placement }, config), 'E_INVALID_ARGUMENT', /parallel\.placement is for 2 ranks, but moeEpSize is 4/);
    const missing = { ...placement, slotExperts: placement.slotExperts.map((e) => (e === 3 ? 0 : e)) };
    expectThrows(() => resolvePlan(2, { moeEpSize: 2, placement: missing }, config), 'E_INVALID_ARGUMENT', /parallel\.placement: expert 3 has no slot/);
    const short = { ...placement, slotExperts: placement.slotExperts.slice(1) };
    expectThrows(() => resolvePlan(2, { moeEpSize: 2, placement: short }, config), 'E_INVALID_ARGUMENT', /ranks × slotsPerRank slotExperts/);
    const shard = shardForRank(resolvePlan(2, { moeEpSize: 2, placement }, config), config, 1);
    expect(shard.experts).toEqual({ first: experts / 2 + 1, count: experts / 2 + 1 });
    expectThrows(() => checkShard({ ...shard, experts: { first: experts, count: 3 } }, config), 'E_INVALID_ARGUMENT', /shard\.experts \[8, 11\) is not a non-empty range of \[0, 10\)/);
    // A placement need not divide the experts evenly: 8 experts on 3 ranks of 3 slots.
    expect(resolvePlan(3, { moeEpSize: 3, placement: planPlacement(new Array(8).fill(1), { ranks: 3, slotsPerRank: 3 }) }, config).moeEpSize).toBe(3);
  });
});
