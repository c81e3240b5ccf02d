// Sharding plans (TensorRT-LLM semantics) and sharded layers on the CPU: for every (moeTp, moeEp)
// factorization of N = 1, 2, 4, 8 on the five fixture families, the ranks' partial outputs sum to
// the unsharded layer's output, and each rank holds 1/N of the expert weights.
import { describe, expect, it } from 'vitest';

import { MoELayer, Tensor } from '../lib/index';
import { factorizations, resolvePlan, shardForRank } from '../lib/parallel/plan';
import { swigluConfig } from './helpers/configs';
import { expectThrows } from './helpers/errors';
import { FIXTURE_FAMILIES, fixtureDir, loadDense, readExpectation, relativeError } from './helpers/fixtures';

describe('resolvePlan', () => {
  const config = swigluConfig({ hidden: 64, intermediate: 96, experts: 16, topK: 4 });

  it('defaults to Tensor Parallel over the whole group', () => {
    expect(resolvePlan(4, {}, config)).toEqual({ worldSize: 4, moeTpSize: 4, moeEpSize: 1 });
  });

  it('takes TP when only moeTpSize is given, EP when only moeEpSize, and both as a hybrid', () => {
    expect(resolvePlan(4, { moeTpSize: 4 }, config)).toEqual({ worldSize: 4, moeTpSize: 4, moeEpSize: 1 });
    expect(resolvePlan(4, { moeEpSize: 4 }, config)).toEqual({ worldSize: 4, moeTpSize: 1, moeEpSize: 4 });
    expect(resolvePlan(4, { moeTpSize: 2, moeEpSize: 2 }, config)).toEqual({ worldSize: 4, moeTpSize: 2, moeEpSize: 2 });
  });

  it('rejects sizes that do not multiply to the group size or do not divide the layer', () => {
    expect(() => resolvePlan(4, { moeTpSize: 2, moeEpSize: 4 }, config)).toThrow(/must equal the group size 4/);
    expect(() => resolvePlan(4, { moeTpSize: 3 }, config)).toThrow(/must equal the group size 4/);
    expect(() => resolvePlan(32, { moeEpSize: 32 }, config)).toThrow(/moeEpSize 32 does not divide the expert count 16/);
    expect(() => resolvePlan(64, { moeTpSize: 64 }, config)).toThrow(/moeTpSize 64 does not divide the intermediate size 96/);
    expect(() => resolvePlan(2, { moeTpSize: 0 }, config)).toThrow(/positive integer/);
  });

  it('takes undefined or null parallel options as the default, and refuses other non-objects', () => {
    expect(resolvePlan(4, undefined, config)).toEqual({ worldSize: 4, moeTpSize: 4, moeEpSize: 1 });
    expect(resolvePlan(4, null, config)).toEqual({ worldSize: 4, moeTpSize: 4, moeEpSize: 1 });
    expectThrows(() => resolvePlan(4, 2 as never, config), 'E_INVALID_ARGUMENT', /^parallel must be an object, got 2$/);
    expectThrows(() => resolvePlan(4, {}, null as never), 'E_INVALID_ARGUMENT', /^resolvePlan: config must be given, got null$/);
    expectThrows(() => shardForRank(null as never, config, 0), 'E_INVALID_ARGUMENT', /^shardForRank: plan must be given \(with worldSize, moeTpSize, moeEpSize\), got null$/);
  });

  it('numbers ranks as TensorRT-LLM does: tpRank = r mod moeTp, epRank = r div moeTp', () => {
    const plan = resolvePlan(8, { moeTpSize: 2, moeEpSize: 4 }, config);
    const shard = shardForRank(plan, config, 5);
    expect(shard).toMatchObject({ tpRank: 1, epRank: 2, experts: { first: 8, count: 4 }, intermediate: { first: 48, count: 48 }, ownsOutputBias: false });
  });
});

describe.each(FIXTURE_FAMILIES)('sharded %s layer on the CPU', (family) => {
  it.each([1, 2, 4, 8])('every factorization of N = %i sums to the unsharded output', async (n) => {
    const expected = await readExpectation(family);
    const { config, weights } = await loadDense(fixtureDir(family), { layer: 0 });
    using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden]);
    const totalExpertElements = weights.w13.data.length + weights.w2.data.length;
    for (const factorization of factorizations(n)) {
      const plan = resolvePlan(n, { moeTpSize: factorization.moeTpSize, moeEpSize: factorization.moeEpSize }, config);
      const sum = new Float32Array(expected.output.length);
      let expertBytes = 0;
      for (let rank = 0; rank < n; rank++) {
        const shard = shardForRank(plan, config, rank);
        using layer = MoELayer.fromWeights(config, weights, { shard });
        using result = layer.forward(x);
        const partial = (await result.output.toArray()) as Float32Array;
        partial.forEach((value, i) => (sum[i]! += value));
        expertBytes += layer.weightBytes().experts;
      }
      const error = relativeError(sum, expected.output);
      expect(error, `moeTp ${plan.moeTpSize} × moeEp ${plan.moeEpSize}`).toBeLessThanOrEqual(1e-5);
      // The ranks' expert matrices, as held in tensors, partition the whole: nothing is duplicated.
      using whole = MoELayer.fromWeights(config, weights);
      expect(expertBytes).toBe(whole.weightBytes().experts);
      const shard = shardForRank(plan, config, 0);
      const rankElements = shard.experts.count * 3 * config.hiddenSize * shard.intermediate.count;
      expect(rankElements * n).toBe(totalExpertElements);
    }
  });
});

describe('loading one rank\'s shard from a checkpoint', () => {
  it.each(FIXTURE_FAMILIES)('%s: EP×TP ranks read only their experts and sum to the full output', async (family) => {
    const expected = await readExpectation(family);
    const full = await MoELayer.fromPretrained(fixtureDir(family), { layer: 0 });
    const fullBytes = full.checkpointBytesRead;
    full.dispose();
    using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden]);
    const { config } = await loadDense(fixtureDir(family), { layer: 0 });
    const plan = resolvePlan(4, { moeTpSize: 2, moeEpSize: 2 }, config);
    const sum = new Float32Array(expected.output.length);
    for (let rank = 0; rank < 4; rank++) {
      using layer = await MoELayer.fromPretrained(fixtureDir(family), { layer: 0, shard: shardForRank(plan, config, rank) });
      // Per-expert checkpoints: each rank reads about half the expert bytes (gpt-oss fuses its experts, so reads them all).
      if (family !== 'gpt_oss') expect(layer.checkpointBytesRead).toBeLessThan(0.75 * fullBytes);
      using result = layer.forward(x);
      ((await result.output.toArray()) as Float32Array).forEach((value, i) => (sum[i]! += value));
    }
    expect(relativeError(sum, expected.output)).toBeLessThanOrEqual(1e-5);
  });
});
