// Gathered rows on the CPU backend: groupedGemm's gatherRows / gatherDivisor (row r of the product
// reads input row floor(gatherRows[r] / gatherDivisor)) and permuteMaps (permute's maps without the
// rows). A gathered GEMM must equal the same GEMM on the explicitly gathered input, bit for bit on
// the rows the experts own (the CPU gathers into a dense copy and runs the same path), on every
// path: dense float32 and bfloat16, bias, a fused activation, offsets leaving rows unused, EP maps,
// int8 weight-only and fp8_block128 weights. Then what is refused, from the TypeScript API and
// straight at the native binding. (Faults of gatherRows' values: test/helpers/op_fault_cases.ts.)
import { describe, expect, it } from 'vitest';

import { Fp8Rows, groupedGemm, permute, permuteMaps, quantizeWeights, Tensor, type GemmWeights, type GroupedGemmOptions } from '../lib/index';
import { addon } from '../lib/native';
import { expectThrows } from './helpers/errors';
import { randomArray } from './reference/ops';
import { mulberry32 } from './reference/random';

// K a multiple of 32 (weight-only groups) that cuts a 128-block (FP8); an odd slot count, so that
// dividing by topK is no shift.
const HIDDEN = 160;
const INTERMEDIATE = 36;
const EXPERTS = 6;
const TOP_K = 3;
/** Expert never chosen by the generated ids. */
const EMPTY_EXPERT = 4;

/** TOP_K distinct experts per token, never EMPTY_EXPERT. */
function idsFor(tokens: number, seed: number): Int32Array {
  const next = mulberry32(seed);
  const ids = new Int32Array(tokens * TOP_K);
  for (let t = 0; t < tokens; t++) {
    const live = Array.from({ length: EXPERTS }, (_, e) => e).filter((e) => e !== EMPTY_EXPERT);
    for (let j = 0; j < TOP_K; j++) ids[t * TOP_K + j] = live.splice(Math.floor(next() * live.length), 1)[0]!;
  }
  return ids;
}

/** The rows [begin, end) of the experts' range. */
type RowRange = readonly [number, number];

/** The range experts own: [offsets[0], offsets[E]). */
async function ownedRange(expertOffsets: Tensor): Promise<RowRange> {
  const offsets = await expertOffsets.toArray();
  return [offsets[0]!, offsets[offsets.length - 1]!];
}

/**
 * The input a gathered GEMM reads, made explicitly on the host: row r of `rows` is row
 * floor(sources[r] / divisor) of the [*, width] `values`; other rows are zero (their sources may
 * be anything).
 */
function gatherOnHost(values: Float32Array, width: number, sources: ArrayLike<number>, divisor: number, [begin, end]: RowRange): Float32Array {
  const gathered = new Float32Array(sources.length * width);
  for (let r = begin; r < end; r++) {
    const row = Math.floor(sources[r]! / divisor);
    gathered.set(values.subarray(row * width, (row + 1) * width), r * width);
  }
  return gathered;
}

/** The values of rows [begin, end) of a [rows, width] tensor (the rest is whatever the output held). */
async function rowsOf(tensor: Tensor | Fp8Rows, [begin, end]: RowRange): Promise<number[]> {
  const width = tensor.shape[1]!;
  return Array.from((await tensor.toFloat32Array()).subarray(begin * width, end * width));
}

/** Asserts that the gathered GEMM equals the GEMM on the explicitly gathered input on the owned rows. */
async function expectSameOwnedRows(gathered: Tensor | Fp8Rows, explicit: Tensor | Fp8Rows, range: RowRange): Promise<void> {
  expect(gathered.shape).toEqual(explicit.shape);
  expect(range[1]).toBeGreaterThan(range[0]);
  expect(await rowsOf(gathered, range)).toEqual(await rowsOf(explicit, range));
  if (gathered instanceof Fp8Rows && explicit instanceof Fp8Rows) {
    const scales = (rows: Fp8Rows) => rows.scales.toArray().then((values) => Array.from(values).slice(range[0] * rows.scales.shape[1]!, range[1] * rows.scales.shape[1]!));
    expect(await scales(gathered)).toEqual(await scales(explicit));
  }
}

/** Disposes op outputs: Tensors, Fp8Rows, and those an op's result object holds (permute's, say). */
function dispose(...values: object[]): void {
  for (const value of values) {
    if (value instanceof Tensor || value instanceof Fp8Rows) value.dispose();
    else dispose(...(Object.values(value) as object[]));
  }
}

describe.each([1, 41])('gathered rows with %i token(s)', (tokens) => {
  const x = randomArray(tokens * HIDDEN, 1);
  const ids = idsFor(tokens, 2);
  const w13 = randomArray(EXPERTS * 2 * INTERMEDIATE * HIDDEN, 3, 0.1);
  const bias = randomArray(EXPERTS * 2 * INTERMEDIATE, 4);

  /**
   * groupedGemm of the token rows gathered through permuteMaps' permutedToSource (divisor topK)
   * against groupedGemm of permute's rows, with the same weights and options.
   */
  async function expectGatherEqualsPermute(dtype: 'float32' | 'bfloat16', weights: GemmWeights, options: GroupedGemmOptions): Promise<void> {
    using input = Tensor.fromArray(x, [tokens, HIDDEN], { dtype });
    using idTensor = Tensor.fromArray(ids, [tokens, TOP_K]);
    const sorted = permute(input, idTensor, EXPERTS);
    const maps = permuteMaps(idTensor, EXPERTS);
    try {
      const explicit = groupedGemm(sorted.permuted, weights, sorted.expertOffsets, options);
      const gathered = groupedGemm(input, weights, maps.expertOffsets, { ...options, gatherRows: maps.permutedToSource, gatherDivisor: TOP_K });
      await expectSameOwnedRows(gathered, explicit, await ownedRange(sorted.expertOffsets));
      dispose(explicit, gathered);
    } finally {
      dispose(sorted, maps);
    }
  }

  it.each(['float32', 'bfloat16'] as const)('divisor topK over permuteMaps equals the GEMM on permute\'s rows (%s)', async (dtype) => {
    using w = Tensor.fromArray(w13, [EXPERTS, 2 * INTERMEDIATE, HIDDEN], { dtype });
    await expectGatherEqualsPermute(dtype, w, {});
  });

  it.each(['float32', 'bfloat16'] as const)('with bias and a fused SwiGLU (%s)', async (dtype) => {
    using w = Tensor.fromArray(w13, [EXPERTS, 2 * INTERMEDIATE, HIDDEN], { dtype });
    using b = Tensor.fromArray(bias, [EXPERTS, 2 * INTERMEDIATE], { dtype });
    await expectGatherEqualsPermute(dtype, w, { bias: b, activation: { kind: 'swiglu' }, maxRowsPerExpert: tokens });
    await expectGatherEqualsPermute(dtype, w, { bias: b, outDtype: 'float32' });
  });

  it('with int8 weight-only weights (and a fused SwiGLU)', async () => {
    using dense = Tensor.fromArray(w13, [EXPERTS, 2 * INTERMEDIATE, HIDDEN]);
    using w = quantizeWeights(dense, 'int8', { groupSize: 32 });
    await expectGatherEqualsPermute('float32', w, {});
    await expectGatherEqualsPermute('bfloat16', w, { activation: { kind: 'swiglu' } });
  });

  it('with fp8_block128 weights, float and FP8 outputs', async () => {
    using dense = Tensor.fromArray(w13, [EXPERTS, 2 * INTERMEDIATE, HIDDEN]);
    using w = quantizeWeights(dense, 'fp8_block128');
    await expectGatherEqualsPermute('float32', w, {});
    await expectGatherEqualsPermute('bfloat16', w, { activation: { kind: 'swiglu' }, outDtype: 'float8_e4m3' });
  });

  it('divisor 1, any rows of the input in any order; unused rows around the experts\' range are never read', async () => {
    // M = 3·tokens + 7 product rows from `tokens` input rows; rows [0, 3) and the last 4 are no
    // expert's, and their gatherRows values are out of range on purpose.
    const rows = 3 * tokens + 7;
    const next = mulberry32(5);
    const sources = Int32Array.from({ length: rows }, () => Math.floor(next() * tokens));
    sources.set([-1, 2_000_000_000, tokens], 0);
    sources.set([-7, tokens, tokens + 1, 2_147_483_647], rows - 4);
    const offsets = Int32Array.from([3, 3 + tokens, 3 + tokens, 3 + 2 * tokens, 3 + 2 * tokens, rows - 4 - 1, rows - 4]);
    const range: RowRange = [3, rows - 4];
    using input = Tensor.fromArray(x, [tokens, HIDDEN]);
    using gatherRows = Tensor.fromArray(sources, [rows]);
    using offsetTensor = Tensor.fromArray(offsets, [EXPERTS + 1]);
    using explicitInput = Tensor.fromArray(gatherOnHost(x, HIDDEN, sources, 1, range), [rows, HIDDEN]);
    using w = Tensor.fromArray(w13, [EXPERTS, 2 * INTERMEDIATE, HIDDEN]);
    using b = Tensor.fromArray(bias, [EXPERTS, 2 * INTERMEDIATE]);
    for (const options of [{}, { bias: b }, { bias: b, activation: { kind: 'gptoss_swiglu', layout: 'interleaved' } }] as GroupedGemmOptions[]) {
      using gathered = groupedGemm(input, w, offsetTensor, { ...options, gatherRows, gatherDivisor: 1 });
      using explicit = groupedGemm(explicitInput, w, offsetTensor, options);
      await expectSameOwnedRows(gathered, explicit, range);
    }
    // gatherDivisor left out is 1.
    using byDefault = groupedGemm(input, w, offsetTensor, { gatherRows });
    using explicit = groupedGemm(explicitInput, w, offsetTensor);
    await expectSameOwnedRows(byDefault, explicit, range);
  });

  it('EP maps (localExperts): rows past the local experts\' are unused and unread', async () => {
    const local = { first: 2, count: 3 };
    using input = Tensor.fromArray(x, [tokens, HIDDEN]);
    using idTensor = Tensor.fromArray(ids, [tokens, TOP_K]);
    using w = Tensor.fromArray(w13.subarray(local.first * 2 * INTERMEDIATE * HIDDEN, (local.first + local.count) * 2 * INTERMEDIATE * HIDDEN),
      [local.count, 2 * INTERMEDIATE, HIDDEN]);
    const sorted = permute(input, idTensor, EXPERTS, { localExperts: local });
    const maps = permuteMaps(idTensor, EXPERTS, { localExperts: local });
    // permutedToSource past the used rows holds whatever its memory held.
    using explicit = groupedGemm(sorted.permuted, w, sorted.expertOffsets);
    using gathered = groupedGemm(input, w, maps.expertOffsets, { gatherRows: maps.permutedToSource, gatherDivisor: TOP_K });
    const range = await ownedRange(sorted.expertOffsets);
    if (range[1] > range[0]) await expectSameOwnedRows(gathered, explicit, range);
    dispose(sorted, maps);
  });

  it('permuteMaps writes the maps permute does, with and without localExperts', async () => {
    using input = Tensor.fromArray(x, [tokens, HIDDEN]);
    using idTensor = Tensor.fromArray(ids, [tokens, TOP_K]);
    for (const options of [undefined, null, {}, { localExperts: { first: 1, count: 4 } }, { localExperts: { first: 5, count: 1 } }]) {
      const sorted = permute(input, idTensor, EXPERTS, options);
      const maps = permuteMaps(idTensor, EXPERTS, options);
      expect(Object.keys(maps).sort()).toEqual(['expertOffsets', 'permutedToSource', 'sourceToPermuted']);
      const offsets = Array.from(await sorted.expertOffsets.toArray());
      expect(Array.from(await maps.expertOffsets.toArray())).toEqual(offsets);
      expect(Array.from(await maps.sourceToPermuted.toArray())).toEqual(Array.from(await sorted.sourceToPermuted.toArray()));
      // Only the used rows' entries are written.
      const used = offsets.at(-1)!;
      expect(Array.from(await maps.permutedToSource.toArray()).slice(0, used)).toEqual(Array.from(await sorted.permutedToSource.toArray()).slice(0, used));
      dispose(sorted, maps);
    }
  });
});

describe('gathered rows at the edges', () => {
  it('no tokens: empty maps; no gathered rows: an empty output', async () => {
    using ids = Tensor.empty([0, TOP_K], { dtype: 'int32' });
    const maps = permuteMaps(ids, EXPERTS);
    expect([maps.expertOffsets.shape, maps.sourceToPermuted.shape, maps.permutedToSource.shape]).toEqual([[EXPERTS + 1], [0, TOP_K], [0]]);
    expect(Array.from(await maps.expertOffsets.toArray())).toEqual(new Array(EXPERTS + 1).fill(0));
    using input = Tensor.random([0, HIDDEN]);
    using w = Tensor.random([EXPERTS, 8, HIDDEN]);
    using out = groupedGemm(input, w, maps.expertOffsets, { gatherRows: maps.permutedToSource, gatherDivisor: TOP_K });
    expect(out.shape).toEqual([0, 8]);
    expect(await out.toArray()).toHaveLength(0);
    dispose(maps);
  });

  it('one input row read by every product row', async () => {
    using input = Tensor.fromArray(Float32Array.from([1, 2]), [1, 2]);
    using w = Tensor.fromArray(Float32Array.from([1, 0, 0, 1, 1, 1]), [1, 3, 2]);
    using gatherRows = Tensor.fromArray(Int32Array.from([0, 4, 2]), [3]);
    using offsets = Tensor.fromArray(Int32Array.from([0, 3]), [2]);
    using out = groupedGemm(input, w, offsets, { gatherRows, gatherDivisor: 5 });
    expect(Array.from(await out.toArray())).toEqual([1, 2, 3, 1, 2, 3, 1, 2, 3]);
  });
});

describe('gathered rows refused', () => {
  const op = 'groupedGemm';
  const tokens = 4;
  const rows = 6;

  /** The tensors of a valid gathered call, made afresh for each check. */
  function operands() {
    const input = Tensor.random([tokens, HIDDEN], { seed: 1 });
    const w = Tensor.random([EXPERTS, 8, HIDDEN], { seed: 2 });
    const offsets = Tensor.fromArray(Int32Array.from([0, 1, 2, 3, 4, 5, 6]), [EXPERTS + 1]);
    const gatherRows = Tensor.fromArray(Int32Array.from([0, 1, 2, 3, 0, 1]), [rows]);
    return { input, w, offsets, gatherRows, [Symbol.dispose]: () => dispose(input, w, offsets, gatherRows) };
  }

  it('the TypeScript API names gatherRows or gatherDivisor', () => {
    using t = operands();
    const call = (options: GroupedGemmOptions) => () => groupedGemm(t.input, t.w, t.offsets, options);
    using floatRows = Tensor.random([rows]);
    using matrixRows = Tensor.fromArray(new Int32Array(rows), [rows, 1]);
    expectThrows(call({ gatherRows: floatRows }), 'E_DTYPE', new RegExp(`^${op}: gatherRows must be int32, got float32$`));
    expectThrows(call({ gatherRows: matrixRows }), 'E_SHAPE', new RegExp(`^${op}: gatherRows must have shape \\[\\*\\], got \\[6, 1\\]$`));
    expectThrows(call({ gatherRows: Int32Array.from([0]) as never }), 'E_INVALID_ARGUMENT', new RegExp(`^${op}: gatherRows must be a Tensor$`));
    for (const divisor of [0, -1, 1.5, 2 ** 31, Number.NaN, '2']) {
      expectThrows(call({ gatherRows: t.gatherRows, gatherDivisor: divisor as never }), 'E_INVALID_ARGUMENT', new RegExp(`^${op}: gatherDivisor must be an integer in \\[1, 2147483647\\], got `));
    }
    expectThrows(call({ gatherDivisor: 2 }), 'E_INVALID_ARGUMENT', new RegExp(`^${op}: gatherDivisor goes only with gatherRows$`));
    // Left out, undefined and null all mean no gather.
    using plain = groupedGemm(t.input, t.w, t.offsets, { gatherRows: null as never, gatherDivisor: null as never });
    expect(plain.shape).toEqual([tokens, 8]);
  });

  it('the output has gatherRows\' rows, and expertOffsets count them', async () => {
    using t = operands();
    using out = groupedGemm(t.input, t.w, t.offsets, { gatherRows: t.gatherRows });
    expect(out.shape).toEqual([rows, 8]);
    // Offsets up to M = 6 (more than the 4 input rows) are fine; past it, the usual fault.
    await expect(out.toArray()).resolves.toHaveLength(rows * 8);
    using tooFar = Tensor.fromArray(Int32Array.from([0, 1, 2, 3, 4, 5, 7]), [EXPERTS + 1]);
    using refused = groupedGemm(t.input, t.w, tooFar, { gatherRows: t.gatherRows });
    await expect(refused.toArray()).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT', message: expect.stringMatching(/expertOffsets\[6\] is 7, .* at most the row count 6$/) });
  });

  it('gatherRows on another device than the input is E_DEVICE', () => {
    using t = operands();
    // No GPU needed: only the TypeScript check reads the device, and it throws before any native call.
    using elsewhere = Tensor.fromArray(Int32Array.from([0, 1, 2, 3, 0, 1]), [rows]);
    Object.defineProperty(elsewhere, 'device', { value: 'cuda:0' });
    try {
      expectThrows(() => groupedGemm(t.input, t.w, t.offsets, { gatherRows: elsewhere }), 'E_DEVICE', new RegExp(`^${op}: gatherRows is on cuda:0 but input is on cpu$`));
    } finally {
      Object.defineProperty(elsewhere, 'device', { value: 'cpu' });
    }
  });

  it('Fp8Rows input does not go with gatherRows', () => {
    using t = operands();
    using ids = Tensor.fromArray(Int32Array.from([0, 1, 2, 3]), [tokens, 1]);
    using w = quantizeWeights(t.w, 'fp8_block128');
    const sorted = permute(t.input, ids, EXPERTS, { quantize: 'fp8' });
    expectThrows(() => groupedGemm(sorted.permuted, w, t.offsets, { gatherRows: t.gatherRows }), 'E_INVALID_ARGUMENT',
      new RegExp(`^${op}: gatherRows does not go with Fp8Rows input \\(FP8 rows are permuted with their scales\\)$`));
    dispose(sorted);
  });

  it('permuteMaps names its arguments', () => {
    using floatIds = Tensor.random([2, 2]);
    using ids = Tensor.fromArray(Int32Array.from([0, 1, 2, 3]), [2, 2]);
    using noSlots = Tensor.empty([2, 0], { dtype: 'int32' });
    expectThrows(() => permuteMaps(floatIds, 4), 'E_DTYPE', /^permuteMaps: topkIds must be int32, got float32$/);
    expectThrows(() => permuteMaps(noSlots, 4), 'E_SHAPE', /^permuteMaps: topkIds needs at least one slot per token$/);
    expectThrows(() => permuteMaps(ids, 0), 'E_INVALID_ARGUMENT', /^permuteMaps: numExperts must be an integer in \[1, 65536\], got 0$/);
    expectThrows(() => permuteMaps(ids, 4, { localExperts: { first: 3, count: 2 } }), 'E_INVALID_ARGUMENT', /^permuteMaps: localExperts\.count must be an integer in \[1, 1\], got 2$/);
    expectThrows(() => permuteMaps(ids, 4, 7 as never), 'E_INVALID_ARGUMENT', /^permuteMaps: options must be an object, got 7$/);
    expectThrows(() => permuteMaps({} as never, 4), 'E_INVALID_ARGUMENT', /^permuteMaps: topkIds must be a Tensor$/);
  });

  it('the native binding refuses inconsistent gathers and maps-only permutes', () => {
    using t = operands();
    using out = Tensor.empty([rows, 8]);
    using inputRowsOut = Tensor.empty([tokens, 8]);
    using fp8Input = Tensor.empty([tokens, HIDDEN], { dtype: 'float8_e4m3' });
    using inputScales = Tensor.empty([tokens, 2]);
    using fp8W = quantizeWeights(t.w, 'fp8_block128');
    const base = () => ({ input: t.input.toNative(), weights: t.w.toNative(), expertOffsets: t.offsets.toNative(), output: out.toNative(), gatherRows: t.gatherRows.toNative() });
    const gemm = (args: Record<string, unknown>) => () => addon().groupedGemm(-1, args as never);
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...base(), gatherRows: inputScales.toNative() }, /^groupedGemm: gatherRows must be int32$/],
      [{ ...base(), gatherRows: t.offsets.toNative() }, /^groupedGemm: output has the wrong shape$/],
      [{ ...base(), output: inputRowsOut.toNative() }, /^groupedGemm: output has the wrong shape$/],
      [{ ...base(), gatherDivisor: 0 }, /^groupedGemm: gatherDivisor must be at least 1$/],
      [{ ...base(), gatherRows: undefined, gatherDivisor: 3 }, /^groupedGemm: gatherDivisor goes only with gatherRows$/],
      [{ ...base(), input: fp8Input.toNative(), inputScales: inputScales.toNative(), weights: fp8W.data.toNative(), weightScales: fp8W.scales.toNative(), weightFormat: 1 },
        /^groupedGemm: gatherRows does not go with inputScales \(FP8 rows are permuted with their scales\)$/],
    ];
    for (const [args, message] of cases) expectThrows(gemm(args), 'E_INVALID_ARGUMENT', message);

    using ids = Tensor.fromArray(Int32Array.from([0, 1, 2, 3]), [tokens, 1]);
    using permuted = Tensor.empty([tokens, HIDDEN]);
    using permutedScales = Tensor.empty([tokens, 2]);
    using offsets = Tensor.empty([EXPERTS + 1], { dtype: 'int32' });
    using sourceToPermuted = Tensor.empty([tokens, 1], { dtype: 'int32' });
    using permutedToSource = Tensor.empty([tokens], { dtype: 'int32' });
    using wrongInput = Tensor.empty([tokens + 1, HIDDEN]);
    const maps = { topkIds: ids.toNative(), expertOffsets: offsets.toNative(), sourceToPermuted: sourceToPermuted.toNative(), permutedToSource: permutedToSource.toNative(), localExpertCount: EXPERTS };
    expectThrows(() => addon().permute(-1, { ...maps, permuted: permuted.toNative() }), 'E_INVALID_ARGUMENT', /^permute: input is missing \(permuted holds its rows\)$/);
    expectThrows(() => addon().permute(-1, { ...maps, permutedScales: permutedScales.toNative() }), 'E_INVALID_ARGUMENT', /^permute: permutedScales goes only with permuted rows$/);
    expectThrows(() => addon().permute(-1, { ...maps, input: wrongInput.toNative() }), 'E_INVALID_ARGUMENT', /^permute: input has the wrong shape$/);
    // The maps alone, with or without the (unread) input rows.
    addon().permute(-1, maps);
    addon().permute(-1, { ...maps, input: t.input.toNative() });
  });
});
