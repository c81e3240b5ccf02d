// The benchmark's arithmetic and reports: floors from the two ceilings, rows, the printed table, and
// the join with bench/torch_baseline.py's JSON.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

import { compareRows, formatComparison, formatComparisonPreamble, readTorchRows, type TorchRow } from '../lib/bench/compare';
import { findPreset, FULL_PRESETS } from '../lib/bench/presets';
import { benchRow, formatHeader, formatPreamble, formatRow, measuredTouchedExperts, type BenchContext } from '../lib/bench/report';
import { activeWeightBytes, expectedTouchedExperts, forwardFloor, forwardFlops, type Ceilings } from '../lib/bench/roofline';
import { expertWeightBytes } from '../lib/model/weight_bytes';
import { quantile } from '../lib/bench/statistics';
import { summarizeReadings } from '../lib/bench/telemetry';
import { gpuReading as reading } from './helpers/gpu_readings';

const qwen = findPreset('qwen3-30b-a3b')!;
const deepseek = findPreset('deepseek-v3')!;
// The H100 figures of bench/results/h100-2026-11-22-torch.json.
const H100: Ceilings = { matmulTflops: 751, matmulSource: 'cuBLAS', copyGBps: 2913, copySource: 'copy' };

describe('roofline', () => {
  it('counts FLOPs and expected active-expert bytes as bench/torch_baseline.py does', () => {
    const { config } = qwen; // E 128, K 8, H 2048, I 768
    expect(forwardFlops(config, 16)).toBe(2 * 16 * 8 * 3 * 2048 * 768 + 2 * 16 * 2048 * 128);
    expect(expectedTouchedExperts(config, 1)).toBeCloseTo(8, 9);
    expect(expectedTouchedExperts(config, 16384)).toBeCloseTo(128, 9);
    // DeepSeek-V3's shared expert is read whatever the routing.
    expect(activeWeightBytes(deepseek.config, 1, 'bfloat16')).toBeCloseTo((8 * 3 * 7168 * 2048 + 3 * 7168 * 2048) * 2, 0);
  });

  it('counts two H×I matrices per expert under a non-gated activation (w13 is [E, I, H]), three under a gated one', () => {
    const relu = { ...qwen.config, activation: 'relu' as const };
    expect(forwardFlops(relu, 16)).toBe(2 * 16 * 8 * 2 * 2048 * 768 + 2 * 16 * 2048 * 128);
    expect(activeWeightBytes(relu, 1, 'bfloat16')).toBeCloseTo(8 * 2 * 2048 * 768 * 2, 0);
    // Per-channel int8: a float32 scale per row, I rows of w13 and H of w2, over the 2·H·I values.
    const channel = { ...relu, quantization: 'int8' as const, quantizationGroupSize: 'channel' as const };
    expect(expertWeightBytes(channel, 'bfloat16')).toBeCloseTo(1 + (4 * (768 + 2048)) / (2 * 2048 * 768), 12);
    expect(expertWeightBytes({ ...channel, activation: 'swiglu' }, 'bfloat16')).toBeCloseTo(1 + (4 * (2 * 768 + 2048)) / (3 * 2048 * 768), 12);
  });

  it('counts FP8 experts (routed and shared) at a byte per weight plus a float32 scale per 128×128 block', () => {
    const fp8 = { ...deepseek.config, quantization: 'fp8' as const };
    const weights = 8 * 3 * 7168 * 2048 + 3 * 7168 * 2048;
    expect(activeWeightBytes(fp8, 1, 'bfloat16')).toBeCloseTo(weights + (weights / (128 * 128)) * 4, 0);
    // At 1 token the floor is the weights': FP8 halves it.
    const floor = (config: typeof fp8 | typeof deepseek.config) => forwardFloor(config, 1, 'bfloat16', H100).ms;
    expect(floor(fp8) / floor(deepseek.config)).toBeCloseTo((1 + 4 / 16384) / 2, 9);
  });

  it('floors at the slower of compute and weight streaming', () => {
    const decode = forwardFloor(qwen.config, 1, 'bfloat16', H100);
    expect(decode.ms).toBe(decode.weightsMs);
    expect(decode.weightsMs).toBeCloseTo((8 * 3 * 2048 * 768 * 2) / 2913e9 * 1e3, 9);
    const prefill = forwardFloor(findPreset('mixtral-8x7b')!.config, 16384, 'bfloat16', H100);
    expect(prefill.ms).toBe(prefill.computeMs);
    // torch_baseline.py's floor for this point on the same ceilings: 15.374 ms.
    expect(prefill.ms).toBeCloseTo(15.374, 2);
  });
});

describe('bench rows', () => {
  const context: BenchContext = { device: 'cuda:0', deviceName: 'NVIDIA H100 80GB HBM3', dtype: 'bfloat16', quantization: null, groupSize: null, ceilings: H100 };
  const timing = {
    ms: 2,
    p10Ms: 1.9,
    p90Ms: 2.5,
    hostMs: 2.2,
    stageMs: { router: 0.1, routing: 0.05, permute: 0.05, expert_up: 1.2, expert_down: 0.5, combine: 0.1 },
    expertCounts: [Int32Array.from({ length: 128 }, (_, e) => (e < 100 ? 1 : 0)), Int32Array.from({ length: 128 }, (_, e) => (e < 90 ? 2 : 0))],
  };

  it('carry the timing, the floor with its terms, the ceilings and the experts touched', () => {
    const row = benchRow(qwen, context, 128, timing);
    const floor = forwardFloor(qwen.config, 128, 'bfloat16', H100);
    expect(row).toMatchObject({
      preset: 'qwen3-30b-a3b', device: 'cuda:0', deviceName: 'NVIDIA H100 80GB HBM3', dtype: 'bfloat16', tokens: 128,
      experts: 128, topK: 8, hidden: 2048, intermediate: 768,
      msPerForward: 2, p10Ms: 1.9, p90Ms: 2.5, hostMsPerForward: 2.2, stageMs: timing.stageMs,
      floorMs: floor.ms, floorComputeMs: floor.computeMs, floorWeightsMs: floor.weightsMs, ceilings: H100,
      touchedExperts: { expected: expectedTouchedExperts(qwen.config, 128), measured: 95 },
    });
    expect(row.tflops).toBeCloseTo(forwardFlops(qwen.config, 128) / 2e-3 / 1e12, 9);
    expect(row.weightGBps).toBeCloseTo(activeWeightBytes(qwen.config, 128, 'bfloat16') / 2e-3 / 1e9, 6);
    expect(row.tokensPerSecond).toBe(64000);
    // What --shape E,K,H,I,S and --routing would rebuild the layer from.
    expect(row).toMatchObject({ sharedIntermediate: 0, routing: qwen.config.routing, activation: 'swiglu' });
    expect(benchRow(deepseek, context, 128, timing)).toMatchObject({
      sharedIntermediate: 2048, routing: { method: 'sigmoid_group_topk', numGroups: 8, topkGroups: 4, scalingFactor: 2.5 }, activation: 'swiglu',
    });
  });

  it('print under a preamble naming the device and both ceilings, a stage per column', () => {
    expect(formatPreamble(context).slice(0, 3)).toEqual([
      '# cuda:0 (NVIDIA H100 80GB HBM3), bfloat16',
      '# matmul ceiling 751.0 TFLOP/s: cuBLAS',
      '# copy ceiling 2913 GB/s: copy',
    ]);
    const titles = formatHeader(context).split(/\s{2,}/);
    expect(titles).toEqual(['preset', 'tokens', 'ms/forward', 'p10-p90', 'graph ms', 'floor ms', 'x floor', 'TFLOP/s', 'weights GB/s', 'SM MHz', 'experts',
      'router', 'routing', 'permute', 'expert_up', 'expert_down', 'shared', 'combine', 'fused']);
    const cells = formatRow(benchRow(qwen, context, 128, timing)).split(/\s+/);
    const floor = forwardFloor(qwen.config, 128, 'bfloat16', H100).ms;
    expect(cells.slice(0, 6)).toEqual(['qwen3-30b-a3b', '128', '2.000', '1.900-2.500', '-', floor.toFixed(3)]);
    expect(cells[6]).toBe((2 / floor).toFixed(1));
    // No clocks read (no NVML), measured / expected experts, then the stages; no shared expert here.
    expect(cells.slice(9)).toEqual(['-', `95/${expectedTouchedExperts(qwen.config, 128).toFixed(0)}`, '0.100', '0.050', '0.050', '1.200', '0.500', '-', '0.100', '-']);
  });

  it('carry the clocks the runs were read at, and the preamble the matmul ceiling\'s', () => {
    const clocks = summarizeReadings([reading(1440), reading(1470)])!;
    const row = benchRow(qwen, context, 128, { ...timing, clocks });
    expect(row.clocks).toEqual(clocks);
    expect(formatRow(row).split(/\s+/)[9]).toBe('1455');
    const matmulClocks = summarizeReadings([reading(1980, { powerW: 420 })])!;
    expect(formatPreamble({ ...context, ceilings: { ...H100, matmulClocks } })).toContain(
      '# matmul ceiling 751.0 TFLOP/s: cuBLAS; SM 1980 MHz (1980 at the lowest), 420 W of 700 W');
  });

  it('labels an FP8 run\'s own floor as an estimate (its matmul ceiling is a 16-bit GEMM\'s)', () => {
    const fp8Context = { ...context, quantization: 'fp8' as const };
    expect(formatHeader(fp8Context).split(/\s{2,}/)).toContain('x est floor');
    expect(formatPreamble(fp8Context).join('\n')).toMatch(/the floor is an ESTIMATE: the experts compute in FP8 but the matmul ceiling is a 16-bit GEMM's/);
    expect(formatHeader(context).split(/\s{2,}/)).toContain('x floor');
  });

  it('quantiles interpolate and the touched-expert count averages over inputs', () => {
    expect(quantile([4, 1, 3, 2], 0.5)).toBe(2.5);
    expect(quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 0.1)).toBe(2);
    expect(quantile([7], 0.9)).toBe(7);
    expect(measuredTouchedExperts([Int32Array.of(0, 3, 1), Int32Array.of(0, 0, 4)])).toBe(1.5);
    expect(measuredTouchedExperts([])).toBeNaN();
  });
});

describe('comparison with bench/torch_baseline.py', () => {
  const torch: TorchRow[] = [
    { preset: 'qwen3-30b-a3b', pipeline: 'grouped_mm', tokens: 1, ms: 0.5, floor_ms: 0.026, tflops: 0.2, matmul_ceiling_tflops: 751, copy_ceiling_tbps: 2.91, gpu: 'NVIDIA H100 80GB HBM3' },
    { preset: 'qwen3-30b-a3b', pipeline: 'hf_loop', tokens: 1, ms: 1.6, floor_ms: 0.026, tflops: 0.1, matmul_ceiling_tflops: 751, copy_ceiling_tbps: 2.91, gpu: 'NVIDIA H100 80GB HBM3' },
  ];

  it('joins on preset and tokens against torch._grouped_mm, using moekit\'s floor when it has one', () => {
    const moekit = [
      { preset: 'qwen3-30b-a3b', tokens: 1, msPerForward: 0.25, tflops: 0.4, floorMs: 0.02, stageMs: { routing: 0.01 }, clocks: summarizeReadings([reading(1455)])! },
      // An older result file: no floor, no stages; the baseline's floor stands in.
      { preset: 'qwen3-30b-a3b', tokens: 16, msPerForward: 1, tflops: 1 },
    ];
    const rows = compareRows(moekit, [...torch, { ...torch[0]!, tokens: 16, ms: 0.75, floor_ms: 0.25 }]);
    expect(rows[0]).toMatchObject({ moekitMs: 0.25, torchMs: 0.5, speedup: 2, floorMs: 0.02, overFloor: 12.5, tflops: 0.4 });
    expect(rows[1]).toMatchObject({ torchMs: 0.75, speedup: 0.75, floorMs: 0.25, overFloor: 4, stageMs: {} });

    const table = formatComparison(rows);
    expect(table[0]).toBe('| preset | tokens | moekit ms | graph ms | torch _grouped_mm ms | speed-up | floor ms | moekit / floor | TFLOP/s | SM MHz | GEMMs ms | torch GEMMs ms | GEMM speed-up | router ms | routing ms | permute ms | expert_up ms | expert_down ms | shared ms | combine ms | fused ms |');
    expect(table[1]).toBe('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    expect(table[2]).toBe('| qwen3-30b-a3b | 1 | 0.250 | — | 0.500 | 2.00× | 0.020 | 12.5× | 0.4 | 1455 | — | — | — | — | 0.010 | — | — | — | — | — | — |');
    expect(table[3]).toMatch(/^\| qwen3-30b-a3b \| 16 \| 1\.000 \| — \| 0\.750 \| 0\.75× \| 0\.250 \| 4\.0× \| 1\.0 \| — \|/);
  });

  it('takes the speed-up and the floor ratio on a graph replay when it beats the eager forward', () => {
    const moekit = [
      { preset: 'qwen3-30b-a3b', tokens: 1, msPerForward: 0.25, graphMsPerForward: 0.05, tflops: 0.4, floorMs: 0.025 },
      { preset: 'qwen3-30b-a3b', tokens: 16, msPerForward: 0.2, graphMsPerForward: 0.4, tflops: 1, floorMs: 0.1 },
    ];
    const rows = compareRows(moekit, [...torch, { ...torch[0]!, tokens: 16, ms: 0.8 }]);
    expect(rows[0]).toMatchObject({ moekitMs: 0.25, graphMs: 0.05, bestMs: 0.05, speedup: 10, overFloor: 2 });
    expect(rows[1]).toMatchObject({ bestMs: 0.2, speedup: 4, overFloor: 2 });
    expect(formatComparison(rows)[2]).toMatch(/^\| qwen3-30b-a3b \| 1 \| 0\.250 \| 0\.050 \| 0\.500 \| 10\.00× \| 0\.025 \| 2\.0× \|/);
  });

  it('sets moekit\'s two GEMM stages beside torch\'s grouped GEMMs alone', () => {
    const moekit = [{ preset: 'qwen3-30b-a3b', tokens: 1, msPerForward: 0.25, tflops: 0.4, stageMs: { expert_up: 0.03, expert_down: 0.01 } }];
    const [row] = compareRows(moekit, [...torch, { ...torch[0]!, pipeline: 'gemms', ms: 0.1 }]);
    expect(row!.gemmMs).toBeCloseTo(0.04, 12);
    expect(row!.torchGemmMs).toBe(0.1);
    expect(row!.gemmSpeedup).toBeCloseTo(2.5, 12);
    expect(row!.torchMs).toBe(0.5);
    expect(formatComparison([row!])[2]).toMatch(/\| 0\.4 \| — \| 0\.040 \| 0\.100 \| 2\.50× \| — \| — \| — \| 0\.030 \| 0\.010 \|/);
  });

  it('measures FP8 experts against an FP8 baseline\'s floor (FP8 ceiling), not moekit\'s 16-bit-GEMM estimate', () => {
    const fp8Torch = torch.map((row) => ({ ...row, quantize: 'fp8', floor_ms: 0.01 }));
    const moekit = [{ preset: 'qwen3-30b-a3b', tokens: 1, msPerForward: 0.05, tflops: 0.4, floorMs: 0.02, quantization: 'fp8' as const }];
    expect(compareRows(moekit, fp8Torch)[0]).toMatchObject({ floorMs: 0.01, overFloor: 5 });
    // A 16-bit baseline's floor is no FP8 floor: moekit's own stands.
    expect(compareRows(moekit, torch)[0]).toMatchObject({ floorMs: 0.02 });
    // Dense experts keep moekit's floor beside an FP8 baseline too.
    expect(compareRows([{ ...moekit[0]!, quantization: null }], fp8Torch)[0]).toMatchObject({ floorMs: 0.02 });
  });

  it('leaves a point the baseline lacks blank, and warns when the GPUs differ', () => {
    const moekit = [{ preset: 'mixtral-8x7b-mini', tokens: 1, msPerForward: 3, tflops: 0.1, deviceName: 'AMD EPYC', ceilings: H100 }];
    const [row] = compareRows(moekit, torch);
    expect(row).toMatchObject({ torchMs: undefined, speedup: undefined, floorMs: undefined });
    expect(formatComparison([row!])[2]).toBe('| mixtral-8x7b-mini | 1 | 3.000 | — | — | — | — | — | 0.1 | — | — | — | — | — | — | — | — | — | — | — | — |');
    expect(formatComparisonPreamble(moekit, torch)).toEqual([
      '# moekit: AMD EPYC, matmul 751 TFLOP/s, copy 2.91 TB/s',
      '# torch:  NVIDIA H100 80GB HBM3, matmul 751 TFLOP/s, copy 2.91 TB/s',
      '# WARNING: different devices (AMD EPYC vs NVIDIA H100 80GB HBM3): the times do not compare',
    ]);
  });

  it('reads the baseline\'s JSON, naming a file that is not one', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-compare-'));
    const good = path.join(dir, 'torch.json');
    fs.writeFileSync(good, JSON.stringify(torch));
    expect(readTorchRows(good)).toEqual(torch);
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify([{ preset: 'x', tokens: 1 }]));
    expect(() => readTorchRows(bad)).toThrow(/bad\.json: row 0 is not a bench\/torch_baseline\.py row \(no pipeline, ms, floor_ms\)/);
    expect(() => readTorchRows(path.join(dir, 'missing.json'))).toThrow(expect.objectContaining({ code: 'E_NOT_FOUND' }));
  });
});

describe('expert weight bytes (the floor counts real bytes)', () => {
  it('int8 and int4 count their values and their group scales; mxfp4 half a byte and a byte per 32', () => {
    const config = FULL_PRESETS[0]!.config;
    expect(expertWeightBytes(config, 'bfloat16')).toBe(2);
    expect(expertWeightBytes({ ...config, quantization: 'int4' }, 'bfloat16')).toBe(0.5 + 4 / 128);
    expect(expertWeightBytes({ ...config, quantization: 'int4', quantizationGroupSize: 64 }, 'bfloat16')).toBe(0.5 + 4 / 64);
    const { hiddenSize: H, intermediateSize: I } = config;
    expect(expertWeightBytes({ ...config, quantization: 'int8' }, 'bfloat16')).toBeCloseTo(1 + (4 * (2 * I + H)) / (3 * H * I), 12);
    expect(expertWeightBytes({ ...config, quantization: 'mxfp4' }, 'bfloat16')).toBe(0.5 + 1 / 32);
    const gptOss = findPreset('gpt-oss-20b')!.config;
    expect([gptOss.numExperts, gptOss.routing.topK, gptOss.hiddenSize, gptOss.intermediateSize, gptOss.quantization, gptOss.activation]).toEqual([32, 4, 2880, 2880, 'mxfp4', 'gptoss_swiglu']);
  });
});
