// moekit launch and the NCCL-id rendezvous, with plain local processes (no GPU needed).
import { spawn, spawnSync } from 'node:child_process';
import * as net from 'node:net';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

import { childEnvironment } from '../lib/parallel/launcher';
import { exchangeId, readLaunchEnvironment } from '../lib/parallel/rendezvous';
import { fixtureDir } from './helpers/fixtures';

const MAIN = path.resolve(__dirname, '../dist/cli/main.js');
const RANK_SCRIPT = path.resolve(__dirname, 'fixtures/rendezvous_rank.js');

/** A free TCP port on loopback. */
async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function launch(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [MAIN, 'launch', ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('moekit launch', () => {
  it('starts N ranks that all receive the same id through the rendezvous', async () => {
    const port = await freePort();
    const { code, stdout } = launch(['--nproc', '4', '--master-port', String(port), RANK_SCRIPT]);
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n').sort();
    expect(lines).toHaveLength(4);
    for (let rank = 0; rank < 4; rank++) {
      expect(lines[rank]).toBe(`[rank ${rank}] rank ${rank}/4 local ${rank} id 030a11181f262d34 len 128`);
    }
  });

  it('runs two "nodes" on one host as one group of 4', async () => {
    const port = await freePort();
    const common = ['--nproc', '2', '--nnodes', '2', '--master-addr', '127.0.0.1', '--master-port', String(port)];
    const nodes = [1, 0].map((nodeRank) => new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = spawn(process.execPath, [MAIN, 'launch', ...common, '--node-rank', String(nodeRank), RANK_SCRIPT], { env: process.env });
      let stdout = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.on('close', (code) => resolve({ code, stdout }));
    }));
    const results = await Promise.all(nodes);
    expect(results.map((result) => result.code)).toEqual([0, 0]);
    expect(results[0]!.stdout).toMatch(/\[rank 2\] rank 2\/4 local 0 /);
    expect(results[0]!.stdout).toMatch(/\[rank 3\] rank 3\/4 local 1 /);
    expect(results[1]!.stdout).toMatch(/\[rank 0\] rank 0\/4 local 0 /);
  });

  it('stops every rank when one fails, and exits with its code', async () => {
    const port = await freePort();
    const started = Date.now();
    const { code, stderr } = launch(['--nproc', '3', '--master-port', String(port), RANK_SCRIPT], { FAIL_RANK: '1', HANG_AFTER: '1', TIMEOUT_MS: '30000' });
    expect(code).toBe(3);
    expect(stderr).toMatch(/\[rank 1\] failing on purpose/);
    expect(stderr).toMatch(/rank 1 exited with code 3; stopping the other ranks/);
    expect(Date.now() - started).toBeLessThan(20_000); // nobody waited for the 30 s rendezvous timeout
  });

  it('rejects bad usage with exit code 2', () => {
    expect(launch(['script.js']).code).toBe(2);
    expect(launch(['--nproc', '2']).stderr).toMatch(/missing argument script\.js/);
    expect(launch(['--nproc', '2', '--nnodes', '2', '--node-rank', '2', 'x.js']).stderr).toMatch(/--node-rank 2 must be less than --nnodes 2/);
  });
});

describe('rendezvous', () => {
  it('times out with an error naming the missing ranks instead of hanging', async () => {
    const port = await freePort();
    const options = { rank: 0, worldSize: 3, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 500 };
    await expect(exchangeId(options, () => new Uint8Array(128))).rejects.toThrow(/timed out after 500 ms: rank\(s\) 1, 2 never connected/);
    const client = { rank: 1, worldSize: 3, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 300 };
    await expect(exchangeId(client, () => new Uint8Array(0))).rejects.toThrow(/the master never answered/);
  });

  it('reads torchrun-style environments and the launcher writes them', () => {
    const env = childEnvironment({ nproc: 4, nnodes: 2, nodeRank: 1, masterAddr: '10.0.0.1', masterPort: 1234, script: 'x', args: [] }, 3, {});
    expect(env).toMatchObject({ RANK: '7', LOCAL_RANK: '3', WORLD_SIZE: '8', LOCAL_WORLD_SIZE: '4', MASTER_ADDR: '10.0.0.1', MASTER_PORT: '1234', NCCL_NVLS_ENABLE: '0' });
    expect(readLaunchEnvironment(env)).toEqual({ rank: 7, worldSize: 8, localRank: 3, masterAddr: '10.0.0.1', masterPort: 1234 });
    expect(() => readLaunchEnvironment({ RANK: '8', WORLD_SIZE: '8' })).toThrow(/RANK 8 is outside WORLD_SIZE 8/);
  });
});

describe('moekit launch --explain', () => {
  it("prints parallel: 'auto''s split for a preset in one line, from the memory and link given, launching nothing", () => {
    const nvlink = launch(['--nproc', '8', '--explain', 'mixtral-8x7b', '--dtype', 'bfloat16', '--gpu-memory-gb', '130', '--link', 'nvlink']);
    expect(nvlink).toMatchObject({ code: 0, stderr: '' });
    expect(nvlink.stdout).toBe('moeTpSize 8 × moeEpSize 1 on 8 GPUs (8 experts, I 14336, bfloat16; 0.3 GiB of weights per GPU of 130.0 GiB free; ' +
      'link nvlink (given)): NVLink: the most Tensor Parallel that leaves each rank I / 8 = 1792 >= 256 (equal work on every rank)\n');
    const pcie = launch(['--nproc', '4', '--nnodes', '2', '--explain', 'qwen3-30b-a3b', '--gpu-memory-gb', '80', '--link', 'pcie']);
    expect(pcie.stdout).toMatch(/^moeTpSize 1 × moeEpSize 8 on 8 GPUs \(128 experts, I 768, float32; .*: the link is pcie, not NVLink/);
  });

  it("runs the README's preset example as written", () => {
    const readme = fs.readFileSync(path.resolve(__dirname, '../README.md'), 'utf8');
    const lines = readme.split('\n').filter((line) => line.startsWith('npx moekit launch ') && line.includes('--explain') && !line.includes('path/to/'));
    expect(lines).toHaveLength(1);
    const { code, stdout } = launch(lines[0]!.split(/\s+/).slice(3));
    expect(code).toBe(0);
    expect(stdout).toMatch(/^moeTpSize 1 × moeEpSize 8 on 8 GPUs .*link pcie \(given\)\): the link is pcie, not NVLink/);
  });

  it("reads a checkpoint's layer, and without --link on a machine without GPUs (this one) takes the link as unknown", () => {
    const { code, stdout } = launch(['--nproc', '2', '--explain', fixtureDir('mixtral'), '--layer', '0', '--gpu-memory-gb', '1']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^moeTpSize 1 × moeEpSize 2 on 2 GPUs \(8 experts, I 96, float32; .*; link unknown \(2 GPUs asked about, 0 visible here\)\): the link is unknown/);
  });

  it('refuses what it cannot explain: no memory to read, a layer too large, a bad --link, explain options without --explain', () => {
    expect(launch(['--nproc', '4', '--explain', 'mixtral-8x7b', '--link', 'pcie']).stderr).toMatch(/--explain needs --gpu-memory-gb here: --nproc 4, and \d+ CUDA GPUs? visible/);
    const tooLarge = launch(['--nproc', '1', '--explain', 'deepseek-v3', '--gpu-memory-gb', '16']);
    expect(tooLarge).toMatchObject({ code: 1, stderr: expect.stringMatching(/need 42\.2 GiB per GPU on 1 GPU, more than 80% of the 16\.0 GiB free/) });
    expect(launch(['--nproc', '2', '--explain', 'mixtral-8x7b', '--gpu-memory-gb', '1', '--link', 'ib']).stderr).toMatch(/--link must be one of nvlink, pcie, unknown, got "ib"/);
    expect(launch(['--nproc', '2', '--link', 'nvlink', 'script.js'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/--link goes with --explain/) });
  });
});
