// Run under `moekit launch --nproc N`: every (moeTp, moeEp) factorization of N on the five fixture
// families, each rank loading only its shard, outputs all-reduced over NCCL and compared with
// transformers' output. Rank 0 prints one line per case and a summary; exits 1 on any failure.
const path = require('node:path');

const { MoELayer, ProcessGroup, Tensor } = require('../../../dist/index');
const { factorizations } = require('../../../dist/parallel/plan');
const { SafetensorsFile } = require('../../../dist/checkpoint/safetensors');

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

function relativeError(actual, reference) {
  let difference = 0;
  let norm = 0;
  for (let i = 0; i < reference.length; i++) {
    difference += (actual[i] - reference[i]) ** 2;
    norm += reference[i] ** 2;
  }
  return Math.sqrt(difference / norm);
}

async function main() {
  const group = await ProcessGroup.init({ timeoutMs: 60_000 });
  let failures = 0;
  for (const family of FAMILIES) {
    const { input, shape, output } = await expected(family);
    for (const plan of factorizations(group.worldSize)) {
      for (const dtype of ['float32', 'bfloat16']) {
        const layer = await MoELayer.fromPretrained(path.join(FIXTURES, family), {
          layer: 0, group, parallel: { moeTpSize: plan.moeTpSize, moeEpSize: plan.moeEpSize }, dtype,
        });
        const x = Tensor.fromArray(input, shape, { device: group.device });
        const result = layer.forward(x);
        await group.synchronize();
        const error = relativeError(await result.output.toFloat32Array(), output);
        const ok = error <= TOLERANCE[dtype];
        if (!ok) failures += 1;
        console.log(`${ok ? 'PASS' : 'FAIL'} ${family} tp${plan.moeTpSize}×ep${plan.moeEpSize} ${dtype} rank ${group.rank}: relative error ${error.toExponential(2)}, read ${layer.checkpointBytesRead} bytes`);
        result.dispose();
        x.dispose();
        layer.dispose();
      }
    }
  }
  group.destroy();
  console.log(`rank ${group.rank}: ${failures === 0 ? 'all passed' : `${failures} failed`}`);
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((error) => {
  console.error(`${error.code ?? ''} ${error.message}`);
  process.exit(1);
});
