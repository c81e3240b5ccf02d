// User streams: moving a device's work onto another stream keeps results and ordering.
import { describe, expect, it } from 'vitest';

import { activation, CudaStream, currentStream, linear, MoELayer, MoekitError, Tensor, useStream } from '../../lib/index';
import { deviceIndex } from '../../lib/device';
import { forEachWeight, randomMoEWeights } from '../../lib/layer/moe_layer';
import { addon } from '../../lib/native';
import { expectThrows } from '../helpers/errors';
import { swigluConfig } from '../helpers/configs';
import { fixtureDir, readExpectation, relativeError } from '../helpers/fixtures';
import { GPU, HAS_GPU } from './gpu';

async function floats(tensor: Tensor): Promise<Float32Array> {
  using asFloat = tensor.to(tensor.device, 'float32');
  return (await asFloat.toArray()) as Float32Array;
}

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

  it('a shared expert that outlasts the routed path runs beside it and is joined before combine', async () => {
    // 800 MB of shared-expert weights to stream against 4 MB of routed ones: without the join,
    // combine would read the shared output long before it is written.
    const tokens = 16;  // a decode step: both sides stream their weights on small_m, side by side
    const config = swigluConfig({ hidden: 2048, intermediate: 64, experts: 8, topK: 2 }, { sharedExpert: { intermediateSize: 65536, gated: false } });
    const options = { device: GPU, dtype: 'bfloat16' as const, seed: 0 };
    using layer = MoELayer.random(config, options);
    // The routed weights are drawn first, so this layer's are the same; the shared expert's come last.
    using routedOnly = MoELayer.random({ ...config, sharedExpert: null }, options);
    const weights = randomMoEWeights(config, options);
    try {
      using x = Tensor.random([tokens, config.hiddenSize], { dtype: 'bfloat16', device: GPU, seed: 5 });
      const own = currentStream(GPU);
      using result = layer.forward(x);
      expect(currentStream(GPU)).toBe(own);
      using routed = routedOnly.forward(x);
      using hidden = linear(x, weights.shared!.w13);
      using activated = activation(hidden, 'swiglu');
      using shared = linear(activated, weights.shared!.w2);
      const [output, routedOutput, sharedOutput] = await Promise.all([floats(result.output), floats(routed.output), floats(shared)]);
      const sharedPart = output.map((value, index) => value - routedOutput[index]!);
      expect(relativeError(sharedPart, sharedOutput)).toBeLessThan(0.05);
      using captured = layer.capture(tokens);
      captured.input.copyFrom(x);
      expect(Array.from(await floats(captured.replay().output))).toEqual(Array.from(output));
    } finally {
      forEachWeight(weights, (tensor) => tensor.dispose());
    }
  });

  it('side work takes its steps in order, and the stream stays put until it is joined', () => {
    const native = addon();
    const index = deviceIndex(GPU);
    const own = currentStream(GPU);
    native.beginSideWork(index);
    try {
      expectThrows(() => native.beginSideWork(index), 'E_DEVICE', /side work has begun already/);
      expectThrows(() => useStream(GPU, null), 'E_DEVICE', /cannot change streams before side work is joined/);
      if (process.env.MOEKIT_SIDE_STREAM !== 'off') expect(currentStream(GPU)).not.toBe(own);  // the side stream
    } finally {
      native.endSideWork(index);
    }
    expect(currentStream(GPU)).toBe(own);
    expectThrows(() => useStream(GPU, null), 'E_DEVICE', /cannot change streams before side work is joined/);
    native.joinSideWork(index);
    useStream(GPU, null);
  });

  it('refuses the CPU and non-bigint handles', () => {
    expect(() => useStream('cpu', null)).toThrow(MoekitError);
    expect(() => useStream(GPU, 42 as unknown as bigint)).toThrow(/bigint handle/);
  });
});
