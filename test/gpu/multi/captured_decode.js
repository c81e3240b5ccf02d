// Run under `moekit launch --nproc N`: graph-captured decode under a group (issue 17). A
// Mixtral-8x7B-sized layer with random bfloat16 weights, sharded Tensor Parallel over the group,
// is captured for 1, 4 and 16 tokens (`layer.capture`: the forward and its all-reduce in one
// graph); each replay's output must match the eager sharded forward on the same tokens, and the
// replay is timed against the whole layer's replay on one GPU (the target: TP2 at most 0.65× one
// GPU's time). Each rank prints its lines; exits 1 on any failure.
const { MoELayer, ProcessGroup, Tensor, synchronize } = require('../../../dist/index');
const { findPreset } = require('../../../dist/bench/presets');
const { randomHostWeights } = require('../../../dist/bench/parallel_run');
const { relativeError, runRankScript } = require('./compare');

const TOKENS = [1, 4, 16];
const RUNS = 50;
const TOLERANCE = 1e-2;

/** Median ms of `runs` replays, each followed by waiting for the device (and the group's collectives). */
async function replayMs(captured, x, wait) {
  const times = [];
  for (let run = 0; run < RUNS + 5; run++) {
    const start = process.hrtime.bigint();
    captured.replay(x);
    await wait();
    if (run >= 5) times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

async function main() {
  const group = await ProcessGroup.init({ timeoutMs: 120_000 });
  const preset = findPreset('mixtral-8x7b');
  const log = (line) => console.log(`rank ${group.rank}: ${line}`);
  const weights = await randomHostWeights(preset, 'bfloat16', group.device);
  let failures = 0;
  const sharded = MoELayer.fromWeights(preset.config, weights, { group, parallel: { moeTpSize: group.worldSize }, dtype: 'bfloat16' });
  const whole = MoELayer.fromWeights(preset.config, weights, { device: group.device, dtype: 'bfloat16' });
  for (const tokens of TOKENS) {
    const x = Tensor.random([tokens, preset.config.hiddenSize], { dtype: 'bfloat16', device: group.device, seed: 7 + tokens });
    const eager = sharded.forward(x);
    await group.synchronize();
    const expected = await eager.output.toFloat32Array();
    eager.dispose();
    const captured = sharded.capture(tokens);
    const outputs = captured.replay(x);
    await group.synchronize();
    const error = relativeError(await outputs.output.toFloat32Array(), expected);
    const ok = error <= TOLERANCE;
    if (!ok) failures += 1;
    const tpMs = await replayMs(captured, x, () => group.synchronize());
    const single = whole.capture(tokens);
    const oneMs = await replayMs(single, x, () => synchronize(group.device));
    log(`${ok ? 'PASS' : 'FAIL'} captured tp${group.worldSize} decode ${tokens} tokens: relative error vs eager ${error.toExponential(2)}; replay ${tpMs.toFixed(3)} ms against one GPU's ${oneMs.toFixed(3)} ms (${(tpMs / oneMs).toFixed(2)}×)`);
    captured.dispose();
    single.dispose();
    x.dispose();
  }
  sharded.dispose();
  whole.dispose();
  group.destroy();
  return { rank: group.rank, failures };
}

runRankScript(main);
