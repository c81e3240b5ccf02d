// CUDA graph capture/replay of a whole forward, and recovery from out-of-memory.
import { describe, expect, it } from 'vitest';

import { MoELayer, MoekitError, Tensor } from '../../lib/index';
import { swigluConfig } from '../helpers/configs';
import { FIXTURE_FAMILIES, fixtureDir, readExpectation, relativeError } from '../helpers/fixtures';
import { GPU, HAS_GPU } from './gpu';

const qwenLike = swigluConfig({ hidden: 2048, intermediate: 768, experts: 128, topK: 8 });

describe.skipIf(!HAS_GPU)('CUDA graph capture', () => {
  it.each(FIXTURE_FAMILIES)('replaying a captured %s forward gives the plain forward\'s output', async (family) => {
    const expected = await readExpectation(family);
    using layer = await MoELayer.fromPretrained(fixtureDir(family), { layer: 0, device: GPU });
    using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden], { device: GPU });
    using plain = layer.forward(x);
    const plainOutput = (await plain.output.toArray()) as Float32Array;

    using captured = layer.capture(expected.tokens);
    for (let replay = 0; replay < 3; replay++) {
      const outputs = captured.replay(x);
      expect(Array.from((await outputs.output.toArray()) as Float32Array)).toEqual(Array.from(plainOutput));
      expect(Array.from(await outputs.topkIds.toArray())).toEqual(Array.from(await plain.topkIds.toArray()));
    }
    expect(relativeError(plainOutput, expected.output)).toBeLessThanOrEqual(1e-5);
  });

  it('replays with new inputs each time (decode-style, one token)', async () => {
    using layer = MoELayer.random(qwenLike, { device: GPU, dtype: 'bfloat16', seed: 5 });
    using captured = layer.capture(1);
    for (let step = 0; step < 4; step++) {
      using x = Tensor.random([1, 2048], { device: GPU, dtype: 'bfloat16', seed: 100 + step });
      using plain = layer.forward(x);
      const outputs = captured.replay(x);
      expect(Array.from(await outputs.output.toArray())).toEqual(Array.from(await plain.output.toArray()));
    }
  });

  it('refuses to capture on the CPU', () => {
    using layer = MoELayer.random(swigluConfig({ hidden: 16, intermediate: 8, experts: 4, topK: 2 }));
    expect(() => layer.capture(1)).toThrow(/CUDA device/);
  });
});

describe.skipIf(!HAS_GPU)('out of memory', () => {
  it('a request far larger than the card throws E_OOM and leaves the device usable', async () => {
    let caught: unknown;
    try {
      Tensor.empty([1024, 1024, 1024, 1024], { dtype: 'float32', device: GPU }); // 4 TiB
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(MoekitError);
    expect((caught as MoekitError).code).toBe('E_OOM');

    using t = Tensor.fromArray(Float32Array.from([1, 2, 3]), [3], { device: GPU });
    expect(Array.from(await t.toArray())).toEqual([1, 2, 3]);
  });

  it.each([
    ['bfloat16 experts', undefined],
    ['int4 experts', 'int4'],
  ] as const)('an out-of-memory forward leaves the layer usable for a smaller batch (%s)', async (_name, quantize) => {
    using layer = MoELayer.random(qwenLike, { device: GPU, dtype: 'bfloat16', seed: 6, quantize });
    // 2^22 tokens: the input fits (16 GB), but the permuted rows (K=8: 128 GB) plus the first
    // GEMM's output (96 GB) fit on no single GPU.
    const huge = 1 << 22;
    let caught: unknown;
    let x: Tensor | undefined;
    try {
      x = Tensor.empty([huge, 2048], { dtype: 'bfloat16', device: GPU });
      layer.forward(x);
    } catch (error) {
      caught = error;
    } finally {
      x?.dispose();
    }
    expect((caught as MoekitError).code).toBe('E_OOM');
    using small = Tensor.random([16, 2048], { device: GPU, dtype: 'bfloat16', seed: 7 });
    using result = layer.forward(small);
    const output = await result.output.toFloat32Array();
    expect(output.every(Number.isFinite)).toBe(true);
  });
});
