// The fused MoE op (native/core/op_args.h, "Fused MoE"; lib/ops/fused_moe.ts) on one device: it
// gives the results of the separate ops, the layer takes it for a decode step where it may, and
// its arguments are checked. On the CPU the op runs the separate ops, so results are equal; the
// CUDA kernel may add each GEMM's terms in another order, so its outputs are compared within a
// bfloat16 tolerance and its routing (the router sums in linear()'s order) exactly.
import { expect, it } from 'vitest';

import { combine, groupedGemm, linear, MoELayer, permuteMaps, route, Tensor, type ForwardStage, type MoEConfig } from '../../lib/index';
import type { Device } from '../../lib/device';
import { forEachWeight, randomMoEWeights } from '../../lib/layer/moe_layer';
import { fusedMoe, type FusedMoeOptions, type FusedMoeResult, type FusedMoeWeights } from '../../lib/ops/fused_moe';
import { swigluConfig } from './configs';
import { expectThrows } from './errors';
import { fixtureDir, readExpectation, relativeError } from './fixtures';

/** The most (token, slot) pairs the CUDA fused kernel takes (native/cuda/fused_moe.cu, kMaxPairs). */
const FUSED_KERNEL_MAX_PAIRS = 64;

/** How close the fused op's output must come to the separate ops' (1: equal). */
export interface FusedTolerance {
  exact: boolean;
}

async function floats(tensor: Tensor): Promise<Float32Array> {
  using asFloat = tensor.to(tensor.device, 'float32');
  return (await asFloat.toArray()) as Float32Array;
}

/** The separate ops the fused op stands for: route → permuteMaps → groupedGemm ×2 → combine. */
export function separateOps(x: Tensor, weights: FusedMoeWeights, options: FusedMoeOptions): FusedMoeResult {
  const tokens = x.shape[0]!;
  const experts = weights.w13.shape[0]!;
  using logits = linear(x, weights.router, { bias: weights.routerBias, outDtype: 'float32' });
  const routed = route(logits, options.routing);
  const { expertOffsets, sourceToPermuted, permutedToSource } = permuteMaps(routed.topkIds, experts);
  try {
    using hidden = groupedGemm(x, weights.w13, expertOffsets, {
      gatherRows: permutedToSource, gatherDivisor: routed.topkIds.shape[1]!, bias: weights.w13Bias, activation: options.activation, maxRowsPerExpert: tokens,
    });
    using rows = groupedGemm(hidden, weights.w2, expertOffsets, { bias: weights.w2Bias, maxRowsPerExpert: tokens, outDtype: x.dtype as 'bfloat16' });
    return { ...routed, output: combine(rows, routed.topkWeights, sourceToPermuted) };
  } finally {
    for (const map of [expertOffsets, sourceToPermuted, permutedToSource]) map.dispose();
  }
}

export function disposeResult(result: FusedMoeResult): void {
  for (const tensor of [result.topkIds, result.topkWeights, result.expertCounts, result.output]) tensor.dispose();
}

export async function expectSameResults(fused: FusedMoeResult, separate: FusedMoeResult, tolerance: FusedTolerance): Promise<void> {
  expect(Array.from(await fused.topkIds.toArray())).toEqual(Array.from(await separate.topkIds.toArray()));
  expect(Array.from(await fused.topkWeights.toArray())).toEqual(Array.from(await separate.topkWeights.toArray()));
  expect(Array.from(await fused.expertCounts.toArray())).toEqual(Array.from(await separate.expertCounts.toArray()));
  const [ours, theirs] = await Promise.all([floats(fused.output), floats(separate.output)]);
  if (tolerance.exact) {
    expect(Array.from(ours)).toEqual(Array.from(theirs));
  } else {
    expect(relativeError(ours, theirs)).toBeLessThanOrEqual(1e-2);
  }
}

/**
 * Random layers of three routing rules, each in a shape of its own; `separate`: one the CUDA
 * backend runs as the separate ops too, so its results are equal on every device.
 */
const RANDOM_LAYERS: ReadonlyArray<readonly [string, MoEConfig, { separate: boolean }]> = [
  ['softmax top-k, 64 experts (Qwen3-like)', swigluConfig({ hidden: 256, intermediate: 128, experts: 64, topK: 8 }), { separate: false }],
  ['sigmoid with groups and a correction bias (DeepSeek-V3-like)', swigluConfig({ hidden: 128, intermediate: 64, experts: 32, topK: 4 }, {
    routing: { method: 'sigmoid_group_topk', topK: 4, renormalize: true, numGroups: 4, topkGroups: 2, scalingFactor: 2.5 },
  }), { separate: false }],
  ['top-k softmax with router and expert biases, gpt-oss SwiGLU', swigluConfig({ hidden: 96, intermediate: 48, experts: 16, topK: 4 }, {
    routing: { method: 'topk_softmax', topK: 4, renormalize: false, numGroups: 1, topkGroups: 1, scalingFactor: 1 },
    activation: 'gptoss_swiglu', routerBias: true, expertBias: true,
  }), { separate: false }],
  // Not 16-byte rows: the CUDA backend runs the separate ops.
  ['a hidden size of 100', swigluConfig({ hidden: 100, intermediate: 36, experts: 5, topK: 2 }), { separate: true }],
];

export function fusedArguments(config: MoEConfig, device: Device, seed: number) {
  const all = randomMoEWeights(config, { device, dtype: 'bfloat16', seed });
  const { router, routerBias, w13, w13Bias, w2, w2Bias, correctionBias } = all;
  const weights: FusedMoeWeights = { router, w13: w13 as Tensor, w2: w2 as Tensor, ...(routerBias && { routerBias }), ...(w13Bias && { w13Bias }), ...(w2Bias && { w2Bias }) };
  const options: FusedMoeOptions = {
    routing: { ...config.routing, ...(correctionBias && { correctionBias }) },
    activation: { kind: config.activation, alpha: config.activationAlpha, limit: config.activationLimit },
  };
  return { weights, options, [Symbol.dispose]: () => forEachWeight(all, (tensor) => tensor.dispose()) };
}

export function fusedMoeCases(device: Device, tolerance: FusedTolerance): void {
  it.each(RANDOM_LAYERS)('the op gives the separate ops\' results: %s, 1 to 9 tokens', async (_name, config, { separate }) => {
    using args = fusedArguments(config, device, 11);
    // 9 tokens × 8 slots is past the CUDA kernel's pairs: the separate ops run there.
    for (const tokens of [1, 2, 3, 9]) {
      using x = Tensor.random([tokens, config.hiddenSize], { dtype: 'bfloat16', device, seed: 20 + tokens });
      const fused = fusedMoe(x, args.weights, args.options);
      const reference = separateOps(x, args.weights, args.options);
      try {
        const everywhereSeparate = separate || tokens * config.routing.topK > FUSED_KERNEL_MAX_PAIRS;
        await expectSameResults(fused, reference, everywhereSeparate ? { exact: true } : tolerance);
      } finally {
        disposeResult(fused);
        disposeResult(reference);
      }
    }
  });

  it('a forward on 0 tokens through the op: empty results, every count 0', async () => {
    const config = RANDOM_LAYERS[0]![1];
    using args = fusedArguments(config, device, 3);
    using x = Tensor.empty([0, config.hiddenSize], { dtype: 'bfloat16', device });
    const result = fusedMoe(x, args.weights, args.options);
    try {
      expect(result.output.shape).toEqual([0, config.hiddenSize]);
      expect(Array.from(await result.expertCounts.toArray())).toEqual(new Array(config.numExperts).fill(0));
    } finally {
      disposeResult(result);
    }
  });

  it.each(['mixtral', 'qwen3_moe', 'gpt_oss', 'deepseek_v3'] as const)(
    'the %s fixture in bfloat16: one token runs as the fused op where the layer has no shared expert, with the same results',
    async (family) => {
      const expected = await readExpectation(family);
      using layer = await MoELayer.fromPretrained(fixtureDir(family), { layer: 0, device, dtype: 'bfloat16' });
      using x = Tensor.fromArray(expected.input.subarray(0, expected.hidden), [1, expected.hidden], { device, dtype: 'bfloat16' });
      const stages: ForwardStage[] = [];
      using fused = layer.forward(x, { profiler: { mark: (stage) => stages.push(stage) } });
      expect(stages).toEqual(layer.config.sharedExpert ? ['router', 'routing', 'permute', 'expert_up', 'expert_down', 'shared', 'combine'] : ['fused']);
      // Logits given: the separate ops.
      using logits = layer.routerLogits(x);
      using separate = layer.forward(x, { routerLogits: logits });
      await expectSameResults(fused, separate, tolerance);
      // Two tokens take the separate ops.
      using two = Tensor.fromArray(expected.input.subarray(0, 2 * expected.hidden), [2, expected.hidden], { device, dtype: 'bfloat16' });
      stages.length = 0;
      using pair = layer.forward(two, { profiler: { mark: (stage) => stages.push(stage) } });
      expect(stages).not.toContain('fused');
    },
  );

  it('checks its arguments, naming the bad one', () => {
    const config = RANDOM_LAYERS[0]![1];
    using args = fusedArguments(config, device, 5);
    const { weights, options } = args;
    using x = Tensor.random([1, config.hiddenSize], { dtype: 'bfloat16', device, seed: 1 });
    using asFloat32 = x.to(device, 'float32');
    using narrow = Tensor.random([1, config.hiddenSize - 8], { dtype: 'bfloat16', device, seed: 1 });
    using routerF16 = weights.router.to(device, 'float16');
    using shortW2 = Tensor.empty([config.numExperts, config.hiddenSize, 8], { dtype: 'bfloat16', device });
    expectThrows(() => fusedMoe(asFloat32, weights, options), 'E_DTYPE', /^fusedMoe: input must be bfloat16 or float16, got float32$/);
    expectThrows(() => fusedMoe(narrow, weights, options), 'E_SHAPE', /^fusedMoe: w13 must have shape \[\*, \*, 248\]/);
    expectThrows(() => fusedMoe(x, { ...weights, router: routerF16 }, options), 'E_DTYPE', /^fusedMoe: router must be bfloat16, got float16$/);
    expectThrows(() => fusedMoe(x, { ...weights, w2: shortW2 }, options), 'E_SHAPE', /^fusedMoe: w2 must have shape \[64, 256, 128\], got \[64, 256, 8\]$/);
    expectThrows(() => fusedMoe(x, weights, { routing: options.routing } as FusedMoeOptions), 'E_INVALID_ARGUMENT', /^fusedMoe: options\.activation is required$/);
    expectThrows(() => fusedMoe(x, weights, { ...options, routing: { ...options.routing, topK: 65 } }), 'E_INVALID_ARGUMENT', /^fusedMoe: topK 65 is larger than the expert count 64$/);
    expectThrows(() => fusedMoe(x, weights, { ...options, activation: { kind: 'tanh' as never } }), 'E_INVALID_ARGUMENT', /^fusedMoe: unknown activation "tanh"/);
  });
}
