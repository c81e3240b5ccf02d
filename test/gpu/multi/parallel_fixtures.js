// Run under `moekit launch --nproc N`: every (moeTp, moeEp) factorization of N on the five fixture
// families, each rank loading only its shard, outputs all-reduced over NCCL and compared with
// transformers' output; where moeEp > 1, also with a placement that replicates expert 0 (balanced
// EP: parallel.placement). Each rank prints one line per case and a summary; exits 1 on any failure.
const path = require('node:path');

const { MoELayer, ProcessGroup, Tensor, planPlacement } = require('../../../dist/index');
const { relativeError, runRankScript } = require('./compare');
const { factorizations } = require('../../../dist/parallel/plan');
const { SafetensorsFile } = require('../../../dist/checkpoint/safetensors');
const { readMoEConfig } = require('../../../dist/checkpoint/load');

const FIXTURES = path.resolve(__dirname, '../../../../shared/fixtures/hf-moe');
const FAMILIES = ['mixtral', 'qwen2_moe', 'qwen3_moe', 'deepseek_v3', 'gpt_oss'];
const TOLERANCE = { float32: 1e-5, bfloat16: 2e-2 };

async function expected(family) {
  const file = await SafetensorsFile.open(path.join(FIXTURES, family, 'expected.safetensors'));
  const input = await file.read('input');
  const output = await file.read('output');
  await file.close();
  return { input: input.data, shape: input.shape, output: output.data };
}


async function main() {
  const group = await ProcessGroup.init({ timeoutMs: 60_000 });
  let failures = 0;
  for (const family of FAMILIES) {
    const { input, shape, output } = await expected(family);
    const plans = factorizations(group.worldSize).flatMap((plan) => [plan, ...(plan.moeEpSize > 1 ? [{ ...plan, placed: true }] : [])]);
    for (const plan of plans) {
      for (const dtype of ['float32', 'bfloat16']) {
        const parallel = { moeTpSize: plan.moeTpSize, moeEpSize: plan.moeEpSize };
        if (plan.placed) {
          // Expert 0 hot: it gets a replica on every rank (one slot more per rank than plain EP).
          const experts = readMoEConfig(path.join(FIXTURES, family), 0).numExperts;
          const loads = Array.from({ length: experts }, (_, expert) => (expert === 0 ? 100 : 1));
          parallel.placement = planPlacement(loads, { ranks: plan.moeEpSize, slotsPerRank: experts / plan.moeEpSize + 1 });
        }
        const layer = await MoELayer.fromPretrained(path.join(FIXTURES, family), { layer: 0, group, parallel, dtype });
        const x = Tensor.fromArray(input, shape, { device: group.device });
        const result = layer.forward(x);
        await group.synchronize();
        const error = relativeError(await result.output.toFloat32Array(), output);
        const ok = error <= TOLERANCE[dtype];
        if (!ok) failures += 1;
        console.log(`${ok ? 'PASS' : 'FAIL'} ${family} tp${plan.moeTpSize}×ep${plan.moeEpSize}${plan.placed ? ' placed' : ''} ${dtype} rank ${group.rank}: relative error ${error.toExponential(2)}, read ${layer.checkpointBytesRead} bytes`);
        result.dispose();
        x.dispose();
        layer.dispose();
      }
    }
  }
  group.destroy();
  return { rank: group.rank, failures };
}

runRankScript(main);
