// Tensor.fromDevicePointer / devicePointer on a GPU: device memory shared both ways without a copy,
// ops on wrapped memory, release after the enqueued work, and the device checks CUDA makes.
import { describe, expect, it } from 'vitest';

import { activation, synchronize, Tensor } from '../../lib/index';
import { expectThrows } from '../helpers/errors';
import { GPU, GPU_COUNT, HAS_GPU } from './gpu';

describe.skipIf(!HAS_GPU)('device pointers on a GPU', () => {
  it('moekit memory → pointer → tensor: the same bytes, writes visible both ways', async () => {
    using owner = Tensor.fromArray([1, -2, 3, -4], [2, 2], { device: GPU });
    expect(owner.byteLength).toBe(16);
    expect(owner.devicePointer % 16n).toBe(0n);
    using view = Tensor.fromDevicePointer(owner.devicePointer, [4], 'float32', GPU);
    expect(Array.from(await view.toArray())).toEqual([1, -2, 3, -4]);
    using values = Tensor.fromArray([5, 6, 7, 8], [4], { device: GPU });
    view.copyFrom(values);
    expect(Array.from(await owner.toArray())).toEqual([5, 6, 7, 8]);
  });

  it('ops read and write wrapped memory in place, a bfloat16 view included', async () => {
    using input = Tensor.fromArray([-1, 2, -3, 4], [1, 4], { device: GPU, dtype: 'bfloat16' });
    using wrapped = Tensor.fromDevicePointer(input.devicePointer, [1, 4], 'bfloat16', GPU);
    using relu = activation(wrapped, 'relu');
    expect(Array.from(await relu.toFloat32Array())).toEqual([0, 2, 0, 4]);
  });

  it('calls release after dispose, once the work enqueued on the memory is done', async () => {
    using owner = Tensor.random([1024, 1024], { device: GPU });
    let released = 0;
    const view = Tensor.fromDevicePointer(owner.devicePointer, [1024, 1024], 'float32', GPU, { release: () => released++ });
    using copy = view.to(GPU);
    view.dispose();
    await synchronize(GPU);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(released).toBe(1);
    expect(Array.from((await copy.toArray()).slice(0, 8))).toEqual(Array.from((await owner.toArray()).slice(0, 8)));
  });

  it('refuses host memory and pointers CUDA does not know', () => {
    using host = Tensor.fromArray([1, 2, 3, 4], [4]);
    expectThrows(() => Tensor.fromDevicePointer(host.devicePointer, [4], 'float32', GPU), 'E_DEVICE', /(not CUDA device memory|CUDA does not know pointer)/);
    expectThrows(() => Tensor.fromDevicePointer(0x1000n, [4], 'float32', GPU), 'E_DEVICE', /(not CUDA device memory|CUDA does not know pointer)/);
  });

  it.skipIf(GPU_COUNT < 2)('refuses memory of another GPU', () => {
    using other = Tensor.fromArray([1, 2], [2], { device: 'cuda:1' });
    expectThrows(() => Tensor.fromDevicePointer(other.devicePointer, [2], 'float32', GPU), 'E_DEVICE', /is memory of cuda:1, not of cuda:0/);
  });
});
