// Real-sized layers with random weights on cuda:0: bfloat16 against a float32 run of the same
// (bfloat16-rounded) weights, and float32 GPU rows against the CPU backend where host memory allows.
import { describe, expect, it } from 'vitest';

import { MoELayer, Tensor, type MoEConfig } from '../../lib/index';
import { swigluConfig } from '../helpers/configs';
import { relativeError } from '../helpers/fixtures';
import { GPU, HAS_GPU } from './gpu';

function config(name: string, experts: number, topK: number, hidden: number, inter: number, deepseek = false): [string, MoEConfig] {
  const shape = { hidden, intermediate: inter, experts, topK };
  if (!deepseek) return [name, swigluConfig(shape)];
  return [name, swigluConfig(shape, {
    routing: { method: 'sigmoid_group_topk', topK, renormalize: true, numGroups: 8, topkGroups: 4, scalingFactor: 2.5 },
    sharedExpert: { intermediateSize: inter, gated: false },
  })];
}

const LAYERS: [string, MoEConfig][] = [
  config('Mixtral-8x7B', 8, 2, 4096, 14336),
  config('Qwen3-30B-A3B', 128, 8, 2048, 768),
  config('DeepSeek-V3', 256, 8, 7168, 2048, true),
];
const TOKENS = [1, 16, 1024, 8192];
/** Rows checked against the CPU backend (the CPU is slow on real sizes). */
const CPU_ROWS = 4;
/** Host copies of a float32 layer above this many bytes are skipped (DeepSeek-V3: 45 GB). */
const CPU_CHECK_MAX_BYTES = 16e9;

// MOEKIT_SKIP_LARGE=1 skips these (under compute-sanitizer they would take hours).
describe.skipIf(!HAS_GPU || process.env.MOEKIT_SKIP_LARGE === '1').each(LAYERS)('%s-sized layer on the GPU', (name, layerConfig) => {
  it('bfloat16 matches float32 at 1, 16, 1024 and 8192 tokens', async () => {
    const { hiddenSize: H, numExperts: E } = layerConfig;
    const bf16 = MoELayer.random(layerConfig, { device: GPU, dtype: 'bfloat16', seed: 11 });
    const bf16Outputs: Float32Array[] = [];
    const inputs: Tensor[] = [];
    const logits: Tensor[] = [];
    try {
      for (const tokens of TOKENS) {
        const x = Tensor.random([tokens, H], { device: GPU, seed: tokens });
        inputs.push(x);
        // The same router logits for both dtypes, so both pick the same experts.
        const l = Tensor.random([tokens, E], { device: GPU, seed: 1000 + tokens, scale: 3 });
        logits.push(l);
        using result = bf16.forward(x, { routerLogits: l });
        bf16Outputs.push(await result.output.toFloat32Array());
      }
      const fp32 = bf16.to(GPU, 'float32');
      bf16.dispose();
      try {
        for (const [index, tokens] of TOKENS.entries()) {
          using result = fp32.forward(inputs[index]!, { routerLogits: logits[index]! });
          const reference = (await result.output.toArray()) as Float32Array;
          const error = relativeError(bf16Outputs[index]!, reference);
          console.log(`gpu ${name} T=${tokens}: bfloat16 vs float32 relative error ${error.toExponential(2)}`);
          expect(error).toBeLessThanOrEqual(2e-2);
          const weightBytes = 3 * layerConfig.numExperts * H * layerConfig.intermediateSize * 4;
          if (tokens !== TOKENS[TOKENS.length - 1] || weightBytes > CPU_CHECK_MAX_BYTES) continue;
          // Float32 GPU against the CPU backend on the first rows of the largest batch.
          using cpuLayer = fp32.to('cpu');
          using rows = Tensor.fromArray((await inputs[index]!.toArray() as Float32Array).subarray(0, CPU_ROWS * H), [CPU_ROWS, H]);
          using rowLogits = Tensor.fromArray((await logits[index]!.toArray() as Float32Array).subarray(0, CPU_ROWS * E), [CPU_ROWS, E]);
          using cpuResult = cpuLayer.forward(rows, { routerLogits: rowLogits });
          const cpuError = relativeError(reference.subarray(0, CPU_ROWS * H), (await cpuResult.output.toArray()) as Float32Array);
          console.log(`gpu ${name} T=${tokens}: float32 GPU vs CPU on ${CPU_ROWS} rows relative error ${cpuError.toExponential(2)}`);
          expect(cpuError).toBeLessThanOrEqual(1e-5);
        }
      } finally {
        fp32.dispose();
      }
    } finally {
      bf16.dispose();
      for (const tensor of [...inputs, ...logits]) tensor.dispose();
    }
  }, 600_000);
});
