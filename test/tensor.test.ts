import { describe, expect, it } from 'vitest';

import { CudaStream, decodeHalf, encodeHalf, linear, MoekitError, Tensor, useStream } from '../lib/index';

function expectMoekitError(fn: () => unknown, code: string, pattern?: RegExp): void {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(MoekitError);
    expect((error as MoekitError).code).toBe(code);
    if (pattern) expect((error as MoekitError).message).toMatch(pattern);
    return;
  }
  throw new Error(`expected a MoekitError ${code}`);
}

describe('Tensor creation and reading', () => {
  it('round-trips float32 and int32 data with its shape, dtype and device', async () => {
    const values = Float32Array.from({ length: 12 }, (_, i) => i * 0.5 - 2);
    const tensor = Tensor.fromArray(values, [3, 4]);
    expect(tensor.shape).toEqual([3, 4]);
    expect(tensor.dtype).toBe('float32');
    expect(tensor.device).toBe('cpu');
    expect(tensor.numel).toBe(12);
    expect(tensor.nbytes).toBe(48);
    expect(Array.from(await tensor.toArray())).toEqual(Array.from(values));

    const ids = Tensor.fromArray(Int32Array.from([5, -1, 7]), [3]);
    expect(ids.dtype).toBe('int32');
    expect(Array.from(await ids.toArray())).toEqual([5, -1, 7]);
  });

  it('converts float32 to bfloat16 and float16 on the device, rounding to nearest even', async () => {
    const values = Float32Array.from([1, -2.5, 3.14159, 65504, 1e-3, 0]);
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const tensor = Tensor.fromArray(values, [6], { dtype });
      expect(tensor.dtype).toBe(dtype);
      const bits = (await tensor.toArray()) as Uint16Array;
      expect(Array.from(bits)).toEqual(Array.from(encodeHalf(values, dtype)));
      const back = await tensor.toFloat32Array();
      for (let i = 0; i < values.length; i++) {
        expect(Math.abs(back[i]! - values[i]!)).toBeLessThanOrEqual(Math.abs(values[i]!) * (dtype === 'bfloat16' ? 2 ** -8 : 2 ** -11));
      }
    }
  });

  it('accepts raw 16-bit patterns when the dtype is named, and number arrays', async () => {
    const bits = encodeHalf([1.5, -0.25], 'bfloat16');
    const tensor = Tensor.fromArray(bits, [2], { dtype: 'bfloat16' });
    expect(Array.from(await tensor.toFloat32Array())).toEqual([1.5, -0.25]);
    expect(Array.from(decodeHalf(bits, 'bfloat16'))).toEqual([1.5, -0.25]);
    const fromNumbers = Tensor.fromArray([1, 2, 3], [3], { dtype: 'int32' });
    expect(Array.from(await fromNumbers.toArray())).toEqual([1, 2, 3]);
  });

  it('to() converts dtype and returns a new tensor, leaving the original intact', async () => {
    const original = Tensor.fromArray(Float32Array.from([0.1, 0.2, 0.3]), [3]);
    const half = original.to('cpu', 'float16');
    const back = half.to('cpu', 'float32');
    expect(half).not.toBe(original);
    expect(Array.from(await original.toArray())).toEqual(Array.from(Float32Array.from([0.1, 0.2, 0.3])));
    const restored = await back.toArray();
    for (let i = 0; i < 3; i++) expect(restored[i]).toBeCloseTo([0.1, 0.2, 0.3][i]!, 3);
    expectMoekitError(() => original.to('cpu', 'int32'), 'E_DTYPE', /int32/);
  });

  it('random tensors are reproducible by seed and bounded by scale', async () => {
    const a = await Tensor.random([1000], { seed: 7, scale: 0.5 }).toArray();
    const b = await Tensor.random([1000], { seed: 7, scale: 0.5 }).toArray();
    const c = await Tensor.random([1000], { seed: 8, scale: 0.5 }).toArray();
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(c));
    expect(Math.max(...Array.from(a, Math.abs))).toBeLessThanOrEqual(0.5);
  });

  it('supports zero-sized tensors', async () => {
    const empty = Tensor.fromArray(new Float32Array(0), [0, 8]);
    expect(empty.numel).toBe(0);
    expect((await empty.toArray()).length).toBe(0);
  });
});

describe('Tensor validation', () => {
  it('names the problem in bad shapes, data and dtypes', () => {
    expectMoekitError(() => Tensor.fromArray(new Float32Array(5), [2, 3]), 'E_SHAPE', /5 elements.*\[2, 3\]/);
    expectMoekitError(() => Tensor.fromArray(new Float32Array(2), [-1, -2]), 'E_SHAPE');
    expectMoekitError(() => Tensor.fromArray(new Float32Array(2), [2.5]), 'E_SHAPE');
    expectMoekitError(() => Tensor.fromArray(new Uint16Array(2), [2]), 'E_DTYPE', /float16 or bfloat16/);
    expectMoekitError(() => Tensor.empty([2], { dtype: 'float64' as never }), 'E_DTYPE', /float64/);
    expectMoekitError(() => Tensor.empty([2], { device: 'gpu0' as never }), 'E_DEVICE', /gpu0/);
  });

  it('rejects a CUDA device that this machine does not have', () => {
    expectMoekitError(() => Tensor.empty([2], { device: 'cuda:99' }), 'E_DEVICE', /cuda:99/);
  });

  it('user streams need a CUDA device', () => {
    expectMoekitError(() => useStream('cpu', null), 'E_DEVICE', /needs a CUDA device, got "cpu"/);
    expectMoekitError(() => new CudaStream('cuda:99'), 'E_DEVICE', /cuda:99 does not exist|CPU-only/);
  });
});

describe('Tensor lifetime', () => {
  it('dispose() frees the tensor; any later use throws E_DISPOSED', async () => {
    const tensor = Tensor.fromArray(new Float32Array(4), [4]);
    expect(tensor.disposed).toBe(false);
    tensor.dispose();
    expect(tensor.disposed).toBe(true);
    tensor.dispose(); // idempotent
    await expect(tensor.toArray()).rejects.toMatchObject({ code: 'E_DISPOSED' });
    expectMoekitError(() => tensor.to('cpu', 'float16'), 'E_DISPOSED', /after dispose/);
    expectMoekitError(() => linear(tensor.to('cpu'), tensor), 'E_DISPOSED');
  });

  it('Symbol.dispose releases a tensor at the end of a using block', () => {
    let escaped: Tensor | undefined;
    {
      using tensor = Tensor.fromArray(new Float32Array(4), [4]);
      escaped = tensor;
      expect(tensor.disposed).toBe(false);
    }
    expect(escaped.disposed).toBe(true);
  });

  it('disposing inputs right after enqueueing an op does not disturb the op', async () => {
    const x = Tensor.fromArray(Float32Array.from([1, 2, 3, 4]), [2, 2]);
    const w = Tensor.fromArray(Float32Array.from([1, 0, 0, 1, 1, 1]), [3, 2]);
    const y = linear(x, w);
    x.dispose();
    w.dispose();
    expect(Array.from(await y.toArray())).toEqual([1, 2, 3, 3, 4, 7]);
  });
});

describe('Asynchronous execution', () => {
  it('does not block the event loop while the CPU backend works', async () => {
    const size = 768;
    const x = Tensor.random([size, size], { seed: 1 });
    const w = Tensor.random([size, size], { seed: 2 });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const start = performance.now();
    // A chain of products long enough to span many timer periods.
    let y = linear(x, w);
    for (let i = 0; i < 8; i++) {
      const next = linear(y, w);
      y.dispose();
      y = next;
    }
    const enqueueMs = performance.now() - start;
    await y.toArray();
    const totalMs = performance.now() - start;
    clearInterval(timer);
    // Enqueueing returns long before the work is done, and timers keep firing meanwhile.
    expect(enqueueMs).toBeLessThan(totalMs / 4);
    expect(ticks).toBeGreaterThanOrEqual(3);
  });
});

describe('Tensor options given by JavaScript callers', () => {
  it('take null as all defaults', async () => {
    using empty = Tensor.empty([2], null);
    expect([empty.dtype, empty.device]).toEqual(['float32', 'cpu']);
    using fromArray = Tensor.fromArray([1, 2], [2], null);
    expect(Array.from(await fromArray.toArray())).toEqual([1, 2]);
    using random = Tensor.random([3], null);
    using seeded = Tensor.random([3], { seed: 0 });
    expect(await random.toArray()).toEqual(await seeded.toArray());
  });

  it('refuse a value that is not an object, naming the call', () => {
    expectMoekitError(() => Tensor.empty([2], 5 as never), 'E_INVALID_ARGUMENT', /^Tensor\.empty: options must be an object, got 5$/);
    expectMoekitError(() => Tensor.fromArray([1], [1], 'cuda:0' as never), 'E_INVALID_ARGUMENT', /^Tensor\.fromArray: options must be an object, got "cuda:0"$/);
    expectMoekitError(() => Tensor.random([1], [1] as never), 'E_INVALID_ARGUMENT', /^Tensor\.random: options must be an object, got \[1\]$/);
  });
});

describe('float8_e4m3 and uint8 tensors', () => {
  it('convert from floats rounding to nearest even and saturating at ±448, and back exactly', async () => {
    // 1.0625 lies halfway between 1 and 1.125 (even: 1); 1.1875 between 1.125 and 1.25 (even: 1.25).
    using x = Tensor.fromArray([0, 1.0625, 1.1875, -2.5, 448, 1000, -1e9, 0.001, 3.3], [9]);
    using q = x.to('cpu', 'float8_e4m3');
    expect(q.nbytes).toBe(9);
    expect(Array.from(await q.toFloat32Array())).toEqual([0, 1, 1.25, -2.5, 448, 448, -448, 0.001953125, 3.25]);
    expect(Array.from(await q.toArray())).toEqual([0x00, 0x38, 0x3a, 0xc2, 0x7e, 0x7e, 0xfe, 0x01, 0x45]);
    using back = q.to('cpu', 'bfloat16');
    expect(Array.from(await back.toFloat32Array())).toEqual([0, 1, 1.25, -2.5, 448, 448, -448, 0.001953125, 3.25]);
  });

  it('come from Uint8Array bits with the dtype named, and uint8 does not convert', async () => {
    using bits = Tensor.fromArray(Uint8Array.from([0x38, 0x7e, 0x7f]), [3], { dtype: 'float8_e4m3' });
    const values = await bits.toFloat32Array();
    expect([values[0], values[1], Number.isNaN(values[2])]).toEqual([1, 448, true]);
    using bytes = Tensor.fromArray(Uint8Array.from([1, 2, 250]), [3], { dtype: 'uint8' });
    expect(Array.from(await bytes.toArray())).toEqual([1, 2, 250]);
    expectMoekitError(() => Tensor.fromArray(Uint8Array.from([1]), [1]), 'E_DTYPE', /Uint8Array data holds float8_e4m3 bits or raw bytes/);
    expectMoekitError(() => bytes.to('cpu', 'float32'), 'E_DTYPE', /cannot convert uint8 to float32/);
    expectMoekitError(() => Tensor.random([2], { dtype: 'float8_e4m3' }), 'E_DTYPE', /not float8_e4m3/);
  });
});

describe('uint8 tensors from number[]', () => {
  it('take integers in [0, 255] and refuse anything else', async () => {
    using bytes = Tensor.fromArray([0, 7, 255], [3], { dtype: 'uint8' });
    expect(Array.from(await bytes.toArray())).toEqual([0, 7, 255]);
    expectMoekitError(() => Tensor.fromArray([1, 256], [2], { dtype: 'uint8' }), 'E_INVALID_ARGUMENT', /uint8 data must hold integers in \[0, 255\], got 256 at index 1/);
    expectMoekitError(() => Tensor.fromArray([0.5], [1], { dtype: 'uint8' }), 'E_INVALID_ARGUMENT', /got 0\.5 at index 0/);
  });
});
