// MOEKIT_CPU_MEMORY_MB: CPU tensors share a host-memory budget; past it an allocation is E_OOM,
// and freed tensors give their bytes back. Runs in a child process, since the budget is read once
// when the CPU device starts.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const script = `
const { Tensor } = require(${JSON.stringify(path.resolve(__dirname, '../dist/index.js'))});
const codeOf = (make) => { try { make().dispose(); return 'ok'; } catch (error) { return error.code; } };
const results = [];
results.push(codeOf(() => Tensor.empty([20 * 1024 * 1024])));   // 80 MiB of 64: refused
const held = Tensor.empty([10 * 1024 * 1024]);                    // 40 MiB: fits
results.push(codeOf(() => Tensor.empty([8 * 1024 * 1024])));     // 32 MiB more: refused
held.dispose();
(async () => {
  await require(${JSON.stringify(path.resolve(__dirname, '../dist/sync.js'))}).synchronize('cpu');  // frees are queued
  results.push(codeOf(() => Tensor.empty([8 * 1024 * 1024])));   // fits again
  console.log(JSON.stringify(results));
})();
`;

describe('MOEKIT_CPU_MEMORY_MB', () => {
  it('refuses CPU allocations past the budget with E_OOM and takes freed bytes back', () => {
    const output = execFileSync(process.execPath, ['-e', script], { env: { ...process.env, MOEKIT_CPU_MEMORY_MB: '64' }, encoding: 'utf8' });
    expect(JSON.parse(output.trim())).toEqual(['E_OOM', 'E_OOM', 'ok']);
  });
});
