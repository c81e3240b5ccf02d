// FP8 layers on the CPU: the published FP8 checkpoints (../shared/fixtures/hf-moe-quant) through
// MoELayer.fromPretrained, against transformers' W8A8 output (and clearly apart from its W8A16
// output, so the tests see the activation quantization); quantization at load against output_fp8;
// the fused forward against the same ops run unfused; every malformed FP8 checkpoint and misuse,
// each with its code and a message naming the culprit; TP/EP shards that sum to the whole.
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

import { randomHostWeights } from '../lib/bench/parallel_run';
import { loadMoECheckpoint, readMoEConfig } from '../lib/checkpoint/load';
import {
  activation, combine, groupedGemm, linear, MoELayer, permute, quantizeWeights, route, Tensor, type HostTensor, type MoEConfig, type MoEWeights,
} from '../lib/index';
import { decodeHalf } from '../lib/dtype';
import { isQuantized, type HostQuantized } from '../lib/model/config';
import { checkShard, resolvePlan, shardForRank } from '../lib/parallel/plan';
import { swigluConfig } from './helpers/configs';
import { expectRejects, expectThrows } from './helpers/errors';
import { copyQuantFixture, rewriteShards, editJson, idSets, quantFixtureDir, readQuantExpectation, relativeError, type QuantFixture } from './helpers/fixtures';

const INDEX = 'model.safetensors.index.json';

/** The layer's output on the fixture's input. */
async function forwardOn(layer: MoELayer, name: QuantFixture): Promise<{ output: Float32Array; ids: Int32Array }> {
  const expected = await readQuantExpectation(name);
  using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden]);
  using result = layer.forward(x);
  return { output: await result.output.toFloat32Array(), ids: (await result.topkIds.toArray()) as Int32Array };
}



/** bfloat16 bits of float32 values, rounded to nearest even. */
function toBfloat16(values: Float32Array): Uint16Array {
  const words = new Uint32Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  return Uint16Array.from(words, (word) => (word + 0x7fff + ((word >>> 16) & 1)) >>> 16);
}

const SCALE = 'model.layers.0.mlp.experts.3.down_proj.weight_scale_inv';

describe.each(['deepseek_v3_fp8', 'qwen3_moe_fp8'] as const)('the published FP8 checkpoint %s', (name) => {
  it('loads FP8 experts (and DeepSeek-V3\'s FP8 shared expert) and computes W8A8: within 2e-3 of output, clearly apart from output_w8a16', async () => {
    using layer = await MoELayer.fromPretrained(quantFixtureDir(name), { layer: 0 });
    expect(layer.config.quantization).toBe('fp8');
    expect(layer.config.sharedExpert).toEqual(name === 'deepseek_v3_fp8' ? { intermediateSize: 128, gated: false } : null);
    const expected = await readQuantExpectation(name);
    const { output, ids } = await forwardOn(layer, name);
    const w8a8 = relativeError(output, expected.tensors.output!);
    const w8a16 = relativeError(output, expected.tensors.output_w8a16!);
    expect(w8a8).toBeLessThanOrEqual(2e-3);
    expect(w8a16).toBeGreaterThan(1e-2);
    expect(w8a16).toBeGreaterThan(20 * w8a8);
    expect(idSets(ids, 4)).toEqual(idSets(expected.tensors.topk_ids!, 4));
  });

  it('counts real bytes: one per FP8 weight plus the float32 block scales, the 16-bit router as converted', async () => {
    using layer = await MoELayer.fromPretrained(quantFixtureDir(name), { layer: 0 });
    const [E, H, I] = [16, 256, 128];
    // Per expert: w13 [256, 256] and w2 [256, 128] bytes, scales [2, 2] and [2, 1] float32.
    const experts = E * (2 * I * H + H * I + (4 + 2) * 4);
    const router = E * H * 4;
    const shared = name === 'deepseek_v3_fp8' ? 2 * I * H + H * I + (4 + 2) * 4 : 0;
    const correctionBias = name === 'deepseek_v3_fp8' ? E * 4 : 0;
    expect(layer.weightBytes()).toEqual({ experts, total: experts + router + shared + correctionBias });
  });

  it('reads BF16 scales as they occur in the wild, as the float32 values they hold', async () => {
    const dir = copyQuantFixture(name);
    await rewriteShards(dir, (tensor, stored) => {
      if (!tensor.endsWith('_scale_inv')) return stored;
      return { dtype: 'BF16', shape: stored.shape, data: toBfloat16(stored.data as Float32Array) };
    });
    using fromBf16 = await MoELayer.fromPretrained(dir, { layer: 0 });
    // The same weights with their float32 scales rounded to bfloat16 on the host.
    const { config, weights } = await loadMoECheckpoint(quantFixtureDir(name), { layer: 0 });
    const rounded = (matrix: HostTensor | HostQuantized): HostQuantized => {
      if (!isQuantized(matrix)) throw new Error('expected FP8 weights');
      return { ...matrix, scales: { dtype: 'float32', shape: matrix.scales.shape, data: decodeHalf(toBfloat16(matrix.scales.data as Float32Array), 'bfloat16') } };
    };
    const shared = weights.shared && { w13: rounded(weights.shared.w13), w2: rounded(weights.shared.w2) };
    using fromHost = MoELayer.fromWeights(config, { ...weights, w13: rounded(weights.w13), w2: rounded(weights.w2), ...(shared && { shared }) });
    const viaBf16 = (await forwardOn(fromBf16, name)).output;
    expect(Array.from(viaBf16)).toEqual(Array.from((await forwardOn(fromHost, name)).output));
    // bfloat16 moves each scale by up to 2^-9, and the output by about 1%: the scales were read, not ignored.
    const expected = await readQuantExpectation(name);
    expect(relativeError(viaBf16, expected.tensors.output!)).toBeGreaterThan(1e-3);
  });

  it('moves to another compute dtype keeping its FP8 experts (router and activations convert)', async () => {
    using layer = await MoELayer.fromPretrained(quantFixtureDir(name), { layer: 0 });
    using bf16 = layer.to('cpu', 'bfloat16');
    expect([bf16.dtype, bf16.config.quantization]).toEqual(['bfloat16', 'fp8']);
    expect(bf16.weightBytes().experts).toBe(layer.weightBytes().experts);
    const expected = await readQuantExpectation(name);
    const { output } = await forwardOn(bf16, name);
    expect(relativeError(output, expected.tensors.output!)).toBeLessThan(3e-2);
  });

  it('refuses to quantize what is already quantized', async () => {
    await expectRejects(MoELayer.fromPretrained(quantFixtureDir(name), { layer: 0, quantize: 'fp8' }), 'E_INVALID_ARGUMENT',
      /^MoELayer\.fromPretrained: options\.quantize 'fp8' asks to quantize weights that are already quantized \(fp8\); leave quantize out to use them as they are$/);
  });
});

describe('quantization at load', () => {
  it('mixtral_bf16 with quantize fp8 computes output_fp8 (128×128 blocks of the BF16 weights, W8A8)', async () => {
    using layer = await MoELayer.fromPretrained(quantFixtureDir('mixtral_bf16'), { layer: 0, quantize: 'fp8' });
    expect(layer.config.quantization).toBe('fp8');
    const expected = await readQuantExpectation('mixtral_bf16');
    const { output } = await forwardOn(layer, 'mixtral_bf16');
    expect(relativeError(output, expected.tensors.output_fp8!)).toBeLessThanOrEqual(2e-3);
    expect(relativeError(output, expected.tensors.output!)).toBeGreaterThan(1e-2);
    const [E, H, I] = [8, 256, 384];
    // Per expert: w13 [768, 256] and w2 [256, 384] bytes, scales [6, 2] and [2, 3] float32.
    expect(layer.weightBytes().experts).toBe(E * (3 * H * I + (12 + 6) * 4));
    using dense = await MoELayer.fromPretrained(quantFixtureDir('mixtral_bf16'), { layer: 0 });
    expect(dense.config.quantization).toBeNull();
    expect(relativeError((await forwardOn(dense, 'mixtral_bf16')).output, expected.tensors.output!)).toBeLessThanOrEqual(1e-5);
  });

  it('quantizes from the stored values whatever the compute dtype: bfloat16 activations, the same FP8 weights', async () => {
    using f32 = await MoELayer.fromPretrained(quantFixtureDir('mixtral_bf16'), { layer: 0, quantize: 'fp8' });
    using bf16 = await MoELayer.fromPretrained(quantFixtureDir('mixtral_bf16'), { layer: 0, quantize: 'fp8', dtype: 'bfloat16' });
    expect(bf16.weightBytes().experts).toBe(f32.weightBytes().experts);
    const expected = await readQuantExpectation('mixtral_bf16');
    expect(relativeError((await forwardOn(bf16, 'mixtral_bf16')).output, expected.tensors.output_fp8!)).toBeLessThan(2e-2);
  });

  it('MoELayer.random with quantize fp8 quantizes the random weights it draws, as fromWeights does', async () => {
    const config = swigluConfig({ hidden: 200, intermediate: 150, experts: 6, topK: 2 }, { sharedExpert: { intermediateSize: 100, gated: true } });
    using random = MoELayer.random(config, { quantize: 'fp8' });
    const host = await randomHostWeights({ name: 'test', description: 'test', config }, 'float32', 'cpu');
    using fromWeights = MoELayer.fromWeights(config, host, { quantize: 'fp8' });
    expect(random.config.quantization).toBe('fp8');
    expect(random.weightBytes()).toEqual(fromWeights.weightBytes());
    for (const tokens of [0, 1, 37]) {
      using x = Tensor.random([tokens, 200], { seed: 3 });
      using a = random.forward(x);
      using b = fromWeights.forward(x);
      expect(Array.from(await a.output.toArray())).toEqual(Array.from(await b.output.toArray()));
      expect(a.output.shape).toEqual([tokens, 200]);
    }
  });

  it('the fused forward (FP8 rows out of permute and the first GEMM) equals the ops run unfused, each GEMM quantizing its own input', async () => {
    // K and N no multiples of 128, and a shared expert (its down projection quantizes its input too).
    const config = swigluConfig({ hidden: 200, intermediate: 150, experts: 6, topK: 2 }, { sharedExpert: { intermediateSize: 100, gated: true } });
    const host = await randomHostWeights({ name: 'test', description: 'test', config }, 'float32', 'cpu');
    using layer = MoELayer.fromWeights(config, host, { quantize: 'fp8' });
    const upload = (tensor: HostTensor) => Tensor.fromArray(tensor.data, tensor.shape, { dtype: tensor.dtype });
    const dense = host as MoEWeights<HostTensor, never>;
    using router = upload(dense.router);
    using w13Dense = upload(dense.w13);
    using w2Dense = upload(dense.w2);
    using sharedW13Dense = upload(dense.shared!.w13);
    using sharedW2Dense = upload(dense.shared!.w2);
    using sharedGate = upload(dense.shared!.gate!);
    using w13 = quantizeWeights(w13Dense, 'fp8_block128');
    using w2 = quantizeWeights(w2Dense, 'fp8_block128');
    using sharedW13 = quantizeWeights(sharedW13Dense, 'fp8_block128');
    using sharedW2 = quantizeWeights(sharedW2Dense, 'fp8_block128');
    for (const tokens of [1, 41]) {
      using x = Tensor.random([tokens, 200], { seed: tokens });
      using fused = layer.forward(x);
      using logits = linear(x, router, { outDtype: 'float32' });
      const routed = route(logits, config.routing);
      const sorted = permute(x, routed.topkIds, 6);
      using hidden = groupedGemm(sorted.permuted, w13, sorted.expertOffsets, { activation: { kind: 'swiglu' } });
      using expertOutput = groupedGemm(hidden, w2, sorted.expertOffsets);
      using sharedHidden = linear(x, sharedW13);
      using sharedActivated = activation(sharedHidden, 'swiglu');
      using sharedOutput = linear(sharedActivated, sharedW2);
      using gateLogits = linear(x, sharedGate, { outDtype: 'float32' });
      using unfused = combine(expertOutput, routed.topkWeights, sorted.sourceToPermuted, { shared: sharedOutput, sharedGateLogits: gateLogits });
      expect(Array.from(await fused.output.toArray())).toEqual(Array.from(await unfused.toArray()));
      for (const tensor of [...Object.values(routed), ...Object.values(sorted)]) tensor.dispose();
    }
  });

  it('refuses an unknown quantization, and dense weights that a config calls quantized', async () => {
    const config = swigluConfig({ hidden: 64, intermediate: 32, experts: 4, topK: 2 });
    expectThrows(() => MoELayer.random(config, { quantize: 'nf4' as never }), 'E_INVALID_ARGUMENT', /^MoELayer\.random: options\.quantize must be one of fp8, int8, int4, got "nf4"$/);
    expectThrows(() => MoELayer.random({ ...config, quantization: 'nf4' as never }), 'E_CONFIG', /^MoE config: quantization must be null or one of fp8, int8, int4, mxfp4, got "nf4"$/);
    expectThrows(() => MoELayer.random({ ...config, quantization: 'fp8' }), 'E_INVALID_ARGUMENT', /random weights are drawn dense, so ask for options\.quantize 'fp8' instead/);
    const host = await randomHostWeights({ name: 'test', description: 'test', config }, 'float32', 'cpu');
    expectThrows(() => MoELayer.fromWeights({ ...config, quantization: 'fp8' }, host), 'E_CHECKPOINT',
      /^MoE weights: w13 is dense but config\.quantization is fp8 \(to quantize dense weights, leave config\.quantization out and pass options\.quantize\)$/);
    await expectRejects(MoELayer.fromPretrained(quantFixtureDir('mixtral_bf16'), { layer: 0, quantize: 'FP8' as never }), 'E_INVALID_ARGUMENT', /options\.quantize must be one of fp8, int8, int4, got "FP8"/);
  });
});

describe('malformed FP8 checkpoints', () => {
  const cases: { name: string; fixture: QuantFixture; prepare(dir: string): Promise<void> | void; code: 'E_CHECKPOINT' | 'E_UNSUPPORTED_MODEL' | 'E_CONFIG'; message: RegExp }[] = [
    {
      name: 'scales of the wrong shape',
      fixture: 'qwen3_moe_fp8',
      prepare: (dir) => rewriteShards(dir, (tensor, stored) => (tensor === SCALE ? { dtype: 'F32', shape: [1, 2], data: stored.data as Float32Array } : stored)),
      code: 'E_CHECKPOINT',
      message: /model-0000\d-of-00002\.safetensors: tensor model\.layers\.0\.mlp\.experts\.3\.down_proj\.weight_scale_inv has shape \[1, 2\], expected \[2, 1\] \(one scale per 128×128 block of the FP8 weight model\.layers\.0\.mlp\.experts\.3\.down_proj\.weight \[256, 128\]\)$/,
    },
    {
      name: 'an FP8 weight without its scales',
      fixture: 'deepseek_v3_fp8',
      prepare: (dir) => editJson(path.join(dir, INDEX), (index) => {
        delete (index.weight_map as Record<string, string>)['model.layers.0.mlp.shared_experts.up_proj.weight_scale_inv'];
      }),
      code: 'E_CHECKPOINT',
      message: /deepseek_v3_fp8: missing tensor model\.layers\.0\.mlp\.shared_experts\.up_proj\.weight_scale_inv \(one scale per 128×128 block of the FP8 weight model\.layers\.0\.mlp\.shared_experts\.up_proj\.weight \[128, 256\]\)$/,
    },
    {
      name: 'a weight_block_size other than [128, 128]',
      fixture: 'qwen3_moe_fp8',
      prepare: (dir) => editJson(path.join(dir, 'config.json'), (config) => {
        (config.quantization_config as Record<string, unknown>).weight_block_size = [64, 64];
      }),
      code: 'E_UNSUPPORTED_MODEL',
      message: /config\.json: quantization_config\.weight_block_size \[64, 64\] is not supported \(FP8 weights are read with one scale per 128×128 block: \[128, 128\]\)$/,
    },
    {
      name: 'an unknown quant_method',
      fixture: 'qwen3_moe_fp8',
      prepare: (dir) => editJson(path.join(dir, 'config.json'), (config) => {
        config.quantization_config = { quant_method: 'awq', bits: 4 };
      }),
      code: 'E_UNSUPPORTED_MODEL',
      message: /config\.json: quantization_config\.quant_method "awq" is not supported \(supported: fp8, the FP8 block-scale layout of DeepSeek-V3 and Qwen3-FP8; mxfp4, gpt-oss's experts as published\)$/,
    },
    {
      name: 'static activation scales',
      fixture: 'deepseek_v3_fp8',
      prepare: (dir) => editJson(path.join(dir, 'config.json'), (config) => {
        (config.quantization_config as Record<string, unknown>).activation_scheme = 'static';
      }),
      code: 'E_UNSUPPORTED_MODEL',
      message: /quantization_config\.activation_scheme "static" is not supported \(activations are quantized dynamically, per token per 128 channels: "dynamic"\)$/,
    },
    {
      name: 'a quantization_config that is no object',
      fixture: 'deepseek_v3_fp8',
      prepare: (dir) => editJson(path.join(dir, 'config.json'), (config) => {
        config.quantization_config = 'fp8';
      }),
      code: 'E_CONFIG',
      message: /config\.json: quantization_config must be an object, got "fp8"$/,
    },
    {
      name: 'an expert weight stored BF16 in an FP8 checkpoint',
      fixture: 'qwen3_moe_fp8',
      prepare: (dir) => rewriteShards(dir, (tensor, stored) => (tensor === 'model.layers.0.mlp.experts.5.gate_proj.weight'
        ? { dtype: 'BF16', shape: stored.shape, data: new Uint16Array(stored.data.length) } : stored)),
      code: 'E_CHECKPOINT',
      message: /tensor model\.layers\.0\.mlp\.experts\.5\.gate_proj\.weight is BF16; config\.json's quantization_config says fp8, so expert weights must be F8_E4M3$/,
    },
    {
      name: 'F8_E4M3 weights without a quantization_config',
      fixture: 'qwen3_moe_fp8',
      prepare: (dir) => editJson(path.join(dir, 'config.json'), (config) => {
        delete config.quantization_config;
      }),
      code: 'E_CHECKPOINT',
      message: /tensor model\.layers\.0\.mlp\.experts\.0\.gate_proj\.weight is F8_E4M3; weights must be F32, F16 or BF16 \(an FP8 checkpoint says so in config\.json: quantization_config with quant_method fp8\)$/,
    },
    {
      name: 'FP8 gate and up projections whose rows do not stack in whole 128-blocks',
      fixture: 'qwen3_moe_fp8',
      prepare: (dir) => editJson(path.join(dir, 'config.json'), (config) => {
        config.moe_intermediate_size = 96;
      }),
      code: 'E_UNSUPPORTED_MODEL',
      message: /^FP8 experts need moe_intermediate_size to be a multiple of 128 \(gate and up are stacked into one matrix whose 128-row blocks may not straddle them\), got 96$/,
    },
  ];

  it.each(cases)('$name: $code', async ({ fixture, prepare, code, message }) => {
    const dir = copyQuantFixture(fixture);
    await prepare(dir);
    await expectRejects(MoELayer.fromPretrained(dir, { layer: 0 }), code, message);
  });
});

describe('FP8 layers under TP and EP (CPU shards)', () => {
  it('EP2 on qwen3_moe_fp8: each rank reads its experts\' FP8 bytes only, and the partial outputs sum to the whole', async () => {
    const dir = quantFixtureDir('qwen3_moe_fp8');
    using whole = await MoELayer.fromPretrained(dir, { layer: 0 });
    const full = (await forwardOn(whole, 'qwen3_moe_fp8')).output;
    const config = readMoEConfig(dir, 0);
    const plan = resolvePlan(2, { moeEpSize: 2 }, config);
    const sum = new Float64Array(full.length);
    for (let rank = 0; rank < 2; rank++) {
      using layer = await MoELayer.fromPretrained(dir, { layer: 0, shard: shardForRank(plan, config, rank) });
      expect(layer.checkpointBytesRead).toBeLessThan(0.6 * whole.checkpointBytesRead);
      expect(layer.weightBytes().experts).toBe(whole.weightBytes().experts / 2);
      (await forwardOn(layer, 'qwen3_moe_fp8')).output.forEach((value, i) => (sum[i]! += value));
    }
    expect(relativeError(sum, full)).toBeLessThanOrEqual(1e-6);
  });

  it('TP2, EP2 and TP2×EP2 shards sum to the unsharded layer, quantized at load or given FP8 weights (blocks stay whole)', async () => {
    const config: MoEConfig = swigluConfig({ hidden: 200, intermediate: 256, experts: 4, topK: 2 }, { sharedExpert: { intermediateSize: 512, gated: false } });
    const host = await randomHostWeights({ name: 'test', description: 'test', config }, 'float32', 'cpu');
    using whole = MoELayer.fromWeights(config, host, { quantize: 'fp8' });
    using x = Tensor.random([9, 200], { seed: 5 });
    using wholeResult = whole.forward(x);
    const full = (await wholeResult.output.toArray()) as Float32Array;
    const quantized = { ...config, quantization: 'fp8' as const };
    // The same FP8 weights as host values and scales, as a checkpoint holds them: shards cut both.
    const fp8Host = async (matrix: HostTensor): Promise<HostQuantized> => {
      using dense = Tensor.fromArray(matrix.data, matrix.shape);
      using q = quantizeWeights(dense, 'fp8_block128');
      const data = (await q.data.toArray()) as Uint8Array;
      return { format: 'fp8_block128', data: { dtype: 'float8_e4m3', shape: [...q.shape], data }, scales: { dtype: 'float32', shape: [...q.scales.shape], data: (await q.scales.toArray()) as Float32Array } };
    };
    const dense = host as MoEWeights<HostTensor, never>;
    const fp8Weights: MoEWeights<HostTensor> = {
      ...dense, w13: await fp8Host(dense.w13), w2: await fp8Host(dense.w2), shared: { w13: await fp8Host(dense.shared!.w13), w2: await fp8Host(dense.shared!.w2) },
    };
    for (const [tp, ep] of [[2, 1], [1, 2], [2, 2]] as const) {
      const plan = resolvePlan(tp * ep, { moeTpSize: tp, moeEpSize: ep }, quantized);
      const sums = [new Float64Array(full.length), new Float64Array(full.length)];
      for (let rank = 0; rank < tp * ep; rank++) {
        const shard = shardForRank(plan, quantized, rank);
        using atLoad = MoELayer.fromWeights(config, host, { quantize: 'fp8', shard });
        using given = MoELayer.fromWeights(quantized, fp8Weights, { shard });
        for (const [index, layer] of [atLoad, given].entries()) {
          using result = layer.forward(x);
          ((await result.output.toArray()) as Float32Array).forEach((value, i) => (sums[index]![i]! += value));
        }
      }
      expect(relativeError(sums[0]!, full), `tp${tp}×ep${ep} quantized at load`).toBeLessThanOrEqual(1e-6);
      expect(relativeError(sums[1]!, full), `tp${tp}×ep${ep} given FP8 weights`).toBeLessThanOrEqual(1e-6);
    }
  });

  it('refuses TP splits that would cut a 128×128 block, naming the sizes', async () => {
    const config = readMoEConfig(quantFixtureDir('qwen3_moe_fp8'), 0);
    expectThrows(() => resolvePlan(2, { moeTpSize: 2 }, config), 'E_INVALID_ARGUMENT',
      /^moeTpSize 2 would cut the fp8 weights' 128×128 blocks: each rank's share of the intermediate size \(128 \/ 2 = 64\) must be a multiple of 128$/);
    // DeepSeek-V3's shared expert is sliced over the whole group, EP or not.
    const deepseek = readMoEConfig(quantFixtureDir('deepseek_v3_fp8'), 0);
    expectThrows(() => resolvePlan(2, { moeEpSize: 2 }, deepseek), 'E_INVALID_ARGUMENT',
      /^the group size 2 would cut the fp8 weights' 128×128 blocks: each rank's share of the shared expert's intermediate size \(128 \/ 2 = 64\) must be a multiple of 128$/);
    const plan = resolvePlan(2, { moeTpSize: 2 }, { ...config, quantization: null });
    await expectRejects(MoELayer.fromPretrained(quantFixtureDir('qwen3_moe_fp8'), { layer: 0, shard: shardForRank(plan, config, 1) }), 'E_INVALID_ARGUMENT',
      /^shard\.intermediate \[64, 128\) of 128 cuts the fp8 weights' 128×128 blocks/);
    // Quantizing at load asks the same of the plan.
    const mixtral = readMoEConfig(quantFixtureDir('mixtral_bf16'), 0);
    expect(() => resolvePlan(2, { moeTpSize: 2 }, mixtral)).not.toThrow();
    expectThrows(() => resolvePlan(2, { moeTpSize: 2 }, { ...mixtral, quantization: 'fp8' }), 'E_INVALID_ARGUMENT', /\(384 \/ 2 = 192\) must be a multiple of 128$/);
    expect(resolvePlan(3, { moeTpSize: 3 }, { ...mixtral, quantization: 'fp8' })).toEqual({ worldSize: 3, moeTpSize: 3, moeEpSize: 1 });
    expectThrows(() => checkShard({ ...shardForRank(resolvePlan(3, { moeTpSize: 3 }, mixtral), mixtral, 1), intermediate: { first: 100, count: 128 } }, { ...mixtral, quantization: 'fp8' }),
      'E_INVALID_ARGUMENT', /^shard\.intermediate \[100, 228\) of 384 cuts/);
  });
});
