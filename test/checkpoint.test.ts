// Loading an MoE block from the five Hugging Face fixtures: the config each family's config.json
// means, weights in moekit's canonical layout compared against the raw checkpoint tensors, only
// the block's bytes read, stored dtypes kept; then every broken checkpoint, each failing with the
// code and a message that names the file, tensor, field or layer to blame.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

import { checkMoELayer, parseMoEConfig } from '../lib/checkpoint/families';
import { loadMoECheckpoint } from '../lib/checkpoint/load';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../lib/checkpoint/safetensors';
import { decodeHalf, encodeHalf } from '../lib/dtype';
import { MoekitError, type MoekitErrorCode } from '../lib/errors';
import type { ModelFamily } from '../lib/vocabulary';
import type { MoEConfig } from '../lib/model/config';
import { FIXTURE_FAMILIES, copyFixture, editJson, fixtureDir, loadDense, makeFifo, withinTime } from './helpers/fixtures';
import { expectRejects } from './helpers/errors';

const INDEX = 'model.safetensors.index.json';
const SHARDS = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];

function scratchDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-checkpoint-'));
}

function weightMap(dir: string): Record<string, string> {
  return (JSON.parse(fs.readFileSync(path.join(dir, INDEX), 'utf8')) as { weight_map: Record<string, string> }).weight_map;
}

/** Every tensor of a safetensors file (the fixtures hold only F32). */
async function readAll(file: string): Promise<Record<string, TensorToWrite>> {
  const opened = await SafetensorsFile.open(file);
  try {
    const tensors: Record<string, TensorToWrite> = {};
    for (const name of opened.names()) {
      const { shape, data } = await opened.read(name);
      tensors[name] = { dtype: 'F32', shape, data: data as Float32Array };
    }
    return tensors;
  } finally {
    await opened.close();
  }
}

/** Rewrites each shard of a copied checkpoint, tensor by tensor; `transform` returns null to drop one. */
async function rewriteShards(dir: string, transform: (name: string, tensor: TensorToWrite) => TensorToWrite | null): Promise<void> {
  for (const shard of SHARDS) {
    const kept: Record<string, TensorToWrite> = {};
    for (const [name, tensor] of Object.entries(await readAll(path.join(dir, shard)))) {
      const rewritten = transform(name, tensor);
      if (rewritten) kept[name] = rewritten;
    }
    await writeSafetensors(path.join(dir, shard), kept);
  }
}

/** A raw checkpoint tensor of a fixture, as stored. */
async function rawTensor(family: ModelFamily, name: string): Promise<{ shape: number[]; data: Float32Array }> {
  const dir = fixtureDir(family);
  const opened = await SafetensorsFile.open(path.join(dir, weightMap(dir)[name]!));
  try {
    const { shape, data } = await opened.read(name);
    return { shape, data: data as Float32Array };
  } finally {
    await opened.close();
  }
}

async function expectMoekitError(promise: Promise<unknown>, code: MoekitErrorCode, message: RegExp): Promise<void> {
  const error: unknown = await promise.then(() => undefined, (failure: unknown) => failure);
  expect(error).toBeInstanceOf(MoekitError);
  expect({ code: (error as MoekitError).code, message: (error as MoekitError).message }).toMatchObject({ code, message: expect.stringMatching(message) });
}

const SOFTMAX_TOPK = { method: 'softmax_topk', numGroups: 1, topkGroups: 1, scalingFactor: 1 } as const;
const SWIGLU = { activation: 'swiglu', activationAlpha: 1.702, activationLimit: 7, routerBias: false, expertBias: false } as const;

const EXPECTED_CONFIGS: Readonly<Record<ModelFamily, MoEConfig>> = {
  mixtral: {
    family: 'mixtral', hiddenSize: 64, intermediateSize: 96, numExperts: 8,
    routing: { ...SOFTMAX_TOPK, topK: 2, renormalize: true }, ...SWIGLU, sharedExpert: null,
  },
  qwen2_moe: {
    family: 'qwen2_moe', hiddenSize: 64, intermediateSize: 96, numExperts: 16,
    routing: { ...SOFTMAX_TOPK, topK: 4, renormalize: false }, ...SWIGLU, sharedExpert: { intermediateSize: 80, gated: true },
  },
  qwen3_moe: {
    family: 'qwen3_moe', hiddenSize: 64, intermediateSize: 96, numExperts: 16,
    routing: { ...SOFTMAX_TOPK, topK: 4, renormalize: true }, ...SWIGLU, sharedExpert: null,
  },
  deepseek_v3: {
    family: 'deepseek_v3', hiddenSize: 64, intermediateSize: 96, numExperts: 16,
    routing: { method: 'sigmoid_group_topk', topK: 4, renormalize: true, numGroups: 4, topkGroups: 2, scalingFactor: 2.5 },
    ...SWIGLU, sharedExpert: { intermediateSize: 96, gated: false },
  },
  gpt_oss: {
    family: 'gpt_oss', hiddenSize: 64, intermediateSize: 96, numExperts: 8,
    routing: { method: 'topk_softmax', topK: 2, renormalize: false, numGroups: 1, topkGroups: 1, scalingFactor: 1 },
    activation: 'gptoss_swiglu', activationAlpha: 1.702, activationLimit: 7, routerBias: true, expertBias: true, sharedExpert: null,
  },
};

/** The per-expert projection names of the families that have them. */
function expertNames(family: ModelFamily, expert: number): { gate: string; up: string; down: string } {
  if (family === 'mixtral') {
    const prefix = `model.layers.0.block_sparse_moe.experts.${expert}.`;
    return { gate: `${prefix}w1.weight`, up: `${prefix}w3.weight`, down: `${prefix}w2.weight` };
  }
  const prefix = `model.layers.0.mlp.experts.${expert}.`;
  return { gate: `${prefix}gate_proj.weight`, up: `${prefix}up_proj.weight`, down: `${prefix}down_proj.weight` };
}

function routerName(family: ModelFamily): string {
  if (family === 'mixtral') return 'model.layers.0.block_sparse_moe.gate.weight';
  return family === 'gpt_oss' ? 'model.layers.0.mlp.router.weight' : 'model.layers.0.mlp.gate.weight';
}

function shardBytes(family: ModelFamily): number {
  return SHARDS.reduce((total, shard) => total + fs.statSync(path.join(fixtureDir(family), shard)).size, 0);
}

describe.each(FIXTURE_FAMILIES)('loadMoECheckpoint on the %s fixture', (family) => {
  it('reads config.json into the MoEConfig of the family', async () => {
    const { config } = await loadDense(fixtureDir(family), { layer: 0 });
    expect(config).toEqual({ ...EXPECTED_CONFIGS[family], quantization: null });
  });

  it('returns every weight of the block in the canonical shapes, as stored (float32)', async () => {
    const { weights } = await loadDense(fixtureDir(family), { layer: 0 });
    const { numExperts: E, hiddenSize: H, intermediateSize: I } = EXPECTED_CONFIGS[family];
    const shapes = Object.fromEntries(Object.entries(weights).filter(([key]) => key !== 'shared').map(([key, tensor]) => [key, tensor.shape]));
    expect(shapes).toEqual({
      router: [E, H],
      w13: [E, 2 * I, H],
      w2: [E, H, I],
      ...(family === 'gpt_oss' ? { routerBias: [E], w13Bias: [E, 2 * I], w2Bias: [E, H] } : {}),
      ...(family === 'deepseek_v3' ? { correctionBias: [E] } : {}),
    });
    for (const tensor of [weights.router, weights.w13, weights.w2]) {
      expect(tensor.dtype).toBe('float32');
      expect(tensor.data).toBeInstanceOf(Float32Array);
      expect(tensor.data.length).toBe(tensor.shape.reduce((a, b) => a * b, 1));
    }
    expect(weights.router.data).toEqual((await rawTensor(family, routerName(family))).data);
  });

  it('reads only the block: fewer bytes than the shards hold (the layernorms stay unread)', async () => {
    const loaded = await loadDense(fixtureDir(family), { layer: 0 });
    const { weights } = loaded;
    const blockBytes = [weights.router, weights.routerBias, weights.correctionBias, weights.w13, weights.w13Bias, weights.w2, weights.w2Bias, weights.shared?.w13, weights.shared?.w2, weights.shared?.gate]
      .reduce((total, tensor) => total + (tensor?.data.byteLength ?? 0), 0);
    const layernormBytes = 2 * 64 * 4;
    expect(loaded.bytesRead).toBeGreaterThan(blockBytes);
    expect(loaded.bytesRead).toBe(shardBytes(family) - layernormBytes);
    expect([...loaded.files].sort()).toEqual(SHARDS.map((shard) => path.join(fixtureDir(family), shard)));
  });
});

describe.each(FIXTURE_FAMILIES.filter((family) => family !== 'gpt_oss'))('%s: per-expert tensors stacked into w13 and w2', (family) => {
  it.each([0, 1, 7])('expert %i: w13 = gate rows then up rows, w2 = down', async (expert) => {
    const { weights, config } = await loadDense(fixtureDir(family), { layer: 0 });
    const { hiddenSize: H, intermediateSize: I } = config;
    const names = expertNames(family, expert);
    const gate = (await rawTensor(family, names.gate)).data;
    const up = (await rawTensor(family, names.up)).data;
    const down = (await rawTensor(family, names.down)).data;
    const w13 = weights.w13.data.subarray(expert * 2 * I * H, (expert + 1) * 2 * I * H);
    // Row 0 of the expert's w13 is gate_proj's row 0; row I is up_proj's row 0.
    expect(w13.subarray(0, H)).toEqual(gate.subarray(0, H));
    expect(w13.subarray(I * H, (I + 1) * H)).toEqual(up.subarray(0, H));
    expect(w13).toEqual(Float32Array.from([...gate, ...up]));
    expect(weights.w2.data.subarray(expert * H * I, (expert + 1) * H * I)).toEqual(down);
  });
});

describe('shared experts and routing extras', () => {
  it('qwen2_moe: shared_expert gate/up stacked into shared.w13, down as shared.w2, shared_expert_gate as shared.gate', async () => {
    const { weights } = await loadDense(fixtureDir('qwen2_moe'), { layer: 0 });
    const prefix = 'model.layers.0.mlp.shared_expert.';
    const gate = (await rawTensor('qwen2_moe', `${prefix}gate_proj.weight`)).data;
    const up = (await rawTensor('qwen2_moe', `${prefix}up_proj.weight`)).data;
    expect(weights.shared?.w13).toEqual({ dtype: 'float32', shape: [160, 64], data: Float32Array.from([...gate, ...up]) });
    expect(weights.shared?.w2).toEqual({ dtype: 'float32', shape: [64, 80], data: (await rawTensor('qwen2_moe', `${prefix}down_proj.weight`)).data });
    expect(weights.shared?.gate).toEqual({ dtype: 'float32', shape: [1, 64], data: (await rawTensor('qwen2_moe', 'model.layers.0.mlp.shared_expert_gate.weight')).data });
  });

  it('deepseek_v3: ungated shared_experts and e_score_correction_bias as correctionBias', async () => {
    const { weights } = await loadDense(fixtureDir('deepseek_v3'), { layer: 0 });
    const prefix = 'model.layers.0.mlp.shared_experts.';
    const gate = (await rawTensor('deepseek_v3', `${prefix}gate_proj.weight`)).data;
    const up = (await rawTensor('deepseek_v3', `${prefix}up_proj.weight`)).data;
    expect(weights.shared?.w13.data).toEqual(Float32Array.from([...gate, ...up]));
    expect(weights.shared?.w2.data).toEqual((await rawTensor('deepseek_v3', `${prefix}down_proj.weight`)).data);
    expect(weights.shared?.gate).toBeUndefined();
    expect(weights.correctionBias?.data).toEqual((await rawTensor('deepseek_v3', 'model.layers.0.mlp.gate.e_score_correction_bias')).data);
  });
});

describe('gpt_oss: fused, interleaved experts into the canonical layout', () => {
  const prefix = 'model.layers.0.mlp.';
  const E = 8;
  const H = 64;
  const I = 96;

  it('de-interleaves and transposes gate_up_proj: w13[e][i][h] = gate_up[e][h][2i], w13[e][I+i][h] = gate_up[e][h][2i+1]', async () => {
    const { weights } = await loadDense(fixtureDir('gpt_oss'), { layer: 0 });
    const gateUp = await rawTensor('gpt_oss', `${prefix}experts.gate_up_proj`);
    expect(gateUp.shape).toEqual([E, H, 2 * I]);
    const w13 = weights.w13.data;
    let mismatches = 0;
    for (let e = 0; e < E; e++) {
      for (let i = 0; i < I; i++) {
        for (let h = 0; h < H; h++) {
          if (w13[(e * 2 * I + i) * H + h] !== gateUp.data[(e * H + h) * 2 * I + 2 * i]) mismatches++;
          if (w13[(e * 2 * I + I + i) * H + h] !== gateUp.data[(e * H + h) * 2 * I + 2 * i + 1]) mismatches++;
        }
      }
    }
    expect(mismatches).toBe(0);
  });

  it('transposes down_proj [E, I, H] into w2 [E, H, I]', async () => {
    const { weights } = await loadDense(fixtureDir('gpt_oss'), { layer: 0 });
    const down = await rawTensor('gpt_oss', `${prefix}experts.down_proj`);
    expect(down.shape).toEqual([E, I, H]);
    let mismatches = 0;
    for (let e = 0; e < E; e++) {
      for (let h = 0; h < H; h++) {
        for (let i = 0; i < I; i++) if (weights.w2.data[(e * H + h) * I + i] !== down.data[(e * I + i) * H + h]) mismatches++;
      }
    }
    expect(mismatches).toBe(0);
  });

  it('de-interleaves the gate_up bias into halves and keeps the down and router biases', async () => {
    const { weights } = await loadDense(fixtureDir('gpt_oss'), { layer: 0 });
    const gateUpBias = (await rawTensor('gpt_oss', `${prefix}experts.gate_up_proj_bias`)).data;
    const expected = new Float32Array(E * 2 * I);
    for (let e = 0; e < E; e++) {
      for (let i = 0; i < I; i++) {
        expected[e * 2 * I + i] = gateUpBias[e * 2 * I + 2 * i]!;
        expected[e * 2 * I + I + i] = gateUpBias[e * 2 * I + 2 * i + 1]!;
      }
    }
    expect(weights.w13Bias?.data).toEqual(expected);
    expect(weights.w2Bias?.data).toEqual((await rawTensor('gpt_oss', `${prefix}experts.down_proj_bias`)).data);
    expect(weights.routerBias?.data).toEqual((await rawTensor('gpt_oss', `${prefix}router.bias`)).data);
  });
});

describe('loading some experts only (Expert Parallel)', () => {
  it.each(['mixtral', 'gpt_oss'] as const)('%s: experts [2, 5) equal those of the full load, reading fewer bytes', async (family) => {
    const full = await loadDense(fixtureDir(family), { layer: 0 });
    const part = await loadDense(fixtureDir(family), { layer: 0, experts: { first: 2, count: 3 } });
    const { hiddenSize: H, intermediateSize: I } = full.config;
    expect(part.weights.w13.shape).toEqual([3, 2 * I, H]);
    expect(part.weights.w13.data).toEqual(full.weights.w13.data.subarray(2 * 2 * I * H, 5 * 2 * I * H));
    expect(part.weights.w2.data).toEqual(full.weights.w2.data.subarray(2 * H * I, 5 * H * I));
    expect(part.weights.w13Bias?.data).toEqual(full.weights.w13Bias?.data.subarray(2 * 2 * I, 5 * 2 * I));
    expect(part.weights.w2Bias?.data).toEqual(full.weights.w2Bias?.data.subarray(2 * H, 5 * H));
    expect(part.weights.router).toEqual(full.weights.router);
    expect(part.bytesRead).toBeLessThan(0.6 * full.bytesRead);
  });

  it.each([
    [{ first: 6, count: 3 }, /experts \[6, 9\) is not a non-empty range of the checkpoint's 8 experts/],
    [{ first: -1, count: 2 }, /experts \[-1, 1\)/],
    [{ first: 0, count: 0 }, /experts \[0, 0\)/],
  ])('rejects the range %o', async (experts, message) => {
    await expectMoekitError(loadDense(fixtureDir('mixtral'), { layer: 0, experts }), 'E_INVALID_ARGUMENT', message);
  });
});

describe('checkpoint layouts and dtypes', () => {
  it('reads a single model.safetensors when there is no index', async () => {
    const dir = copyFixture('qwen2_moe');
    const merged = { ...(await readAll(path.join(dir, SHARDS[0]!))), ...(await readAll(path.join(dir, SHARDS[1]!))) };
    await writeSafetensors(path.join(dir, 'model.safetensors'), merged);
    for (const file of [INDEX, ...SHARDS]) fs.rmSync(path.join(dir, file));
    const single = await loadDense(dir, { layer: 0 });
    const sharded = await loadDense(fixtureDir('qwen2_moe'), { layer: 0 });
    expect(single.weights).toEqual(sharded.weights);
    expect(single.files).toEqual([path.join(dir, 'model.safetensors')]);
  });

  it('keeps BF16 weights as their raw 16-bit patterns', async () => {
    const dir = copyFixture('mixtral');
    await rewriteShards(dir, (_, tensor) => ({ dtype: 'BF16', shape: tensor.shape, data: encodeHalf(tensor.data, 'bfloat16') }));
    const { weights } = await loadDense(dir, { layer: 0 });
    expect(weights.w13.dtype).toBe('bfloat16');
    expect(weights.w13.data).toBeInstanceOf(Uint16Array);
    const gate = (await rawTensor('mixtral', expertNames('mixtral', 0).gate)).data;
    expect(weights.w13.data.subarray(0, gate.length)).toEqual(encodeHalf(gate, 'bfloat16'));
    expect(weights.router.dtype).toBe('bfloat16');
  });

  it('converts a weight whose experts mix F16 and BF16 to float32, and leaves the others as stored', async () => {
    const dir = copyFixture('mixtral');
    const odd = expertNames('mixtral', 5).up;
    await rewriteShards(dir, (name, tensor) => {
      const dtype = name === odd ? 'float16' : 'bfloat16';
      return { dtype: name === odd ? 'F16' : 'BF16', shape: tensor.shape, data: encodeHalf(tensor.data, dtype) };
    });
    const { weights } = await loadDense(dir, { layer: 0 });
    expect(weights.w13.dtype).toBe('float32');
    expect(weights.w2.dtype).toBe('bfloat16');
    const { hiddenSize: H, intermediateSize: I } = EXPECTED_CONFIGS.mixtral;
    const up = (await rawTensor('mixtral', odd)).data;
    const upAt = (5 * 2 * I + I) * H;
    expect(weights.w13.data.subarray(upAt, upAt + I * H)).toEqual(decodeHalf(encodeHalf(up, 'float16'), 'float16'));
    const gate = (await rawTensor('mixtral', expertNames('mixtral', 0).gate)).data;
    expect(weights.w13.data.subarray(0, I * H)).toEqual(decodeHalf(encodeHalf(gate, 'bfloat16'), 'bfloat16'));
  });
});

describe('config.json per family', () => {
  const qwen3 = JSON.parse(fs.readFileSync(path.join(fixtureDir('qwen3_moe'), 'config.json'), 'utf8')) as Record<string, unknown>;
  const deepseek = JSON.parse(fs.readFileSync(path.join(fixtureDir('deepseek_v3'), 'config.json'), 'utf8')) as Record<string, unknown>;

  it('qwen3_moe: takes num_experts (as real Qwen3 configs have it) before num_local_experts', () => {
    const { num_local_experts: _, ...real } = qwen3;
    expect(parseMoEConfig({ ...real, num_experts: 128, num_experts_per_tok: 8 }, 'config.json').numExperts).toBe(128);
  });

  it('deepseek_v3: fields left out mean what transformers defaults them to', () => {
    const { routed_scaling_factor: _scale, norm_topk_prob: _norm, n_shared_experts: _shared, ...sparse } = deepseek;
    const config = parseMoEConfig(sparse, 'config.json');
    expect(config.routing).toMatchObject({ scalingFactor: 2.5, renormalize: true });
    expect(config.sharedExpert).toEqual({ intermediateSize: 96, gated: false });
    expect(parseMoEConfig({ ...deepseek, n_shared_experts: 0 }, 'config.json').sharedExpert).toBeNull();
    expect(parseMoEConfig({ ...deepseek, n_shared_experts: 2 }, 'config.json').sharedExpert).toEqual({ intermediateSize: 192, gated: false });
  });

  it('gpt_oss: swiglu_limit sets the clamp', () => {
    const gptOss = JSON.parse(fs.readFileSync(path.join(fixtureDir('gpt_oss'), 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(parseMoEConfig({ ...gptOss, swiglu_limit: 5.5 }, 'config.json').activationLimit).toBe(5.5);
  });

  it('knows which layers are dense: first_k_dense_replace and moe_layer_freq, mlp_only_layers and decoder_sparse_step', () => {
    const layers = { num_hidden_layers: 8 };
    const isMoE = (config: Record<string, unknown>, family: ModelFamily, layer: number): boolean => {
      try {
        checkMoELayer({ ...config, ...layers }, family, layer, 'config.json');
        return true;
      } catch {
        return false;
      }
    };
    const moeLayers = (config: Record<string, unknown>, family: ModelFamily) => [...Array(8).keys()].filter((layer) => isMoE(config, family, layer));
    expect(moeLayers({ first_k_dense_replace: 3 }, 'deepseek_v3')).toEqual([3, 4, 5, 6, 7]);
    expect(moeLayers({ first_k_dense_replace: 1, moe_layer_freq: 2 }, 'deepseek_v3')).toEqual([2, 4, 6]);
    // transformers' default: the first three layers are dense.
    expect(moeLayers({}, 'deepseek_v3')).toEqual([3, 4, 5, 6, 7]);
    expect(moeLayers({ mlp_only_layers: [0, 5] }, 'qwen3_moe')).toEqual([1, 2, 3, 4, 6, 7]);
    expect(moeLayers({ decoder_sparse_step: 2 }, 'qwen2_moe')).toEqual([1, 3, 5, 7]);
    expect(moeLayers({}, 'mixtral')).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });
});

interface BrokenCheckpoint {
  name: string;
  /** Returns the checkpoint folder to load (a broken copy, or a path that does not exist). */
  prepare(): Promise<string> | string;
  layer?: number;
  code: MoekitErrorCode;
  message: RegExp;
}

function brokenCopy(family: ModelFamily, breakIt: (dir: string) => Promise<void> | void): () => Promise<string> {
  return async () => {
    const dir = copyFixture(family);
    await breakIt(dir);
    return dir;
  };
}

function editConfig(family: ModelFamily, edit: (config: Record<string, unknown>) => void): () => Promise<string> {
  return brokenCopy(family, (dir) => editJson(path.join(dir, 'config.json'), edit));
}

const W1 = 'model.layers.0.block_sparse_moe.experts.3.w1.weight';

const BROKEN_CHECKPOINTS: BrokenCheckpoint[] = [
  {
    name: 'a config without an expert count',
    prepare: editConfig('qwen3_moe', (config) => {
      delete config.num_local_experts;
    }),
    code: 'E_CONFIG',
    message: /config\.json: missing one of num_experts, num_local_experts/,
  },
  {
    name: 'an unknown model_type',
    prepare: editConfig('mixtral', (config) => {
      config.model_type = 'llama';
    }),
    code: 'E_UNSUPPORTED_MODEL',
    message: /config\.json: model_type "llama" is not supported \(supported: mixtral, qwen2_moe, qwen3_moe, deepseek_v3, gpt_oss\)/,
  },
  {
    name: 'top-k larger than the expert count',
    prepare: editConfig('deepseek_v3', (config) => {
      config.num_experts_per_tok = 17;
    }),
    code: 'E_CONFIG',
    message: /config\.json: num_experts_per_tok \(17\) is larger than the expert count \(16\)/,
  },
  {
    name: 'top-k larger than the experts the group limit leaves eligible',
    prepare: editConfig('deepseek_v3', (config) => {
      config.topk_group = 1;
      config.num_experts_per_tok = 5;
    }),
    code: 'E_CONFIG',
    message: /config\.json: num_experts_per_tok \(5\) is larger than the 4 experts that topk_group \(1\) of n_group \(4\) leave eligible/,
  },
  {
    name: 'a missing size',
    prepare: editConfig('qwen2_moe', (config) => {
      delete config.moe_intermediate_size;
    }),
    code: 'E_CONFIG',
    message: /config\.json: missing moe_intermediate_size/,
  },
  {
    name: 'a size that is not a number',
    prepare: editConfig('mixtral', (config) => {
      config.hidden_size = 'NaN';
    }),
    code: 'E_CONFIG',
    message: /config\.json: hidden_size must be a positive integer, got "NaN"/,
  },
  {
    name: 'an activation moekit does not compute',
    prepare: editConfig('qwen3_moe', (config) => {
      config.hidden_act = 'relu';
    }),
    code: 'E_CONFIG',
    message: /config\.json: hidden_act "relu" is not supported \(supported: silu, swish, gelu_pytorch_tanh, gelu_new\)/,
  },
  {
    name: 'a config.json that is not JSON',
    prepare: brokenCopy('mixtral', (dir) => fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": "mixtral",')),
    code: 'E_CONFIG',
    message: /config\.json: not valid JSON/,
  },
  {
    name: 'a missing config.json',
    prepare: brokenCopy('mixtral', (dir) => fs.rmSync(path.join(dir, 'config.json'))),
    code: 'E_NOT_FOUND',
    message: /config\.json: cannot read \(ENOENT\)/,
  },
  {
    name: 'a missing folder',
    prepare: () => path.join(scratchDir(), 'no-such-checkpoint'),
    code: 'E_NOT_FOUND',
    message: /checkpoint folder \S*no-such-checkpoint does not exist/,
  },
  {
    name: 'a layer past the last',
    prepare: () => fixtureDir('mixtral'),
    layer: 1,
    code: 'E_INVALID_ARGUMENT',
    message: /layer 1 does not exist: the model has 1 layer\(s\) \(0 to 0\)/,
  },
  { name: 'a negative layer', prepare: () => fixtureDir('gpt_oss'), layer: -1, code: 'E_INVALID_ARGUMENT', message: /layer -1 does not exist/ },
  { name: 'a fractional layer', prepare: () => fixtureDir('qwen2_moe'), layer: 0.5, code: 'E_INVALID_ARGUMENT', message: /layer 0\.5 does not exist/ },
  {
    name: 'a dense layer',
    prepare: editConfig('deepseek_v3', (config) => {
      config.first_k_dense_replace = 1;
      config.num_hidden_layers = 2;
    }),
    code: 'E_INVALID_ARGUMENT',
    message: /layer 0 is a dense MLP layer, not an MoE layer \(first_k_dense_replace is 1\)/,
  },
  {
    name: 'a missing shard file',
    prepare: brokenCopy('mixtral', (dir) => fs.rmSync(path.join(dir, SHARDS[1]!))),
    code: 'E_NOT_FOUND',
    message: /model-00002-of-00002\.safetensors: shard listed in model\.safetensors\.index\.json is missing/,
  },
  {
    name: 'no weights at all',
    prepare: brokenCopy('mixtral', (dir) => fs.rmSync(path.join(dir, INDEX))),
    code: 'E_NOT_FOUND',
    message: /mixtral: no model\.safetensors or model\.safetensors\.index\.json/,
  },
  {
    name: 'an expert weight missing from the index',
    prepare: brokenCopy('mixtral', (dir) => editJson(path.join(dir, INDEX), (index) => {
      delete (index.weight_map as Record<string, string>)[W1];
    })),
    code: 'E_CHECKPOINT',
    message: /mixtral: missing tensor model\.layers\.0\.block_sparse_moe\.experts\.3\.w1\.weight$/,
  },
  {
    name: 'an expert weight missing from the shard the index names',
    prepare: brokenCopy('deepseek_v3', (dir) => rewriteShards(dir, (name, tensor) => (name === 'model.layers.0.mlp.experts.9.down_proj.weight' ? null : tensor))),
    code: 'E_CHECKPOINT',
    message: /model-00002-of-00002\.safetensors: missing tensor model\.layers\.0\.mlp\.experts\.9\.down_proj\.weight \(model\.safetensors\.index\.json places it in this shard\)/,
  },
  {
    name: 'gpt-oss experts stored MXFP4-quantized',
    prepare: brokenCopy('gpt_oss', (dir) => editJson(path.join(dir, INDEX), (index) => {
      const map = index.weight_map as Record<string, string>;
      map['model.layers.0.mlp.experts.gate_up_proj_blocks'] = map['model.layers.0.mlp.experts.gate_up_proj']!;
      delete map['model.layers.0.mlp.experts.gate_up_proj'];
    })),
    code: 'E_CHECKPOINT',
    message: /missing tensor model\.layers\.0\.mlp\.experts\.gate_up_proj \(this checkpoint stores it MXFP4-quantized, but config\.json has no quantization_config with quant_method mxfp4\)/,
  },
  {
    name: 'a weight of the wrong shape',
    prepare: brokenCopy('mixtral', (dir) => rewriteShards(dir, (name, tensor) => (name === W1 ? { ...tensor, shape: [64, 96] } : tensor))),
    code: 'E_CHECKPOINT',
    message: /tensor model\.layers\.0\.block_sparse_moe\.experts\.3\.w1\.weight has shape \[64, 96\], expected \[96, 64\]/,
  },
  {
    name: 'weights that disagree with config.json',
    prepare: editConfig('gpt_oss', (config) => {
      config.intermediate_size = 100;
    }),
    code: 'E_CHECKPOINT',
    message: /tensor model\.layers\.0\.mlp\.experts\.gate_up_proj has shape \[8, 64, 192\], expected \[8, 64, 200\]/,
  },
  {
    name: 'an integer weight',
    prepare: brokenCopy('qwen3_moe', (dir) => rewriteShards(dir, (name, tensor) => (
      name === 'model.layers.0.mlp.gate.weight' ? { dtype: 'I32', shape: tensor.shape, data: new Int32Array(tensor.data.length) } : tensor
    ))),
    code: 'E_CHECKPOINT',
    message: /tensor model\.layers\.0\.mlp\.gate\.weight is I32; weights must be F32, F16 or BF16/,
  },
  {
    name: 'a truncated shard',
    prepare: brokenCopy('qwen2_moe', (dir) => {
      const shard = path.join(dir, SHARDS[0]!);
      fs.truncateSync(shard, fs.statSync(shard).size - 1000);
    }),
    code: 'E_SAFETENSORS',
    message: /model-00001-of-00002\.safetensors: tensor \S+: data_offsets .* run past the end of the data/,
  },
  {
    name: 'an index that points outside the folder',
    prepare: brokenCopy('mixtral', (dir) => editJson(path.join(dir, INDEX), (index) => {
      (index.weight_map as Record<string, string>)[W1] = '../model-00001-of-00002.safetensors';
    })),
    code: 'E_CHECKPOINT',
    message: /model\.safetensors\.index\.json: weight_map places \S+experts\.3\.w1\.weight in "\.\.\/model-00001-of-00002\.safetensors", which is not a file name in the folder/,
  },
];

describe('broken checkpoints', () => {
  it.each(BROKEN_CHECKPOINTS)('$name → $code', async ({ prepare, layer, code, message }) => {
    const dir = await prepare();
    await expectMoekitError(loadMoECheckpoint(dir, { layer: layer ?? 0 }), code, message);
  });
});

describe('only regular files are read: anything else is refused at once, never waited on', () => {
  /** A copy of the mixtral fixture with `name` (a shard, or the folder itself with '') replaced by `make(path)`. */
  function replaced(name: string, make: (file: string) => void): string {
    const dir = copyFixture('mixtral');
    const file = path.join(dir, name);
    fs.rmSync(file, { recursive: true, force: true });
    make(file);
    return dir;
  }

  async function expectLoadFails(dir: string, message: RegExp): Promise<void> {
    await expectMoekitError(withinTime(loadMoECheckpoint(dir, { layer: 0 }), 10_000, 'loading the checkpoint'), 'E_NOT_FOUND', message);
  }

  it('a shard that is a FIFO → E_NOT_FOUND "is a FIFO, not a regular file"', async () => {
    let fifo: { release(): void } | undefined;
    const dir = replaced(SHARDS[0]!, (file) => {
      fifo = makeFifo(file);
    });
    try {
      await expectLoadFails(dir, /model-00001-of-00002\.safetensors: is a FIFO, not a regular file$/);
    } finally {
      fifo?.release();
    }
  });

  it('a single model.safetensors that is a FIFO', async () => {
    const dir = copyFixture('mixtral');
    for (const file of [INDEX, ...SHARDS]) fs.rmSync(path.join(dir, file));
    const fifo = makeFifo(path.join(dir, 'model.safetensors'));
    try {
      await expectLoadFails(dir, /model\.safetensors: is a FIFO, not a regular file$/);
    } finally {
      fifo.release();
    }
  });

  it('SafetensorsFile.open of a FIFO', async () => {
    const file = path.join(scratchDir(), 'pipe.safetensors');
    const fifo = makeFifo(file);
    try {
      await expectMoekitError(withinTime(SafetensorsFile.open(file), 10_000, 'opening the FIFO'), 'E_NOT_FOUND', /pipe\.safetensors: is a FIFO, not a regular file$/);
    } finally {
      fifo.release();
    }
  });

  it('a shard that is a directory', async () => {
    await expectLoadFails(replaced(SHARDS[1]!, (file) => fs.mkdirSync(file)), /model-00002-of-00002\.safetensors: is a directory, not a regular file$/);
  });

  it('a shard that is a socket', async () => {
    const server = net.createServer();
    const dir = replaced(SHARDS[0]!, () => {});
    await new Promise<void>((resolve) => server.listen(path.join(dir, SHARDS[0]!), resolve));
    try {
      await expectLoadFails(dir, /model-00001-of-00002\.safetensors: is a socket, not a regular file$/);
    } finally {
      server.close();
    }
  });

  it('a config.json that is a character device (a link to /dev/null)', async () => {
    await expectLoadFails(replaced('config.json', (file) => fs.symlinkSync('/dev/null', file)), /config\.json: is a character device, not a regular file$/);
  });

  it('an index that is a directory', async () => {
    await expectLoadFails(replaced(INDEX, (file) => fs.mkdirSync(file)), /model\.safetensors\.index\.json: is a directory, not a regular file$/);
  });
});

describe('file-system failures in the loader are MoekitErrors naming the path and the reason', () => {
  /** A symbolic link that points at itself: every lookup through it fails with ELOOP. */
  function loop(file: string): void {
    fs.rmSync(file, { recursive: true, force: true });
    fs.symlinkSync(path.basename(file), file);
  }

  it.each([
    ['config.json', /config\.json: cannot read \(ELOOP\)/],
    [INDEX, /model\.safetensors\.index\.json: cannot read \(ELOOP\)/],
    [SHARDS[0]!, /model-00001-of-00002\.safetensors: cannot read \(ELOOP\)/],
  ])('%s as a symbolic link loop → E_NOT_FOUND (ELOOP)', async (name, message) => {
    const dir = copyFixture('qwen3_moe');
    loop(path.join(dir, name));
    await expectMoekitError(loadMoECheckpoint(dir, { layer: 0 }), 'E_NOT_FOUND', message);
  });

  it('a checkpoint folder that is a symbolic link loop, or a path through one → E_NOT_FOUND (ELOOP)', async () => {
    const dir = path.join(scratchDir(), 'checkpoint');
    loop(dir);
    await expectMoekitError(loadMoECheckpoint(dir, { layer: 0 }), 'E_NOT_FOUND', /checkpoint: cannot read \(ELOOP\)/);
    await expectMoekitError(loadMoECheckpoint(path.join(dir, 'inside'), { layer: 0 }), 'E_NOT_FOUND', /checkpoint\/inside: cannot read \(ELOOP\)/);
  });

  it('a checkpoint folder that is a file', async () => {
    const file = path.join(fixtureDir('mixtral'), 'config.json');
    await expectMoekitError(loadMoECheckpoint(file, { layer: 0 }), 'E_NOT_FOUND', /checkpoint folder \S+config\.json is a regular file, not a folder/);
  });
});

describe('fromPretrained onProgress', () => {
  it('reports weight bytes read, rising to the total, ending at bytesRead === totalBytes', async () => {
    const { MoELayer } = await import('../lib/index');
    const reports: { bytesRead: number; totalBytes: number }[] = [];
    using layer = await MoELayer.fromPretrained(fixtureDir('mixtral'), { layer: 0, onProgress: (progress) => reports.push(progress) });
    expect(reports.length).toBeGreaterThan(2);
    const last = reports.at(-1)!;
    expect(last.bytesRead).toBe(last.totalBytes);
    expect(reports.every((report, index) => index === 0 || report.bytesRead >= reports[index - 1]!.bytesRead)).toBe(true);
    expect(reports.every((report) => report.bytesRead <= report.totalBytes && report.totalBytes === last.totalBytes)).toBe(true);
    // Headers are not weights: the weights read are a little less than all bytes read.
    expect(last.bytesRead).toBeLessThanOrEqual(layer.checkpointBytesRead);
    expect(last.bytesRead).toBeGreaterThan(0.9 * layer.checkpointBytesRead);
  });

  it('refuses a callback that is not a function', async () => {
    const { MoELayer } = await import('../lib/index');
    await expectRejects(MoELayer.fromPretrained(fixtureDir('mixtral'), { layer: 0, onProgress: 5 as never }), 'E_INVALID_ARGUMENT', /^onProgress must be a function, got 5$/);
  });
});
