/**
 * Plain TypeScript references for the weight-only formats of native/core/op_args.h (Int8, Int4,
 * Mxfp4) and the int8 / int4 at-load rule, written from the text (and
 * ../shared/fixtures/hf-moe-quant/README.md), independent of moekit's own code: bytes are unpacked
 * nibble by nibble, e2m1 read from its bit fields, e8m0 as a power of two, scales and w / scale are
 * float32 operations (Math.fround), and rounding half to even is spelled out.
 */

export type WeightOnlyFormat = 'int8' | 'int4' | 'mxfp4';

/** K values per scale: a number, or K itself for one scale per output row (groupSize 'channel'). */
function groupWidth(format: WeightOnlyFormat, groupSize: number | 'channel', depth: number): number {
  if (format === 'mxfp4') return 32;
  return groupSize === 'channel' ? depth : groupSize;
}

export function scaleGroupCount(format: WeightOnlyFormat, groupSize: number | 'channel', depth: number): number {
  return depth === 0 ? 0 : Math.ceil(depth / groupWidth(format, groupSize, depth));
}

/** The value q of weight k of a row of bytes. */
function storedValue(format: WeightOnlyFormat, bytes: ArrayLike<number>, rowStart: number, k: number): number {
  if (format === 'int8') {
    const byte = bytes[rowStart + k]!;
    return byte >= 128 ? byte - 256 : byte;
  }
  const byte = bytes[rowStart + Math.floor(k / 2)]!;
  const nibble = k % 2 === 0 ? byte & 0xf : byte >> 4;
  if (format === 'int4') return nibble >= 8 ? nibble - 16 : nibble;
  // e2m1: sign bit 3, exponent bits 1-2 (bias 1), mantissa bit 0; exponent 0 is subnormal (m · 0.5).
  const sign = nibble & 8 ? -1 : 1;
  const exponent = (nibble >> 1) & 3;
  const mantissa = nibble & 1;
  return sign * (exponent === 0 ? mantissa * 0.5 : (1 + mantissa / 2) * 2 ** (exponent - 1));
}

function scaleValue(format: WeightOnlyFormat, scales: ArrayLike<number>, index: number): number {
  if (format !== 'mxfp4') return scales[index]!;
  const s = scales[index]!;
  return s === 255 ? NaN : 2 ** (s - 127);
}

/** w[m, n, k] = q · scale for `matrices` matrices [n, k] stored as `bytes` with `scales`. */
export function dequantizeWeightOnly(format: WeightOnlyFormat, bytes: ArrayLike<number>, scales: ArrayLike<number>,
  matrices: number, n: number, k: number, groupSize: number | 'channel' = format === 'int8' ? 'channel' : 128): Float32Array {
  const rowBytes = format === 'int8' ? k : k / 2;
  const groups = scaleGroupCount(format, groupSize, k);
  const width = groupWidth(format, groupSize, k);
  const values = new Float32Array(matrices * n * k);
  for (let row = 0; row < matrices * n; row++) {
    for (let i = 0; i < k; i++) {
      const scale = scaleValue(format, scales, row * groups + Math.floor(i / width));
      values[row * k + i] = Math.fround(storedValue(format, bytes, row * rowBytes, i) * scale);
    }
  }
  return values;
}

/** x rounded to the nearest integer, ties to the even one. */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

export interface IntegerWeightsReference {
  /** q per value, [matrices, n, k] */
  q: Int8Array;
  /** bytes as stored: int8 one per value, int4 two per byte (even k low) */
  bytes: Uint8Array;
  scales: Float32Array;
}

/** The at-load rule for int8 / int4: per group of an output row, scale = amax / 127 or / 7. */
export function quantizeIntegerWeights(format: 'int8' | 'int4', values: ArrayLike<number>, matrices: number, n: number, k: number,
  groupSize: number | 'channel'): IntegerWeightsReference {
  const [largest, lowest] = format === 'int8' ? [127, -127] : [7, -8];
  const groups = scaleGroupCount(format, groupSize, k);
  const width = groupWidth(format, groupSize, k);
  const q = new Int8Array(matrices * n * k);
  const scales = new Float32Array(matrices * n * groups);
  for (let row = 0; row < matrices * n; row++) {
    for (let group = 0; group < groups; group++) {
      const begin = group * width;
      const end = Math.min(k, begin + width);
      let amax = 0;
      let finite = true;
      for (let i = begin; i < end; i++) {
        const value = values[row * k + i]!;
        if (!Number.isFinite(value)) finite = false;
        else amax = Math.max(amax, Math.abs(value));
      }
      const scale = finite ? Math.fround(amax / largest) : NaN;
      scales[row * groups + group] = scale;
      for (let i = begin; i < end; i++) {
        q[row * k + i] = !finite || scale === 0 ? 0 : Math.min(largest, Math.max(lowest, roundHalfEven(Math.fround(values[row * k + i]! / scale))));
      }
    }
  }
  const bytes = new Uint8Array(format === 'int8' ? q.length : q.length / 2);
  if (format === 'int8') q.forEach((value, i) => { bytes[i] = value & 0xff; });
  else for (let i = 0; i < bytes.length; i++) bytes[i] = (q[2 * i]! & 0xf) | ((q[2 * i + 1]! & 0xf) << 4);
  return { q, bytes, scales };
}
