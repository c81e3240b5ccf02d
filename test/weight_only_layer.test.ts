// Weight-only layers on the CPU: mixtral_bf16 quantized at load to int8 (per channel) and int4
// (groups of 128) against transformers' output_int8 / output_int4_g128; gpt-oss's MXFP4 checkpoint
// as published against its output; the real bytes in weightBytes(); TP/EP shards that sum to the
// whole (groups kept whole); and every misuse, each with its code and a message naming the culprit.
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

import { randomHostWeights } from '../lib/bench/parallel_run';
import { readMoEConfig } from '../lib/checkpoint/load';
import { MoELayer, quantizeWeights, Tensor, type HostTensor, type MoEConfig, type MoEWeights } from '../lib/index';
import type { HostQuantized } from '../lib/model/config';
import { validateMoEConfig } from '../lib/model/validate_config';
import { resolvePlan, shardForRank } from '../lib/parallel/plan';
import { swigluConfig } from './helpers/configs';
import { expectRejects, expectThrows } from './helpers/errors';
import { copyQuantFixture, rewriteShards, editJson, quantFixtureDir, readQuantExpectation, relativeError, type QuantFixture } from './helpers/fixtures';

async function forwardOn(layer: MoELayer, name: QuantFixture): Promise<Float32Array> {
  const expected = await readQuantExpectation(name);
  using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden]);
  using result = layer.forward(x);
  return result.output.toFloat32Array();
}



describe('quantization at load to int8 and int4 (weight-only)', () => {
  const [E, H, I] = [8, 256, 384];

  it('mixtral_bf16 with quantize int8 computes output_int8 (one scale per output channel)', async () => {
    using layer = await MoELayer.fromPretrained(quantFixtureDir('mixtral_bf16'), { layer: 0, quantize: 'int8' });
    expect([layer.config.quantization, layer.config.quantizationGroupSize]).toEqual(['int8', 'channel']);
    const expected = await readQuantExpectation('mixtral_bf16');
    const output = await forwardOn(layer, 'mixtral_bf16');
    expect(relativeError(output, expected.tensors.output_int8!)).toBeLessThanOrEqual(1e-4);
    expect(relativeError(output, expected.tensors.output!)).toBeGreaterThan(1e-4);
    // Per expert: w13 [768, 256] and w2 [256, 384] bytes, one float32 scale per row.
    expect(layer.weightBytes().experts).toBe(E * (3 * H * I + (2 * I + H) * 4));
  });

  it('mixtral_bf16 with quantize int4 computes output_int4_g128 (groups of 128; bfloat16 compute keeps the same weights)', async () => {
    using layer = await MoELayer.fromPretrained(quantFixtureDir('mixtral_bf16'), { layer: 0, quantize: 'int4' });
    expect([layer.config.quantization, layer.config.quantizationGroupSize]).toEqual(['int4', 128]);
    const expected = await readQuantExpectation('mixtral_bf16');
    expect(relativeError(await forwardOn(layer, 'mixtral_bf16'), expected.tensors.output_int4_g128!)).toBeLessThanOrEqual(1e-4);
    // w13: K = 256 → 2 groups per row; w2: K = 384 → 3 groups per row.
    expect(layer.weightBytes().experts).toBe(E * ((3 * H * I) / 2 + (2 * I * 2 + H * 3) * 4));
    using bf16 = await MoELayer.fromPretrained(quantFixtureDir('mixtral_bf16'), { layer: 0, quantize: 'int4', dtype: 'bfloat16' });
    expect(bf16.weightBytes().experts).toBe(layer.weightBytes().experts);
    expect(relativeError(await forwardOn(bf16, 'mixtral_bf16'), expected.tensors.output_int4_g128!)).toBeLessThanOrEqual(2e-2);
  });

  it('groupSize 32 and per-channel int4 sit nearer / farther from the unquantized output than g128', async () => {
    const expected = await readQuantExpectation('mixtral_bf16');
    using g32 = await MoELayer.fromPretrained(quantFixtureDir('mixtral_bf16'), { layer: 0, quantize: 'int4', groupSize: 32 });
    using channel = await MoELayer.fromPretrained(quantFixtureDir('mixtral_bf16'), { layer: 0, quantize: 'int4', groupSize: 'channel' });
    const error = async (layer: MoELayer) => relativeError(await forwardOn(layer, 'mixtral_bf16'), expected.tensors.output!);
    const g128 = relativeError(expected.tensors.output_int4_g128!, expected.tensors.output!);
    expect(await error(g32)).toBeLessThan(g128);
    expect(await error(channel)).toBeGreaterThan(g128);
  });

  it('MoELayer.random and fromWeights quantize too; the shared expert and the router stay in the compute dtype', async () => {
    const config: MoEConfig = swigluConfig({ hidden: 64, intermediate: 96, experts: 4, topK: 2 }, { sharedExpert: { intermediateSize: 64, gated: false } });
    using layer = MoELayer.random(config, { quantize: 'int4', groupSize: 32 });
    expect([layer.config.quantization, layer.config.quantizationGroupSize]).toEqual(['int4', 32]);
    const host = await randomHostWeights({ name: 'test', description: 'test', config }, 'float32', 'cpu');
    using fromWeights = MoELayer.fromWeights(config, host, { quantize: 'int8' });
    const dense = MoELayer.fromWeights(config, host);
    const sharedBytes = 4 * (64 * 64 + 64 * 64);
    expect(fromWeights.weightBytes().total - fromWeights.weightBytes().experts).toBe(dense.weightBytes().total - dense.weightBytes().experts);
    expect(dense.weightBytes().total - dense.weightBytes().experts).toBeGreaterThanOrEqual(sharedBytes);
    dense.dispose();
    using x = Tensor.random([5, 64], { seed: 3 });
    using result = fromWeights.forward(x);
    expect((await result.output.toFloat32Array()).every(Number.isFinite)).toBe(true);
  });

  it('refuses a group size without int8/int4, a bad one, and quantizing an already quantized checkpoint', async () => {
    const config = swigluConfig({ hidden: 64, intermediate: 32, experts: 4, topK: 2 });
    expectThrows(() => MoELayer.random(config, { quantize: 'int4', groupSize: 48 }), 'E_INVALID_ARGUMENT',
      /^MoELayer\.random: options\.groupSize must be a positive multiple of 32 or 'channel', got 48$/);
    expectThrows(() => MoELayer.random(config, { groupSize: 64 }), 'E_INVALID_ARGUMENT', /^MoELayer\.random: options\.groupSize 64 goes with options\.quantize 'int8' or 'int4'$/);
    expectThrows(() => MoELayer.random(config, { quantize: 'fp8', groupSize: 64 }), 'E_INVALID_ARGUMENT', /options\.groupSize goes with quantize 'int8' or 'int4' \(fp8 has 128×128 blocks\)/);
    expectThrows(() => MoELayer.random({ ...config, quantization: 'fp8', quantizationGroupSize: 64 }), 'E_CONFIG',
      /^MoE config: quantizationGroupSize goes only with quantization int8 or int4, got 64 with "fp8"$/);
    // int4 packs two values of K per byte: w13's K is hiddenSize, w2's intermediateSize.
    expectThrows(() => validateMoEConfig({ ...swigluConfig({ hidden: 33, intermediate: 32, experts: 4, topK: 2 }), quantization: 'int4' }), 'E_CONFIG',
      /^MoE config: hiddenSize \(33\) is the K of the int4 experts' w13: int4 weights need an even K, got 33$/);
    expectThrows(() => validateMoEConfig({ ...swigluConfig({ hidden: 64, intermediate: 17, experts: 4, topK: 2 }), quantization: 'int4' }), 'E_CONFIG',
      /^MoE config: intermediateSize \(17\) is the K of the int4 experts' w2: int4 weights need an even K, got 17$/);
    expect(validateMoEConfig({ ...swigluConfig({ hidden: 33, intermediate: 17, experts: 4, topK: 2 }), quantization: 'int8' }).hiddenSize).toBe(33);
    await expectRejects(MoELayer.fromPretrained(quantFixtureDir('gpt_oss_mxfp4'), { layer: 0, quantize: 'int4' }), 'E_INVALID_ARGUMENT',
      /options\.quantize 'int4' asks to quantize weights that are already quantized \(mxfp4\)/);
    await expectRejects(MoELayer.fromPretrained(quantFixtureDir('qwen3_moe_fp8'), { layer: 0, quantize: 'int8' }), 'E_INVALID_ARGUMENT',
      /options\.quantize 'int8' asks to quantize weights that are already quantized \(fp8\)/);
  });
});

describe('gpt-oss MXFP4 as published', () => {
  it('gpt_oss_mxfp4 computes output (transformers\' dequantization, W4A16)', async () => {
    using layer = await MoELayer.fromPretrained(quantFixtureDir('gpt_oss_mxfp4'), { layer: 0 });
    expect(layer.config.quantization).toBe('mxfp4');
    const expected = await readQuantExpectation('gpt_oss_mxfp4');
    expect(relativeError(await forwardOn(layer, 'gpt_oss_mxfp4'), expected.tensors.output!)).toBeLessThanOrEqual(1e-4);
    // Per expert: w13 [256, 128] and w2 [128, 128] as 4-bit bytes, one e8m0 byte per 32 values.
    const [E, H, I] = [8, 128, 128];
    expect(layer.weightBytes().experts).toBe(E * ((3 * H * I) / 2 + (3 * H * I) / 32));
    using bf16 = await MoELayer.fromPretrained(quantFixtureDir('gpt_oss_mxfp4'), { layer: 0, dtype: 'bfloat16' });
    expect(relativeError(await forwardOn(bf16, 'gpt_oss_mxfp4'), expected.tensors.output!)).toBeLessThanOrEqual(2e-2);
  });

  it('EP2 and TP2 (groups of 32 stay whole) sum to the unsharded layer; EP ranks read only their experts', async () => {
    const dir = quantFixtureDir('gpt_oss_mxfp4');
    using whole = await MoELayer.fromPretrained(dir, { layer: 0 });
    const full = await forwardOn(whole, 'gpt_oss_mxfp4');
    const config = readMoEConfig(dir, 0);
    for (const [tp, ep] of [[2, 1], [1, 2], [2, 2]] as const) {
      const plan = resolvePlan(tp * ep, { moeTpSize: tp, moeEpSize: ep }, config);
      const sum = new Float64Array(full.length);
      for (let rank = 0; rank < tp * ep; rank++) {
        using layer = await MoELayer.fromPretrained(dir, { layer: 0, shard: shardForRank(plan, config, rank) });
        if (ep === 2) expect(layer.checkpointBytesRead).toBeLessThan(0.7 * whole.checkpointBytesRead);
        (await forwardOn(layer, 'gpt_oss_mxfp4')).forEach((value, i) => (sum[i]! += value));
      }
      expect(relativeError(sum, full), `tp${tp}×ep${ep}`).toBeLessThanOrEqual(1e-6);
    }
  });

  it('MoELayer.random draws random MXFP4 experts for an MXFP4 config (as the gpt-oss-20b bench preset does)', async () => {
    const config: MoEConfig = {
      ...swigluConfig({ hidden: 64, intermediate: 96, experts: 4, topK: 2 }),
      family: 'gpt_oss', activation: 'gptoss_swiglu', routerBias: true, expertBias: true, quantization: 'mxfp4',
    };
    using layer = MoELayer.random(config, { seed: 1 });
    expect(layer.config.quantization).toBe('mxfp4');
    expect(layer.weightBytes().experts).toBe(4 * ((3 * 64 * 96) / 2 + (3 * 64 * 96) / 32));
    using x = Tensor.random([3, 64], { seed: 2 });
    using result = layer.forward(x);
    const output = await result.output.toFloat32Array();
    expect(output.every(Number.isFinite) && output.some((v) => v !== 0)).toBe(true);
  });

  const cases: { name: string; prepare: (dir: string) => Promise<void> | void; code: string; message: RegExp }[] = [
    {
      name: 'scales that disagree with the blocks',
      prepare: (dir) => rewriteShards(dir, (name, tensor) => (name.endsWith('down_proj_scales') ? { ...tensor, shape: [8, 128, 2, 2] } : tensor)),
      code: 'E_CHECKPOINT',
      message: /tensor model\.layers\.0\.mlp\.experts\.down_proj_scales has shape \[8, 128, 2, 2\], expected \[8, 128, 4\] \(e8m0 scales, one per 32 values of the MXFP4 blocks/,
    },
    {
      name: 'blocks that are not 16 bytes of 32 values',
      prepare: (dir) => rewriteShards(dir, (name, tensor) => (name.endsWith('gate_up_proj_blocks') ? { ...tensor, shape: [8, 256, 8, 8] } : tensor)),
      code: 'E_CHECKPOINT',
      message: /gate_up_proj_blocks has shape \[8, 256, 8, 8\], expected \[8, 256, 4, 16\]/,
    },
    {
      name: 'an unknown quant_method',
      prepare: (dir) => editJson(path.join(dir, 'config.json'), (json) => { (json.quantization_config as Record<string, unknown>).quant_method = 'awq'; }),
      code: 'E_UNSUPPORTED_MODEL',
      message: /quantization_config\.quant_method "awq" is not supported \(supported: fp8, .*; mxfp4, gpt-oss's experts as published\)/,
    },
    {
      name: 'a hidden size that is no multiple of 32',
      prepare: (dir) => editJson(path.join(dir, 'config.json'), (json) => { json.hidden_size = 120; }),
      code: 'E_UNSUPPORTED_MODEL',
      message: /MXFP4 experts need hidden_size and intermediate_size to be multiples of 32, got 120 and 128/,
    },
  ];
  it.each(cases)('$name: $code', async ({ prepare, code, message }) => {
    const dir = copyQuantFixture('gpt_oss_mxfp4');
    await prepare(dir);
    await expectRejects(MoELayer.fromPretrained(dir, { layer: 0 }), code as never, message);
  });
});

describe('int8 / int4 layers under TP and EP (CPU shards)', () => {
  it('TP2, EP2 and TP2×EP2 shards sum to the unsharded layer, quantized at load or given int4 weights', async () => {
    const config: MoEConfig = swigluConfig({ hidden: 96, intermediate: 128, experts: 4, topK: 2 });
    const host = await randomHostWeights({ name: 'test', description: 'test', config }, 'float32', 'cpu');
    using whole = MoELayer.fromWeights(config, host, { quantize: 'int4', groupSize: 64 });
    using x = Tensor.random([7, 96], { seed: 5 });
    using wholeResult = whole.forward(x);
    const full = await wholeResult.output.toFloat32Array();
    const quantized: MoEConfig = { ...config, quantization: 'int4', quantizationGroupSize: 64 };
    const int4Host = async (matrix: HostTensor): Promise<HostQuantized> => {
      using dense = Tensor.fromArray(matrix.data, matrix.shape);
      using q = quantizeWeights(dense, 'int4', { groupSize: 64 });
      return {
        format: 'int4', groupSize: 64, data: { dtype: 'uint8', shape: [...q.data.shape], data: (await q.data.toArray()) as Uint8Array },
        scales: { dtype: 'float32', shape: [...q.scales.shape], data: (await q.scales.toArray()) as Float32Array },
      };
    };
    const dense = host as MoEWeights<HostTensor, never>;
    const int4Weights: MoEWeights<HostTensor> = { ...dense, w13: await int4Host(dense.w13), w2: await int4Host(dense.w2) };
    for (const [tp, ep] of [[2, 1], [1, 2], [2, 2]] as const) {
      const plan = resolvePlan(tp * ep, { moeTpSize: tp, moeEpSize: ep }, quantized);
      const sums = [new Float64Array(full.length), new Float64Array(full.length)];
      for (let rank = 0; rank < tp * ep; rank++) {
        const shard = shardForRank(plan, quantized, rank);
        using atLoad = MoELayer.fromWeights(config, host, { quantize: 'int4', groupSize: 64, shard });
        using given = MoELayer.fromWeights(quantized, int4Weights, { shard });
        for (const [index, layer] of [atLoad, given].entries()) {
          using result = layer.forward(x);
          (await result.output.toFloat32Array()).forEach((value, i) => (sums[index]![i]! += value));
        }
      }
      expect(relativeError(sums[0]!, full), `tp${tp}×ep${ep} quantized at load`).toBeLessThanOrEqual(1e-6);
      expect(relativeError(sums[1]!, full), `tp${tp}×ep${ep} given int4 weights`).toBeLessThanOrEqual(1e-6);
    }
  });

  it('refuses TP splits that would cut a group along the down projection\'s K, naming the sizes', () => {
    const mixtral = readMoEConfig(quantFixtureDir('mixtral_bf16'), 0);
    expectThrows(() => resolvePlan(2, { moeTpSize: 2 }, { ...mixtral, quantization: 'int8' }), 'E_INVALID_ARGUMENT',
      /^moeTpSize 2 would cut the int8 weights' per-channel scales \(.*\): each rank's share of the intermediate size \(384 \/ 2 = 192\) must be a multiple of 384$/);
    expectThrows(() => resolvePlan(2, { moeTpSize: 2 }, { ...mixtral, quantization: 'int4' }), 'E_INVALID_ARGUMENT',
      /^moeTpSize 2 would cut the int4 weights' groups of 128 along the down projection's K: each rank's share of the intermediate size \(384 \/ 2 = 192\) must be a multiple of 128$/);
    expect(resolvePlan(2, { moeTpSize: 2 }, { ...mixtral, quantization: 'int4', quantizationGroupSize: 64 }).moeTpSize).toBe(2);
    expect(resolvePlan(2, { moeEpSize: 2 }, { ...mixtral, quantization: 'int8' }).moeEpSize).toBe(2);
    const gptOss = readMoEConfig(quantFixtureDir('gpt_oss_mxfp4'), 0);
    expectThrows(() => resolvePlan(8, { moeTpSize: 8 }, gptOss), 'E_INVALID_ARGUMENT',
      /^moeTpSize 8 would cut the mxfp4 weights' groups of 32 along the down projection's K: each rank's share of the intermediate size \(128 \/ 8 = 16\) must be a multiple of 32$/);
  });
});
