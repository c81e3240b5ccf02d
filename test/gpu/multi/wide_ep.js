// Run under `moekit launch --nproc N`: wide Expert Parallel (parallel.dispatch 'all_to_all') on
// the fixture families (and the FP8 and MXFP4 checkpoints) whose expert count N divides. Every rank brings its own, differently sized
// batch of tokens (rank r: 3 + 5r, and rank 1 none at all), and its output must equal the whole
// layer's on the same tokens, computed on the same GPU. Each rank prints one line per case and a
// summary; exits 1 on any failure.
const path = require('node:path');

const { MoELayer, ProcessGroup, Tensor } = require('../../../dist/index');
const { relativeError, runRankScript } = require('./compare');
const { readMoEConfig } = require('../../../dist/checkpoint/load');

const FIXTURES = path.resolve(__dirname, '../../../../shared/fixtures/hf-moe');
const QUANT_FIXTURES = path.resolve(__dirname, '../../../../shared/fixtures/hf-moe-quant');
// The five families, then quantized experts: FP8 (whose rows travel as FP8 with their scales) and MXFP4.
const DIRS = [
  ...['mixtral', 'qwen2_moe', 'qwen3_moe', 'deepseek_v3', 'gpt_oss'].map((family) => path.join(FIXTURES, family)),
  ...['deepseek_v3_fp8', 'gpt_oss_mxfp4'].map((name) => path.join(QUANT_FIXTURES, name)),
];
const TOLERANCE = { float32: 1e-5, bfloat16: 2e-2 };


async function main() {
  const group = await ProcessGroup.init({ timeoutMs: 60_000 });
  const { rank, worldSize, device } = group;
  const tokens = rank === 1 ? 0 : 3 + 5 * rank;
  let failures = 0;
  for (const dir of DIRS) {
    const family = path.basename(dir);
    if (readMoEConfig(dir, 0).numExperts % worldSize !== 0) continue;
    for (const dtype of ['float32', 'bfloat16']) {
      const layer = await MoELayer.fromPretrained(dir, { layer: 0, group, parallel: { moeEpSize: worldSize, dispatch: 'all_to_all' }, dtype });
      const whole = await MoELayer.fromPretrained(dir, { layer: 0, device, dtype });
      const x = Tensor.random([tokens, layer.config.hiddenSize], { seed: 20 + rank, device });
      const result = await layer.forwardAllToAll(x);
      const expected = whole.forward(x);
      await group.synchronize();
      const error = relativeError(await result.output.toFloat32Array(), await expected.output.toFloat32Array());
      const ok = error <= TOLERANCE[dtype];
      if (!ok) failures += 1;
      console.log(`${ok ? 'PASS' : 'FAIL'} ${family} wide ep${worldSize} ${dtype} rank ${rank} (${tokens} tokens): relative error ${error.toExponential(2)}`);
      for (const made of [result, expected, x, layer, whole]) made.dispose();
    }
  }
  group.destroy();
  return { rank: rank, failures };
}

runRankScript(main);
