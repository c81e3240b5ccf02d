// The README's examples run as written: every ```js block that is a whole program for the CPU (it
// requires 'moekit', runs an async body, and names no placeholder path, GPU or process group) runs
// in a child process from the repository root, where 'moekit' resolves to this checkout itself
// (package.json's exports). The TypeScript `using` example compiles with the README's own
// tsconfig.json under a plain `tsc` and runs, in a scratch project that depends on this checkout.
// (Sketches such as the ops walk-through, which use names they do not define, are not programs.)
// The `moekit bench --shape` example runs too, as written, through the CLI that `npx moekit` runs.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
const blocks = (language: string): string[] => [...readme.matchAll(new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``, 'g'))].map((match) => match[1]!);
const runnable = blocks('js').filter((code) => code.includes("require('moekit')") && code.includes('async') && !/path\/to\/|cuda:|ProcessGroup|CudaStream/.test(code));

describe("README's examples", () => {
  it('include the FP8 examples among those run', () => {
    expect(runnable.length).toBeGreaterThanOrEqual(2);
    expect(runnable.some((code) => code.includes('quantizeWeights'))).toBe(true);
  });

  it.each(runnable.map((code, i) => [i, code] as const))('example %i runs as written from the clone', (_, code) => {
    const output = execFileSync(process.execPath, ['-e', code], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(output.length).toBeGreaterThan(0);
  });

  it('the `moekit bench --shape` example runs as written on the CPU: its shape after the preset, in the table and the JSON', () => {
    const lines = readme.split('\n').map((line) => line.trim()).filter((line) => line.startsWith('npx moekit bench ') && line.includes('--shape'));
    expect(lines).toHaveLength(1);
    // What `npx moekit` hands the package's bin (package.json: dist/cli/main.js).
    const args = lines[0]!.split(/\s+/).slice(2);
    const output = execFileSync(process.execPath, [path.join(root, 'dist', 'cli', 'main.js'), ...args], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(output).toMatch(/^shape-E64-K6-H512-I352-S704 +16 /m);
    const json = args[args.indexOf('--json') + 1]!;
    const rows = JSON.parse(fs.readFileSync(json, 'utf8')) as { preset: string; tokens: number }[];
    expect(rows.map((row) => `${row.preset} ${row.tokens}`)).toEqual([
      'qwen3-30b-a3b-mini 1', 'qwen3-30b-a3b-mini 16', 'shape-E64-K6-H512-I352-S704 1', 'shape-E64-K6-H512-I352-S704 16',
    ]);
  });

  it("the TypeScript `using` example compiles with the README's tsconfig under plain tsc, and runs", () => {
    const [tsconfig] = blocks('json').filter((text) => text.includes('esnext.disposable'));
    const [program] = blocks('ts').filter((code) => code.includes('using '));
    expect(tsconfig).toBeDefined();
    expect(program).toBeDefined();
    const app = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-readme-'));
    try {
      fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'my-app', type: 'module', private: true }));
      fs.writeFileSync(path.join(app, 'tsconfig.json'), tsconfig!);
      fs.writeFileSync(path.join(app, 'main.ts'), program!);
      // What `npm install /path/to/moekit` makes: a link to the package, plus @types/node for tsc.
      fs.mkdirSync(path.join(app, 'node_modules', '@types'), { recursive: true });
      fs.symlinkSync(root, path.join(app, 'node_modules', 'moekit'));
      fs.symlinkSync(path.join(root, 'node_modules', '@types', 'node'), path.join(app, 'node_modules', '@types', 'node'));
      execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')], { cwd: app, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      const output = execFileSync(process.execPath, [path.join(app, 'dist', 'main.js')], { cwd: app, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      expect(output).toMatch(/Float32Array\(4096\)/);
    } finally {
      fs.rmSync(app, { recursive: true, force: true });
    }
  });
});
