// bench/host_cost.js, run as a user runs it (node, on the built dist; test/setup/build_dist.ts
// compiles dist first): per-op host times on the CPU, its JSON, and refusals of bad options.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SCRIPT = path.resolve(__dirname, '../bench/host_cost.js');

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('bench/host_cost.js', () => {
  it('times every op and the eager forward on the CPU and writes them as JSON', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-host-cost-'));
    try {
      const json = path.join(dir, 'host.json');
      const result = run(['--device', 'cpu', '--iterations', '20', '--warmup', '5', '--json', json]);
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
      expect(result.stdout).toMatch(/^# host time per call on cpu \(qwen3-30b-a3b-mini, 1 token\(s\), float32; mean of 20\)/);
      const written = JSON.parse(fs.readFileSync(json, 'utf8')) as { device: string; preset: string; rows: { name: string; hostMicros: number }[] };
      expect(written.device).toBe('cpu');
      expect(written.preset).toBe('qwen3-30b-a3b-mini');
      expect(written.rows.map((row) => row.name)).toEqual([
        'Tensor.empty + dispose',
        'linear (router)',
        'route',
        'permute',
        'groupedGemm up (swiglu)',
        'groupedGemm down',
        'combine',
        'MoELayer.forward',
      ]);
      for (const row of written.rows) {
        expect(Number.isFinite(row.hostMicros)).toBe(true);
        expect(row.hostMicros).toBeGreaterThan(0);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the README's example runs as written", () => {
    const readme = fs.readFileSync(path.resolve(__dirname, '../README.md'), 'utf8');
    const lines = readme.split('\n').filter((line) => line.startsWith('node bench/host_cost.js '));
    expect(lines).toHaveLength(1);
    const result = run(lines[0]!.split(/\s+/).slice(2));
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^MoELayer\.forward +[0-9.]+ µs$/m);
  });

  it('refuses an unknown preset and a count that is not a positive integer', () => {
    const preset = run(['--device', 'cpu', '--preset', 'nope']);
    expect(preset.status).toBe(2);
    expect(preset.stderr).toMatch(/^host_cost: no preset nope \(one of mixtral-8x7b, /);
    const count = run(['--device', 'cpu', '--iterations', '0']);
    expect(count.status).toBe(2);
    expect(count.stderr).toBe('host_cost: --iterations must be a positive integer\n');
  });
});
