#!/usr/bin/env node
/**
 * Load on `moekit serve`: requests/s and p50/p99 latency, batched and unbatched, with autocannon.
 *
 *   node bench/serve_load.js [--preset mixtral-8x7b-mini | --checkpoint DIR --layer N]
 *                            [--device cpu|cuda:N] [--dtype float32|bfloat16] [--min-tokens 1] [--max-tokens 16]
 *                            [--connections 64] [--duration 10] [--max-batch-tokens 128] [--max-delay-ms 2]
 *                            [--json FILE] [--cpu-prof DIR]
 *
 * For each mode it starts `node dist/cli/main.js serve` (build first: npm run build) on 127.0.0.1,
 * warms it up, and sends POST /v1/forward bodies (safetensors, input [T, H] with T uniform in
 * [min-tokens, max-tokens], in --dtype's format) from `connections` keep-alive connections for
 * `duration` seconds. Modes: unbatched (--max-batch-tokens 1: each request runs alone) and
 * batched (--max-batch-tokens as given). Prints one line per mode and the ratio; --json writes all.
 * --cpu-prof DIR runs each server under `node --cpu-prof`, its profile written into DIR at exit
 * (warm-up included); --preset mixtral-8x7b-host gives full-size rows with a forward that costs
 * almost nothing, so a CPU profile shows what serving costs on the host.
 */
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const root = path.resolve(__dirname, '..');
const autocannon = require('autocannon');
const { encodeSafetensors } = require(path.join(root, 'dist/checkpoint/safetensors.js'));
const { encodeHalf } = require(path.join(root, 'dist/dtype.js'));
const { findPreset } = require(path.join(root, 'dist/bench/presets.js'));
const { readMoEConfig } = require(path.join(root, 'dist/checkpoint/load.js'));

const { values: options } = parseArgs({
  options: {
    preset: { type: 'string' }, checkpoint: { type: 'string' }, layer: { type: 'string', default: '0' },
    device: { type: 'string', default: 'cpu' }, dtype: { type: 'string' },
    'min-tokens': { type: 'string', default: '1' }, 'max-tokens': { type: 'string', default: '16' },
    connections: { type: 'string', default: '64' }, duration: { type: 'string', default: '10' },
    'max-batch-tokens': { type: 'string', default: '128' }, 'max-delay-ms': { type: 'string', default: '2' },
    json: { type: 'string' }, 'cpu-prof': { type: 'string' },
  },
});
const device = options.device;
const dtype = options.dtype ?? (device === 'cpu' ? 'float32' : 'bfloat16');
const layerArgs = options.checkpoint ? [options.checkpoint, '--layer', options.layer] : ['--preset', options.preset ?? (device === 'cpu' ? 'mixtral-8x7b-mini' : 'mixtral-8x7b')];
const hidden = options.checkpoint ? readMoEConfig(options.checkpoint, Number(options.layer)).hiddenSize : findPreset(layerArgs[1]).config.hiddenSize;
const minTokens = Number(options['min-tokens']);
const maxTokens = Number(options['max-tokens']);

/** Request bodies of every token count in range, a few of each, cycled through by the load. */
function bodies() {
  const made = [];
  for (let variant = 0; variant < 4; variant += 1) {
    for (let tokens = minTokens; tokens <= maxTokens; tokens += 1) {
      const values = Float32Array.from({ length: tokens * hidden }, () => Math.random() * 2 - 1);
      const input = dtype === 'float32'
        ? { dtype: 'F32', shape: [tokens, hidden], data: values }
        : { dtype: dtype === 'bfloat16' ? 'BF16' : 'F16', shape: [tokens, hidden], data: encodeHalf(values, dtype) };
      made.push(encodeSafetensors({ input }));
    }
  }
  // Shuffled, so that consecutive requests differ in size.
  return made.sort(() => Math.random() - 0.5);
}

function startServer(maxBatchTokens) {
  const profile = options['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', options['cpu-prof'], '--cpu-prof-name', `serve-max-batch-${maxBatchTokens}.cpuprofile`] : [];
  const args = [...profile, path.join(root, 'dist/cli/main.js'), 'serve', ...layerArgs, '--device', device, '--dtype', dtype, '--port', '0',
    '--max-batch-tokens', String(maxBatchTokens), '--max-delay-ms', options['max-delay-ms'], '--max-queued-tokens', String(1 << 20)];
  const server = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (chunk) => {
      out += chunk;
      const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (match) resolve({ server, port: Number(match[1]) });
    });
    server.once('exit', (code) => reject(new Error(`moekit serve exited with ${code}`)));
  });
}

function load(port, payloads, duration) {
  let next = 0;
  return autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: Number(options.connections),
    duration,
    requests: [{
      method: 'POST',
      path: '/v1/forward',
      headers: { 'content-type': 'application/octet-stream' },
      setupRequest: (request) => ({ ...request, body: payloads[(next += 1) % payloads.length] }),
    }],
  });
}

async function measure(mode, maxBatchTokens, payloads) {
  const { server, port } = await startServer(maxBatchTokens);
  const exited = new Promise((resolve) => server.once('exit', resolve));
  try {
    await load(port, payloads, 2); // warm-up: pools, caches, CUDA graphs for common batch sizes
    const result = await load(port, payloads, Number(options.duration));
    return {
      mode, maxBatchTokens, requestsPerSecond: result.requests.average, p50Ms: result.latency.p50, p99Ms: result.latency.p99,
      non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts, requests: result.requests.total,
    };
  } finally {
    server.kill('SIGTERM');
    await exited;
  }
}

async function main() {
  const payloads = bodies();
  const runs = [];
  for (const [mode, maxBatchTokens] of [['unbatched', 1], ['batched', Number(options['max-batch-tokens'])]]) {
    const run = await measure(mode, maxBatchTokens, payloads);
    runs.push(run);
    console.log(`${mode.padEnd(10)} max-batch-tokens ${String(maxBatchTokens).padStart(4)}: ${run.requestsPerSecond.toFixed(1)} req/s, p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms` +
      ` (${run.requests} requests, ${run.non2xx} non-2xx, ${run.errors} errors)`);
  }
  const [unbatched, batched] = runs;
  console.log(`batched / unbatched: ${(batched.requestsPerSecond / unbatched.requestsPerSecond).toFixed(2)}x requests/s, p99 ${(batched.p99Ms / unbatched.p99Ms).toFixed(2)}x`);
  const report = { layer: layerArgs.join(' '), device, dtype, tokens: [minTokens, maxTokens], connections: Number(options.connections), duration: Number(options.duration), maxDelayMs: Number(options['max-delay-ms']), runs };
  if (options.json) fs.writeFileSync(options.json, `${JSON.stringify(report, null, 2)}\n`);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
