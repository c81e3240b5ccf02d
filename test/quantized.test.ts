// FP8 on the CPU backend (lib/ops/quantized.ts and the quantized paths of permute, groupedGemm and
// linear) against the plain references of test/reference/fp8.ts: the at-load block rule, the W8A8
// rule on rows (edge cases: an all-zero group, saturation, subnormals, a scale that underflows, a
// partial last group), GEMMs with FP8 weights on sizes that are no multiple of 128, an empty
// expert, 1 and many rows, FP8 rows in and out; then every malformed call, from the TypeScript API
// and straight at the native binding.
import { describe, expect, it } from 'vitest';

import {
  activation, Fp8Rows, groupedGemm, linear, permute, QuantizedWeights, quantizeWeights, Tensor,
} from '../lib/index';
import { addon } from '../lib/native';
import { expectThrows } from './helpers/errors';
import { relativeError } from './helpers/fixtures';
import { dequantizeWeightsFp8Block, quantizeRowsW8A8, quantizeWeightsFp8Block, roundToE4m3 } from './reference/fp8';
import { randomArray, referenceActivation, referenceGroupedGemm, referencePermute } from './reference/ops';

// Sizes that cut 128-blocks: a full block and a partial one in each direction.
const HIDDEN = 200;
const INTERMEDIATE = 150;
const EXPERTS = 4;
const TOP_K = 2;
const EMPTY_EXPERT = 2;

/** K distinct experts per token, never EMPTY_EXPERT. */
function idsFor(tokens: number): Int32Array {
  const ids = new Int32Array(tokens * TOP_K);
  const live = [0, 1, 3];
  for (let t = 0; t < tokens; t++) {
    ids[t * TOP_K] = live[t % 3]!;
    ids[t * TOP_K + 1] = live[(t + 1) % 3]!;
  }
  return ids;
}

async function floats(tensor: Tensor): Promise<Float32Array> {
  return tensor.toFloat32Array();
}

/** Weights of `shape` with these values, quantized on the CPU. */
function fp8Weights(values: Float32Array, shape: number[]): QuantizedWeights {
  using dense = Tensor.fromArray(values, shape);
  return quantizeWeights(dense, 'fp8_block128');
}

describe('quantizeWeights (the at-load rule: 128×128 blocks, scale = amax / 448)', () => {
  it('matches the reference bit for bit on [E, N, K] with partial blocks and an all-zero block', async () => {
    const [E, N, K] = [2, 200, 300];
    const values = randomArray(E * N * K, 1, 3);
    // Block (expert 1, rows 128.., cols 256..) all zero: scale 0, q 0.
    for (let r = 128; r < N; r++) values.fill(0, (N + r) * K + 256, (N + r) * K + K);
    using weights = Tensor.fromArray(values, [E, N, K]);
    using quantized = quantizeWeights(weights, 'fp8_block128');
    const expected = quantizeWeightsFp8Block(values, E, N, K);
    expect(quantized.format).toBe('fp8_block128');
    expect(quantized.shape).toEqual([E, N, K]);
    expect(quantized.scales.shape).toEqual([E, 2, 3]);
    expect(quantized.nbytes).toBe(E * N * K + E * 2 * 3 * 4);
    expect(Array.from(await floats(quantized.scales))).toEqual(Array.from(expected.scales));
    expect(Array.from(await floats(quantized.data))).toEqual(Array.from(expected.q));
    expect(expected.scales[(1 * 2 + 1) * 3 + 2]).toBe(0);
  });

  it('quantizes a [N, K] matrix from bfloat16 the same as from its float32 values', async () => {
    using weights = Tensor.fromArray(randomArray(130 * 129, 2), [130, 129], { dtype: 'bfloat16' });
    const values = await weights.toFloat32Array();
    using quantized = quantizeWeights(weights, 'fp8_block128');
    const expected = quantizeWeightsFp8Block(values, 1, 130, 129);
    expect(Array.from(await floats(quantized.data))).toEqual(Array.from(expected.q));
    expect(Array.from(await floats(quantized.scales))).toEqual(Array.from(expected.scales));
  });

  it('refuses what it cannot quantize', () => {
    using vector = Tensor.fromArray([1, 2, 3], [3]);
    using ints = Tensor.fromArray(new Int32Array(4), [2, 2]);
    expectThrows(() => quantizeWeights(vector, 'fp8_block128'), 'E_SHAPE', /^quantizeWeights: weights must be \[N, K\] or \[E, N, K\], got \[3\]$/);
    expectThrows(() => quantizeWeights(ints, 'fp8_block128'), 'E_DTYPE', /weights must be float32 or float16 or bfloat16, got int32/);
    using matrix = Tensor.fromArray([1, 2, 3, 4], [2, 2]);
    expectThrows(() => quantizeWeights(matrix, 'nf4' as never), 'E_INVALID_ARGUMENT', /^quantizeWeights: format must be one of fp8_block128, int8, int4, mxfp4, got "nf4"$/);
  });
});

/** x's rows (bfloat16) in the order `order` gives (token indices [rows]). */
async function rowsInOrder(x: Tensor, order: Tensor): Promise<Tensor> {
  const [bits, tokens] = (await Promise.all([x.toArray(), order.toArray()])) as [Uint16Array, Int32Array];
  const width = x.shape[1]!;
  const rows = new Uint16Array(tokens.length * width);
  tokens.forEach((token, row) => rows.set(bits.subarray(token * width, (token + 1) * width), row * width));
  return Tensor.fromArray(rows, [tokens.length, width], { dtype: 'bfloat16' });
}

describe('the W8A8 rule on rows (permute with quantize: fp8)', () => {
  it('quantizes each gathered row per 128 channels, as the reference, in float32 and bfloat16', async () => {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const tokens = 5;
      using x = Tensor.fromArray(randomArray(tokens * HIDDEN, 3, 2), [tokens, HIDDEN], { dtype });
      const values = await x.toFloat32Array();
      const ids = idsFor(tokens);
      using idTensor = Tensor.fromArray(ids, [tokens, TOP_K]);
      const sorted = permute(x, idTensor, EXPERTS, { quantize: 'fp8' });
      const gathered = referencePermute(values, HIDDEN, ids, TOP_K, EXPERTS);
      const expected = quantizeRowsW8A8(gathered.permuted, tokens * TOP_K, HIDDEN);
      expect(sorted.permuted).toBeInstanceOf(Fp8Rows);
      expect(sorted.permuted.shape).toEqual([tokens * TOP_K, HIDDEN]);
      expect(sorted.permuted.scales.shape).toEqual([tokens * TOP_K, 2]);
      expect(Array.from(await floats(sorted.permuted.data))).toEqual(Array.from(expected.q));
      expect(Array.from(await floats(sorted.permuted.scales))).toEqual(Array.from(expected.scales));
      expect(Array.from(await sorted.permuted.toFloat32Array())).toEqual(Array.from(expected.dequantized));
      expect(Array.from(await sorted.expertOffsets.toArray())).toEqual(Array.from(gathered.offsets));
      sorted.permuted.dispose();
      for (const tensor of [sorted.expertOffsets, sorted.sourceToPermuted, sorted.permutedToSource]) tensor.dispose();
    }
  });

  it('permutes FP8 rows that carry their scales (Fp8Rows input) with them, bit for bit, as wide EP\'s owner does', async () => {
    const tokens = 6;
    using x = Tensor.fromArray(randomArray(tokens * HIDDEN, 5, 3), [tokens, HIDDEN], { dtype: 'bfloat16' });
    using oneEach = Tensor.fromArray(Int32Array.from({ length: tokens }, (_, t) => t % EXPERTS), [tokens, 1]);
    const first = permute(x, oneEach, EXPERTS, { quantize: 'fp8' });
    // Sort the FP8 rows again, by other ids: each row and its scales must move together, unchanged.
    const ids = idsFor(tokens);
    using idTensor = Tensor.fromArray(ids, [tokens, TOP_K]);
    const again = permute(first.permuted, idTensor, EXPERTS);
    // The same rows quantized straight from bfloat16 in the first sort's order (topK 1: row r is
    // token permutedToSource[r]).
    using reordered = await rowsInOrder(x, first.permutedToSource);
    const direct = permute(reordered, idTensor, EXPERTS, { quantize: 'fp8' });
    expect(again.permuted).toBeInstanceOf(Fp8Rows);
    expect(Array.from(await again.permuted.data.toArray())).toEqual(Array.from(await direct.permuted.data.toArray()));
    expect(Array.from(await again.permuted.scales.toArray())).toEqual(Array.from(await direct.permuted.scales.toArray()));
    expect(Array.from(await again.expertOffsets.toArray())).toEqual(Array.from(await direct.expertOffsets.toArray()));
    for (const result of [first, again, direct]) for (const made of Object.values(result)) made.dispose();
    // What is refused: FP8 bits without their scales, and disposed rows.
    using bits = Tensor.fromArray(new Uint8Array(tokens * HIDDEN), [tokens, HIDDEN], { dtype: 'float8_e4m3' });
    expectThrows(() => permute(bits, oneEach, EXPERTS), 'E_DTYPE', /permute: input/);
    const gone = permute(x, oneEach, EXPERTS, { quantize: 'fp8' });
    gone.permuted.dispose();
    expectThrows(() => permute(gone.permuted, oneEach, EXPERTS), 'E_DISPOSED', /permute: input was used after dispose\(\)/);
    for (const made of [gone.expertOffsets, gone.sourceToPermuted, gone.permutedToSource]) made.dispose();
  });

  it('handles the edge cases: an all-zero group, saturation, ties, subnormals, a scale that underflows, a partial group', async () => {
    const width = 428; // groups [0, 128), [128, 256), [256, 384) and a partial one, [384, 428)
    const row = new Float32Array(width);
    // Group 0 is all zero: scale 0, q 0.
    // Group 1: amax 0.017, where 0.017 / fround(0.017 / 448) is 448.00003 in float32: saturates to 448.
    const saturating = Math.fround(0.017);
    expect(Math.fround(saturating / Math.fround(saturating / 448))).toBeGreaterThan(448);
    row[128] = saturating;
    row[129] = -saturating;
    // Group 2: amax 28, scale 2^-4 exactly, so x / scale is exact: halfway points tie to even and
    // values below 2^-6 land on subnormals.
    const scale2 = 2 ** -4;
    row[256] = 28;
    row[257] = 2.5 * 2 ** -9 * scale2; // halfway between subnormals 2 and 3 (× 2^-9): to 2
    row[258] = 3.5 * 2 ** -9 * scale2; // halfway between 3 and 4: to 4
    row[259] = 17 * scale2; // halfway between 16 and 18: to 16
    row[260] = -19 * scale2; // halfway between 18 and 20: to -20
    row[261] = 0.1 * 2 ** -9 * scale2; // below half the smallest subnormal: to 0
    // Group 3 (44 channels): an amax so small that amax / 448 underflows to 0: q = 0.
    row[400] = 1e-45;
    row[401] = -1e-45;
    using x = Tensor.fromArray(row, [1, width]);
    using ids = Tensor.fromArray(new Int32Array([0]), [1, 1]);
    const sorted = permute(x, ids, 1, { quantize: 'fp8' });
    const q = await floats(sorted.permuted.data);
    const scales = await floats(sorted.permuted.scales);
    const expected = quantizeRowsW8A8(row, 1, width);
    expect(Array.from(scales)).toEqual(Array.from(expected.scales));
    expect(Array.from(q)).toEqual(Array.from(expected.q));
    expect(scales[0]).toBe(0);
    expect(q.subarray(0, 128).every((value) => value === 0)).toBe(true);
    expect([q[128], q[129]]).toEqual([448, -448]);
    expect(scales[2]).toBe(scale2);
    expect(Array.from(q.subarray(256, 262))).toEqual([448, 2 * 2 ** -9, 4 * 2 ** -9, 16, -20, 0]);
    expect(row[400]).toBeGreaterThan(0);
    expect(scales[3]).toBe(0);
    expect([q[400], q[401]]).toEqual([0, 0]);
    sorted.permuted.dispose();
    for (const tensor of [sorted.expertOffsets, sorted.sourceToPermuted, sorted.permutedToSource]) tensor.dispose();
  });

  it('drops the pairs of other ranks\' experts (EP), quantizing only the local rows', async () => {
    const tokens = 7;
    const values = randomArray(tokens * HIDDEN, 4);
    const ids = idsFor(tokens);
    using x = Tensor.fromArray(values, [tokens, HIDDEN]);
    using idTensor = Tensor.fromArray(ids, [tokens, TOP_K]);
    const sorted = permute(x, idTensor, EXPERTS, { quantize: 'fp8', localExperts: { first: 2, count: 2 } });
    const gathered = referencePermute(values, HIDDEN, ids, TOP_K, EXPERTS, { first: 2, count: 2 });
    const used = gathered.offsets[2]!;
    const expected = quantizeRowsW8A8(gathered.permuted.subarray(0, used * HIDDEN), used, HIDDEN);
    expect(Array.from((await floats(sorted.permuted.data)).subarray(0, used * HIDDEN))).toEqual(Array.from(expected.q));
    expect(Array.from((await floats(sorted.permuted.scales)).subarray(0, used * 2))).toEqual(Array.from(expected.scales));
    sorted.permuted.dispose();
    for (const tensor of [sorted.expertOffsets, sorted.sourceToPermuted, sorted.permutedToSource]) tensor.dispose();
  });
});

describe.each([1, 97])('GEMMs with FP8 weights on %i token(s)', (tokens) => {
  const ids = idsFor(tokens);
  const x = randomArray(tokens * HIDDEN, 5, 1.5);
  const { permuted, offsets } = referencePermute(x, HIDDEN, ids, TOP_K, EXPERTS);
  const rows = tokens * TOP_K;
  const w13Values = randomArray(EXPERTS * 2 * INTERMEDIATE * HIDDEN, 6, 0.1);
  const w13Reference = quantizeWeightsFp8Block(w13Values, EXPERTS, 2 * INTERMEDIATE, HIDDEN);
  const bias = randomArray(EXPERTS * 2 * INTERMEDIATE, 7);

  it('groupedGemm computes W8A8: quantized rows times dequantized weights, with an empty expert', async () => {
    using rowTensor = Tensor.fromArray(permuted, [rows, HIDDEN]);
    using w = Tensor.fromArray(w13Values, [EXPERTS, 2 * INTERMEDIATE, HIDDEN]);
    using w13 = quantizeWeights(w, 'fp8_block128');
    using offsetTensor = Tensor.fromArray(offsets, [EXPERTS + 1]);
    using b = Tensor.fromArray(bias, [EXPERTS, 2 * INTERMEDIATE]);
    using out = groupedGemm(rowTensor, w13, offsetTensor, { bias: b, maxRowsPerExpert: tokens });
    const inputW8A8 = quantizeRowsW8A8(permuted, rows, HIDDEN).dequantized;
    const expected = referenceGroupedGemm(inputW8A8, rows, HIDDEN, w13Reference.dequantized, 2 * INTERMEDIATE, offsets, bias);
    expect(out.dtype).toBe('float32');
    expect(relativeError(await floats(out), expected)).toBeLessThan(1e-6);
    // The same weights without quantizing the input (W8A16) are clearly farther: the test sees the rule.
    const w8a16 = referenceGroupedGemm(permuted, rows, HIDDEN, w13Reference.dequantized, 2 * INTERMEDIATE, offsets, bias);
    expect(relativeError(await floats(out), w8a16)).toBeGreaterThan(1e-3);
  });

  it('takes FP8 rows from permute with the same result, and fuses SwiGLU into an FP8 output by the rule', async () => {
    using xTensor = Tensor.fromArray(x, [tokens, HIDDEN]);
    using idTensor = Tensor.fromArray(ids, [tokens, TOP_K]);
    using rowTensor = Tensor.fromArray(permuted, [rows, HIDDEN]);
    using w = Tensor.fromArray(w13Values, [EXPERTS, 2 * INTERMEDIATE, HIDDEN]);
    using w13 = quantizeWeights(w, 'fp8_block128');
    const sorted = permute(xTensor, idTensor, EXPERTS, { quantize: 'fp8' });
    using fromFloat = groupedGemm(rowTensor, w13, sorted.expertOffsets);
    using fromFp8 = groupedGemm(sorted.permuted, w13, sorted.expertOffsets);
    expect(Array.from(await floats(fromFp8))).toEqual(Array.from(await floats(fromFloat)));

    const swiglu = { activation: { kind: 'swiglu' as const } };
    using activatedFloat = groupedGemm(sorted.permuted, w13, sorted.expertOffsets, { ...swiglu, outDtype: 'float32' });
    using activatedFp8 = groupedGemm(sorted.permuted, w13, sorted.expertOffsets, { ...swiglu, outDtype: 'float8_e4m3' });
    expect(activatedFp8).toBeInstanceOf(Fp8Rows);
    expect(activatedFp8.shape).toEqual([rows, INTERMEDIATE]);
    const expected = quantizeRowsW8A8(await floats(activatedFloat), rows, INTERMEDIATE);
    expect(Array.from(await floats(activatedFp8.data))).toEqual(Array.from(expected.q));
    expect(Array.from(await floats(activatedFp8.scales))).toEqual(Array.from(expected.scales));
    // The activation on the float32 products, as for dense weights.
    const products = referenceGroupedGemm(quantizeRowsW8A8(permuted, rows, HIDDEN).dequantized, rows, HIDDEN, w13Reference.dequantized, 2 * INTERMEDIATE, offsets);
    expect(relativeError(await floats(activatedFloat), referenceActivation(products, rows, 2 * INTERMEDIATE, 'swiglu', 'halves'))).toBeLessThan(1e-6);

    // The second GEMM takes the FP8 output: the same as quantizing the float activation inside it.
    const w2Values = randomArray(EXPERTS * HIDDEN * INTERMEDIATE, 8, 0.1);
    using w2Dense = Tensor.fromArray(w2Values, [EXPERTS, HIDDEN, INTERMEDIATE]);
    using w2 = quantizeWeights(w2Dense, 'fp8_block128');
    using down = groupedGemm(activatedFp8, w2, sorted.expertOffsets, { outDtype: 'bfloat16' });
    using downUnfused = groupedGemm(activatedFloat, w2, sorted.expertOffsets, { outDtype: 'bfloat16' });
    expect(down.dtype).toBe('bfloat16');
    expect(Array.from(await down.toArray())).toEqual(Array.from(await downUnfused.toArray()));
    sorted.permuted.dispose();
    for (const tensor of [sorted.expertOffsets, sorted.sourceToPermuted, sorted.permutedToSource]) tensor.dispose();
  });

  it('linear with FP8 weights: float in and out, FP8 in, FP8 out', async () => {
    const weightValues = randomArray(INTERMEDIATE * HIDDEN, 9, 0.2);
    const weightReference = quantizeWeightsFp8Block(weightValues, 1, INTERMEDIATE, HIDDEN);
    const linearBias = randomArray(INTERMEDIATE, 10);
    using input = Tensor.fromArray(x, [tokens, HIDDEN]);
    using w = Tensor.fromArray(weightValues, [INTERMEDIATE, HIDDEN]);
    using weight = quantizeWeights(w, 'fp8_block128');
    using b = Tensor.fromArray(linearBias, [INTERMEDIATE]);
    using out = linear(input, weight, { bias: b });
    const expected = referenceGroupedGemm(quantizeRowsW8A8(x, tokens, HIDDEN).dequantized, tokens, HIDDEN, weightReference.dequantized, INTERMEDIATE, Int32Array.from([0, tokens]), linearBias);
    expect(relativeError(await floats(out), expected)).toBeLessThan(1e-6);

    using quantizedOut = linear(input, weight, { bias: b, outDtype: 'float8_e4m3' });
    const rule = quantizeRowsW8A8(await floats(out), tokens, INTERMEDIATE);
    expect(Array.from(await floats(quantizedOut.data))).toEqual(Array.from(rule.q));
    const downValues = randomArray(HIDDEN * INTERMEDIATE, 11, 0.2);
    using down = fp8Weights(downValues, [HIDDEN, INTERMEDIATE]);
    using chained = linear(quantizedOut, down);
    using unfused = linear(out, down);
    expect(chained.shape).toEqual([tokens, HIDDEN]);
    expect(Array.from(await floats(chained))).toEqual(Array.from(await floats(unfused)));
  });
});

describe('FP8 weights made from parts (a checkpoint\'s tensors)', () => {
  it('new QuantizedWeights takes data and scales and computes with q · scale', async () => {
    const [N, K] = [3, 130];
    const q = new Float32Array(N * K).map((_, i) => roundToE4m3(((i % 17) - 8) / 2));
    const scales = Float32Array.from([0.5, 0.25]);
    using data = Tensor.fromArray(q, [N, K], { dtype: 'float8_e4m3' });
    using scaleTensor = Tensor.fromArray(scales, [1, 2]);
    const weight = new QuantizedWeights({ format: 'fp8_block128', data, scales: scaleTensor });
    const x = randomArray(2 * K, 12);
    using input = Tensor.fromArray(x, [2, K]);
    using out = linear(input, weight);
    const expected = referenceGroupedGemm(quantizeRowsW8A8(x, 2, K).dequantized, 2, K, dequantizeWeightsFp8Block(q, scales, 1, N, K), N, Int32Array.from([0, 2]));
    expect(relativeError(await floats(out), expected)).toBeLessThan(1e-6);
    weight.dispose();
    expect(data.disposed && scaleTensor.disposed).toBe(true);
  });

  it('reads every e4m3 pattern as its exact value, the NaN patterns as NaN', async () => {
    const patterns = Uint8Array.from({ length: 256 }, (_, bits) => bits);
    using data = Tensor.fromArray(patterns, [256, 1], { dtype: 'float8_e4m3' });
    using scales = Tensor.fromArray(new Float32Array(2).fill(1), [2, 1]);
    using weight = new QuantizedWeights({ format: 'fp8_block128', data, scales });
    // An input of 448 quantizes to itself (scale 1), so each output is 448 × the weight, exactly.
    using x = Tensor.fromArray([448], [1, 1]);
    using out = linear(x, weight);
    const expected = Array.from(patterns, (bits) => {
      const [exponent, mantissa] = [(bits >> 3) & 15, bits & 7];
      const magnitude = exponent === 15 && mantissa === 7 ? NaN : exponent === 0 ? mantissa * 2 ** -9 : (1 + mantissa / 8) * 2 ** (exponent - 7);
      return (bits & 0x80 ? -448 : 448) * magnitude + 0; // sums start at +0: -0 comes out +0
    });
    expect(Array.from(await floats(out))).toEqual(expected);
  });

  it('checks the parts, naming what is wrong', () => {
    using data = Tensor.fromArray(new Uint8Array(3 * 130), [3, 130], { dtype: 'float8_e4m3' });
    using floatData = Tensor.fromArray(new Float32Array(3 * 130), [3, 130]);
    using scales = Tensor.fromArray(new Float32Array(2), [1, 2]);
    using badScales = Tensor.fromArray(new Float32Array(2), [2, 1]);
    using bf16Scales = Tensor.fromArray(new Float32Array(2), [1, 2], { dtype: 'bfloat16' });
    expectThrows(() => new QuantizedWeights({ format: 'fp8_block128', data, scales: badScales }), 'E_SHAPE', /^QuantizedWeights: scales must have shape \[1, 2\], got \[2, 1\]$/);
    expectThrows(() => new QuantizedWeights({ format: 'fp8_block128', data: floatData, scales }), 'E_DTYPE', /^QuantizedWeights: data must be float8_e4m3, got float32$/);
    expectThrows(() => new QuantizedWeights({ format: 'fp8_block128', data, scales: bf16Scales }), 'E_DTYPE', /^QuantizedWeights: scales must be float32, got bfloat16$/);
    expectThrows(() => new QuantizedWeights({ format: 'nf4' as never, data, scales }), 'E_INVALID_ARGUMENT', /format must be one of fp8_block128, int8, int4, mxfp4, got "nf4"/);
    expectThrows(() => new QuantizedWeights({ format: 'fp8_block128', data, scales: undefined as never }), 'E_INVALID_ARGUMENT', /scales must be a Tensor/);
    expectThrows(() => new QuantizedWeights(null as never), 'E_INVALID_ARGUMENT', /^QuantizedWeights: expected \{ format, data, scales \}, got null$/);
  });
});

describe('malformed FP8 calls', () => {
  const rows = 4;
  const make = () => {
    const x = Tensor.fromArray(randomArray(rows * HIDDEN, 13), [rows, HIDDEN]);
    const denseW = Tensor.fromArray(randomArray(EXPERTS * 8 * HIDDEN, 14), [EXPERTS, 8, HIDDEN]);
    const w = quantizeWeights(denseW, 'fp8_block128');
    const offsets = Tensor.fromArray(Int32Array.from([0, 1, 2, 3, 4]), [EXPERTS + 1]);
    return { x, denseW, w, offsets, [Symbol.dispose]: () => [x, denseW, w, offsets].forEach((t) => t.dispose()) };
  };

  it('the TypeScript API refuses mixes the contract does not define', async () => {
    using t = make();
    using ids = Tensor.fromArray(Int32Array.from([0, 1, 2, 3]), [rows, 1]);
    const sorted = permute(t.x, ids, EXPERTS, { quantize: 'fp8' });
    expectThrows(() => groupedGemm(sorted.permuted, t.denseW, t.offsets), 'E_DTYPE', /^groupedGemm: FP8 input rows \(Fp8Rows\) need fp8_block128 weights, but weights is a float32 Tensor$/);
    expectThrows(() => groupedGemm(t.x, t.denseW, t.offsets, { outDtype: 'float8_e4m3' }), 'E_DTYPE', /^groupedGemm: outDtype float8_e4m3 needs fp8_block128 weights$/);
    expectThrows(() => linear(t.x, t.w as never), 'E_SHAPE', /^linear: weight must have shape \[\*, 200\], got \[4, 8, 200\]$/);
    expectThrows(() => groupedGemm(t.x, {} as never, t.offsets), 'E_INVALID_ARGUMENT', /^groupedGemm: weights must be a Tensor or QuantizedWeights, got an object$/);
    expectThrows(() => groupedGemm(5 as never, t.w, t.offsets), 'E_INVALID_ARGUMENT', /^groupedGemm: input must be a Tensor or Fp8Rows, got 5$/);
    expectThrows(() => permute(t.x, ids, EXPERTS, { quantize: 'int8' as never }), 'E_INVALID_ARGUMENT', /^permute: options.quantize must be 'fp8' or left out, got "int8"$/);
    sorted.permuted.dispose();
    expectThrows(() => groupedGemm(sorted.permuted, t.w, sorted.expertOffsets), 'E_DISPOSED', /^groupedGemm: input was used after dispose\(\)$/);
    for (const tensor of [sorted.expertOffsets, sorted.sourceToPermuted, sorted.permutedToSource]) tensor.dispose();
    using w = quantizeWeights(t.denseW, 'fp8_block128');
    w.dispose();
    expectThrows(() => groupedGemm(t.x, w, t.offsets), 'E_DISPOSED', /^groupedGemm: weights was used after dispose\(\)$/);
  });

  it('the native binding refuses every inconsistent set of operands before any memory is touched', () => {
    using t = make();
    using fp8Input = Tensor.empty([rows, HIDDEN], { dtype: 'float8_e4m3' });
    using inputScales = Tensor.empty([rows, 2]);
    using out = Tensor.empty([rows, 8]);
    using fp8Out = Tensor.empty([rows, 8], { dtype: 'float8_e4m3' });
    using outScales = Tensor.empty([rows, 1]);
    using wrongScales = Tensor.empty([EXPERTS, 1, 1]);
    const base = () => ({
      input: t.x.toNative(), weights: t.w.data.toNative(), weightScales: t.w.scales.toNative(), weightFormat: 1,
      expertOffsets: t.offsets.toNative(), output: out.toNative(),
    });
    const gemm = (args: Record<string, unknown>) => () => addon().groupedGemm(-1, args as never);
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...base(), weightScales: undefined }, /^groupedGemm: FP8 weights need weightScales$/],
      [{ ...base(), weightScales: wrongScales.toNative() }, /^groupedGemm: weightScales has the wrong shape$/],
      [{ ...base(), weightScales: t.offsets.toNative() }, /^groupedGemm: weightScales must be float32$/],
      [{ ...base(), weightFormat: 0 }, /^groupedGemm: weights must be a float32, float16 or bfloat16 tensor$/],
      [{ ...base(), weights: t.denseW.toNative(), weightFormat: 0 }, /^groupedGemm: dense weights take no weightScales$/],
      [{ ...base(), weights: t.denseW.toNative() }, /^groupedGemm: weights must be float8_e4m3$/],
      [{ ...base(), weightFormat: 7 }, /^groupedGemm: unknown weightFormat$/],
      [{ ...base(), input: fp8Input.toNative() }, /^groupedGemm: input is float8_e4m3: inputScales is required$/],
      [{ ...base(), input: fp8Input.toNative(), inputScales: outScales.toNative() }, /^groupedGemm: inputScales has the wrong shape$/],
      [{ ...base(), inputScales: inputScales.toNative() }, /^groupedGemm: inputScales goes only with a float8_e4m3 input$/],
      [{ ...base(), weights: t.denseW.toNative(), weightScales: undefined, weightFormat: 0, input: fp8Input.toNative(), inputScales: inputScales.toNative() },
        /^groupedGemm: a float8_e4m3 input needs FP8 weights \(weightFormat Fp8Block128\)$/],
      [{ ...base(), output: fp8Out.toNative() }, /^groupedGemm: output is float8_e4m3: outputScales is required$/],
      [{ ...base(), output: fp8Out.toNative(), outputScales: inputScales.toNative() }, /^groupedGemm: outputScales has the wrong shape$/],
      [{ ...base(), outputScales: outScales.toNative() }, /^groupedGemm: outputScales goes only with a float8_e4m3 output$/],
      [{ ...base(), weights: t.denseW.toNative(), weightScales: undefined, weightFormat: 0, output: fp8Out.toNative(), outputScales: outScales.toNative() },
        /^groupedGemm: a float8_e4m3 output needs FP8 weights \(weightFormat Fp8Block128\)$/],
    ];
    for (const [args, message] of cases) expectThrows(gemm(args), 'E_INVALID_ARGUMENT', message);

    using ids = Tensor.fromArray(Int32Array.from([0, 1, 2, 3]), [rows, 1]);
    using permuted = Tensor.empty([rows, HIDDEN], { dtype: 'float8_e4m3' });
    using floatPermuted = Tensor.empty([rows, HIDDEN]);
    using maps = Tensor.empty([rows], { dtype: 'int32' });
    using offsets = Tensor.empty([EXPERTS + 1], { dtype: 'int32' });
    using sourceToPermuted = Tensor.empty([rows, 1], { dtype: 'int32' });
    const permuteArgs = { input: t.x.toNative(), topkIds: ids.toNative(), expertOffsets: offsets.toNative(), sourceToPermuted: sourceToPermuted.toNative(), permutedToSource: maps.toNative(), localExpertCount: EXPERTS };
    expectThrows(() => addon().permute(-1, { ...permuteArgs, permuted: permuted.toNative() }), 'E_INVALID_ARGUMENT', /^permute: permuted is float8_e4m3: permutedScales is required$/);
    expectThrows(() => addon().permute(-1, { ...permuteArgs, permuted: permuted.toNative(), permutedScales: outScales.toNative() }), 'E_INVALID_ARGUMENT', /^permute: permutedScales has the wrong shape$/);
    expectThrows(() => addon().permute(-1, { ...permuteArgs, permuted: floatPermuted.toNative(), permutedScales: inputScales.toNative() }), 'E_INVALID_ARGUMENT', /^permute: permutedScales goes only with float8_e4m3 permuted rows$/);

    using linearWeight = fp8Weights(randomArray(8 * HIDDEN, 15), [8, HIDDEN]);
    const linearArgs = { input: t.x.toNative(), weight: linearWeight.data.toNative(), weightScales: linearWeight.scales.toNative(), weightFormat: 1, output: out.toNative() };
    expectThrows(() => addon().linear(-1, { ...linearArgs, weightScales: wrongScales.toNative() }), 'E_INVALID_ARGUMENT', /^linear: weightScales has the wrong shape$/);
    expectThrows(() => addon().linear(-1, { ...linearArgs, weightScales: undefined }), 'E_INVALID_ARGUMENT', /^linear: FP8 weight need weightScales$/);

    using fp8Values = Tensor.empty([8, HIDDEN], { dtype: 'float8_e4m3' });
    expectThrows(() => addon().quantizeWeights(-1, { input: t.x.toNative(), format: 1, output: fp8Values.toNative(), scales: wrongScales.toNative() }),
      'E_INVALID_ARGUMENT', /^quantizeWeights: output must have the shape of input$/);
    expectThrows(() => addon().quantizeWeights(-1, { input: t.x.toNative(), format: 0, output: fp8Input.toNative(), scales: inputScales.toNative() }),
      'E_INVALID_ARGUMENT', /^quantizeWeights: format must be Fp8Block128, Int8 or Int4$/);
  });
});

describe('activation after an FP8 GEMM', () => {
  it('the float32 output of a GEMM with FP8 weights feeds the dense ops as any float tensor', async () => {
    using x = Tensor.fromArray(randomArray(3 * HIDDEN, 16), [3, HIDDEN]);
    using w = fp8Weights(randomArray(2 * INTERMEDIATE * HIDDEN, 17, 0.1), [2 * INTERMEDIATE, HIDDEN]);
    using h = linear(x, w);
    using a = activation(h, 'swiglu');
    expect(a.shape).toEqual([3, INTERMEDIATE]);
    expect((await a.toFloat32Array()).every(Number.isFinite)).toBe(true);
  });
});

describe('the W8A8 rule keeps a NaN a NaN', () => {
  it('also in a group whose other values are 0 (scale 0): permute, quantizeWeights and an FP8 linear', async () => {
    using x = Tensor.fromArray([NaN, 0, 0], [1, 3]);
    using ids = Tensor.fromArray(new Int32Array([0]), [1, 1]);
    const sorted = permute(x, ids, 1, { quantize: 'fp8' });
    try {
      const rows = sorted.permuted as Fp8Rows;
      expect(Array.from(await rows.scales.toArray())).toEqual([0]);
      const bits = await rows.data.toArray();
      expect([bits[0]! & 0x7f, bits[1], bits[2]]).toEqual([0x7f, 0, 0]);
    } finally {
      sorted.permuted.dispose();
      for (const tensor of [sorted.expertOffsets, sorted.sourceToPermuted, sorted.permutedToSource]) tensor.dispose();
    }
    using weights = quantizeWeights(Tensor.fromArray([1, 0, 0, 0, 1, 0], [2, 3]), 'fp8_block128');
    using y = linear(x, weights);
    expect(Array.from(await y.toArray()).map(Number.isNaN)).toEqual([true, true]);
    using nanWeights = quantizeWeights(Tensor.fromArray([NaN, NaN], [1, 2]), 'fp8_block128');
    expect(Array.from(await nanWeights.data.toArray()).map((bits) => bits & 0x7f)).toEqual([0x7f, 0x7f]);
  });
});
