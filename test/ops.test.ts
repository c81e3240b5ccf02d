// Each op on the CPU backend against the plain TypeScript references, on random inputs with
// awkward sizes (hidden 100, intermediate 36, 1 and 257 tokens, an expert that gets no token).
import { describe, expect, it } from 'vitest';

import { activation, combine, groupedGemm, linear, MoekitError, permute, route, Tensor } from '../lib/index';
import { combineInto } from '../lib/ops/combine';
import { routeInto } from '../lib/ops/routing';
import { expectThrows } from './helpers/errors';
import { relativeError } from './helpers/fixtures';
import {
  randomArray, referenceActivation, referenceCombine, referenceGroupedGemm, referencePermute, referenceRouting, type Kind, type Method,
} from './reference/ops';

const HIDDEN = 100;
const INTERMEDIATE = 36;
const EXPERTS = 8;
const TOP_K = 2;
/** Expert never chosen by the generated ids. */
const EMPTY_EXPERT = 5;

/** K distinct experts per token, never EMPTY_EXPERT. */
function idsFor(tokens: number): Int32Array {
  const ids = new Int32Array(tokens * TOP_K);
  for (let t = 0; t < tokens; t++) {
    const first = (t * 3) % EXPERTS === EMPTY_EXPERT ? 0 : (t * 3) % EXPERTS;
    let second = (first + 1 + (t % (EXPERTS - 1))) % EXPERTS;
    while (second === EMPTY_EXPERT || second === first) second = (second + 1) % EXPERTS;
    ids[t * TOP_K] = first;
    ids[t * TOP_K + 1] = second;
  }
  return ids;
}

describe.each([1, 257])('ops with %i token(s)', (tokens) => {
  const x = randomArray(tokens * HIDDEN, 1);
  const ids = idsFor(tokens);

  it.each<[Method, boolean]>([['softmax_topk', true], ['softmax_topk', false], ['topk_softmax', false], ['sigmoid_group_topk', true]])(
    'route %s (renormalize %s) matches the reference', async (method, renormalize) => {
      const experts = 16;
      const logits = randomArray(tokens * experts, 2, 4);
      const correctionBias = randomArray(experts, 3, 0.5);
      const options = {
        method, topK: 4, renormalize, scalingFactor: method === 'sigmoid_group_topk' ? 2.5 : 1,
        numGroups: method === 'sigmoid_group_topk' ? 4 : 1, topkGroups: method === 'sigmoid_group_topk' ? 2 : 1,
      };
      using logitsTensor = Tensor.fromArray(logits, [tokens, experts]);
      using bias = Tensor.fromArray(correctionBias, [experts]);
      const result = route(logitsTensor, { ...options, correctionBias: method === 'sigmoid_group_topk' ? bias : undefined });
      const expected = referenceRouting(logits, tokens, experts, { ...options, correctionBias: method === 'sigmoid_group_topk' ? correctionBias : undefined });
      expect(Array.from(await result.topkIds.toArray())).toEqual(Array.from(expected.ids));
      expect(relativeError((await result.topkWeights.toArray()) as Float32Array, expected.weights)).toBeLessThan(1e-6);
      expect(Array.from(await result.expertCounts.toArray())).toEqual(Array.from(expected.counts));
    });

  it('route breaks ties towards the lower expert id', async () => {
    using logits = Tensor.fromArray(new Float32Array(tokens * 6).fill(0.5), [tokens, 6]);
    const { topkIds } = route(logits, { topK: 3 });
    const expected = Array.from({ length: tokens }, () => [0, 1, 2]).flat();
    expect(Array.from(await topkIds.toArray())).toEqual(expected);
  });

  it('permute sorts rows by expert, stably, with offsets and both maps', async () => {
    using input = Tensor.fromArray(x, [tokens, HIDDEN]);
    using idTensor = Tensor.fromArray(ids, [tokens, TOP_K]);
    const result = permute(input, idTensor, EXPERTS);
    const expected = referencePermute(x, HIDDEN, ids, TOP_K, EXPERTS);
    expect(Array.from(await result.permuted.toArray())).toEqual(Array.from(expected.permuted));
    const offsets = await result.expertOffsets.toArray();
    expect(Array.from(offsets)).toEqual(Array.from(expected.offsets));
    expect(offsets[EMPTY_EXPERT + 1]! - offsets[EMPTY_EXPERT]!).toBe(0);
    expect(Array.from(await result.sourceToPermuted.toArray())).toEqual(Array.from(expected.sourceToPermuted));
    expect(Array.from(await result.permutedToSource.toArray())).toEqual(Array.from(expected.permutedToSource));
  });

  it('grouped GEMM matches the reference, with and without bias, skipping the empty expert', async () => {
    const { permuted, offsets } = referencePermute(x, HIDDEN, ids, TOP_K, EXPERTS);
    const weights = randomArray(EXPERTS * 2 * INTERMEDIATE * HIDDEN, 4, 0.1);
    const bias = randomArray(EXPERTS * 2 * INTERMEDIATE, 5);
    using rows = Tensor.fromArray(permuted, [tokens * TOP_K, HIDDEN]);
    using w = Tensor.fromArray(weights, [EXPERTS, 2 * INTERMEDIATE, HIDDEN]);
    using b = Tensor.fromArray(bias, [EXPERTS, 2 * INTERMEDIATE]);
    using offsetTensor = Tensor.fromArray(offsets, [EXPERTS + 1]);
    for (const withBias of [false, true]) {
      using out = groupedGemm(rows, w, offsetTensor, { bias: withBias ? b : undefined });
      const expected = referenceGroupedGemm(permuted, tokens * TOP_K, HIDDEN, weights, 2 * INTERMEDIATE, offsets, withBias ? bias : undefined);
      expect(relativeError((await out.toArray()) as Float32Array, expected)).toBeLessThan(1e-6);
    }
  });

  it.each<[Kind, 'halves' | 'interleaved']>([['swiglu', 'halves'], ['gptoss_swiglu', 'interleaved'], ['gelu', 'halves']])(
    'grouped GEMM with a fused %s (%s) equals the GEMM then the activation on the rows experts own',
    async (kind, layout) => {
      const { permuted, offsets } = referencePermute(x, HIDDEN, ids, TOP_K, EXPERTS);
      const rows = tokens * TOP_K;
      const lead = 2; // rows before offsets[0] and after offsets[E], which the op must leave alone
      const paddedRows = rows + 2 * lead;
      const input = new Float32Array(paddedRows * HIDDEN);
      input.set(permuted, lead * HIDDEN);
      const shifted = offsets.map((offset) => offset + lead);
      const weights = randomArray(EXPERTS * 2 * INTERMEDIATE * HIDDEN, 14, 0.3);
      const bias = randomArray(EXPERTS * 2 * INTERMEDIATE, 15);
      using rowTensor = Tensor.fromArray(input, [paddedRows, HIDDEN]);
      using w = Tensor.fromArray(weights, [EXPERTS, 2 * INTERMEDIATE, HIDDEN]);
      using b = Tensor.fromArray(bias, [EXPERTS, 2 * INTERMEDIATE]);
      using offsetTensor = Tensor.fromArray(shifted, [EXPERTS + 1]);
      using out = groupedGemm(rowTensor, w, offsetTensor, { bias: b, activation: { kind, layout }, maxRowsPerExpert: tokens });
      const products = referenceGroupedGemm(input, paddedRows, HIDDEN, weights, 2 * INTERMEDIATE, shifted, bias);
      const expected = referenceActivation(products, paddedRows, 2 * INTERMEDIATE, kind, layout);
      const width = expected.length / paddedRows;
      expect(out.shape).toEqual([paddedRows, width]);
      const actual = (await out.toArray()) as Float32Array;
      const owned = (array: Float32Array): Float32Array => array.subarray(lead * width, (lead + rows) * width);
      expect(relativeError(owned(actual), owned(expected))).toBeLessThan(1e-6);
    },
  );

  it('grouped GEMM in bfloat16 stays within bfloat16 rounding of the float32 reference', async () => {
    const { permuted, offsets } = referencePermute(x, HIDDEN, ids, TOP_K, EXPERTS);
    const weights = randomArray(EXPERTS * INTERMEDIATE * HIDDEN, 6, 0.1);
    using rows = Tensor.fromArray(permuted, [tokens * TOP_K, HIDDEN], { dtype: 'bfloat16' });
    using w = Tensor.fromArray(weights, [EXPERTS, INTERMEDIATE, HIDDEN], { dtype: 'bfloat16' });
    using offsetTensor = Tensor.fromArray(offsets, [EXPERTS + 1]);
    using out = groupedGemm(rows, w, offsetTensor, { outDtype: 'float32' });
    const expected = referenceGroupedGemm(permuted, tokens * TOP_K, HIDDEN, weights, INTERMEDIATE, offsets);
    expect(relativeError((await out.toArray()) as Float32Array, expected)).toBeLessThan(1e-2);
  });

  it('linear matches the reference', async () => {
    const weight = randomArray(INTERMEDIATE * HIDDEN, 7, 0.1);
    const bias = randomArray(INTERMEDIATE, 8);
    using input = Tensor.fromArray(x, [tokens, HIDDEN]);
    using w = Tensor.fromArray(weight, [INTERMEDIATE, HIDDEN]);
    using b = Tensor.fromArray(bias, [INTERMEDIATE]);
    using out = linear(input, w, { bias: b });
    const expected = referenceGroupedGemm(x, tokens, HIDDEN, weight, INTERMEDIATE, Int32Array.from([0, tokens]), bias);
    expect(relativeError((await out.toArray()) as Float32Array, expected)).toBeLessThan(1e-6);
  });

  it.each<[Kind, 'halves' | 'interleaved']>([
    ['swiglu', 'halves'], ['geglu', 'halves'], ['gptoss_swiglu', 'interleaved'], ['gptoss_swiglu', 'halves'], ['silu', 'halves'], ['gelu', 'halves'], ['relu', 'halves'],
  ])('activation %s (%s) matches the reference', async (kind, layout) => {
    const h = randomArray(tokens * 2 * INTERMEDIATE, 9, 10); // wide range: exercises the gpt-oss clamps
    using input = Tensor.fromArray(h, [tokens, 2 * INTERMEDIATE]);
    using out = activation(input, kind, { layout });
    const expected = referenceActivation(h, tokens, 2 * INTERMEDIATE, kind, layout);
    expect(out.shape).toEqual([tokens, expected.length / tokens]);
    expect(relativeError((await out.toArray()) as Float32Array, expected)).toBeLessThan(1e-6);
  });

  it('combine sums weighted rows in token order, plus a gated shared expert', async () => {
    const { sourceToPermuted } = referencePermute(x, HIDDEN, ids, TOP_K, EXPERTS);
    const expertOutput = randomArray(tokens * TOP_K * HIDDEN, 10);
    const weights = randomArray(tokens * TOP_K, 11);
    const shared = randomArray(tokens * HIDDEN, 12);
    const gate = randomArray(tokens, 13, 3);
    using rows = Tensor.fromArray(expertOutput, [tokens * TOP_K, HIDDEN]);
    using w = Tensor.fromArray(weights, [tokens, TOP_K]);
    using map = Tensor.fromArray(sourceToPermuted, [tokens, TOP_K]);
    using sharedTensor = Tensor.fromArray(shared, [tokens, HIDDEN]);
    using gateTensor = Tensor.fromArray(gate, [tokens, 1]);
    using plain = combine(rows, w, map);
    expect(relativeError((await plain.toArray()) as Float32Array, referenceCombine(expertOutput, HIDDEN, weights, sourceToPermuted, TOP_K))).toBeLessThan(1e-6);
    using withShared = combine(rows, w, map, { shared: sharedTensor, sharedGateLogits: gateTensor });
    const expected = referenceCombine(expertOutput, HIDDEN, weights, sourceToPermuted, TOP_K, shared, gate);
    expect(relativeError((await withShared.toArray()) as Float32Array, expected)).toBeLessThan(1e-6);
  });
});

describe('route with sigmoid_group_topk: top-k within the groups the limit keeps', () => {
  // 16 experts in 4 groups of 4; keeping 2 groups leaves 8 experts eligible.
  const experts = 16;
  const tokens = 7;
  const grouped = { method: 'sigmoid_group_topk', numGroups: 4, topkGroups: 2, renormalize: true, scalingFactor: 2.5 } as const;
  const logits = randomArray(tokens * experts, 30, 4);

  it('fills topK = the eligible count with distinct experts from exactly topkGroups groups, as the reference does', async () => {
    using logitsTensor = Tensor.fromArray(logits, [tokens, experts]);
    const result = route(logitsTensor, { ...grouped, topK: 8 });
    const ids = Array.from(await result.topkIds.toArray());
    for (let t = 0; t < tokens; t++) {
      const chosen = ids.slice(t * 8, (t + 1) * 8);
      expect(new Set(chosen).size).toBe(8);
      expect(new Set(chosen.map((id) => Math.floor(id / 4))).size).toBe(2);
    }
    expect(ids).toEqual(Array.from(referenceRouting(logits, tokens, experts, { ...grouped, topK: 8 }).ids));
    for (const tensor of Object.values(result)) tensor.dispose();
  });

  it('refuses topK above topkGroups × E / numGroups, naming topK, topkGroups and the eligible count', () => {
    using logitsTensor = Tensor.fromArray(logits, [tokens, experts]);
    expectThrows(() => route(logitsTensor, { ...grouped, topK: 9 }), 'E_INVALID_ARGUMENT',
      /^route: topK 9 is larger than the 8 experts that topkGroups 2 of numGroups 4 leave eligible \(topkGroups × experts \/ numGroups = 2 × 16 \/ 4\)$/);
    expectThrows(() => route(logitsTensor, { ...grouped, topkGroups: 1, topK: 5 }), 'E_INVALID_ARGUMENT', /topK 5 is larger than the 4 experts that topkGroups 1/);
  });

  it('leaves the other methods alone: they have no group limit', async () => {
    using logitsTensor = Tensor.fromArray(logits, [tokens, experts]);
    const result = route(logitsTensor, { ...grouped, method: 'softmax_topk', topK: 9 });
    expect(result.topkIds.shape).toEqual([tokens, 9]);
    const ids = Array.from(await result.topkIds.toArray());
    for (let t = 0; t < tokens; t++) expect(new Set(ids.slice(t * 9, (t + 1) * 9)).size).toBe(9);
    for (const tensor of Object.values(result)) tensor.dispose();
  });
});

describe('Expert Parallel permutation', () => {
  it('keeps only local experts, and the ranks\' combined outputs add up to the full one', async () => {
    const tokens = 9;
    const x = randomArray(tokens * HIDDEN, 20);
    const ids = idsFor(tokens);
    const weights = randomArray(tokens * TOP_K, 21);
    using input = Tensor.fromArray(x, [tokens, HIDDEN]);
    using idTensor = Tensor.fromArray(ids, [tokens, TOP_K]);
    using weightTensor = Tensor.fromArray(weights, [tokens, TOP_K]);
    const full = referencePermute(x, HIDDEN, ids, TOP_K, EXPERTS);
    const expectedSum = referenceCombine(full.permuted, HIDDEN, weights, full.sourceToPermuted, TOP_K);

    const sum = new Float32Array(tokens * HIDDEN);
    for (const first of [0, EXPERTS / 2]) {
      const local = permute(input, idTensor, EXPERTS, { localExperts: { first, count: EXPERTS / 2 } });
      const offsets = await local.expertOffsets.toArray();
      const map = await local.sourceToPermuted.toArray();
      expect(offsets.length).toBe(EXPERTS / 2 + 1);
      ids.forEach((id, pair) => {
        const isLocal = id >= first && id < first + EXPERTS / 2;
        expect(map[pair]! >= 0).toBe(isLocal);
      });
      expect(offsets[EXPERTS / 2]).toBe(ids.filter((id) => id >= first && id < first + EXPERTS / 2).length);
      using partial = combine(local.permuted, weightTensor, local.sourceToPermuted);
      const values = (await partial.toArray()) as Float32Array;
      values.forEach((value, i) => (sum[i]! += value));
      for (const tensor of Object.values(local)) tensor.dispose();
    }
    expect(relativeError(sum, expectedSum)).toBeLessThan(1e-6);
  });
});

describe('routeInto and combineInto (a captured forward\'s outputs, written in place)', () => {
  it('write what route and combine return into the given tensors, and check them', async () => {
    const tokens = 9;
    using logits = Tensor.fromArray(randomArray(tokens * EXPERTS, 40), [tokens, EXPERTS]);
    const options = { topK: TOP_K, renormalize: true, scalingFactor: 1.5 };
    const routed = route(logits, options);
    using topkIds = Tensor.empty([tokens, TOP_K], { dtype: 'int32' });
    using topkWeights = Tensor.empty([tokens, TOP_K]);
    using expertCounts = Tensor.empty([EXPERTS], { dtype: 'int32' });
    routeInto(logits, options, { topkIds, topkWeights, expertCounts });
    expect(Array.from(await topkIds.toArray())).toEqual(Array.from(await routed.topkIds.toArray()));
    expect(Array.from(await topkWeights.toArray())).toEqual(Array.from(await routed.topkWeights.toArray()));
    expect(Array.from(await expertCounts.toArray())).toEqual(Array.from(await routed.expertCounts.toArray()));

    using rows = Tensor.fromArray(randomArray(tokens * TOP_K * HIDDEN, 41), [tokens * TOP_K, HIDDEN]);
    using map = Tensor.fromArray(referencePermute(randomArray(tokens * HIDDEN, 42), HIDDEN, idsFor(tokens), TOP_K, EXPERTS).sourceToPermuted, [tokens, TOP_K]);
    using expected = combine(rows, routed.topkWeights, map);
    using output = Tensor.empty([tokens, HIDDEN]);
    combineInto(rows, routed.topkWeights, map, null, output);
    expect(Array.from(await output.toArray())).toEqual(Array.from(await expected.toArray()));

    using wrongShape = Tensor.empty([tokens, TOP_K + 1], { dtype: 'int32' });
    expectThrows(() => routeInto(logits, options, { topkIds: wrongShape, topkWeights, expertCounts }), 'E_SHAPE', /route: into\.topkIds must have shape \[9, 2\]/);
    using wrongDtype = Tensor.empty([tokens, HIDDEN], { dtype: 'bfloat16' });
    expectThrows(() => combineInto(rows, routed.topkWeights, map, null, wrongDtype), 'E_DTYPE', /combine: into must be float32/);
    for (const tensor of Object.values(routed)) tensor.dispose();
  });
});

describe('options objects as JavaScript callers pass them', () => {
  const tokens = 5;
  const x = randomArray(tokens * HIDDEN, 40);
  const ids = idsFor(tokens);
  const { permuted, offsets, sourceToPermuted } = referencePermute(x, HIDDEN, ids, TOP_K, EXPERTS);
  const weights = randomArray(EXPERTS * 2 * INTERMEDIATE * HIDDEN, 41, 0.1);

  /** Each op with optional options, called with `options`, and what it returns, read back. */
  async function results(options: undefined | null | Record<string, never>): Promise<number[][]> {
    using input = Tensor.fromArray(x, [tokens, HIDDEN]);
    using idTensor = Tensor.fromArray(ids, [tokens, TOP_K]);
    using rows = Tensor.fromArray(permuted, [tokens * TOP_K, HIDDEN]);
    using w = Tensor.fromArray(weights, [EXPERTS, 2 * INTERMEDIATE, HIDDEN]);
    using offsetTensor = Tensor.fromArray(offsets, [EXPERTS + 1]);
    using map = Tensor.fromArray(sourceToPermuted, [tokens, TOP_K]);
    using topkWeights = Tensor.fromArray(randomArray(tokens * TOP_K, 42), [tokens, TOP_K]);
    const sorted = permute(input, idTensor, EXPERTS, options);
    using up = groupedGemm(rows, w, offsetTensor, options);
    using projection = Tensor.fromArray(weights.subarray(0, 2 * INTERMEDIATE * HIDDEN), [2 * INTERMEDIATE, HIDDEN]);
    using projected = linear(input, projection, options);
    using activated = activation(up, 'swiglu', options);
    using combined = combine(rows, topkWeights, map, options);
    const read = async (tensor: Tensor): Promise<number[]> => Array.from(await tensor.toArray());
    const values = [await read(sorted.permuted), await read(sorted.expertOffsets), await read(up), await read(projected), await read(activated), await read(combined)];
    for (const tensor of Object.values(sorted)) tensor.dispose();
    return values;
  }

  it('optional options left out, undefined or null all mean the defaults: the same values as {}', async () => {
    const defaults = await results({});
    expect(defaults[1]).toEqual(Array.from(offsets));
    expect(await results(undefined)).toEqual(defaults);
    expect(await results(null)).toEqual(defaults);
  });

  it('options that are not an object are E_INVALID_ARGUMENT naming the op', () => {
    using input = Tensor.fromArray(x, [tokens, HIDDEN]);
    using idTensor = Tensor.fromArray(ids, [tokens, TOP_K]);
    using w = Tensor.fromArray(weights, [EXPERTS, 2 * INTERMEDIATE, HIDDEN]);
    using offsetTensor = Tensor.fromArray(offsets, [EXPERTS + 1]);
    using h = Tensor.random([tokens, 2 * INTERMEDIATE]);
    using topkWeights = Tensor.random([tokens, TOP_K]);
    using map = Tensor.fromArray(sourceToPermuted, [tokens, TOP_K]);
    expectThrows(() => permute(input, idTensor, EXPERTS, 4 as never), 'E_INVALID_ARGUMENT', /^permute: options must be an object, got 4$/);
    expectThrows(() => groupedGemm(input, w, offsetTensor, 'fast' as never), 'E_INVALID_ARGUMENT', /^groupedGemm: options must be an object, got "fast"$/);
    expectThrows(() => linear(input, w, true as never), 'E_INVALID_ARGUMENT', /^linear: options must be an object, got true$/);
    expectThrows(() => activation(h, 'swiglu', [] as never), 'E_INVALID_ARGUMENT', /^activation: options must be an object, got \[\]$/);
    expectThrows(() => combine(input, topkWeights, map, 0 as never), 'E_INVALID_ARGUMENT', /^combine: options must be an object, got 0$/);
  });

  it("route's options, and their topK, are required", () => {
    using logits = Tensor.random([tokens, EXPERTS]);
    expectThrows(() => route(logits, undefined as never), 'E_INVALID_ARGUMENT', /^route: options must be given \(with topK\), got undefined$/);
    expectThrows(() => route(logits, null as never), 'E_INVALID_ARGUMENT', /^route: options must be given \(with topK\), got null$/);
    expectThrows(() => route(logits, 2 as never), 'E_INVALID_ARGUMENT', /^route: options must be an object \(with topK\), got 2$/);
    expectThrows(() => route(logits, {} as never), 'E_INVALID_ARGUMENT', /^route: options\.topK is required$/);
    expectThrows(() => route(logits, { topK: null } as never), 'E_INVALID_ARGUMENT', /^route: options\.topK is required$/);
  });

  it("groupedGemm's activation: null is none, and one without a kind is named", async () => {
    using rows = Tensor.fromArray(permuted, [tokens * TOP_K, HIDDEN]);
    using w = Tensor.fromArray(weights, [EXPERTS, 2 * INTERMEDIATE, HIDDEN]);
    using offsetTensor = Tensor.fromArray(offsets, [EXPERTS + 1]);
    using plain = groupedGemm(rows, w, offsetTensor, { activation: null as never });
    expect(plain.shape).toEqual([tokens * TOP_K, 2 * INTERMEDIATE]);
    expectThrows(() => groupedGemm(rows, w, offsetTensor, { activation: {} as never }), 'E_INVALID_ARGUMENT', /^groupedGemm: options\.activation\.kind is required$/);
    expectThrows(() => groupedGemm(rows, w, offsetTensor, { activation: 'swiglu' as never }), 'E_INVALID_ARGUMENT', /^groupedGemm: options\.activation must be an object \(with kind\), got "swiglu"$/);
  });
});

describe('op argument checks', () => {
  const code = (fn: () => unknown): string | undefined => {
    try {
      fn();
    } catch (error) {
      return error instanceof MoekitError ? error.code : 'not a MoekitError';
    }
    return undefined;
  };

  it('names wrong shapes and dtypes', () => {
    using logits = Tensor.random([3, 8]);
    expect(() => route(logits, { topK: 9 })).toThrow(/topK 9 is larger than the expert count 8/);
    expect(code(() => route(logits, { topK: 2, numGroups: 3 }))).toBe('E_INVALID_ARGUMENT');
    using x = Tensor.random([3, 10]);
    using ids = Tensor.fromArray(new Int32Array(6), [3, 2]);
    using floatIds = Tensor.random([3, 2]);
    expect(code(() => permute(x, floatIds, 4))).toBe('E_DTYPE');
    using w = Tensor.random([4, 6, 11]);
    using offsets = Tensor.fromArray(new Int32Array(5), [5]);
    expect(() => groupedGemm(x, w, offsets)).toThrow(/weights must have shape \[\*, \*, 10\], got \[4, 6, 11\]/);
    using oddRows = Tensor.random([4, 5, 10]);
    expect(() => groupedGemm(x, oddRows, offsets, { activation: { kind: 'swiglu' } })).toThrow(/gated activation needs an even number of weight rows, got 5/);
    using w10 = Tensor.random([4, 6, 10]);
    expect(() => groupedGemm(x, w10, offsets, { activation: { kind: 'tanh' as never } })).toThrow(/unknown activation "tanh"/);
    expect(code(() => groupedGemm(x, w10, offsets, { maxRowsPerExpert: 0 }))).toBe('E_INVALID_ARGUMENT');
    expect(code(() => activation(Tensor.random([2, 7]), 'swiglu'))).toBe('E_SHAPE');
    expect(code(() => combine(x, Tensor.random([3, 2]), ids))).toBe('E_SHAPE');
  });

  it('reports expert ids outside [0, E) when the work runs, without writing out of bounds', async () => {
    using x = Tensor.random([2, 4]);
    using ids = Tensor.fromArray(Int32Array.from([0, 7]), [2, 1]);
    const { permuted } = permute(x, ids, 4);
    await expect(permuted.toArray()).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT', message: expect.stringMatching(/expert id 7 at flat index 1, outside \[0, 4\)/) });
    // The device carries on after the failure.
    using y = Tensor.fromArray(Float32Array.from([1, 2]), [2]);
    expect(Array.from(await y.toArray())).toEqual([1, 2]);
  });
});
