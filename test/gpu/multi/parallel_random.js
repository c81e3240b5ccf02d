// Run under `moekit launch --nproc N`: a Mixtral-8x7B-sized layer (E 8, top-2, H 4096, I 14336)
// with random bfloat16 weights, sharded by every (moeTp, moeEp) factorization of N, must match the
// same layer unsharded on one GPU. Every rank draws the same weights (same seeds), keeps only its
// part, and checks the all-reduced output against the unsharded layer on its own GPU. Each rank
// also reports the expert-weight bytes it holds (1/N of the whole) and the GPU memory its process
// uses, from nvidia-smi. Rank 0 prints a line per case; exits 1 on any failure.
const { execFileSync } = require('node:child_process');

const { MoELayer, ProcessGroup, Tensor } = require('../../../dist/index');
const { relativeError, runRankScript } = require('./compare');
const { factorizations } = require('../../../dist/parallel/plan');
const { findPreset } = require('../../../dist/bench/presets');

// bfloat16 partial outputs are summed in bfloat16 by the all-reduce: a few 1e-3 is expected.
const TOLERANCE = 2e-2;
const TOKENS = (process.env.MOEKIT_PARALLEL_TOKENS ?? '16,512').split(',').map(Number);
const MIB = 1024 * 1024;


/** Random bfloat16 weights drawn on `device`, brought to the host (every rank draws the same). */
async function randomHostTensor(shape, seed, fanIn, device) {
  const tensor = Tensor.random(shape, { dtype: 'bfloat16', device, seed, scale: 1 / Math.sqrt(fanIn) });
  try {
    return { dtype: 'bfloat16', shape, data: await tensor.toArray() };
  } finally {
    tensor.dispose();
  }
}

async function randomWeights(config, device) {
  const { hiddenSize: H, intermediateSize: I, numExperts: E } = config;
  return {
    router: await randomHostTensor([E, H], 1, H, device),
    w13: await randomHostTensor([E, 2 * I, H], 2, H, device),
    w2: await randomHostTensor([E, H, I], 3, I, device),
  };
}

/** This process's GPU memory in MiB as nvidia-smi sees it (context, pool and all), or NaN. */
function processGpuMiB() {
  try {
    const lines = execFileSync('nvidia-smi', ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'], { encoding: 'utf8' });
    for (const line of lines.trim().split('\n')) {
      const [pid, used] = line.split(',').map((field) => Number(field.trim()));
      if (pid === process.pid) return used;
    }
  } catch {
    // nvidia-smi missing: the tensor byte count still stands.
  }
  return Number.NaN;
}

async function main() {
  const group = await ProcessGroup.init({ timeoutMs: 120_000 });
  const { config } = findPreset('mixtral-8x7b');
  const log = (line) => console.log(`rank ${group.rank}: ${line}`);
  const weights = await randomWeights(config, group.device);
  const inputs = TOKENS.map((tokens, index) =>
    Tensor.random([tokens, config.hiddenSize], { dtype: 'bfloat16', device: group.device, seed: 100 + index }));
  let failures = 0;

  // The first shard is loaded before anything else, so nvidia-smi sees that shard alone.
  for (const [index, plan] of factorizations(group.worldSize).entries()) {
    const parallel = { moeTpSize: plan.moeTpSize, moeEpSize: plan.moeEpSize };
    const sharded = MoELayer.fromWeights(config, weights, { group, parallel, dtype: 'bfloat16' });
    await group.synchronize();
    const held = sharded.weightBytes().experts;
    const wholeBytes = (weights.w13.data.length + weights.w2.data.length) * 2;
    const memory = index === 0 ? `, process GPU memory ${processGpuMiB()} MiB` : '';
    log(`tp${plan.moeTpSize}×ep${plan.moeEpSize} holds ${(held / MIB).toFixed(0)} MiB of expert weights = 1/${(wholeBytes / held).toFixed(2)} of ${(wholeBytes / MIB).toFixed(0)} MiB${memory}`);
    if (held * group.worldSize !== wholeBytes) failures += 1;
    const outputs = [];
    for (const x of inputs) {
      const result = sharded.forward(x);
      await group.synchronize();
      outputs.push(await result.output.toFloat32Array());
      result.dispose();
    }
    sharded.dispose();
    const whole = MoELayer.fromWeights(config, weights, { device: group.device, dtype: 'bfloat16' });
    for (const [i, x] of inputs.entries()) {
      const result = whole.forward(x);
      const error = relativeError(outputs[i], await result.output.toFloat32Array());
      result.dispose();
      const ok = error <= TOLERANCE;
      if (!ok) failures += 1;
      log(`${ok ? 'PASS' : 'FAIL'} mixtral-8x7b random bf16 tp${plan.moeTpSize}×ep${plan.moeEpSize} tokens ${x.shape[0]}: relative error vs one GPU ${error.toExponential(2)}`);
    }
    whole.dispose();
  }
  for (const x of inputs) x.dispose();
  group.destroy();
  return { rank: group.rank, failures };
}

runRankScript(main);
