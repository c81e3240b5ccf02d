import { describe, expect, it } from 'vitest';

import { MoELayer, MoekitError, Tensor, type HostTensor, type MoEConfig, type MoEWeights } from '../lib/index';
import * as path from 'node:path';

import { swigluConfig } from './helpers/configs';
import { expectRejects, expectThrows } from './helpers/errors';
import { FIXTURE_FAMILIES, copyFixture, editJson, fixtureDir, idSets, readExpectation, relativeError } from './helpers/fixtures';

describe.each(FIXTURE_FAMILIES)('MoELayer on the %s fixture (CPU, float32)', (family) => {
  it('matches transformers: routing, weights and output', async () => {
    const expected = await readExpectation(family);
    using layer = await MoELayer.fromPretrained(fixtureDir(family), { layer: 0 });
    expect(layer.config.family).toBe(family);
    using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden]);

    using logits = layer.routerLogits(x);
    expect(relativeError(await logits.toArray() as Float32Array, expected.routerLogits)).toBeLessThanOrEqual(1e-5);

    using result = layer.forward(x);
    const output = (await result.output.toArray()) as Float32Array;
    const ids = (await result.topkIds.toArray()) as Int32Array;
    const weights = (await result.topkWeights.toArray()) as Float32Array;
    expect(idSets(ids, expected.topK)).toEqual(idSets(expected.topkIds, expected.topK));
    expect(relativeError(output, expected.output)).toBeLessThanOrEqual(1e-5);

    // Weights per (token, expert) pair, whatever the order among the k.
    const weightOf = (idArray: Int32Array, weightArray: Float32Array) => {
      const byPair = new Map<string, number>();
      idArray.forEach((id, flat) => byPair.set(`${Math.floor(flat / expected.topK)}:${id}`, weightArray[flat]!));
      return byPair;
    };
    const ours = weightOf(ids, weights);
    for (const [pair, weight] of weightOf(expected.topkIds, expected.topkWeights)) {
      expect(ours.get(pair)).toBeCloseTo(weight, 5);
    }

    const counts = (await result.expertCounts.toArray()) as Int32Array;
    expect(counts.reduce((sum, count) => sum + count, 0)).toBe(expected.tokens * expected.topK);
  });

  it('gives the same output from precomputed router logits', async () => {
    const expected = await readExpectation(family);
    using layer = await MoELayer.fromPretrained(fixtureDir(family), { layer: 0 });
    using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden]);
    using logits = Tensor.fromArray(expected.routerLogits, [expected.tokens, expected.experts]);
    using result = layer.forward(x, { routerLogits: logits });
    expect(relativeError((await result.output.toArray()) as Float32Array, expected.output)).toBeLessThanOrEqual(1e-5);
  });

  it('runs in bfloat16 within bfloat16 tolerance of the float32 result', async () => {
    const expected = await readExpectation(family);
    using layer = await MoELayer.fromPretrained(fixtureDir(family), { layer: 0, dtype: 'bfloat16' });
    using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden]);
    using result = layer.forward(x);
    expect(result.output.dtype).toBe('bfloat16');
    expect(relativeError(await result.output.toFloat32Array(), expected.output)).toBeLessThanOrEqual(2e-2);
  });
});

const tinyConfig = swigluConfig({ hidden: 100, intermediate: 36, experts: 5, topK: 2 });

describe('MoELayer inputs and lifetime', () => {
  it('handles one token and many tokens with odd sizes', async () => {
    using layer = MoELayer.random(tinyConfig, { seed: 3 });
    for (const tokens of [1, 257]) {
      using x = Tensor.random([tokens, 100], { seed: tokens });
      using result = layer.forward(x);
      expect(result.output.shape).toEqual([tokens, 100]);
      const output = (await result.output.toArray()) as Float32Array;
      expect(output.every(Number.isFinite)).toBe(true);
    }
  });

  it('rejects an input of the wrong width, naming the hidden size', () => {
    using layer = MoELayer.random(tinyConfig);
    using x = Tensor.random([3, 99]);
    expect(() => layer.forward(x)).toThrow(MoekitError);
    expect(() => layer.forward(x)).toThrow(/hidden size|\[tokens, 100\]/);
  });

  it('rejects router logits of the wrong shape', () => {
    using layer = MoELayer.random(tinyConfig);
    using x = Tensor.random([3, 100]);
    using logits = Tensor.random([3, 4]);
    expect(() => layer.forward(x, { routerLogits: logits })).toThrow(/routerLogits must have shape \[3, 5\]/);
  });

  it('rejects configs with top-k above the expert count', () => {
    const bad = { ...tinyConfig, routing: { ...tinyConfig.routing, topK: 6 } };
    expect(() => MoELayer.random(bad)).toThrow(/topK \(6\) is larger than numExperts \(5\)/);
  });

  it('rejects a sharedExpert that is neither null nor an object with a typed error', () => {
    const bad = { ...tinyConfig, sharedExpert: undefined } as unknown as MoEConfig;
    expect(() => MoELayer.random(bad)).toThrow(MoekitError);
    expect(() => MoELayer.random(bad)).toThrow(/sharedExpert must be null or \{ intermediateSize, gated \}, got undefined/);
  });

  it('cannot run after dispose()', () => {
    const layer = MoELayer.random(tinyConfig);
    layer.dispose();
    using x = Tensor.random([1, 100]);
    expect(() => layer.forward(x)).toThrow(/after dispose/);
  });
});

describe('group-limited routing that cannot fill top-k is refused when a layer is built', () => {
  // 16 experts in 4 groups; keeping 2 groups leaves 8 experts for a top-k of 9.
  const grouped = swigluConfig({ hidden: 32, intermediate: 16, experts: 16, topK: 9 }, {
    routing: { method: 'sigmoid_group_topk', topK: 9, renormalize: true, numGroups: 4, topkGroups: 2, scalingFactor: 2.5 },
  });
  const message = /^MoE config: routing\.topK \(9\) is larger than the 8 experts that routing\.topkGroups \(2\) of routing\.numGroups \(4\) leave eligible/;

  it('MoELayer.random → E_CONFIG naming the fields', () => {
    expectThrows(() => MoELayer.random(grouped), 'E_CONFIG', message);
  });

  it('MoELayer.fromWeights → E_CONFIG before the weights are looked at', () => {
    expectThrows(() => MoELayer.fromWeights(grouped, {} as never), 'E_CONFIG', message);
  });

  it('accepts top-k equal to the eligible count', () => {
    using layer = MoELayer.random({ ...grouped, routing: { ...grouped.routing, topK: 8 } });
    expect(layer.config.routing.topK).toBe(8);
  });

  it('MoELayer.fromPretrained of a DeepSeek-V3 config.json → E_CONFIG naming num_experts_per_tok, topk_group and n_group', async () => {
    // The fixture: 16 routed experts in n_group 4, topk_group 2: 8 eligible.
    const dir = copyFixture('deepseek_v3');
    editJson(path.join(dir, 'config.json'), (config) => {
      config.num_experts_per_tok = 9;
    });
    await expectRejects(MoELayer.fromPretrained(dir, { layer: 0 }), 'E_CONFIG',
      /config\.json: num_experts_per_tok \(9\) is larger than the 8 experts that topk_group \(2\) of n_group \(4\) leave eligible \(topk_group × n_routed_experts \/ n_group = 2 × 16 \/ 4\)/);
  });
});

describe('a forward on 0 tokens returns empty results of the right shapes', () => {
  const H = 24;
  const configs: Array<[string, MoEConfig]> = [
    ['softmax top-k, SwiGLU', swigluConfig({ hidden: H, intermediate: 16, experts: 6, topK: 2 })],
    ['DeepSeek-V3-like: group-limited sigmoid routing, ungated shared expert', swigluConfig({ hidden: H, intermediate: 16, experts: 8, topK: 3 }, {
      routing: { method: 'sigmoid_group_topk', topK: 3, renormalize: true, numGroups: 4, topkGroups: 2, scalingFactor: 2.5 },
      sharedExpert: { intermediateSize: 32, gated: false },
    })],
    ['Qwen2-MoE-like: gated shared expert', swigluConfig({ hidden: H, intermediate: 16, experts: 6, topK: 2 }, { sharedExpert: { intermediateSize: 16, gated: true } })],
    ['gpt-oss-like: biases, top-k then softmax, clamped SwiGLU', swigluConfig({ hidden: H, intermediate: 16, experts: 6, topK: 2 }, {
      routing: { method: 'topk_softmax', topK: 2, renormalize: false, numGroups: 1, topkGroups: 1, scalingFactor: 1 },
      activation: 'gptoss_swiglu', routerBias: true, expertBias: true,
    })],
  ];

  it.each(configs)('%s: [0, H] output, [0, K] ids and weights, [E] zero counts', async (_, config) => {
    using layer = MoELayer.random(config, { seed: 5 });
    using x = Tensor.empty([0, H]);
    using result = layer.forward(x);
    const K = config.routing.topK;
    expect([result.output.shape, result.topkIds.shape, result.topkWeights.shape, result.expertCounts.shape]).toEqual([[0, H], [0, K], [0, K], [config.numExperts]]);
    expect([result.output.dtype, result.topkIds.dtype, result.topkWeights.dtype, result.expertCounts.dtype]).toEqual(['float32', 'int32', 'float32', 'int32']);
    expect(await result.output.toArray()).toEqual(new Float32Array(0));
    expect(await result.topkIds.toArray()).toEqual(new Int32Array(0));
    expect(await result.topkWeights.toArray()).toEqual(new Float32Array(0));
    expect(await result.expertCounts.toArray()).toEqual(new Int32Array(config.numExperts));
  });

  it('in bfloat16, and with router logits given', async () => {
    using layer = MoELayer.random(configs[0]![1], { seed: 5, dtype: 'bfloat16' });
    using x = Tensor.empty([0, H], { dtype: 'bfloat16' });
    using logits = Tensor.empty([0, 6]);
    using result = layer.forward(x, { routerLogits: logits });
    expect(result.output.shape).toEqual([0, H]);
    expect(result.output.dtype).toBe('bfloat16');
    expect(await result.output.toFloat32Array()).toEqual(new Float32Array(0));
    expect(await result.expertCounts.toArray()).toEqual(new Int32Array(6));
  });

  it('the layer then runs tokens as before', async () => {
    using layer = MoELayer.random(configs[0]![1], { seed: 5 });
    using empty = Tensor.empty([0, H]);
    layer.forward(empty).dispose();
    using x = Tensor.random([3, H], { seed: 1 });
    using result = layer.forward(x);
    expect(Array.from(await result.expertCounts.toArray()).reduce((sum, count) => sum + count, 0)).toBe(6);
  });

  it('capture(0) is refused, naming tokens', () => {
    using layer = MoELayer.random(configs[0]![1]);
    expectThrows(() => layer.capture(0), 'E_INVALID_ARGUMENT', /^capture: tokens must be a positive integer, got 0$/);
  });
});

describe('MoELayer arguments as JavaScript callers pass them', () => {
  const config = swigluConfig({ hidden: 16, intermediate: 8, experts: 4, topK: 2 });
  const host = (shape: number[], seed: number): HostTensor => ({
    dtype: 'float32', shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(seed * 1000 + i) * 0.3),
  });
  const weights: MoEWeights = { router: host([4, 16], 1), w13: host([4, 16, 16], 2), w2: host([4, 16, 8], 3) };

  async function outputOf(layer: MoELayer, options?: null): Promise<number[]> {
    using x = Tensor.random([3, 16], { seed: 9 });
    using result = layer.forward(x, options);
    return Array.from(await result.output.toArray());
  }

  it('random, fromWeights and forward take undefined or null options as the defaults', async () => {
    using byDefault = MoELayer.random(config);
    using fromNull = MoELayer.random(config, null);
    expect(fromNull.device).toBe('cpu');
    expect(fromNull.dtype).toBe('float32');
    const expected = await outputOf(byDefault);
    expect(await outputOf(fromNull)).toEqual(expected);
    expect(await outputOf(byDefault, null)).toEqual(expected);
    using given = MoELayer.fromWeights(config, weights);
    using givenNull = MoELayer.fromWeights(config, weights, null);
    expect(await outputOf(givenNull, null)).toEqual(await outputOf(given));
  });

  it('options that are not an object are E_INVALID_ARGUMENT naming the call', () => {
    expectThrows(() => MoELayer.random(config, 7 as never), 'E_INVALID_ARGUMENT', /^MoELayer\.random: options must be an object, got 7$/);
    expectThrows(() => MoELayer.fromWeights(config, weights, 'cpu' as never), 'E_INVALID_ARGUMENT', /^MoELayer\.fromWeights: options must be an object, got "cpu"$/);
    using layer = MoELayer.random(config);
    using x = Tensor.random([1, 16]);
    expectThrows(() => layer.forward(x, true as never), 'E_INVALID_ARGUMENT', /^MoELayer\.forward: options must be an object, got true$/);
    expectThrows(() => layer.forward(x, { profiler: {} as never }), 'E_INVALID_ARGUMENT', /^MoELayer\.forward: options\.profiler must have a mark\(stage\) method$/);
  });

  it('fromPretrained needs its options and their layer, and a path', async () => {
    const dir = fixtureDir('mixtral');
    await expectRejects(MoELayer.fromPretrained(dir, undefined as never), 'E_INVALID_ARGUMENT', /^MoELayer\.fromPretrained: options must be given \(with layer\), got undefined$/);
    await expectRejects(MoELayer.fromPretrained(dir, null as never), 'E_INVALID_ARGUMENT', /^MoELayer\.fromPretrained: options must be given \(with layer\), got null$/);
    await expectRejects(MoELayer.fromPretrained(dir, 0 as never), 'E_INVALID_ARGUMENT', /^MoELayer\.fromPretrained: options must be an object \(with layer\), got 0$/);
    await expectRejects(MoELayer.fromPretrained(dir, {} as never), 'E_INVALID_ARGUMENT', /^MoELayer\.fromPretrained: options\.layer is required$/);
    await expectRejects(MoELayer.fromPretrained(undefined as never, { layer: 0 }), 'E_INVALID_ARGUMENT', /^the checkpoint folder must be a path, got undefined$/);
    await expectRejects(MoELayer.fromPretrained(dir, { layer: 0, parallel: 2 as never, group: {} as never }), 'E_INVALID_ARGUMENT', /^group must be a ProcessGroup/);
  });

  it('fromWeights needs weights, each { dtype, shape, data }', () => {
    expectThrows(() => MoELayer.fromWeights(config, null as never), 'E_INVALID_ARGUMENT', /^MoELayer\.fromWeights: weights must be given, got null$/);
    expectThrows(() => MoELayer.fromWeights(config, { ...weights, w2: weights.w2.data } as never), 'E_CHECKPOINT', /^MoE weights: w2 must be \{ dtype, shape, data \}, got a Float32Array$/);
    expectThrows(() => MoELayer.fromWeights(config, { ...weights, routerBias: 1 } as never), 'E_CHECKPOINT', /^MoE weights: routerBias must be \{ dtype, shape, data \}, got 1$/);
    expectThrows(() => MoELayer.fromWeights(config, { ...weights, shared: 'none' } as never), 'E_CHECKPOINT', /^MoE weights: shared must be \{ w13, w2, gate\? \}, got "none"$/);
  });

  it('a shard given by hand is checked against the config', () => {
    const shard = { rank: 0, tpRank: 0, epRank: 0, experts: { first: 2, count: 2 }, intermediate: { first: 0, count: 8 }, sharedIntermediate: null, ownsOutputBias: true };
    using half = MoELayer.fromWeights(config, weights, { shard });
    expect(half.weightBytes().experts).toBe(2 * (16 * 16 + 16 * 8) * 4);
    expectThrows(() => MoELayer.fromWeights(config, weights, { shard: { ...shard, experts: { first: 3, count: 2 } } }), 'E_INVALID_ARGUMENT',
      /^shard\.experts \[3, 5\) is not a non-empty range of \[0, 4\)$/);
    expectThrows(() => MoELayer.fromWeights(config, weights, { shard: { ...shard, intermediate: undefined } as never }), 'E_INVALID_ARGUMENT', /^shard\.intermediate is required$/);
    expectThrows(() => MoELayer.fromWeights(config, weights, { shard: 1 as never }), 'E_INVALID_ARGUMENT', /^shard must be an object \(with experts, intermediate, ownsOutputBias\), got 1$/);
  });
});
