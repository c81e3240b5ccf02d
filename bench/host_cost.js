#!/usr/bin/env node
// The host's share of an eager forward: how long each op's call takes to return (its checks, its
// output tensors, the native enqueue), and the whole forward's, on one device, at decode sizes.
// The device work is not timed here (it runs behind); `moekit bench` gives that.
//
//   node bench/host_cost.js [--device cuda:0|cpu] [--preset NAME] [--tokens 1] [--iterations 2000]
//                           [--warmup 200] [--json FILE]
//
// Needs the built library (npm run build). Each figure is the mean over the iterations of the
// time the call takes to return, with the device synchronized every 100 iterations so the queue
// stays short; the warm-up iterations before them are not counted. On the CPU the default preset
// is qwen3-30b-a3b-mini in float32, on CUDA qwen3-30b-a3b in bfloat16.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const root = path.join(__dirname, '..');
const { MoELayer, Tensor, combine, groupedGemm, linear, permute, route, synchronize } = require(path.join(root, 'dist/index.js'));
const { ALL_PRESETS, findPreset } = require(path.join(root, 'dist/bench/presets.js'));

function usage(message) {
  console.error(`host_cost: ${message}`);
  process.exit(2);
}

let options;
try {
  ({ values: options } = parseArgs({
    options: {
      device: { type: 'string', default: 'cuda:0' }, preset: { type: 'string' }, tokens: { type: 'string', default: '1' },
      iterations: { type: 'string', default: '2000' }, warmup: { type: 'string', default: '200' }, json: { type: 'string' },
    },
  }));
} catch (error) {
  usage(error.message);
}

function positiveInteger(name) {
  const value = Number(options[name]);
  if (!Number.isInteger(value) || value < 1) usage(`--${name} must be a positive integer`);
  return value;
}

const device = options.device;
const presetName = options.preset ?? (device === 'cpu' ? 'qwen3-30b-a3b-mini' : 'qwen3-30b-a3b');
const jsonPath = options.json;
const tokens = positiveInteger('tokens');
const iterations = positiveInteger('iterations');
const warmup = positiveInteger('warmup');
const kSyncEvery = 100;

/** Mean µs for `call` to return; `cleanup` disposes what it made (not timed). */
async function hostMicros(call, cleanup) {
  let total = 0n;
  for (let i = 0; i < warmup + iterations; i++) {
    const start = process.hrtime.bigint();
    const made = call();
    const elapsed = process.hrtime.bigint() - start;
    if (i >= warmup) total += elapsed;
    cleanup(made);
    if (i % kSyncEvery === kSyncEvery - 1) await synchronize(device);
  }
  await synchronize(device);
  return Number(total) / iterations / 1000;
}

const disposeAll = (made) => {
  for (const tensor of Object.values(made)) tensor.dispose();
};

async function main() {
  const preset = findPreset(presetName);
  if (!preset) usage(`no preset ${presetName} (one of ${ALL_PRESETS.map((p) => p.name).join(', ')})`);
  const { config } = preset;
  const dtype = device === 'cpu' ? 'float32' : 'bfloat16';
  const layer = MoELayer.random(config, { device, dtype, seed: 1 });
  const H = config.hiddenSize;
  const E = config.numExperts;
  const I = config.intermediateSize;
  const x = Tensor.random([tokens, H], { dtype, seed: 2, device });
  const router = Tensor.random([E, H], { dtype, seed: 3, device, scale: 0.05 });
  const w13 = Tensor.random([E, 2 * I, H], { dtype, seed: 4, device, scale: 0.05 });
  const w2 = Tensor.random([E, H, I], { dtype, seed: 5, device, scale: 0.05 });
  const logits = linear(x, router, { outDtype: 'float32' });
  const routing = { ...config.routing };
  const routed = route(logits, routing);
  const sorted = permute(x, routed.topkIds, E);
  const gemm = { maxRowsPerExpert: tokens };
  const up = groupedGemm(sorted.permuted, w13, sorted.expertOffsets, { ...gemm, activation: { kind: 'swiglu' } });
  const down = groupedGemm(up, w2, sorted.expertOffsets, gemm);

  const rows = [];
  const measure = async (name, call, cleanup) => rows.push({ name, hostMicros: await hostMicros(call, cleanup) });
  await measure('Tensor.empty + dispose', () => Tensor.empty([tokens, H], { dtype, device }), (t) => t.dispose());
  await measure('linear (router)', () => linear(x, router, { outDtype: 'float32' }), (t) => t.dispose());
  await measure('route', () => route(logits, routing), disposeAll);
  await measure('permute', () => permute(x, routed.topkIds, E), disposeAll);
  await measure('groupedGemm up (swiglu)', () => groupedGemm(sorted.permuted, w13, sorted.expertOffsets, { ...gemm, activation: { kind: 'swiglu' } }), (t) => t.dispose());
  await measure('groupedGemm down', () => groupedGemm(up, w2, sorted.expertOffsets, gemm), (t) => t.dispose());
  await measure('combine', () => combine(down, routed.topkWeights, sorted.sourceToPermuted), (t) => t.dispose());
  await measure('MoELayer.forward', () => layer.forward(x), (r) => r.dispose());

  console.log(`# host time per call on ${device} (${preset.name}, ${tokens} token(s), ${dtype}; mean of ${iterations})`);
  for (const row of rows) console.log(`${row.name.padEnd(28)} ${row.hostMicros.toFixed(1).padStart(8)} µs`);
  if (jsonPath) fs.writeFileSync(jsonPath, JSON.stringify({ device, preset: preset.name, tokens, dtype, iterations, rows }, null, 1));
  for (const t of [x, router, w13, w2, logits, up, down]) t.dispose();
  disposeAll(routed);
  disposeAll(sorted);
  layer.dispose();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
