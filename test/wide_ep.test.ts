// Wide Expert Parallel (parallel.dispatch 'all_to_all', lib/layer/wide_ep.ts) on the CPU backend:
// ranks simulated in one process exchange rows through a loopback all-to-all
// (test/helpers/loopback_group.ts), each bringing its own tokens; each rank's output must equal
// the unsharded layer's on those tokens, however uneven the tokens and the routing.
import { describe, expect, it } from 'vitest';

import { readMoEConfig } from '../lib/checkpoint/load';
import { MoELayer, Tensor } from '../lib/index';
import { resolvePlan, shardForRank } from '../lib/parallel/plan';
import { expectRejects, expectThrows } from './helpers/errors';
import { fixtureDir, quantFixtureDir, relativeError } from './helpers/fixtures';
import { LoopbackHub } from './helpers/loopback_group';

/**
 * Every rank's forwardAllToAll on its own tokens (tokens[r] of them; `hot` > 0 pushes every
 * token's hidden state towards one direction, which concentrates routing on a few experts),
 * against the unsharded layer's forward on the same tokens.
 */
async function compare(dir: string, tokens: readonly number[], hot = 0, hub = new LoopbackHub(tokens.length)): Promise<number[]> {
  const config = readMoEConfig(dir, 0);
  const ranks = tokens.length;
  const plan = resolvePlan(ranks, { moeEpSize: ranks, dispatch: 'all_to_all' }, config);
  using whole = await MoELayer.fromPretrained(dir, { layer: 0 });
  const layers = await Promise.all(tokens.map((_, rank) => MoELayer.fromPretrained(dir, { layer: 0, shard: shardForRank(plan, config, rank) })));
  const inputs = tokens.map((count, rank) => {
    const x = Tensor.random([count, config.hiddenSize], { seed: 10 + rank }).toFloat32Array();
    return x.then((values) => Tensor.fromArray(values.map((value, i) => value + (i % config.hiddenSize === 0 ? hot : 0)), [count, config.hiddenSize]));
  });
  const xs = await Promise.all(inputs);
  try {
    const results = await Promise.all(layers.map((layer, rank) => layer.forwardAllToAll(xs[rank]!, { group: hub.groups[rank]! })));
    const errors: number[] = [];
    for (let rank = 0; rank < ranks; rank++) {
      using expected = whole.forward(xs[rank]!);
      using result = results[rank]!;
      expect(Array.from(await result.topkIds.toArray())).toEqual(Array.from(await expected.topkIds.toArray()));
      const output = await result.output.toFloat32Array();
      const reference = await expected.output.toFloat32Array();
      expect(output.length).toBe(reference.length);
      errors.push(reference.length === 0 ? 0 : relativeError(output, reference));
    }
    return errors;
  } finally {
    for (const layer of layers) layer.dispose();
    for (const x of xs) x.dispose();
  }
}

describe("wide Expert Parallel: parallel.dispatch 'all_to_all'", () => {
  it('Mixtral fixture, EP2, ranks with 13 and 5 tokens: each rank gets the unsharded layer\'s output for its tokens', async () => {
    for (const error of await compare(fixtureDir('mixtral'), [13, 5])) expect(error).toBeLessThanOrEqual(1e-6);
  });

  it('Mixtral fixture, EP4 with uneven tokens (7, 0, 3, 12) and skewed routing', async () => {
    for (const error of await compare(fixtureDir('mixtral'), [7, 0, 3, 12], 4)) expect(error).toBeLessThanOrEqual(1e-6);
  });

  it('Mixtral fixture, EP4 with one token in all: ranks that receive no rows (top-2 reaches at most two of four)', async () => {
    for (const error of await compare(fixtureDir('mixtral'), [1, 0, 0, 0])) expect(error).toBeLessThanOrEqual(1e-6);
  });

  it('DeepSeek-V3 fixture (shared expert whole on every rank, grouped routing), EP2', async () => {
    for (const error of await compare(fixtureDir('deepseek_v3'), [6, 11])) expect(error).toBeLessThanOrEqual(1e-6);
  });

  it('DeepSeek-V3 FP8 fixture (block-scale experts), EP2: rows travel as FP8 with their scales, quantized once by the sender as the owner\'s permute would', async () => {
    const hub = new LoopbackHub(2);
    for (const error of await compare(quantFixtureDir('deepseek_v3_fp8'), [10, 7], 0, hub)) expect(error).toBeLessThanOrEqual(1e-6);
    // Out: FP8 rows and their float32 scales, one per 128 values, every pair's row once; the
    // 16-bit rows never travel.
    const config = readMoEConfig(quantFixtureDir('deepseek_v3_fp8'), 0);
    const pairs = (10 + 7) * config.routing.topK;
    const rowsOf = (dtype: string, width: number) =>
      hub.sent.filter((call) => call.dtype === dtype && call.shape[1] === width).reduce((total, call) => total + call.shape[0]!, 0);
    expect(rowsOf('float8_e4m3', config.hiddenSize)).toBe(pairs);
    expect(rowsOf('float32', Math.ceil(config.hiddenSize / 128))).toBe(pairs);
    expect(hub.sent.filter((call) => call.dtype === 'float8_e4m3').length).toBe(2);  // one call per rank
  });

  it('gpt-oss MXFP4 fixture (quantized experts, biases), EP2', async () => {
    for (const error of await compare(quantFixtureDir('gpt_oss_mxfp4'), [9, 4])) expect(error).toBeLessThanOrEqual(1e-6);
  });

  it('MoELayer.random draws a shard\'s part only (what the wide-EP bench gives each rank), and refuses a placement', async () => {
    const config = readMoEConfig(fixtureDir('mixtral'), 0);
    using whole = MoELayer.random(config, { seed: 3 });
    const plan = resolvePlan(2, { moeEpSize: 2, dispatch: 'all_to_all' }, config);
    using part = MoELayer.random(config, { seed: 3, shard: shardForRank(plan, config, 1) });
    expect(part.weightBytes().experts * 2).toBe(whole.weightBytes().experts);
    using tp = MoELayer.random(config, { seed: 3, shard: shardForRank(resolvePlan(2, { moeTpSize: 2 }, config), config, 1) });
    expect(tp.weightBytes().experts * 2).toBe(whole.weightBytes().experts);
    const placement = { ranks: 2, slotsPerRank: 5, slotExperts: [0, 1, 2, 3, 0, 4, 5, 6, 7, 1] };
    const placed = shardForRank(resolvePlan(2, { moeEpSize: 2, placement }, config), config, 0);
    expectThrows(() => MoELayer.random(config, { shard: placed }), 'E_INVALID_ARGUMENT', /a placement's replicas must hold the same weights/);
    expectThrows(() => MoELayer.random(config, { group: {} as never }), 'E_INVALID_ARGUMENT', /group must be a ProcessGroup/);
  });

  it('names what is wrong', async () => {
    const dir = fixtureDir('mixtral');
    const config = readMoEConfig(dir, 0);
    expectThrows(() => resolvePlan(4, { moeTpSize: 2, moeEpSize: 2, dispatch: 'all_to_all' }, config), 'E_INVALID_ARGUMENT', /'all_to_all' is Expert Parallel alone: moeTpSize must be 1 \(got 2\)/);
    expectThrows(() => resolvePlan(2, { moeEpSize: 2, dispatch: 'broadcast' as never }, config), 'E_INVALID_ARGUMENT', /parallel\.dispatch must be 'all_reduce' or 'all_to_all', got "broadcast"/);
    const plan = resolvePlan(2, { moeEpSize: 2, dispatch: 'all_to_all' }, config);
    using dispatched = await MoELayer.fromPretrained(dir, { layer: 0, shard: shardForRank(plan, config, 0) });
    using x = Tensor.random([2, config.hiddenSize], { seed: 1 });
    expectThrows(() => dispatched.forward(x), 'E_INVALID_ARGUMENT', /use await layer\.forwardAllToAll\(x\)/);
    await expectRejects(dispatched.forwardAllToAll(x), 'E_INVALID_ARGUMENT', /the layer has no group: pass options\.group/);
    using plain = await MoELayer.fromPretrained(dir, { layer: 0 });
    await expectRejects(plain.forwardAllToAll(x, { group: new LoopbackHub(1).groups[0]! }), 'E_INVALID_ARGUMENT', /not built with parallel\.dispatch 'all_to_all'/);
    for (const junk of [{}, { rank: 0, worldSize: 2 }, { rank: 2, worldSize: 2, allToAll: () => {} }, 'group'] as never[]) {
      await expectRejects(dispatched.forwardAllToAll(x, { group: junk }), 'E_INVALID_ARGUMENT', /options\.group must have an integer rank in \[0, worldSize\) and an allToAll method/);
    }
    // A group whose ranks do not match the layer's experts.
    await expectRejects(dispatched.forwardAllToAll(x, { group: new LoopbackHub(4).groups[0]! }), 'E_INVALID_ARGUMENT', /rank 0 of 4 must hold experts \[0, 2\), but holds \[0, 4\)/);
  });
});
