import { describeValue, MoekitError } from './errors';

/**
 * Element types of a Tensor. float16 and bfloat16 are stored as raw 16-bit patterns. float8_e4m3
 * holds quantized values (raw 8-bit patterns, always used beside their scales: see QuantizedWeights)
 * and uint8 raw bytes (packed formats).
 */
export type DType = 'float32' | 'float16' | 'bfloat16' | 'int32' | 'float8_e4m3' | 'uint8';
/** The dtypes ops compute in. */
export type FloatDType = 'float32' | 'float16' | 'bfloat16';
/** The 16-bit float dtypes, held on the host as their bit patterns in a Uint16Array. */
export type HalfDType = 'float16' | 'bfloat16';

export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'int32', 'float8_e4m3', 'uint8'];
export const FLOAT_DTYPES: readonly FloatDType[] = ['float32', 'float16', 'bfloat16'];

/** The largest finite float32: the kernels take their scalar parameters as float32. */
export const FLOAT32_MAX = 3.4028234663852886e38;

/** Numeric codes shared with native/core/dtype.h. */
export const DTYPE_CODES: Readonly<Record<DType, number>> = { float32: 0, float16: 1, bfloat16: 2, int32: 3, float8_e4m3: 4, uint8: 5 };

export const DTYPE_BYTES: Readonly<Record<DType, number>> = { float32: 4, float16: 2, bfloat16: 2, int32: 4, float8_e4m3: 1, uint8: 1 };

/** The typed array that holds a dtype's elements on the host. */
export type HostArray<D extends DType = DType> = D extends 'float32'
  ? Float32Array
  : D extends 'int32'
    ? Int32Array
    : D extends 'float8_e4m3' | 'uint8'
      ? Uint8Array
      : Uint16Array;

/** Whether values of the dtype convert to and from floats (the compute dtypes and float8_e4m3). */
export function isConvertibleDType(dtype: DType): boolean {
  return dtype !== 'int32' && dtype !== 'uint8';
}

export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && (DTYPES as readonly string[]).includes(value);
}

export function isFloatDType(value: unknown): value is FloatDType {
  return typeof value === 'string' && (FLOAT_DTYPES as readonly string[]).includes(value);
}

export function parseDType(value: unknown, what = 'dtype'): DType {
  if (!isDType(value)) throw new MoekitError('E_DTYPE', `${what}: unknown dtype ${describeValue(value)} (expected one of ${DTYPES.join(', ')})`);
  return value;
}

export function parseFloatDType(value: unknown, what = 'dtype'): FloatDType {
  if (!isFloatDType(value)) throw new MoekitError('E_DTYPE', `${what}: expected a float dtype (${FLOAT_DTYPES.join(', ')}), got ${describeValue(value)}`);
  return value;
}

export function allocateHostArray<D extends DType>(dtype: D, length: number): HostArray<D> {
  switch (dtype) {
    case 'float32': return new Float32Array(length) as HostArray<D>;
    case 'int32': return new Int32Array(length) as HostArray<D>;
    case 'float8_e4m3':
    case 'uint8': return new Uint8Array(length) as HostArray<D>;
    default: return new Uint16Array(length) as HostArray<D>;
  }
}

// ---- float16 / bfloat16 bit conversions (host side, for creating and reading tensors) ----

const scratch = new DataView(new ArrayBuffer(4));

/** float32 -> bfloat16 bits, rounding to nearest even (as PyTorch). */
export function floatToBfloat16Bits(value: number): number {
  scratch.setFloat32(0, value);
  const word = scratch.getUint32(0);
  if ((word & 0x7fffffff) > 0x7f800000) return ((word >>> 16) | 0x40) & 0xffff;
  return ((word + 0x7fff + ((word >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bfloat16BitsToFloat(bits: number): number {
  scratch.setUint32(0, (bits & 0xffff) << 16);
  return scratch.getFloat32(0);
}

/** float32 -> IEEE half bits, rounding to nearest even. */
export function floatToFloat16Bits(value: number): number {
  scratch.setFloat32(0, value);
  const word = scratch.getUint32(0);
  const sign = (word >>> 16) & 0x8000;
  const magnitude = word & 0x7fffffff;
  if (magnitude > 0x7f800000) return sign | 0x7e00;
  if (magnitude >= 0x47800000) return sign | 0x7c00;
  if (magnitude < 0x33000001) return sign;
  let exponent = (magnitude >>> 23) - 127 + 15;
  const mantissa = (magnitude & 0x7fffff) | 0x800000;
  if (exponent <= 0) {
    const shift = 14 - exponent;
    let rounded = mantissa >>> shift;
    const remainder = mantissa & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (remainder > half || (remainder === half && (rounded & 1) !== 0)) rounded += 1;
    return sign | rounded;
  }
  let rounded = mantissa >>> 13;
  const remainder = mantissa & 0x1fff;
  if (remainder > 0x1000 || (remainder === 0x1000 && (rounded & 1) !== 0)) rounded += 1;
  if ((rounded & 0x800) !== 0) {
    rounded >>>= 1;
    exponent += 1;
  }
  if (exponent >= 0x1f) return sign | 0x7c00;
  return sign | (exponent << 10) | (rounded & 0x3ff);
}

export function float16BitsToFloat(bits: number): number {
  const sign = (bits & 0x8000) !== 0 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** The 16-bit float dtypes encodeHalf and decodeHalf take; anything else would silently mean float16. */
function requireHalfDType(dtype: unknown, what: string): asserts dtype is 'float16' | 'bfloat16' {
  if (dtype !== 'float16' && dtype !== 'bfloat16') throw new MoekitError('E_DTYPE', `${what}: dtype must be 'float16' or 'bfloat16', got ${describeValue(dtype)}`);
}

/** Encodes float values into the 16-bit patterns of `dtype`. */
export function encodeHalf(values: ArrayLike<number>, dtype: 'float16' | 'bfloat16'): Uint16Array {
  requireHalfDType(dtype, 'encodeHalf');
  if (typeof values !== 'object' || values === null || typeof values.length !== 'number') {
    throw new MoekitError('E_INVALID_ARGUMENT', 'encodeHalf: values must be an array or typed array of numbers');
  }
  const encode = dtype === 'bfloat16' ? floatToBfloat16Bits : floatToFloat16Bits;
  const bits = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) bits[i] = encode(values[i]!);
  return bits;
}

/** Decodes 16-bit patterns of `dtype` into float32 values. */
export function decodeHalf(bits: Uint16Array, dtype: 'float16' | 'bfloat16'): Float32Array {
  requireHalfDType(dtype, 'decodeHalf');
  if (!(bits instanceof Uint16Array)) throw new MoekitError('E_INVALID_ARGUMENT', 'decodeHalf: bits must be a Uint16Array');
  const decode = dtype === 'bfloat16' ? bfloat16BitsToFloat : float16BitsToFloat;
  const values = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) values[i] = decode(bits[i]!);
  return values;
}

/** Values of a FloatDType on the host: float32 in a Float32Array, float16/bfloat16 bits in a Uint16Array. */
export type FloatHostArray = Float32Array | Uint16Array;

/**
 * `values` of dtype `from` as dtype `to`: the same array, not a copy, when the dtypes agree;
 * otherwise converted on the host (rounding to nearest even where `to` is narrower).
 */
export function convertFloatArray(values: FloatHostArray, from: FloatDType, to: FloatDType): FloatHostArray {
  if (from === to) return values;
  const floats = from === 'float32' ? (values as Float32Array) : decodeHalf(values as Uint16Array, from);
  return to === 'float32' ? floats : encodeHalf(floats, to);
}

// ---- float8 e4m3 (e4m3fn: no infinities, 0x7f/0xff NaN, largest finite 448) ----

/** float8_e4m3 bits -> float32 value, exactly. */
export function float8e4m3BitsToFloat(bits: number): number {
  const sign = (bits & 0x80) !== 0 ? -1 : 1;
  const exponent = (bits >>> 3) & 0xf;
  const mantissa = bits & 0x7;
  if (exponent === 0xf && mantissa === 0x7) return NaN;
  if (exponent === 0) return sign * mantissa * 2 ** -9;
  return sign * (1 + mantissa / 8) * 2 ** (exponent - 7);
}

/** Decodes float8_e4m3 patterns into float32 values. */
export function decodeFloat8(bits: Uint8Array): Float32Array {
  if (!(bits instanceof Uint8Array)) throw new MoekitError('E_INVALID_ARGUMENT', 'decodeFloat8: bits must be a Uint8Array');
  const values = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) values[i] = float8e4m3BitsToFloat(bits[i]!);
  return values;
}
