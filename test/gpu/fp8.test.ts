// FP8 experts on cuda:0: the published FP8 checkpoints and quantization at load against
// transformers' W8A8 outputs, the FP8 ops against the CPU backend (the reference), a captured FP8
// forward against a plain one, TP/EP shards against the whole layer. gpu_check.sh runs this file
// under every forced GEMM family.
import { describe, expect, it } from 'vitest';

import { randomHostWeights } from '../../lib/bench/parallel_run';
import { groupedGemm, linear, MoELayer, permute, quantizeWeights, Tensor, type Fp8Rows, type MoEConfig } from '../../lib/index';
import { swigluConfig } from '../helpers/configs';
import { SHARD_PLANS, sumOfShards } from '../helpers/shards';
import { readQuantExpectation, quantFixtureDir, relativeError, type QuantFixture } from '../helpers/fixtures';
import { GPU, HAS_GPU } from './gpu';

/** Relative error allowed against the W8A8 reference (the bar for bf16 on a GPU). */
const BF16_TOLERANCE = 1.5e-2;
/**
 * In float32 the products are exact, but the intermediate activations are quantized to e4m3 again
 * before the second GEMM, so a value that a different summation order moves across an e4m3
 * rounding boundary lands one e4m3 step (6%) away. The auto and small_m paths sum as the reference
 * does (about 1e-7 measured on an H200); mma sums in another order (1.6e-3) and sm90's FP8 wgmma
 * keeps fewer accumulator bits within a 128-value block (3.7e-3). A wrong scale costs 1e-1 or more.
 */
const FLOAT32_TOLERANCE = 5e-3;

const CASES: Array<[QuantFixture, 'output' | 'output_fp8', boolean]> = [
  ['deepseek_v3_fp8', 'output', false],
  ['qwen3_moe_fp8', 'output', false],
  ['mixtral_bf16', 'output_fp8', true],
];

async function fixtureError(name: QuantFixture, reference: string, quantizeAtLoad: boolean, dtype: 'bfloat16' | 'float32'): Promise<number> {
  const expected = await readQuantExpectation(name);
  using layer = await MoELayer.fromPretrained(quantFixtureDir(name), { layer: 0, device: GPU, dtype, ...(quantizeAtLoad && { quantize: 'fp8' as const }) });
  expect(layer.config.quantization).toBe('fp8');
  using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden], { device: GPU, dtype });
  using result = layer.forward(x);
  return relativeError(await result.output.toFloat32Array(), expected.tensors[reference] as Float32Array);
}

describe.skipIf(!HAS_GPU)('FP8 experts on cuda:0', () => {
  it.each(CASES)('%s (%s) in bfloat16 within 1.5e-2 and in float32 within 5e-3 of the W8A8 reference', async (name, reference, atLoad) => {
    const bf16 = await fixtureError(name, reference, atLoad, 'bfloat16');
    const f32 = await fixtureError(name, reference, atLoad, 'float32');
    console.log(`${name} on ${GPU}: relative error bfloat16 ${bf16.toExponential(2)}, float32 ${f32.toExponential(2)}`);
    expect(bf16).toBeLessThan(BF16_TOLERANCE);
    expect(f32).toBeLessThan(FLOAT32_TOLERANCE);
  });

  it.each([[1, 96, 200, 3], [37, 256, 384, 4], [300, 130, 300, 8]])(
    'FP8 ops over %i rows (H %i, N %i, %i experts, one empty) match the CPU backend', async (rows, hidden, outFeatures, experts) => {
      const counts = Array.from({ length: experts }, (_, e) => (e === 1 ? 0 : Math.floor(rows / (experts - 1)) + (e === 0 ? rows % (experts - 1) : 0)));
      const offsets = Int32Array.from([0, ...counts.map((_, e) => counts.slice(0, e + 1).reduce((a, b) => a + b, 0))]);
      const results: Float32Array[][] = [];
      for (const device of ['cpu', GPU] as const) {
        using x = Tensor.random([rows, hidden], { seed: 5, device });
        using ids = Tensor.fromArray(Int32Array.from({ length: rows }, (_, r) => r % experts), [rows, 1], { device });
        using w = quantizeWeights(Tensor.random([experts, outFeatures, hidden], { seed: 6, scale: 0.1, device }), 'fp8_block128');
        using expertOffsets = Tensor.fromArray(offsets, [experts + 1], { device });
        const sorted = permute(x, ids, experts, { quantize: 'fp8' });
        const quantizedRows = sorted.permuted as Fp8Rows;
        // The FP8 rows sorted again with their scales (wide EP's owner): copied as they are.
        using reversedIds = Tensor.fromArray(Int32Array.from({ length: rows }, (_, r) => (experts - 1 - (r % experts))), [rows, 1], { device });
        const resorted = permute(quantizedRows, reversedIds, experts);
        using plain = groupedGemm(x, w, expertOffsets, { outDtype: 'float32' });
        using fromRows = groupedGemm(quantizedRows, w, expertOffsets, { outDtype: 'float32' });
        const fp8Out = groupedGemm(x, w, expertOffsets, { outDtype: 'float8_e4m3', activation: { kind: 'swiglu' } }) as Fp8Rows;
        using denseWeight = quantizeWeights(Tensor.random([outFeatures, hidden], { seed: 7, scale: 0.1, device }), 'fp8_block128');
        using dense = linear(x, denseWeight);
        results.push([
          await quantizedRows.toFloat32Array(), await plain.toFloat32Array(), await fromRows.toFloat32Array(),
          await fp8Out.toFloat32Array(), await dense.toFloat32Array(), await w.data.toFloat32Array(), await resorted.permuted.toFloat32Array(),
        ]);
        for (const made of Object.values(resorted)) made.dispose();
        quantizedRows.dispose();
        fp8Out.dispose();
        for (const tensor of [sorted.expertOffsets, sorted.sourceToPermuted, sorted.permutedToSource]) tensor.dispose();
      }
      const [cpu, gpu] = results as [Float32Array[], Float32Array[]];
      const names = ['permuted FP8 rows', 'groupedGemm (float input)', 'groupedGemm (FP8 rows)', 'groupedGemm → SwiGLU → FP8', 'linear', 'quantizeWeights', 'FP8 rows permuted again'];
      const exact = new Set(['permuted FP8 rows', 'quantizeWeights', 'FP8 rows permuted again']);
      names.forEach((what, i) => {
        const error = relativeError(gpu[i]!, cpu[i]!);
        const bound = exact.has(what) ? 0 : what.endsWith('FP8') ? 2e-2 : 1e-3;
        expect(error, `${what}: relative error ${error}`).toBeLessThanOrEqual(bound);
      });
    });

  it('a captured FP8 forward replays the plain one', async () => {
    const expected = await readQuantExpectation('deepseek_v3_fp8');
    using layer = await MoELayer.fromPretrained(quantFixtureDir('deepseek_v3_fp8'), { layer: 0, device: GPU, dtype: 'bfloat16' });
    using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden], { device: GPU, dtype: 'bfloat16' });
    using plain = layer.forward(x);
    using captured = layer.capture(expected.tokens);
    const outputs = captured.replay(x);
    expect(Array.from(await outputs.output.toArray())).toEqual(Array.from(await plain.output.toArray()));
  });

  it('TP2, EP2 and TP2×EP2 shards of an FP8 layer on cuda:0 sum to the unsharded layer (float32)', async () => {
    // K = 200 leaves a partial 128-block; the shards cut I = 256 into whole blocks.
    const config: MoEConfig = swigluConfig({ hidden: 200, intermediate: 256, experts: 4, topK: 2 }, { sharedExpert: { intermediateSize: 512, gated: false } });
    const host = await randomHostWeights({ name: 'test', description: 'test', config }, 'float32', 'cpu');
    const options = { quantize: 'fp8' as const, device: GPU, dtype: 'float32' as const };
    using x = Tensor.random([33, 200], { seed: 5, device: GPU });
    using whole = MoELayer.fromWeights(config, host, options);
    using wholeResult = whole.forward(x);
    const full = await wholeResult.output.toFloat32Array();
    const quantized = { ...config, quantization: 'fp8' as const };
    for (const [tp, ep] of SHARD_PLANS) {
      const sum = await sumOfShards(config, host, options, quantized, tp, ep, x);
      expect(relativeError(sum, full), `tp${tp}×ep${ep}`).toBeLessThanOrEqual(1e-5);
    }
  });
});
