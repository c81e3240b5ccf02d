// parallel: 'auto' (lib/parallel/auto_plan.ts): the rule on real models' layers, on 1 to 8 GPUs
// over NVLink and PCIe, with its one-line explanation, and its refusals.
import { describe, expect, it } from 'vitest';

import { findPreset } from '../lib/bench/presets';
import { MoELayer, ProcessGroup } from '../lib/index';
import type { MoEConfig } from '../lib/model/config';
import { autoPlan, FIT_FRACTION, rankWeightBytes, type AutoPlanInput, type GpuLink } from '../lib/parallel/auto_plan';
import { factorizations } from '../lib/parallel/plan';
import { swigluConfig } from './helpers/configs';
import { expectThrows } from './helpers/errors';

const GIB = 2 ** 30;
const H200_FREE = 130 * GIB;

function presetConfig(name: string): MoEConfig {
  const found = findPreset(name);
  if (found === undefined) throw new Error(`no preset ${name}`);
  return found.config;
}

const MIXTRAL = presetConfig('mixtral-8x7b');
const QWEN3_30B = presetConfig('qwen3-30b-a3b');
const DEEPSEEK_V3 = presetConfig('deepseek-v3');

function split(config: MoEConfig, worldSize: number, link: GpuLink, overrides: Partial<AutoPlanInput> = {}): string {
  const { moeTpSize, moeEpSize } = autoPlan({ worldSize, config, dtype: 'bfloat16', bytesPerGpu: H200_FREE, link, ...overrides });
  return `TP${moeTpSize}xEP${moeEpSize}`;
}

describe('autoPlan', () => {
  it('Mixtral-8x7B (8 experts, I 14336): TP over NVLink, EP over PCIe, on 2, 4 and 8 GPUs', () => {
    expect([2, 4, 8].map((n) => split(MIXTRAL, n, 'nvlink'))).toEqual(['TP2xEP1', 'TP4xEP1', 'TP8xEP1']);
    expect([2, 4, 8].map((n) => split(MIXTRAL, n, 'pcie'))).toEqual(['TP1xEP2', 'TP1xEP4', 'TP1xEP8']);
  });

  it('takes a link not known as a slow one', () => {
    expect(split(MIXTRAL, 4, 'unknown')).toBe('TP1xEP4');
  });

  it('more GPUs than experts: EP over all the experts, TP for the rest, whatever the link', () => {
    expect(split(MIXTRAL, 16, 'pcie')).toBe('TP2xEP8');
    expect(split(MIXTRAL, 16, 'nvlink')).toBe('TP16xEP1');
  });

  it('Qwen3-30B-A3B (128 experts, I 768): on NVLink only as much TP as keeps 256 of I per rank', () => {
    expect(split(QWEN3_30B, 2, 'nvlink')).toBe('TP2xEP1');
    expect(split(QWEN3_30B, 4, 'nvlink')).toBe('TP2xEP2');
    expect(split(QWEN3_30B, 8, 'nvlink')).toBe('TP2xEP4');
    expect(split(QWEN3_30B, 8, 'pcie')).toBe('TP1xEP8');
  });

  it('DeepSeek-V3 (256 experts, I 2048, a shared expert): TP8 at exactly 256 per rank on NVLink, EP8 on PCIe; EP when TP would cut below 256', () => {
    expect(split(DEEPSEEK_V3, 8, 'nvlink')).toBe('TP8xEP1');
    expect(split(DEEPSEEK_V3, 8, 'pcie')).toBe('TP1xEP8');
    const narrow = { ...DEEPSEEK_V3, intermediateSize: 256, sharedExpert: null };
    expect(split(narrow, 8, 'nvlink')).toBe('TP1xEP8');
    expect(autoPlan({ worldSize: 8, config: narrow, dtype: 'bfloat16', bytesPerGpu: H200_FREE, link: 'nvlink' }).explanation)
      .toMatch(/NVLink, but any TP would leave each rank less than 256 of I 256: Expert Parallel/);
  });

  it('a quantized layer: only TP that keeps whole groups (int4 groups of 128 of I 768: TP 2, not 4), and int8 per channel only EP', () => {
    const int4 = { ...QWEN3_30B, quantization: 'int4' as const };
    expect(split(int4, 8, 'nvlink')).toBe('TP2xEP4');
    const narrowGroups = { ...QWEN3_30B, intermediateSize: 1024, quantization: 'int4' as const, quantizationGroupSize: 512 };
    expect(split(narrowGroups, 4, 'nvlink')).toBe('TP2xEP2'); // TP4 leaves 256, which cuts a group of 512
    const perChannel = { ...MIXTRAL, quantization: 'int8' as const };
    expect(split(perChannel, 8, 'nvlink')).toBe('TP1xEP8');
  });

  it('counts quantized bytes: an fp8 layer fits where its bfloat16 weights do not', () => {
    const bytesPerGpu = 12 * GIB;
    expectThrows(() => split(DEEPSEEK_V3, 2, 'nvlink', { bytesPerGpu }), 'E_OOM', /need 10\.\d GiB per GPU on 2 GPUs, more than 80% of the 12\.0 GiB free \(9\.6 GiB\)/);
    expect(split({ ...DEEPSEEK_V3, quantization: 'fp8' }, 2, 'nvlink', { bytesPerGpu })).toBe('TP2xEP1');
  });

  it('a layer too large for the GPUs: E_OOM with bytes needed and free', () => {
    expectThrows(() => split(DEEPSEEK_V3, 1, 'unknown', { bytesPerGpu: 16 * GIB }), 'E_OOM', /need 2\d\.\d GiB per GPU on 1 GPU, more than 80% of the 16\.0 GiB free/);
  });

  it('one GPU: TP1 × EP1, whatever the link', () => {
    const plan = autoPlan({ worldSize: 1, config: MIXTRAL, dtype: 'bfloat16', bytesPerGpu: H200_FREE, link: 'pcie' });
    expect(plan).toEqual({ moeTpSize: 1, moeEpSize: 1, explanation: expect.stringMatching(/: one GPU holds the whole layer$/) });
  });

  it('explains in one line with the inputs and the reason', () => {
    const { explanation } = autoPlan({ worldSize: 8, config: MIXTRAL, dtype: 'bfloat16', bytesPerGpu: H200_FREE, link: 'nvlink', linkSource: 'given' });
    expect(explanation).toBe('moeTpSize 8 × moeEpSize 1 on 8 GPUs (8 experts, I 14336, bfloat16; 0.3 GiB of weights per GPU of 130.0 GiB free; ' +
      'link nvlink (given)): NVLink: the most Tensor Parallel that leaves each rank I / 8 = 1792 >= 256 (equal work on every rank)');
    expect(split(MIXTRAL, 8, 'pcie')).toBe('TP1xEP8');
    expect(autoPlan({ worldSize: 8, config: MIXTRAL, dtype: 'bfloat16', bytesPerGpu: H200_FREE, link: 'pcie' }).explanation)
      .toMatch(/\(8 experts, I 14336, bfloat16; .*; link pcie\): the link is pcie, not NVLink: Expert Parallel over as many ranks as the layer allows \(8 experts\)$/);
  });

  it('a group no split fits: the problem named', () => {
    const odd = swigluConfig({ hidden: 64, intermediate: 96, experts: 6, topK: 2 });
    expectThrows(() => split(odd, 128, 'nvlink'), 'E_INVALID_ARGUMENT', /no moeTpSize × moeEpSize of 128 fits the layer \(e\.g\. moeTpSize 128 does not divide the intermediate size 96\)/);
  });

  it('checks its input and names the bad field', () => {
    const base: AutoPlanInput = { worldSize: 2, config: MIXTRAL, dtype: 'bfloat16', bytesPerGpu: H200_FREE, link: 'pcie' };
    expectThrows(() => autoPlan(null as never), 'E_INVALID_ARGUMENT', /^autoPlan: input must be given/);
    expectThrows(() => autoPlan({ ...base, worldSize: 0 }), 'E_INVALID_ARGUMENT', /^autoPlan: worldSize must be a positive integer, got 0$/);
    expectThrows(() => autoPlan({ ...base, bytesPerGpu: -1 }), 'E_INVALID_ARGUMENT', /^autoPlan: bytesPerGpu must be a positive number of bytes, got -1$/);
    expectThrows(() => autoPlan({ ...base, link: 'infiniband' as never }), 'E_INVALID_ARGUMENT', /^autoPlan: link must be one of nvlink, pcie, unknown, got "infiniband"$/);
    expectThrows(() => autoPlan({ ...base, dtype: 'int32' as never }), 'E_DTYPE', /autoPlan: dtype/);
  });

  it("MoELayer.fromWeights refuses parallel 'auto' (planning takes a collective) and points to autoParallel", () => {
    // A stand-in that passes the instanceof check; the refusal comes before any use of it.
    const group = Object.create(ProcessGroup.prototype) as ProcessGroup;
    const config = swigluConfig({ hidden: 8, intermediate: 16, experts: 4, topK: 2 });
    const host = (shape: number[]) => ({ dtype: 'float32' as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    const weights = { router: host([4, 8]), w13: host([4, 32, 8]), w2: host([4, 8, 16]) };
    expectThrows(() => MoELayer.fromWeights(config, weights, { group, parallel: 'auto' as never }), 'E_INVALID_ARGUMENT',
      /^MoELayer\.fromWeights: parallel 'auto' needs the group to agree on the split, which takes a collective: pass await autoParallel\(group, config\) instead$/);
  });

  it('rankWeightBytes: 1/N of the experts under every split of N, plus the replicated router', () => {
    const routerBytes = MIXTRAL.numExperts * MIXTRAL.hiddenSize * 2;
    const expertBytes = 8 * 3 * 4096 * 14336 * 2;
    for (const plan of factorizations(8)) {
      expect(rankWeightBytes(MIXTRAL, 'bfloat16', plan)).toBe(expertBytes / 8 + routerBytes);
    }
    expect(FIT_FRACTION).toBe(0.8);
  });
});
