// User streams: moving a device's work onto another stream keeps results and ordering.
import { describe, expect, it } from 'vitest';

import { CudaStream, currentStream, MoELayer, MoekitError, Tensor, useStream } from '../../lib/index';
import { fixtureDir, readExpectation, relativeError } from '../helpers/fixtures';
import { GPU, HAS_GPU } from './gpu';

describe.skipIf(!HAS_GPU)('user streams', () => {
  it('a forward on a user stream matches the default stream, and work before the switch stays ordered', async () => {
    const expected = await readExpectation('deepseek_v3');
    using layer = await MoELayer.fromPretrained(fixtureDir('deepseek_v3'), { layer: 0, device: GPU });
    // Enqueued on the device's own stream, read after the switch: the hand-over keeps it ordered.
    using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden], { device: GPU });
    const own = currentStream(GPU);
    using stream = new CudaStream(GPU);
    useStream(GPU, stream);
    try {
      expect(currentStream(GPU)).toBe(stream.handle);
      using result = layer.forward(x);
      expect(relativeError((await result.output.toArray()) as Float32Array, expected.output)).toBeLessThanOrEqual(1e-5);
      using captured = layer.capture(expected.tokens);
      expect(Array.from(await captured.replay(x).output.toArray())).toEqual(Array.from(await result.output.toArray()));
    } finally {
      useStream(GPU, null);
    }
    expect(currentStream(GPU)).toBe(own);
  });

  it('refuses the CPU and non-bigint handles', () => {
    expect(() => useStream('cpu', null)).toThrow(MoekitError);
    expect(() => useStream(GPU, 42 as unknown as bigint)).toThrow(/bigint handle/);
  });
});
