// Host-side float16/bfloat16 conversions (lib/dtype.ts): arguments of the wrong kind are
// MoekitErrors, and a dtype that is not a 16-bit float is refused rather than read as float16.
import { describe, expect, it } from 'vitest';

import { decodeHalf, encodeHalf } from '../lib/index';
import { expectThrows } from './helpers/errors';

describe('encodeHalf and decodeHalf', () => {
  it('round-trip values exact in both formats', () => {
    const values = [1.5, -2, 0, 256];
    for (const dtype of ['float16', 'bfloat16'] as const) expect(Array.from(decodeHalf(encodeHalf(values, dtype), dtype))).toEqual(values);
  });

  it('refuse a dtype that is not float16 or bfloat16 (it used to encode float16 silently)', () => {
    expectThrows(() => encodeHalf([1], 'float32' as never), 'E_DTYPE', /^encodeHalf: dtype must be 'float16' or 'bfloat16', got "float32"$/);
    expectThrows(() => decodeHalf(Uint16Array.of(1), undefined as never), 'E_DTYPE', /^decodeHalf: dtype must be 'float16' or 'bfloat16', got undefined$/);
  });

  it('refuse values that are not arrays of numbers, and bits that are not a Uint16Array', () => {
    expectThrows(() => encodeHalf(null as never, 'float16'), 'E_INVALID_ARGUMENT', /^encodeHalf: values must be an array or typed array of numbers$/);
    expectThrows(() => encodeHalf(3 as never, 'bfloat16'), 'E_INVALID_ARGUMENT', /^encodeHalf: values must be an array/);
    expectThrows(() => decodeHalf([1, 2] as never, 'float16'), 'E_INVALID_ARGUMENT', /^decodeHalf: bits must be a Uint16Array$/);
  });
});
