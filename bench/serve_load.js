#!/usr/bin/env node
/**
 * Load on `moekit serve`: requests/s and p50/p99 latency, batched and unbatched, with autocannon.
 *
 *   node bench/serve_load.js [--preset mixtral-8x7b-mini | --checkpoint DIR --layer N]
 *                            [--device cpu|cuda:N] [--dtype float32|bfloat16] [--min-tokens 1] [--max-tokens 16]
 *                            [--connections 64] [--duration 10] [--max-batch-tokens 128] [--max-delay-ms 2]
 *                            [--json FILE] [--cpu-prof DIR] [--workers N] [--keep-bodies]
 *
 * For each mode it starts `node dist/cli/main.js serve` (build first: npm run build) on 127.0.0.1,
 * warms it up, and sends POST /v1/forward bodies (safetensors, input [T, H] with T uniform in
 * [min-tokens, max-tokens], in --dtype's format) from `connections` keep-alive connections for
 * `duration` seconds. Modes: unbatched (--max-batch-tokens 1: each request runs alone) and
 * batched (--max-batch-tokens as given). Prints one line per mode and the ratio; --json writes all.
 *
 * The load generator must outrun the server, or both modes measure the client. autocannon runs in
 * `--workers N` worker threads (default max(1, min(8, CPUs - 2)), leaving cores to the server;
 * 0 runs it in this thread), each with connections / N of the connections (rounded down), and
 * merges their counts and latency histograms. Each worker builds its own bodies
 * (bench/serve_load_request.js, parameters passed in the environment). autocannon keeps every
 * response body as a string, which cost the client most of its time on these binary answers;
 * bench/serve_load_client.js turns that off per connection (nothing here reads the bodies),
 * --keep-bodies leaves it on.
 * --cpu-prof DIR runs each server under `node --cpu-prof`, its profile written into DIR at exit
 * (warm-up included); --preset mixtral-8x7b-host gives full-size rows with a forward that costs
 * almost nothing, so a CPU profile shows what serving costs on the host.
 */
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');

const root = path.resolve(__dirname, '..');
const autocannon = require('autocannon');
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
    workers: { type: 'string' }, 'keep-bodies': { type: 'boolean', default: false },
  },
});
const device = options.device;
const dtype = options.dtype ?? (device === 'cpu' ? 'float32' : 'bfloat16');
const layerArgs = options.checkpoint ? [options.checkpoint, '--layer', options.layer] : ['--preset', options.preset ?? (device === 'cpu' ? 'mixtral-8x7b-mini' : 'mixtral-8x7b')];
const hidden = options.checkpoint ? readMoEConfig(options.checkpoint, Number(options.layer)).hiddenSize : findPreset(layerArgs[1]).config.hiddenSize;
const minTokens = Number(options['min-tokens']);
const maxTokens = Number(options['max-tokens']);

const connections = Number(options.connections);
const workers = options.workers === undefined ? Math.max(1, Math.min(8, os.availableParallelism() - 2)) : Number(options.workers);
if (!Number.isInteger(workers) || workers < 0) throw new Error(`--workers must be a whole number, got ${options.workers}`);
// autocannon gives each worker connections / workers, rounded down, at least 1.
const connectionsUsed = workers > 0 ? workers * Math.max(1, Math.floor(connections / workers)) : connections;
const requestModule = path.join(__dirname, 'serve_load_request.js');
const clientModule = path.join(__dirname, 'serve_load_client.js');
// Read by serve_load_request.js in each worker thread (workers copy this environment when created).
process.env.MOEKIT_SERVE_LOAD_BODIES = JSON.stringify({ hidden, dtype, minTokens, maxTokens });

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

function load(port, duration) {
  // With workers, autocannon requires these paths in each worker; without, we require them here
  // (autocannon would too, but swallows a module's errors).
  const hook = (file) => (workers > 0 ? file : require(file));
  return autocannon({
    url: `http://127.0.0.1:${port}`,
    connections,
    duration,
    workers,
    ...(options['keep-bodies'] ? {} : { setupClient: hook(clientModule) }),
    requests: [{
      method: 'POST',
      path: '/v1/forward',
      headers: { 'content-type': 'application/octet-stream' },
      setupRequest: hook(requestModule),
    }],
  });
}

async function measure(mode, maxBatchTokens) {
  const { server, port } = await startServer(maxBatchTokens);
  const exited = new Promise((resolve) => server.once('exit', resolve));
  try {
    await load(port, 2); // warm-up: pools, caches, CUDA graphs for common batch sizes
    const result = await load(port, Number(options.duration));
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
  console.log(`load: ${workers === 0 ? 'autocannon in this thread' : `${workers} autocannon worker thread${workers === 1 ? '' : 's'}`}, ${connectionsUsed} connections` +
    `${connectionsUsed === connections ? '' : ` (of ${connections}: autocannon rounds per worker)`}, response bodies ${options['keep-bodies'] ? 'kept' : 'discarded'}`);
  const runs = [];
  for (const [mode, maxBatchTokens] of [['unbatched', 1], ['batched', Number(options['max-batch-tokens'])]]) {
    const run = await measure(mode, maxBatchTokens);
    runs.push(run);
    console.log(`${mode.padEnd(10)} max-batch-tokens ${String(maxBatchTokens).padStart(4)}: ${run.requestsPerSecond.toFixed(1)} req/s, p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms` +
      ` (${run.requests} requests, ${run.non2xx} non-2xx, ${run.errors} errors)`);
  }
  const [unbatched, batched] = runs;
  console.log(`batched / unbatched: ${(batched.requestsPerSecond / unbatched.requestsPerSecond).toFixed(2)}x requests/s, p99 ${(batched.p99Ms / unbatched.p99Ms).toFixed(2)}x`);
  const report = { layer: layerArgs.join(' '), device, dtype, tokens: [minTokens, maxTokens], connections, workers, connectionsUsed, responseBodies: options['keep-bodies'] ? 'kept' : 'discarded', duration: Number(options.duration), maxDelayMs: Number(options['max-delay-ms']), runs };
  if (options.json) fs.writeFileSync(options.json, `${JSON.stringify(report, null, 2)}\n`);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
