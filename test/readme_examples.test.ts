// The README's examples run as written: every ```js block that is a whole program for the CPU (it
// requires 'moekit', runs an async body, and names no placeholder path, GPU or process group) runs
// in a child process from the repository root, with 'moekit' resolved to this checkout's build.
// (Sketches such as the ops walk-through, which use names they do not define, are not programs.)
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '..');
const blocks = [...fs.readFileSync(path.join(root, 'README.md'), 'utf8').matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1]!);
const runnable = blocks.filter((code) => code.includes("require('moekit')") && code.includes('async') && !/path\/to\/|cuda:|ProcessGroup|CudaStream/.test(code));

describe("README's examples", () => {
  it('include the FP8 examples among those run', () => {
    expect(runnable.length).toBeGreaterThanOrEqual(2);
    expect(runnable.some((code) => code.includes('quantizeWeights'))).toBe(true);
  });

  it.each(runnable.map((code, i) => [i, code] as const))('example %i runs', (_, code) => {
    const program = code.replaceAll("require('moekit')", `require(${JSON.stringify(path.join(root, 'dist', 'index.js'))})`);
    const output = execFileSync(process.execPath, ['-e', program], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(output.length).toBeGreaterThan(0);
  });
});
