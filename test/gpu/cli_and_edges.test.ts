// `moekit run` and `moekit bench` with --device cuda:0, and edge cases of routing on the GPU.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

import { SafetensorsFile } from '../../lib/checkpoint/safetensors';
import { MoELayer, Tensor } from '../../lib/index';
import { swigluConfig } from '../helpers/configs';
import { FIXTURE_FAMILIES, fixtureDir, readExpectation, relativeError } from '../helpers/fixtures';
import { GPU, HAS_GPU } from './gpu';

const MAIN = path.resolve(__dirname, '../../dist/cli/main.js');

describe.skipIf(!HAS_GPU).each(FIXTURE_FAMILIES)('moekit run --device cuda:0 on the %s fixture', (family) => {
  it('writes the same output as transformers', async () => {
    const output = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-gpu-')), 'out.safetensors');
    const input = `${path.join(fixtureDir(family), 'expected.safetensors')}:input`;
    const result = spawnSync(process.execPath, [MAIN, 'run', fixtureDir(family), '--layer', '0', '--input', input, '--output', output, '--device', GPU], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const file = await SafetensorsFile.open(output);
    const expected = await readExpectation(family);
    expect(relativeError((await file.read('output')).data as Float32Array, expected.output)).toBeLessThanOrEqual(1e-5);
    await file.close();
  });
});

describe.skipIf(!HAS_GPU)('routing edge cases on the GPU', () => {
  it('a single token routed to every expert (K = E) matches the CPU', async () => {
    const config = swigluConfig({ hidden: 100, intermediate: 36, experts: 8, topK: 8 });
    using cpuLayer = MoELayer.random(config, { seed: 4 });
    using gpuLayer = cpuLayer.to(GPU);
    using x = Tensor.random([1, 100], { seed: 5 });
    using xGpu = x.to(GPU);
    using cpu = cpuLayer.forward(x);
    using gpu = gpuLayer.forward(xGpu);
    expect(Array.from(await gpu.expertCounts.toArray())).toEqual(new Array(8).fill(1));
    expect(relativeError((await gpu.output.toArray()) as Float32Array, (await cpu.output.toArray()) as Float32Array)).toBeLessThanOrEqual(1e-5);
  });
});

describe.skipIf(!HAS_GPU)('moekit bench --device cuda:0', () => {
  it('times decode-sized points as graph replays as well, larger ones eagerly only', () => {
    const json = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-gpu-')), 'bench.json');
    const args = [MAIN, 'bench', '--device', GPU, '--preset', 'qwen3-30b-a3b-mini', '--tokens', '1,200', '--warmup', '1', '--runs', '2', '--json', json];
    const result = spawnSync(process.execPath, args, { encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    const rows = JSON.parse(fs.readFileSync(json, 'utf8')) as { tokens: number; graphMsPerForward?: number }[];
    expect(rows.map((row) => row.tokens)).toEqual([1, 200]);
    expect(rows[0]!.graphMsPerForward).toBeGreaterThan(0);
    expect(rows[1]!.graphMsPerForward).toBeUndefined();
  });
});
