// The wide-EP bench (lib/bench/wide_ep_run.ts) on the CPU: two simulated ranks over a loopback
// all-to-all, a mini preset, one timed run each; and its command-line checks.
import { describe, expect, it } from 'vitest';

import { MINI_PRESETS } from '../lib/bench/presets';
import { exchangeBytesPerRow, runWideEpBench } from '../lib/bench/wide_ep_run';
import { LoopbackHub } from './helpers/loopback_group';

describe('bench --parallel --dispatch all_to_all', () => {
  it('times wide EP against the whole layer and agrees on every rank', async () => {
    const preset = MINI_PRESETS.find((candidate) => candidate.name === 'qwen3-30b-a3b-mini')!;
    const hub = new LoopbackHub(2);
    const printed: string[] = [];
    const options = { presets: [preset], tokens: [8], dtype: 'float32' as const, warmup: 0, runs: 1, json: undefined };
    const perRank = await Promise.all(hub.groups.map((group) =>
      runWideEpBench(options, { ...group, device: 'cpu' }, (line) => {
        if (group.rank === 0) printed.push(line);
      })));
    expect(perRank[0]).toEqual(perRank[1]);  // the figures are gathered: every rank has the same rows
    const [row] = perRank[0]!;
    expect(row).toMatchObject({ preset: 'qwen3-30b-a3b-mini', worldSize: 2, tokensPerRank: 8, dtype: 'float32' });
    expect(row!.wideMs).toBeGreaterThan(0);
    expect(row!.singleMs).toBeGreaterThan(0);
    expect(row!.perGpuRatio).toBeCloseTo(row!.singleMs / row!.wideMs, 6);
    // 8 tokens × top-8 pairs on each rank; with 64 of 128 experts per rank, some leave it, none more than all.
    expect(row!.rowsSent).toBeGreaterThan(0);
    expect(row!.rowsSent).toBeLessThanOrEqual(64);
    expect(printed.at(-1)).toMatch(/^qwen3-30b-a3b-mini +8 /);
    // The all-reduce design needs a ProcessGroup's allReduce: not timed over the loopback.
    expect(row!.allReduceMs).toBeUndefined();
    // Rows out and back in float32: 2 × 4 bytes per value.
    expect(row!.exchangeBytes).toBe(row!.rowsSent * preset.config.hiddenSize * 8);
  });

  it('with FP8 experts, counts the rows out as FP8 with their scales and back in the layer\'s dtype', async () => {
    const preset = MINI_PRESETS.find((candidate) => candidate.name === 'qwen3-30b-a3b-mini')!;
    const hub = new LoopbackHub(2);
    const printed: string[] = [];
    const options = { presets: [preset], tokens: [8], dtype: 'float32' as const, quantize: 'fp8' as const, warmup: 0, runs: 1, json: undefined };
    const perRank = await Promise.all(hub.groups.map((group) =>
      runWideEpBench(options, { ...group, device: 'cpu' }, (line) => {
        if (group.rank === 0) printed.push(line);
      })));
    const [row] = perRank[0]!;
    const hidden = preset.config.hiddenSize;
    expect(row).toMatchObject({ quantization: 'fp8' });
    expect(row!.rowsSent).toBeGreaterThan(0);
    expect(row!.exchangeBytes).toBe(row!.rowsSent * (hidden + 4 * Math.ceil(hidden / 128) + 4 * hidden));
    expect(exchangeBytesPerRow(hidden, 'bfloat16', 'fp8')).toBe(hidden + 4 * Math.ceil(hidden / 128) + 2 * hidden);
    expect(exchangeBytesPerRow(hidden, 'bfloat16', undefined)).toBe(4 * hidden);
    expect(printed[0]).toMatch(/float32, fp8 experts;/);
    // FP8 went over the wire: the hub saw FP8 rows.
    expect(hub.sent.some((call) => call.dtype === 'float8_e4m3')).toBe(true);
  });
});
