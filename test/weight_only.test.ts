// Weight-only experts on the CPU backend (int8, int4, mxfp4: lib/ops/quantized.ts and the
// weight-only paths of groupedGemm and linear) against the plain references of
// test/reference/weight_only.ts: the int8 / int4 at-load rule (per channel, in groups, a partial
// last group, NaN and infinite groups), GEMMs on K a multiple of 32 but not of 128, an empty expert,
// 1 and many rows, 16-bit inputs, bias and a fused activation; then every malformed call, from the
// TypeScript API and straight at the native binding.
import { describe, expect, it } from 'vitest';

import { Fp8Rows, groupedGemm, linear, QuantizedWeights, quantizeWeights, Tensor } from '../lib/index';
import { addon } from '../lib/native';
import { expectThrows } from './helpers/errors';
import { relativeError } from './helpers/fixtures';
import { randomArray, referenceActivation, referenceGroupedGemm, referenceLinear } from './reference/ops';
import { mulberry32 } from './reference/random';
import { dequantizeWeightOnly, quantizeIntegerWeights, scaleGroupCount, type WeightOnlyFormat } from './reference/weight_only';

// K a multiple of 32 but not of 128; groups of 64 leave a partial last group (160 = 2·64 + 32).
const HIDDEN = 160;
const OUT = 36;
const EXPERTS = 3;
const EMPTY_EXPERT = 1;

function randomBytes(length: number, seed: number, lowest = 0, highest = 255): Uint8Array {
  const next = mulberry32(seed);
  return Uint8Array.from({ length }, () => lowest + Math.floor(next() * (highest - lowest + 1)));
}

interface HostWeights {
  format: WeightOnlyFormat;
  groupSize: number | 'channel';
  bytes: Uint8Array;
  scales: Float32Array | Uint8Array;
  /** [matrices, n, k] dequantized by the reference */
  dense: Float32Array;
}

/** Random stored weights of a format: arbitrary bytes, scales around 1/64 (int) or 2^-6 ± 3 (mxfp4). */
function hostWeights(format: WeightOnlyFormat, matrices: number, n: number, k: number, groupSize: number | 'channel', seed: number): HostWeights {
  const rowBytes = format === 'int8' ? k : k / 2;
  const bytes = randomBytes(matrices * n * rowBytes, seed);
  const scaleCount = matrices * n * scaleGroupCount(format, groupSize, k);
  const scales = format === 'mxfp4' ? randomBytes(scaleCount, seed + 1, 118, 124) : Float32Array.from(randomArray(scaleCount, seed + 1, 0.01), (v) => Math.abs(v) + 0.001);
  return { format, groupSize, bytes, scales, dense: dequantizeWeightOnly(format, bytes, scales, matrices, n, k, groupSize) };
}

/** A tensor of zeros. */
function zeros(shape: number[], dtype: 'float32' | 'uint8' | 'float8_e4m3' = 'float32'): Tensor {
  const count = shape.reduce((a, b) => a * b, 1);
  return Tensor.fromArray(dtype === 'float32' ? new Float32Array(count) : new Uint8Array(count), shape, { dtype });
}

function upload(host: HostWeights, shape: number[]): QuantizedWeights {
  const rowBytes = host.format === 'int8' ? shape.at(-1)! : shape.at(-1)! / 2;
  const data = Tensor.fromArray(host.bytes, [...shape.slice(0, -1), rowBytes], { dtype: 'uint8' });
  const groups = scaleGroupCount(host.format, host.groupSize, shape.at(-1)!);
  const scales = Tensor.fromArray(host.scales, [...shape.slice(0, -1), groups], { dtype: host.format === 'mxfp4' ? 'uint8' : 'float32' });
  return new QuantizedWeights({ format: host.format, data, scales, ...(host.format !== 'mxfp4' && { groupSize: host.groupSize }) });
}

const CASES: [WeightOnlyFormat, number | 'channel'][] = [['int8', 'channel'], ['int8', 64], ['int4', 32], ['int4', 'channel'], ['int4', 128], ['mxfp4', 32]];

describe('quantizeWeights to int8 and int4 (the at-load rule)', () => {
  const values = randomArray(EXPERTS * OUT * HIDDEN, 11, 0.5);
  for (const [format, groupSize] of CASES.filter(([name]) => name !== 'mxfp4') as ['int8' | 'int4', number | 'channel'][]) {
    it(`${format}, groupSize ${groupSize}: bytes and scales as the reference`, async () => {
      using weights = Tensor.fromArray(values, [EXPERTS, OUT, HIDDEN]);
      using quantized = quantizeWeights(weights, format, { groupSize });
      const expected = quantizeIntegerWeights(format, values, EXPERTS, OUT, HIDDEN, groupSize);
      expect(quantized.format).toBe(format);
      expect(quantized.groupSize).toBe(groupSize);
      expect(quantized.shape).toEqual([EXPERTS, OUT, HIDDEN]);
      expect(quantized.data.shape).toEqual([EXPERTS, OUT, format === 'int8' ? HIDDEN : HIDDEN / 2]);
      expect(quantized.data.dtype).toBe('uint8');
      expect(quantized.nbytes).toBe(expected.bytes.length + expected.scales.length * 4);
      expect(await quantized.data.toArray()).toEqual(expected.bytes);
      expect(await quantized.scales.toArray()).toEqual(expected.scales);
    });
  }

  it('defaults: int8 one scale per output channel, int4 groups of 128 (a partial last group)', () => {
    using weights = Tensor.fromArray(values, [EXPERTS, OUT, HIDDEN]);
    using int8 = quantizeWeights(weights, 'int8');
    using int4 = quantizeWeights(weights, 'int4');
    expect([int8.groupSize, int8.scales.shape]).toEqual(['channel', [EXPERTS, OUT, 1]]);
    expect([int4.groupSize, int4.scales.shape]).toEqual([128, [EXPERTS, OUT, 2]]);
  });

  it('from bfloat16, and ties round half to even', async () => {
    // amax 7 in the group: scale 1, so w / scale = w; 2.5 → 2, 3.5 → 4, -0.5 → 0, -1.5 → -2.
    const row = [7, 2.5, 3.5, -0.5, -1.5, 0, 1, -7];
    using weights = Tensor.fromArray(row, [1, 8], { dtype: 'bfloat16' });
    using int4 = quantizeWeights(weights, 'int4', { groupSize: 'channel' });
    expect(Array.from(await int4.scales.toArray())).toEqual([1]);
    expect(Array.from(await int4.data.toArray())).toEqual([0x27, 0x04, 0x0e, 0x91]);
  });

  it('a group holding a NaN or an infinity gets scale NaN and q = 0; a group of zeros scale 0', async () => {
    const row = new Float32Array(96).fill(0.25);
    row[3] = NaN;
    row[40] = Infinity;
    row.fill(0, 64);
    using weights = Tensor.fromArray(row, [1, 96]);
    using int8 = quantizeWeights(weights, 'int8', { groupSize: 32 });
    const scales = Array.from(await int8.scales.toArray() as Float32Array);
    expect(scales.map((s) => (Number.isNaN(s) ? 'NaN' : s))).toEqual(['NaN', 'NaN', 0]);
    expect(Array.from(await int8.data.toArray()).every((q) => q === 0)).toBe(true);
  });
});

describe('groupedGemm and linear with weight-only weights', () => {
  // Rows: expert 0 takes 17 (the panel path), expert 1 none, expert 2 takes 1 (the dot path).
  const offsets = Int32Array.from([0, 17, 17, 18]);
  const rows = 18;
  const x = randomArray(rows * HIDDEN, 3);

  for (const [format, groupSize] of CASES) {
    it(`${format} (groupSize ${groupSize}): the float32 GEMM on the dequantized weights`, async () => {
      const host = hostWeights(format, EXPERTS, OUT, HIDDEN, groupSize, 20);
      using w = upload(host, [EXPERTS, OUT, HIDDEN]);
      using input = Tensor.fromArray(x, [rows, HIDDEN]);
      using offsetsTensor = Tensor.fromArray(offsets, [EXPERTS + 1]);
      using output = groupedGemm(input, w, offsetsTensor);
      const expected = referenceGroupedGemm(x, rows, HIDDEN, host.dense, OUT, offsets);
      expect(relativeError(await output.toFloat32Array(), expected)).toBeLessThan(1e-6);
    });
  }

  it('with a bias, gpt-oss SwiGLU fused (interleaved), a bfloat16 input and output', async () => {
    const host = hostWeights('mxfp4', EXPERTS, OUT, HIDDEN, 32, 30);
    const bias = randomArray(EXPERTS * OUT, 31, 0.1);
    using w = upload(host, [EXPERTS, OUT, HIDDEN]);
    using input = Tensor.fromArray(x, [rows, HIDDEN], { dtype: 'bfloat16' });
    const x16 = await input.toFloat32Array();
    using biasTensor = Tensor.fromArray(bias, [EXPERTS, OUT]);
    using offsetsTensor = Tensor.fromArray(offsets, [EXPERTS + 1]);
    using output = groupedGemm(input, w, offsetsTensor, { bias: biasTensor, activation: { kind: 'gptoss_swiglu', layout: 'interleaved' }, outDtype: 'float32' });
    const products = referenceGroupedGemm(x16, rows, HIDDEN, host.dense, OUT, offsets, bias);
    const expected = referenceActivation(products, rows, OUT, 'gptoss_swiglu', 'interleaved');
    expect(output.shape).toEqual([rows, OUT / 2]);
    expect(relativeError(await output.toFloat32Array(), expected)).toBeLessThan(1e-6);
  });

  it('leaves the rows of an empty expert and outside the offsets untouched; an expert past the slice width', async () => {
    // N = 1100 with K = 4096 takes more than one slice of dequantized weights (4 Mi floats).
    const [n, k] = [1100, 4096];
    const host = hostWeights('int4', 2, n, k, 128, 40);
    using w = upload(host, [2, n, k]);
    const input = randomArray(3 * k, 41);
    using inputTensor = Tensor.fromArray(input, [3, k]);
    using offsetsTensor = Tensor.fromArray([1, 1, 2], [3], { dtype: 'int32' });
    using output = groupedGemm(inputTensor, w, offsetsTensor);
    const values = await output.toFloat32Array();
    const expected = referenceGroupedGemm(input, 3, k, host.dense, n, Int32Array.from([1, 1, 2]));
    expect(relativeError(values.subarray(n, 2 * n), expected.subarray(n, 2 * n))).toBeLessThan(1e-6);
  });

  it('linear: int4 per channel, mxfp4, int8 with a bias', async () => {
    const input = randomArray(5 * HIDDEN, 50);
    using inputTensor = Tensor.fromArray(input, [5, HIDDEN]);
    const bias = randomArray(OUT, 51);
    using biasTensor = Tensor.fromArray(bias, [OUT]);
    for (const [format, groupSize] of [['int4', 'channel'], ['mxfp4', 32], ['int8', 96]] as [WeightOnlyFormat, number | 'channel'][]) {
      const host = hostWeights(format, 1, OUT, HIDDEN, groupSize, 52);
      using w = upload(host, [OUT, HIDDEN]);
      using output = linear(inputTensor, w, { bias: biasTensor });
      expect(relativeError(await output.toFloat32Array(), referenceLinear(input, 5, HIDDEN, host.dense, OUT, bias))).toBeLessThan(1e-6);
    }
  });

  it('mxfp4 scale 255 is NaN: its group makes the outputs that read it NaN', async () => {
    // 0x22: both nibbles e2m1 1.0; scale 127 is 2^0.
    using data = Tensor.fromArray(new Uint8Array(2 * 16).fill(0x22), [2, 16], { dtype: 'uint8' });
    using scales = Tensor.fromArray([127, 255], [2, 1], { dtype: 'uint8' });
    using w = new QuantizedWeights({ format: 'mxfp4', data, scales });
    using input = Tensor.fromArray(new Float32Array(32).fill(1), [1, 32]);
    using output = linear(input, w);
    const values = Array.from(await output.toFloat32Array());
    expect(values[0]).toBe(32);
    expect(values[1]).toBeNaN();
  });
});

describe('QuantizedWeights with weight-only parts', () => {
  it('reports the logical shape, the group size, the real bytes, and moves between devices', async () => {
    const host = hostWeights('int4', 2, 4, 64, 32, 60);
    using w = upload(host, [2, 4, 64]);
    expect(w.shape).toEqual([2, 4, 64]);
    expect(w.data.shape).toEqual([2, 4, 32]);
    expect(w.groupSize).toBe(32);
    expect(w.nbytes).toBe(2 * 4 * 32 + 2 * 4 * 2 * 4);
    using copy = w.to('cpu');
    expect([copy.format, copy.groupSize, copy.shape]).toEqual(['int4', 32, [2, 4, 64]]);
    expect(await copy.data.toArray()).toEqual(host.bytes);
    expect(String(w)).toBe('QuantizedWeights(int4, [2, 4, 64], cpu)');
  });

  it('mxfp4 groups are 32', () => {
    using data = zeros([3, 16], 'uint8');
    using scales = zeros([3, 1], 'uint8');
    using w = new QuantizedWeights({ format: 'mxfp4', data, scales });
    expect([w.groupSize, w.shape]).toEqual([32, [3, 32]]);
  });
});

describe('errors', () => {
  const bytes = (shape: number[]) => zeros(shape, 'uint8');
  const floats = (shape: number[]) => zeros(shape);

  it('QuantizedWeights: dtypes, shapes, K and group sizes', () => {
    using data = bytes([4, 32]);
    using scales = floats([4, 1]);
    using e8m0 = bytes([4, 2]);
    using floatData = floats([4, 32]);
    using oddMx = bytes([4, 24]);
    using oddScales = bytes([4, 2]);
    expectThrows(() => new QuantizedWeights({ format: 'int8', data: floatData, scales }), 'E_DTYPE', /^QuantizedWeights: data must be uint8, got float32$/);
    expectThrows(() => new QuantizedWeights({ format: 'int8', data, scales: e8m0 }), 'E_DTYPE', /^QuantizedWeights: scales must be float32, got uint8$/);
    expectThrows(() => new QuantizedWeights({ format: 'mxfp4', data, scales }), 'E_DTYPE', /^QuantizedWeights: scales must be uint8, got float32$/);
    expectThrows(() => new QuantizedWeights({ format: 'int4', data, scales, groupSize: 32 }), 'E_SHAPE', /^QuantizedWeights: scales must have shape \[4, 2\], got \[4, 1\]$/);
    expectThrows(() => new QuantizedWeights({ format: 'int4', data, scales, groupSize: 48 }), 'E_INVALID_ARGUMENT',
      /^QuantizedWeights: groupSize must be a positive multiple of 32 or 'channel', got 48$/);
    expectThrows(() => new QuantizedWeights({ format: 'int4', data, scales, groupSize: 0 }), 'E_INVALID_ARGUMENT', /groupSize must be a positive multiple of 32/);
    expectThrows(() => new QuantizedWeights({ format: 'mxfp4', data, scales: e8m0, groupSize: 64 }), 'E_INVALID_ARGUMENT',
      /^QuantizedWeights: groupSize goes only with int8 and int4 weights \(mxfp4 has fixed groups\), got 64$/);
    expectThrows(() => new QuantizedWeights({ format: 'mxfp4', data: oddMx, scales: oddScales }), 'E_SHAPE', /^QuantizedWeights: mxfp4 weights need K to be a multiple of 32, got 48$/);
    expectThrows(() => new QuantizedWeights({ format: 'nf4' as never, data, scales }), 'E_INVALID_ARGUMENT', /format must be one of fp8_block128, int8, int4, mxfp4, got "nf4"/);
  });

  it('quantizeWeights: mxfp4, an odd K for int4, bad group sizes', () => {
    using w = floats([4, 33]);
    using even = floats([4, 64]);
    expectThrows(() => quantizeWeights(even, 'mxfp4' as never), 'E_INVALID_ARGUMENT', /^quantizeWeights: mxfp4 weights are only read from checkpoints/);
    expectThrows(() => quantizeWeights(w, 'int4'), 'E_SHAPE', /^quantizeWeights: int4 weights need an even K, got 33$/);
    expectThrows(() => quantizeWeights(even, 'int8', { groupSize: 100 }), 'E_INVALID_ARGUMENT', /^quantizeWeights: groupSize must be a positive multiple of 32 or 'channel', got 100$/);
    expectThrows(() => quantizeWeights(even, 'int8', { groupSize: 'row' as never }), 'E_INVALID_ARGUMENT', /got "row"/);
    expectThrows(() => quantizeWeights(even, 'fp8_block128', { groupSize: 32 }), 'E_INVALID_ARGUMENT', /groupSize goes only with int8 and int4 weights/);
  });

  it('GEMMs: K that disagrees with the input, FP8 rows in, FP8 out', () => {
    using w = quantizeWeights(floats([2, 8, 64]), 'int4');
    using input = floats([3, 32]);
    using offsets = Tensor.fromArray([0, 1, 3], [3], { dtype: 'int32' });
    expectThrows(() => groupedGemm(input, w, offsets), 'E_SHAPE', /^groupedGemm: weights must have shape \[\*, \*, 32\], got \[2, 8, 64\]$/);
    using input64 = floats([3, 64]);
    expectThrows(() => groupedGemm(input64, w, offsets, { outDtype: 'float8_e4m3' }), 'E_DTYPE', /^groupedGemm: outDtype float8_e4m3 needs fp8_block128 weights$/);
    const rows = new Fp8Rows({ data: zeros([3, 64], 'float8_e4m3'), scales: floats([3, 1]) });
    using _ = rows;
    expectThrows(() => groupedGemm(rows, w, offsets), 'E_DTYPE', /^groupedGemm: FP8 input rows \(Fp8Rows\) need fp8_block128 weights, but weights is int4 QuantizedWeights/);
    using w2 = quantizeWeights(floats([8, 64]), 'int8');
    expectThrows(() => linear(input, w2), 'E_SHAPE', /^linear: weight must have shape \[\*, 32\], got \[8, 64\]$/);
  });

  it('the native binding checks the contract on its own', () => {
    using input = floats([2, 64]);
    using output = floats([2, 4]);
    using offsets = Tensor.fromArray([0, 2], [2], { dtype: 'int32' });
    using data = bytes([1, 4, 32]);
    using scales = floats([1, 4, 2]);
    using oneScale = floats([1, 4, 1]);
    const gemm = (extra: Record<string, unknown>) => addon().groupedGemm(-1, {
      input: input.toNative(), weights: data.toNative(), weightScales: scales.toNative(), weightFormat: 3, weightGroupSize: 32,
      expertOffsets: offsets.toNative(), output: output.toNative(), ...extra,
    });
    expectThrows(() => gemm({ weightGroupSize: 48 }), 'E_INVALID_ARGUMENT', /^groupedGemm: weightGroupSize must be 0 \(per output channel\) or a positive multiple of 32$/);
    expectThrows(() => gemm({ weightFormat: 5 }), 'E_INVALID_ARGUMENT', /^groupedGemm: unknown weightFormat$/);
    expectThrows(() => gemm({ weightGroupSize: 0 }), 'E_INVALID_ARGUMENT', /^groupedGemm: weightScales has the wrong shape$/);
    expectThrows(() => gemm({ weightFormat: 2 }), 'E_INVALID_ARGUMENT', /^groupedGemm: weights hold a different K \(weightDepth of their last extent\) than the input$/);
    expectThrows(() => gemm({ weightFormat: 4, weightGroupSize: 64 }), 'E_INVALID_ARGUMENT', /^groupedGemm: weightGroupSize must be 0 or 32 with MXFP4 weights$/);
    expectThrows(() => gemm({ weightFormat: 4, weightGroupSize: 32 }), 'E_INVALID_ARGUMENT', /^groupedGemm: weightScales must be uint8$/);
    expectThrows(() => gemm({ weightScales: undefined }), 'E_INVALID_ARGUMENT', /^groupedGemm: weight-only weights need weightScales$/);
    expectThrows(() => gemm({ weightScales: oneScale.toNative() }), 'E_INVALID_ARGUMENT', /^groupedGemm: weightScales has the wrong shape$/);
    using q = bytes([4, 32]);
    using s = floats([4, 1]);
    using odd = floats([4, 63]);
    const quantize = (extra: Record<string, unknown>) => addon().quantizeWeights(-1, {
      input: input.toNative(), format: 3, groupSize: 0, output: q.toNative(), scales: s.toNative(), ...extra,
    });
    expectThrows(() => quantize({ format: 4 }), 'E_INVALID_ARGUMENT', /^quantizeWeights: format must be Fp8Block128, Int8 or Int4$/);
    expectThrows(() => quantize({ input: odd.toNative() }), 'E_INVALID_ARGUMENT', /^quantizeWeights: Int4 weights need an even K$/);
    expectThrows(() => quantize({ groupSize: 16 }), 'E_INVALID_ARGUMENT', /^quantizeWeights: groupSize must be 0 \(per output channel\) or a positive multiple of 32$/);
  });
});
