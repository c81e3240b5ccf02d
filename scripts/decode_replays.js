#!/usr/bin/env node
// Replays a captured forward a few times per preset, so a profiler (ncu, nsys) sees the kernels of a
// decode step as a CUDA-graph replay runs them (scripts/gpu_check.sh profile; needs `npm run build`):
//   node scripts/decode_replays.js TOKENS PRESET [PRESET...]
'use strict';
const { MoELayer, synchronize } = require('../dist/index.js');
const { findPreset } = require('../dist/bench/presets.js');

const kReplays = 5;

async function main() {
  const [tokensText, ...names] = process.argv.slice(2);
  const tokens = Number(tokensText);
  if (!Number.isInteger(tokens) || tokens < 1 || names.length === 0) {
    throw new Error('usage: node scripts/decode_replays.js TOKENS PRESET [PRESET...]');
  }
  for (const name of names) {
    const preset = findPreset(name);
    if (!preset) throw new Error(`unknown preset ${name}`);
    const layer = MoELayer.random(preset.config, { device: 'cuda:0', dtype: 'bfloat16' });
    try {
      const captured = layer.capture(tokens);
      try {
        for (let i = 0; i < kReplays; ++i) captured.replay();
        await synchronize('cuda:0');
      } finally {
        captured.dispose();
      }
    } finally {
      layer.dispose();
    }
    console.log(`${name}: ${kReplays} replays of ${tokens} tokens`);
  }
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
