// Tensor.fromDevicePointer, tensor.devicePointer and tensor.byteLength (lib/tensor.ts): sharing
// memory with other libraries without a copy. On the CPU: the checks on every argument, and a
// round trip through host memory; test/gpu/interop.test.ts does the same with device memory.
import { afterAll, describe, expect, it } from 'vitest';

import { Tensor, type DType } from '../lib/index';
import { expectThrows } from './helpers/errors';

describe('Tensor.fromDevicePointer arguments', () => {
  const owner = Tensor.fromArray([1, 2, 3, 4], [4]);
  const pointer = owner.devicePointer;
  afterAll(() => owner.dispose());

  it.each([
    [0n, /pointer must be a non-null 64-bit address, got 0n/],
    [-16n, /pointer must be a non-null 64-bit address, got -16n/],
    [2n ** 64n, /pointer must be a non-null 64-bit address, got 18446744073709551616n/],
    [4096, /pointer must be a bigint address, got 4096/],
    [null, /pointer must be a bigint address, got null/],
  ])('refuses pointer %s', (bad, message) => {
    expectThrows(() => Tensor.fromDevicePointer(bad as bigint, [4], 'float32', 'cpu'), 'E_INVALID_ARGUMENT', message);
  });

  it('refuses negative or fractional sizes, unknown dtypes and devices, misaligned addresses and bad options', () => {
    expectThrows(() => Tensor.fromDevicePointer(pointer, [-1, 4], 'float32', 'cpu'), 'E_SHAPE', /shape must be an array of non-negative integers, got \[-1, 4\]/);
    expectThrows(() => Tensor.fromDevicePointer(pointer, [1.5], 'float32', 'cpu'), 'E_SHAPE', /got \[1\.5\]/);
    expectThrows(() => Tensor.fromDevicePointer(pointer, [4], 'float64' as DType, 'cpu'), 'E_DTYPE', /float64/);
    expectThrows(() => Tensor.fromDevicePointer(pointer, [4], 'float32', 'gpu0' as never), 'E_DEVICE', /gpu0/);
    expectThrows(() => Tensor.fromDevicePointer(pointer + 2n, [4], 'float32', 'cpu'), 'E_INVALID_ARGUMENT', /is not aligned to float32's 4 bytes/);
    expectThrows(() => Tensor.fromDevicePointer(pointer, [4], 'float32', 'cpu', { release: 'free' as never }), 'E_INVALID_ARGUMENT', /release must be a function, got "free"/);
    expectThrows(() => Tensor.fromDevicePointer(2n ** 64n - 4n, [4], 'float32', 'cpu'), 'E_INVALID_ARGUMENT', /pass the end of the address space/);
  });

  it('refuses a CUDA device this machine or build does not have', () => {
    expectThrows(() => Tensor.fromDevicePointer(pointer, [4], 'float32', 'cuda:63'), 'E_DEVICE', /cuda:63/);
  });
});

describe('sharing host memory', () => {
  it('wraps memory without a copy: writes through either tensor show in the other', async () => {
    using owner = Tensor.fromArray([1, 2, 3, 4], [2, 2]);
    expect(owner.byteLength).toBe(16);
    using view = Tensor.fromDevicePointer(owner.devicePointer, [4], 'float32', 'cpu');
    expect(view.devicePointer).toBe(owner.devicePointer);
    expect(Array.from(await view.toArray())).toEqual([1, 2, 3, 4]);
    using values = Tensor.fromArray([5, 6, 7, 8], [4]);
    view.copyFrom(values);
    expect(Array.from(await owner.toArray())).toEqual([5, 6, 7, 8]);
  });

  it('calls release once, after dispose and the work enqueued before it, and never frees the memory itself', async () => {
    using owner = Tensor.fromArray([1, 2], [2]);
    let released = 0;
    const view = Tensor.fromDevicePointer(owner.devicePointer, [2], 'float32', 'cpu', { release: () => released++ });
    using nines = Tensor.fromArray([9, 9], [2]);
    view.copyFrom(nines);
    view.dispose();
    view.dispose();
    expect(released).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(released).toBe(1);
    expect(Array.from(await owner.toArray())).toEqual([9, 9]);
    expectThrows(() => view.devicePointer, 'E_DISPOSED', /was used after dispose\(\)/);
  });
});
