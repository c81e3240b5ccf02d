/**
 * Plain TypeScript references for the FP8 rules of native/core/op_args.h ("Quantized weights and
 * activations"), written from the text and independent of moekit's own conversions: e4m3 rounding
 * picks the nearest of the format's values from a table of all of them (ties to the even pattern),
 * the W8A8 rule quantizes rows per 128 channels, the at-load rule weights per 128×128 block. Scales
 * and x / scale are float32 operations (Math.fround), as the rule says.
 */

const BLOCK = 128;
const E4M3_MAX = 448;

/** The non-negative finite e4m3 values by pattern 0x00..0x7e: subnormals m/8·2^-6, then (1 + m/8)·2^(e-7). */
const E4M3_VALUES: readonly number[] = Array.from({ length: 0x7f }, (_, bits) => {
  const exponent = bits >> 3;
  const mantissa = bits & 7;
  return exponent === 0 ? (mantissa / 8) * 2 ** -6 : (1 + mantissa / 8) * 2 ** (exponent - 7);
});

/** The e4m3 value nearest to `value` (ties to the even pattern), saturating at ±448; NaN stays NaN. */
export function roundToE4m3(value: number): number {
  if (Number.isNaN(value)) return NaN;
  const magnitude = Math.abs(value);
  if (magnitude >= E4M3_MAX) return Math.sign(value) * E4M3_MAX;
  let upper = E4M3_VALUES.findIndex((candidate) => candidate >= magnitude);
  const lower = upper === 0 ? 0 : upper - 1;
  const below = magnitude - E4M3_VALUES[lower]!;
  const above = E4M3_VALUES[upper]! - magnitude;
  if (below < above || (below === above && lower % 2 === 0)) upper = lower;
  return (value < 0 ? -1 : 1) * E4M3_VALUES[upper]!;
}

export function blocks(extent: number): number {
  return Math.ceil(extent / BLOCK);
}

/** One group's scale and the q · scale values it leaves (float32 products). */
function quantizeGroup(values: readonly number[]): { scale: number; q: number[]; dequantized: number[] } {
  const amax = values.reduce((max, value) => Math.max(max, Math.abs(value)), 0);
  const scale = Math.fround(amax / E4M3_MAX);
  const q = values.map((value) => (scale === 0 ? 0 : roundToE4m3(Math.fround(value / scale))));
  return { scale, q, dequantized: q.map((value) => Math.fround(value * scale)) };
}

export interface QuantizedRowsReference {
  /** [rows, width] e4m3 values (as numbers). */
  q: Float32Array;
  /** [rows, ceil(width / 128)] */
  scales: Float32Array;
  /** [rows, width] q · scale */
  dequantized: Float32Array;
}

/** The W8A8 rule on a [rows, width] matrix: per row, per 128 consecutive channels. */
export function quantizeRowsW8A8(values: ArrayLike<number>, rows: number, width: number): QuantizedRowsReference {
  const groups = blocks(width);
  const result = { q: new Float32Array(rows * width), scales: new Float32Array(rows * groups), dequantized: new Float32Array(rows * width) };
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const begin = r * width + g * BLOCK;
      const end = r * width + Math.min(width, (g + 1) * BLOCK);
      const group = quantizeGroup(Array.from({ length: end - begin }, (_, i) => values[begin + i]!));
      result.scales[r * groups + g] = group.scale;
      result.q.set(group.q, begin);
      result.dequantized.set(group.dequantized, begin);
    }
  }
  return result;
}

export interface QuantizedWeightsReference {
  /** [matrices, n, k] e4m3 values (as numbers). */
  q: Float32Array;
  /** [matrices, ceil(n / 128), ceil(k / 128)] */
  scales: Float32Array;
  /** [matrices, n, k] q · scale */
  dequantized: Float32Array;
}

/** The at-load rule on `matrices` stacked [n, k] matrices: per 128×128 block. */
export function quantizeWeightsFp8Block(values: ArrayLike<number>, matrices: number, n: number, k: number): QuantizedWeightsReference {
  const rowBlocks = blocks(n);
  const colBlocks = blocks(k);
  const result = { q: new Float32Array(matrices * n * k), scales: new Float32Array(matrices * rowBlocks * colBlocks), dequantized: new Float32Array(matrices * n * k) };
  for (let m = 0; m < matrices; m++) {
    for (let rb = 0; rb < rowBlocks; rb++) {
      for (let cb = 0; cb < colBlocks; cb++) {
        const indices: number[] = [];
        for (let r = rb * BLOCK; r < Math.min(n, (rb + 1) * BLOCK); r++) {
          for (let c = cb * BLOCK; c < Math.min(k, (cb + 1) * BLOCK); c++) indices.push((m * n + r) * k + c);
        }
        const group = quantizeGroup(indices.map((index) => values[index]!));
        result.scales[(m * rowBlocks + rb) * colBlocks + cb] = group.scale;
        indices.forEach((index, i) => {
          result.q[index] = group.q[i]!;
          result.dequantized[index] = group.dequantized[i]!;
        });
      }
    }
  }
  return result;
}

/** [matrices, n, k] weights from e4m3 values and block scales: q · scale. */
export function dequantizeWeightsFp8Block(q: ArrayLike<number>, scales: ArrayLike<number>, matrices: number, n: number, k: number): Float32Array {
  const rowBlocks = blocks(n);
  const colBlocks = blocks(k);
  const values = new Float32Array(matrices * n * k);
  for (let m = 0; m < matrices; m++) {
    for (let r = 0; r < n; r++) {
      for (let c = 0; c < k; c++) {
        const scale = scales[(m * rowBlocks + Math.floor(r / BLOCK)) * colBlocks + Math.floor(c / BLOCK)]!;
        values[(m * n + r) * k + c] = Math.fround(q[(m * n + r) * k + c]! * scale);
      }
    }
  }
  return values;
}
