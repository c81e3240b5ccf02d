// The fused MoE op on a GPU: one cooperative kernel for a decode step (native/cuda/fused_moe.cu),
// or the separate ops for calls it does not take.
import { describe, expect, it } from 'vitest';

import { MoELayer, Tensor } from '../../lib/index';
import { swigluConfig } from '../helpers/configs';
import { disposeResult, expectSameResults, fusedArguments, fusedMoeCases, separateOps } from '../helpers/fused_moe_cases';
import { fusedMoe } from '../../lib/ops/fused_moe';
import { relativeError } from '../helpers/fixtures';
import { GPU, HAS_GPU } from './gpu';

describe.skipIf(!HAS_GPU)('the fused MoE op on a GPU', () => {
  fusedMoeCases(GPU, { exact: false });

  it('a captured one-token forward replays the eager one bit for bit, and the CPU agrees', async () => {
    const config = swigluConfig({ hidden: 512, intermediate: 256, experts: 128, topK: 8 });
    using layer = MoELayer.random(config, { device: GPU, dtype: 'bfloat16', seed: 9 });
    using onCpu = MoELayer.random(config, { device: 'cpu', dtype: 'bfloat16', seed: 9 });
    using captured = layer.capture(1);
    for (const seed of [1, 2]) {
      using x = Tensor.random([1, config.hiddenSize], { dtype: 'bfloat16', device: GPU, seed });
      using eager = layer.forward(x);
      const replayed = captured.replay(x);
      expect(Array.from(await replayed.output.toArray())).toEqual(Array.from(await eager.output.toArray()));
      expect(Array.from(await replayed.topkIds.toArray())).toEqual(Array.from(await eager.topkIds.toArray()));
      expect(Array.from(await replayed.expertCounts.toArray())).toEqual(Array.from(await eager.expertCounts.toArray()));
      using xOnCpu = x.to('cpu');
      using reference = onCpu.forward(xOnCpu);
      expect(Array.from(await eager.topkIds.toArray())).toEqual(Array.from(await reference.topkIds.toArray()));
      expect(relativeError(await eager.output.toFloat32Array(), await reference.output.toFloat32Array())).toBeLessThanOrEqual(1e-2);
    }
  });
});

describe.skipIf(!HAS_GPU || process.env.MOEKIT_SKIP_LARGE === '1')('the fused MoE op past the fused kernel\'s weight bytes', () => {
  it('runs the separate ops: the same results bit for bit', async () => {
    // Two pairs of 2 × (2 · 16384 + 16384) × 4096 bytes: 805 MB, past the kernel's 400 MB.
    const config = swigluConfig({ hidden: 4096, intermediate: 16384, experts: 2, topK: 2 });
    using args = fusedArguments(config, GPU, 7);
    using x = Tensor.random([1, config.hiddenSize], { dtype: 'bfloat16', device: GPU, seed: 3 });
    const fused = fusedMoe(x, args.weights, args.options);
    const reference = separateOps(x, args.weights, args.options);
    try {
      await expectSameResults(fused, reference, { exact: true });
    } finally {
      disposeResult(fused);
      disposeResult(reference);
    }
  });
});
