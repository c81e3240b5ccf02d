// Weight-only experts on cuda:0 (issue 13): gpt-oss's published MXFP4 and int8 / int4 quantization
// at load against transformers' references, random weight-only layers against the CPU backend,
// the ops on their own, a captured weight-only forward against a plain one, and TP/EP shards
// against the whole layer. gpu_check.sh runs this file under every forced GEMM family
// (MOEKIT_GEMM=sm90|small_m|mma; sm90 with MOEKIT_WQ_PREFILL=in_loop), so each family's weight-only
// path (small_m's in-register dequantization, sm90's and mma's in-loop kernels) meets the same bar.
import { describe, expect, it } from 'vitest';

import { randomHostWeights } from '../../lib/bench/parallel_run';
import { groupedGemm, linear, MoELayer, QuantizedWeights, quantizeWeights, Tensor, type MoEConfig } from '../../lib/index';
import { swigluConfig } from '../helpers/configs';
import { SHARD_PLANS, sumOfShards } from '../helpers/shards';
import { quantFixtureDir, readQuantExpectation, relativeError, type QuantFixture } from '../helpers/fixtures';
import { GPU, HAS_GPU } from './gpu';

/** Relative error allowed against the references (the bar for bf16 on a GPU). */
const BF16_TOLERANCE = 1.5e-2;

type Quantize = { quantize?: 'int8' | 'int4'; groupSize?: number | 'channel' };

// [fixture, reference output, quantization at load, the layer's expected config.quantization]
const CASES: Array<[QuantFixture, string, Quantize, string]> = [
  ['gpt_oss_mxfp4', 'output', {}, 'mxfp4'],
  ['mixtral_bf16', 'output_int8', { quantize: 'int8' }, 'int8'],
  ['mixtral_bf16', 'output_int4_g128', { quantize: 'int4', groupSize: 128 }, 'int4'],
];

async function fixtureError(fixture: QuantFixture, reference: string, quantize: Quantize, quantization: string): Promise<number> {
  const expected = await readQuantExpectation(fixture);
  using layer = await MoELayer.fromPretrained(quantFixtureDir(fixture), { layer: 0, device: GPU, dtype: 'bfloat16', ...quantize });
  expect(layer.config.quantization).toBe(quantization);
  using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden], { device: GPU, dtype: 'bfloat16' });
  using result = layer.forward(x);
  return relativeError(await result.output.toFloat32Array(), expected.tensors[reference] as Float32Array);
}

const mixtralLike = swigluConfig({ hidden: 512, intermediate: 384, experts: 8, topK: 2 });

describe.skipIf(!HAS_GPU)('weight-only experts on cuda:0', () => {
  it.each(CASES)('%s (%s) in bfloat16 within 1.5e-2 of the reference', async (name, reference, quantize, quantization) => {
    const error = await fixtureError(name, reference, quantize, quantization);
    console.log(`${name} ${reference} on ${GPU} (MOEKIT_GEMM=${process.env.MOEKIT_GEMM ?? 'auto'}): relative error ${error.toExponential(2)}`);
    expect(error).toBeLessThan(BF16_TOLERANCE);
  });

  it.each([
    ['int8', 'channel', 1], ['int8', 'channel', 4096],
    ['int4', 128, 1], ['int4', 128, 4096], ['int4', 32, 17], ['int4', 'channel', 300],
  ] as const)('a random %s layer (group %s) over %i tokens matches the CPU backend', async (quantize, groupSize, tokens) => {
    // Both layers quantize the same bfloat16 weights, so their packed weights are the same bits.
    using cpuLayer = MoELayer.random(mixtralLike, { device: 'cpu', dtype: 'bfloat16', seed: 3, quantize, groupSize });
    using gpuLayer = MoELayer.random(mixtralLike, { device: GPU, dtype: 'bfloat16', seed: 3, quantize, groupSize });
    expect(gpuLayer.config.quantization).toBe(quantize);
    using xCpu = Tensor.random([tokens, mixtralLike.hiddenSize], { device: 'cpu', dtype: 'bfloat16', seed: 9 });
    using xGpu = Tensor.random([tokens, mixtralLike.hiddenSize], { device: GPU, dtype: 'bfloat16', seed: 9 });
    using expected = cpuLayer.forward(xCpu);
    using actual = gpuLayer.forward(xGpu);
    const error = relativeError(await actual.output.toFloat32Array(), await expected.output.toFloat32Array());
    expect(error, `relative error ${error}`).toBeLessThan(BF16_TOLERANCE);
  });

  it.each([[1, 96, 208, 3], [37, 256, 384, 4], [300, 160, 96, 8]])(
    'weight-only ops over %i rows (K %i, N %i, %i experts, one empty) match the CPU backend', async (rows, depth, outFeatures, experts) => {
      const counts = Array.from({ length: experts }, (_, e) => (e === 1 ? 0 : Math.floor(rows / (experts - 1)) + (e === 0 ? rows % (experts - 1) : 0)));
      const offsets = Int32Array.from([0, ...counts.map((_, e) => counts.slice(0, e + 1).reduce((a, b) => a + b, 0))]);
      const results: Float32Array[][] = [];
      for (const device of ['cpu', GPU] as const) {
        using x = Tensor.random([rows, depth], { seed: 5, device, dtype: 'bfloat16' });
        using expertOffsets = Tensor.fromArray(offsets, [experts + 1], { device });
        using source = Tensor.random([experts, outFeatures, depth], { seed: 6, scale: 0.1, device });
        using int8 = quantizeWeights(source, 'int8', { groupSize: 'channel' });
        using int4 = quantizeWeights(source, 'int4', { groupSize: 32 });
        // MXFP4 as published: random bytes, e8m0 scales near 2^0.
        const blocks = Uint8Array.from({ length: experts * outFeatures * depth / 2 }, (_, i) => (i * 2654435761) >>> 24);
        const scales = Uint8Array.from({ length: experts * outFeatures * depth / 32 }, (_, i) => 122 + (i % 6));
        using mxfp4 = new QuantizedWeights({
          format: 'mxfp4',
          data: Tensor.fromArray(blocks, [experts, outFeatures, depth / 2], { device, dtype: 'uint8' }),
          scales: Tensor.fromArray(scales, [experts, outFeatures, depth / 32], { device, dtype: 'uint8' }),
        });
        // Packed bytes compare as numbers (toFloat32Array is for float tensors).
        const bytes = async (t: Tensor): Promise<Float32Array> => Float32Array.from((await t.toArray()) as Uint8Array);
        const outputs: Float32Array[] = [await bytes(int8.data), await bytes(int4.data), await int4.scales.toFloat32Array()];
        for (const w of [int8, int4, mxfp4]) {
          using plain = groupedGemm(x, w, expertOffsets, { outDtype: 'float32' });
          using gated = groupedGemm(x, w, expertOffsets, { outDtype: 'float32', activation: { kind: 'swiglu' } });
          outputs.push(await plain.toFloat32Array(), await gated.toFloat32Array());
        }
        using denseWeight = quantizeWeights(Tensor.random([outFeatures, depth], { seed: 7, scale: 0.1, device }), 'int4', { groupSize: 128 });
        using dense = linear(x, denseWeight);
        outputs.push(await dense.toFloat32Array());
        results.push(outputs);
      }
      const [cpu, gpu] = results as [Float32Array[], Float32Array[]];
      const names = ['quantizeWeights int8', 'quantizeWeights int4', 'int4 scales',
        'int8 groupedGemm', 'int8 → SwiGLU', 'int4 groupedGemm', 'int4 → SwiGLU', 'mxfp4 groupedGemm', 'mxfp4 → SwiGLU', 'int4 linear'];
      names.forEach((what, i) => {
        const error = relativeError(gpu[i]!, cpu[i]!);
        // The quantizer is bit for bit; the GEMMs compute in bfloat16 on the GPU.
        const bound = what.startsWith('quantizeWeights') || what.endsWith('scales') ? 0 : BF16_TOLERANCE;
        expect(error, `${what}: relative error ${error}`).toBeLessThanOrEqual(bound);
      });
    });

  it.each([1, 64])('a captured weight-only forward (%i tokens) replays the plain one', async (tokens) => {
    using layer = MoELayer.random(mixtralLike, { device: GPU, dtype: 'bfloat16', seed: 8, quantize: 'int4', groupSize: 128 });
    using captured = layer.capture(tokens);
    for (let step = 0; step < 3; step++) {
      using x = Tensor.random([tokens, mixtralLike.hiddenSize], { device: GPU, dtype: 'bfloat16', seed: 200 + step });
      using plain = layer.forward(x);
      const outputs = captured.replay(x);
      expect(Array.from(await outputs.output.toArray())).toEqual(Array.from(await plain.output.toArray()));
    }
  });

  it.each([
    ['float32', 9, 1e-5],      // the dense fallback (no 16-bit kernel takes float32 input)
    ['bfloat16', 600, 1e-2],   // 300 rows per expert: sm90's in-loop kernel on Hopper; each shard rounds to bfloat16
  ] as const)('int4 TP2, EP2 and TP2×EP2 shards on cuda:0 sum to the unsharded layer (%s, %i tokens)', async (dtype, tokens, tolerance) => {
    const config: MoEConfig = swigluConfig({ hidden: 256, intermediate: 256, experts: 4, topK: 2 });
    const host = await randomHostWeights({ name: 'test', description: 'test', config }, 'float32', 'cpu');
    const options = { quantize: 'int4' as const, groupSize: 64, device: GPU, dtype };
    using x = Tensor.random([tokens, config.hiddenSize], { seed: 5, device: GPU, dtype });
    using whole = MoELayer.fromWeights(config, host, options);
    using wholeResult = whole.forward(x);
    const full = await wholeResult.output.toFloat32Array();
    const quantized: MoEConfig = { ...config, quantization: 'int4', quantizationGroupSize: 64 };
    for (const [tp, ep] of SHARD_PLANS) {
      const sum = await sumOfShards(config, host, options, quantized, tp, ep, x);
      expect(relativeError(sum, full), `${dtype} tp${tp}×ep${ep}`).toBeLessThanOrEqual(tolerance);
    }
  });

  it('a captured MXFP4 forward of gpt-oss replays the plain one', async () => {
    const fixture: QuantFixture = 'gpt_oss_mxfp4';
    const expected = await readQuantExpectation(fixture);
    using layer = await MoELayer.fromPretrained(quantFixtureDir(fixture), { layer: 0, device: GPU, dtype: 'bfloat16' });
    using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden], { device: GPU, dtype: 'bfloat16' });
    using plain = layer.forward(x);
    using captured = layer.capture(expected.tokens);
    const outputs = captured.replay(x);
    expect(Array.from(await outputs.output.toArray())).toEqual(Array.from(await plain.output.toArray()));
  });
});
