/**
 * Cases for the ops property: one call of an op or a Tensor factory, as plain data. Tensors are
 * specs ({ $tensor: ... }) that the property builds on the device before the call, so a case can
 * be printed as a reproducer and shrunk; so are the FP8 pairs of values and scales
 * ({ $quantized: ... } for QuantizedWeights, { $fp8rows: ... } for Fp8Rows).
 *
 * Each case starts as a call that is valid or nearly so (consistent shapes, in-range options),
 * since a call wrong everywhere only ever tests the first check. Index tensors (expert ids,
 * expert offsets, permuted rows) hold out-of-range values often enough to test what happens
 * then; then up to two mutations break one more thing: an argument replaced by junk or left out,
 * an option set to junk, a tensor's dtype or shape changed, a tensor disposed or on another device.
 */
import * as fc from 'fast-check';

import { DEVICE_STRINGS, JUNK_VALUES, junkValue, SPECIAL_FLOATS } from './values';

export const FLOAT_DTYPES = ['float32', 'float16', 'bfloat16'] as const;
export const DTYPES = [...FLOAT_DTYPES, 'int32', 'float8_e4m3', 'uint8'] as const;
export type DTypeName = (typeof DTYPES)[number];
type FloatDTypeName = (typeof FLOAT_DTYPES)[number];

/** The only weight format so far (QuantizedWeights' format). */
export const FP8_FORMAT = 'fp8_block128';
/** The block edge of FP8 weight scales and the group width of FP8 row scales. */
export const FP8_BLOCK = 128;

/** Dtypes whose specs are built from values (held as they are, wrapped to the dtype's range): no random values exist for them. */
export function needsValues(dtype: DTypeName): boolean {
  return dtype === 'int32' || dtype === 'uint8';
}

export interface TensorSpecBody {
  readonly dtype: DTypeName;
  readonly shape: readonly number[];
  /**
   * Element values, repeated to fill the tensor (float8_e4m3 and uint8: bit patterns, as a
   * Uint8Array holds them); absent: Tensor.random(shape, { seed }) (float8_e4m3: float32 random
   * values converted). int32 and uint8 specs always have values.
   */
  readonly values?: readonly number[];
  readonly seed?: number;
  /** Absent: the case's device. */
  readonly device?: string;
  readonly disposed?: boolean;
}

export interface TensorSpec {
  readonly $tensor: TensorSpecBody;
}

export function isTensorSpec(value: unknown): value is TensorSpec {
  return typeof value === 'object' && value !== null && Object.hasOwn(value, '$tensor');
}

/**
 * QuantizedWeights: made by quantizeWeights(from, format) when `from` is there, else by new
 * QuantizedWeights({ format, data, scales }) with the parts that are there (a part left out is
 * not passed). `disposePart`: that part disposed once the weights are made.
 */
export interface QuantizedSpecBody {
  readonly format: unknown;
  readonly from?: unknown;
  readonly data?: unknown;
  readonly scales?: unknown;
  readonly disposePart?: 'data' | 'scales';
}

export interface QuantizedSpec {
  readonly $quantized: QuantizedSpecBody;
}

/** Fp8Rows: new Fp8Rows({ data, scales }) with the parts that are there; `disposePart` as for QuantizedSpec. */
export interface Fp8RowsSpecBody {
  readonly data?: unknown;
  readonly scales?: unknown;
  readonly disposePart?: 'data' | 'scales';
}

export interface Fp8RowsSpec {
  readonly $fp8rows: Fp8RowsSpecBody;
}

export function isQuantizedSpec(value: unknown): value is QuantizedSpec {
  return typeof value === 'object' && value !== null && Object.hasOwn(value, '$quantized');
}

export function isFp8RowsSpec(value: unknown): value is Fp8RowsSpec {
  return typeof value === 'object' && value !== null && Object.hasOwn(value, '$fp8rows');
}

/** The fields of a QuantizedSpec or Fp8RowsSpec, or undefined for anything else. */
export function wrapperBody(value: unknown): Record<string, unknown> | undefined {
  if (isQuantizedSpec(value)) return value.$quantized as unknown as Record<string, unknown>;
  if (isFp8RowsSpec(value)) return value.$fp8rows as unknown as Record<string, unknown>;
  return undefined;
}

/** A wrapper spec with its fields replaced by `body`. */
function rewrap(wrapper: QuantizedSpec | Fp8RowsSpec, body: Record<string, unknown>): QuantizedSpec | Fp8RowsSpec {
  return isQuantizedSpec(wrapper) ? { $quantized: body as unknown as QuantizedSpecBody } : { $fp8rows: body as Fp8RowsSpecBody };
}

/** Scales along an extent: one per 128 values, the last for what is left. */
export function fp8Blocks(extent: number): number {
  return Math.ceil(extent / FP8_BLOCK);
}

/** The scales' shape of fp8_block128 weights of `shape` ([.., N, K]). */
export function weightScaleShape(shape: readonly number[]): number[] {
  return [...shape.slice(0, -2), fp8Blocks(shape.at(-2) ?? 0), fp8Blocks(shape.at(-1) ?? 0)];
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((product, extent) => product * extent, 1);
}

export const OP_NAMES = [
  'route', 'permute', 'permuteMaps', 'groupedGemm', 'activation', 'combine', 'linear',
  'Tensor.fromArray', 'Tensor.empty', 'Tensor.random', 'tensor.to', 'pipeline',
  'quantizeWeights', 'QuantizedWeights', 'Fp8Rows', 'pipelineFp8',
] as const;
export type OpName = (typeof OP_NAMES)[number];

/**
 * One call. `tensor.to`: args[0] is the tensor whose to() is called. `pipeline`: args are
 * [x, topkIds, numExperts, w13, w2, topkWeights] for permute → groupedGemm (swiglu) →
 * groupedGemm → combine, with only the final output awaited. `pipelineFp8`: the same with
 * QuantizedWeights, permute({ quantize: 'fp8' }) and the first GEMM's output FP8 (Fp8Rows); the
 * final output is awaited first, then the intermediates. `QuantizedWeights`, `Fp8Rows`: the
 * constructors (args[0] is the parts object).
 */
export interface OpCase {
  readonly op: OpName;
  readonly args: readonly unknown[];
}

const INT32_MAX = 2 ** 31 - 1;
/** Index values far out of any range: the magnitudes the brief names, and int32's extremes. */
const FAR_INDICES: readonly number[] = [1e6, INT32_MAX, -(2 ** 31)];

// ---- Tensor specs ---------------------------------------------------------------------------

function spec(body: TensorSpecBody): TensorSpec {
  return { $tensor: body };
}

const smallDim = fc.integer({ min: 0, max: 4 });
const randomSeed = fc.integer({ min: 0, max: 1000 });

/** A float tensor: random values mostly, sometimes a repeating pattern of special values (NaN, ±Inf, ...). */
function floatTensor(shape: readonly number[], dtypes: readonly FloatDTypeName[] = FLOAT_DTYPES): fc.Arbitrary<TensorSpec> {
  const fill = fc.oneof(
    { weight: 9, arbitrary: randomSeed.map((seed) => ({ seed })) },
    { weight: 1, arbitrary: fc.array(fc.constantFrom(...SPECIAL_FLOATS), { minLength: 1, maxLength: 6 }).map((values) => ({ values })) },
  );
  return fc.record({ dtype: fc.constantFrom(...dtypes), fill }).map(({ dtype, fill: values }) => spec({ dtype, shape, ...values }));
}

/**
 * An int32 tensor of indices: all from `valid` mostly; else a mix of valid ones and `bad` ones
 * (out of range for the op), so the op's out-of-range handling comes up in about one case in four.
 */
function indexTensor(shape: readonly number[], valid: fc.Arbitrary<number>, bad: readonly number[]): fc.Arbitrary<TensorSpec> {
  const count = numel(shape);
  const values = fc.oneof(
    { weight: 3, arbitrary: fc.array(valid, { minLength: count, maxLength: count }) },
    { weight: 1, arbitrary: fc.array(fc.oneof(valid, fc.constantFrom(...bad)), { minLength: count, maxLength: count }) },
  );
  return values.map((list) => spec({ dtype: 'int32', shape, values: list }));
}

// ---- FP8 specs ------------------------------------------------------------------------------

/**
 * Extents of FP8 operands (K and N of a GEMM, a permuted row's width): small ones mostly, and ones
 * about the 128-block size, so whole blocks, partial ones and several of them all come up.
 */
export const fp8Extent: fc.Arbitrary<number> = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: 1, max: 5 }) },
  { weight: 1, arbitrary: fc.constant(0) },
  { weight: 3, arbitrary: fc.constantFrom(127, 128, 129, 200, 256, 257) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 300 }) },
);

/** float8_e4m3 values: float32 random ones converted mostly, else bit patterns (0x7f and 0xff are NaN). */
function fp8Tensor(shape: readonly number[]): fc.Arbitrary<TensorSpec> {
  return fc.oneof(
    { weight: 4, arbitrary: randomSeed.map((seed) => spec({ dtype: 'float8_e4m3', shape, seed })) },
    { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 6 }).map((values) => spec({ dtype: 'float8_e4m3', shape, values })) },
  );
}

/** Scales the W8A8 rule would make (amax / 448: small, positive, 0 for an all-zero group). */
export const TAME_SCALES: readonly number[] = [0, 2 ** -12, 1 / 448, 0.004, 0.01, 0.05];

/** float32 scales: tame ones mostly, sometimes random ones (negative too) or special values. */
function scaleTensor(shape: readonly number[]): fc.Arbitrary<TensorSpec> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.array(fc.constantFrom(...TAME_SCALES), { minLength: 1, maxLength: 4 }).map((values) => spec({ dtype: 'float32', shape, values })) },
    { weight: 1, arbitrary: randomSeed.map((seed) => spec({ dtype: 'float32', shape, seed })) },
    { weight: 1, arbitrary: fc.array(fc.constantFrom(...SPECIAL_FLOATS), { minLength: 1, maxLength: 4 }).map((values) => spec({ dtype: 'float32', shape, values })) },
  );
}

/** QuantizedWeights of `shape` ([N, K] or [E, N, K]): quantized from float weights, or given parts. */
function quantizedSpec(shape: readonly number[]): fc.Arbitrary<QuantizedSpec> {
  return fc.oneof(
    { weight: 2, arbitrary: floatTensor(shape).map((from): QuantizedSpec => ({ $quantized: { format: FP8_FORMAT, from } })) },
    {
      weight: 1,
      arbitrary: fc.tuple(fp8Tensor(shape), scaleTensor(weightScaleShape(shape))).map(([data, scales]): QuantizedSpec => ({ $quantized: { format: FP8_FORMAT, data, scales } })),
    },
  );
}

/** Fp8Rows [rows, width] with their scales [rows, ceil(width / 128)]. */
function fp8RowsSpec(rows: number, width: number): fc.Arbitrary<Fp8RowsSpec> {
  return fc.tuple(fp8Tensor([rows, width]), scaleTensor([rows, fp8Blocks(width)])).map(([data, scales]) => ({ $fp8rows: { data, scales } }));
}

/** Options objects: each field present or not; built with Object.fromEntries so every key is an own property. */
function options(fields: Record<string, fc.Arbitrary<unknown>>, required: readonly string[] = []): fc.Arbitrary<Record<string, unknown>> {
  const absent = Symbol('absent');
  const record = Object.fromEntries(
    Object.entries(fields).map(([key, arbitrary]) => [key, required.includes(key) ? arbitrary : fc.option(arbitrary, { nil: absent })]),
  );
  return fc.record(record).map((picked) => Object.fromEntries(Object.entries(picked).filter(([, value]) => value !== absent)));
}

function divisors(value: number): number[] {
  return Array.from({ length: value }, (_, index) => index + 1).filter((candidate) => value % candidate === 0);
}

const floatDType = fc.constantFrom(...FLOAT_DTYPES);
const ACTIVATION_KINDS = ['swiglu', 'geglu', 'gptoss_swiglu', 'silu', 'gelu', 'relu'] as const;
const GATED_KINDS: readonly string[] = ['swiglu', 'geglu', 'gptoss_swiglu'];
/** Finite numbers for alpha, limit, scalingFactor: ordinary ones, and ones past float32's range (the kernels take float32). */
const finiteParameter = fc.oneof(fc.double({ min: -10, max: 10, noNaN: true }), fc.constantFrom(0, 1.702, 7, 1e30, -1e30, 3.5e38, 1e300, -1e300));

// ---- One generator per op, each making a valid or nearly valid call ---------------------------

const routeCase: fc.Arbitrary<OpCase> = fc
  .record({ tokens: smallDim, experts: fc.integer({ min: 1, max: 6 }), method: fc.constantFrom('softmax_topk', 'topk_softmax', 'sigmoid_group_topk') })
  .chain(({ tokens, experts, method }) =>
    fc.tuple(
      floatTensor([tokens, experts]),
      options(
        {
          topK: fc.integer({ min: 1, max: experts }),
          method: fc.constant(method),
          renormalize: fc.boolean(),
          numGroups: fc.constantFrom(...divisors(experts)),
          topkGroups: fc.integer({ min: 1, max: experts }),
          scalingFactor: finiteParameter,
          ...(method === 'sigmoid_group_topk' && { correctionBias: floatTensor([experts], ['float32']) }),
        },
        ['topK'],
      ),
    ),
  )
  .map((args) => ({ op: 'route', args }));

/** Widths of permuted rows: small mostly; sometimes an FP8 extent (rows of several 128-groups when quantized). */
const permuteHidden = fc.oneof({ weight: 3, arbitrary: smallDim }, { weight: 1, arbitrary: fp8Extent });

/** A permute's topkIds [tokens, topK] over `experts`: in range mostly, else some out of range. */
function topkIds(tokens: number, topK: number, experts: number): fc.Arbitrary<TensorSpec> {
  return indexTensor([tokens, topK], fc.integer({ min: 0, max: experts - 1 }), [-1, -2, experts, experts + 1, ...FAR_INDICES]);
}

/** permute's numExperts: mostly the ids' range; sometimes a wider one (valid), or so many experts that the offsets cannot be allocated. */
function numExperts(experts: number): fc.Arbitrary<number> {
  return fc.oneof({ weight: 12, arbitrary: fc.constant(experts) }, { weight: 1, arbitrary: fc.constantFrom(experts + 1, 1e6, INT32_MAX, 2 ** 31, 2 ** 53 - 1) });
}

/** options.localExperts: a valid range of the experts. */
function localExperts(experts: number): fc.Arbitrary<{ first: number; count: number }> {
  return fc.integer({ min: 0, max: experts - 1 }).chain((first) => fc.record({ first: fc.constant(first), count: fc.integer({ min: 1, max: experts - first }) }));
}

const permuteShape = fc.record({ tokens: smallDim, hidden: permuteHidden, topK: fc.integer({ min: 1, max: 3 }), experts: fc.integer({ min: 1, max: 6 }) });

const permuteCase: fc.Arbitrary<OpCase> = permuteShape
  .chain(({ tokens, hidden, topK, experts }) =>
    fc.tuple(
      // Float rows mostly; sometimes FP8 rows with their scales (wide EP's owner), copied as they are.
      fc.oneof({ weight: 4, arbitrary: floatTensor([tokens, hidden]) }, { weight: 1, arbitrary: fp8RowsSpec(tokens, hidden) }),
      topkIds(tokens, topK, experts),
      numExperts(experts),
      options({
        localExperts: localExperts(experts),
        // Present and undefined means not quantized (as left out does).
        quantize: fc.constantFrom('fp8', undefined),
      }),
    ),
  )
  .map((args) => ({ op: 'permute', args }));

/** permuteMaps: permute's arguments without the rows. */
const permuteMapsCase: fc.Arbitrary<OpCase> = permuteShape
  .chain(({ tokens, topK, experts }) => fc.tuple(topkIds(tokens, topK, experts), numExperts(experts), options({ localExperts: localExperts(experts) })))
  .map((args) => ({ op: 'permuteMaps', args }));

/** Expert offsets [E+1] for `rows` rows: sorted values in [0, rows] mostly, else anything (decreasing, negative, past the end). */
function expertOffsets(experts: number, rows: number): fc.Arbitrary<TensorSpec> {
  const count = experts + 1;
  const inRange = fc.integer({ min: 0, max: rows });
  const sorted = fc.array(inRange, { minLength: count, maxLength: count }).map((list) => [...list].sort((a, b) => a - b));
  const unordered = fc.array(fc.oneof(inRange, fc.constantFrom(-1, rows + 1, ...FAR_INDICES)), { minLength: count, maxLength: count });
  return fc.oneof({ weight: 3, arbitrary: sorted }, { weight: 1, arbitrary: unordered }).map((values) => spec({ dtype: 'int32', shape: [count], values }));
}

/**
 * gatherRows for `count` product rows over an input of `inputRows` rows read through `divisor`:
 * values in [0, inputRows · divisor) mostly, else out of range (negative, the bound, far).
 */
function gatherRows(count: number, inputRows: number, divisor: number): fc.Arbitrary<TensorSpec> {
  const bound = inputRows * divisor;
  const valid = bound > 0 ? fc.integer({ min: 0, max: bound - 1 }) : fc.constant(0);
  return indexTensor([count], valid, [-1, bound, bound + divisor, ...FAR_INDICES]);
}

const groupedGemmCase: fc.Arbitrary<OpCase> = fc
  .record({
    rows: fc.integer({ min: 0, max: 6 }),
    depth: fc.integer({ min: 0, max: 5 }),
    halfWidth: fc.integer({ min: 1, max: 3 }),
    experts: fc.integer({ min: 1, max: 4 }),
    dtype: floatDType,
    kind: fc.option(fc.constantFrom(...ACTIVATION_KINDS), { nil: undefined }),
    // Gathered rows: the product's own row count and the divisor of gatherRows' values.
    gather: fc.option(fc.record({ rows: fc.integer({ min: 0, max: 8 }), divisor: fc.integer({ min: 1, max: 3 }) }), { nil: undefined }),
  })
  .chain(({ rows, depth, halfWidth, experts, dtype, kind, gather }) => {
    // Gated activations need an even width; otherwise any width goes.
    const width = kind === undefined || GATED_KINDS.includes(kind) ? 2 * halfWidth : 2 * halfWidth - 1;
    return fc.tuple(
      floatTensor([rows, depth], [dtype]),
      floatTensor([experts, width, depth], [dtype]),
      expertOffsets(experts, gather?.rows ?? rows),
      options({
        ...(gather && { gatherRows: gatherRows(gather.rows, rows, gather.divisor), gatherDivisor: fc.constant(gather.divisor) }),
        bias: floatTensor([experts, width], [dtype]),
        // float8_e4m3 needs quantized weights: refused here.
        outDtype: fc.oneof({ weight: 8, arbitrary: fc.constantFrom('float32', dtype) }, { weight: 1, arbitrary: fc.constant('float8_e4m3') }),
        ...(kind !== undefined && {
          activation: options({ kind: fc.constant(kind), layout: fc.constantFrom('halves', 'interleaved'), alpha: finiteParameter, limit: finiteParameter }, ['kind']),
        }),
        maxRowsPerExpert: fc.integer({ min: 1, max: 8 }),
      }),
    );
  })
  .map((args) => ({ op: 'groupedGemm', args }));

const activationCase: fc.Arbitrary<OpCase> = fc
  .record({ rows: smallDim, half: fc.integer({ min: 0, max: 3 }), kind: fc.constantFrom(...ACTIVATION_KINDS) })
  .chain(({ rows, half, kind }) =>
    fc.tuple(
      floatTensor([rows, GATED_KINDS.includes(kind) ? 2 * half : half]),
      fc.constant(kind),
      options({ layout: fc.constantFrom('halves', 'interleaved'), alpha: finiteParameter, limit: finiteParameter, outDtype: floatDType }),
    ),
  )
  .map((args) => ({ op: 'activation', args }));

const combineCase: fc.Arbitrary<OpCase> = fc
  .record({ tokens: smallDim, topK: fc.integer({ min: 1, max: 3 }), hidden: smallDim })
  .chain(({ tokens, topK, hidden }) => {
    const rows = tokens * topK;
    // -1 marks a pair routed to another rank (skipped); anything else must be a row.
    const valid = fc.integer({ min: -1, max: rows - 1 });
    return fc.tuple(
      floatTensor([rows, hidden]),
      floatTensor([tokens, topK], ['float32']),
      indexTensor([tokens, topK], valid, [-2, rows, rows + 1, ...FAR_INDICES]),
      options({ shared: floatTensor([tokens, hidden]), sharedGateLogits: floatTensor([tokens, 1], ['float32']), outDtype: floatDType }),
    );
  })
  .map((args) => ({ op: 'combine', args }));

const linearCase: fc.Arbitrary<OpCase> = fc
  .record({ rows: smallDim, depth: fc.integer({ min: 0, max: 5 }), width: fc.integer({ min: 0, max: 5 }), dtype: floatDType })
  .chain(({ rows, depth, width, dtype }) =>
    fc.tuple(
      floatTensor([rows, depth], [dtype]),
      floatTensor([width, depth], [dtype]),
      options({ bias: floatTensor([width], [dtype]), outDtype: fc.oneof({ weight: 8, arbitrary: fc.constantFrom('float32', dtype) }, { weight: 1, arbitrary: fc.constant('float8_e4m3') }) }),
    ),
  )
  .map((args) => ({ op: 'linear', args }));

/** What an FP8 GEMM may write: any float dtype, or float8_e4m3 (Fp8Rows). */
const fp8OutDtype = fc.constantFrom('float32', 'float16', 'bfloat16', 'float8_e4m3');

/**
 * A GEMM's input for FP8 weights: float rows (quantized inside the GEMM) or Fp8Rows; now and then
 * the weights are dense instead, which FP8 rows must not be given to.
 */
function fp8GemmOperands(rows: number, depth: number, weightShape: readonly number[]): fc.Arbitrary<[TensorSpec | Fp8RowsSpec, TensorSpec | QuantizedSpec]> {
  const input = fc.oneof(floatTensor([rows, depth]), fp8RowsSpec(rows, depth));
  const weights = fc.oneof({ weight: 8, arbitrary: quantizedSpec(weightShape) }, { weight: 1, arbitrary: floatTensor(weightShape) });
  return fc.tuple(input, weights);
}

/** groupedGemm with FP8 weights (quantized from float ones or given as parts), float or FP8 input, any output dtype. */
const groupedGemmFp8Case: fc.Arbitrary<OpCase> = fc
  .record({
    rows: fc.integer({ min: 0, max: 6 }),
    depth: fp8Extent,
    width: fp8Extent,
    experts: fc.integer({ min: 1, max: 3 }),
    kind: fc.option(fc.constantFrom(...ACTIVATION_KINDS), { nil: undefined }),
  })
  .chain(({ rows, depth, width: anyWidth, experts, kind }) => {
    const width = kind !== undefined && GATED_KINDS.includes(kind) ? 2 * Math.ceil(anyWidth / 2) : anyWidth;
    return fp8GemmOperands(rows, depth, [experts, width, depth]).chain(([input, weights]) =>
      fc.tuple(
        fc.constant(input),
        fc.constant(weights),
        expertOffsets(experts, rows),
        options({
          bias: floatTensor([experts, width]),
          outDtype: fp8OutDtype,
          ...(kind !== undefined && {
            activation: options({ kind: fc.constant(kind), layout: fc.constantFrom('halves', 'interleaved'), alpha: finiteParameter, limit: finiteParameter }, ['kind']),
          }),
          maxRowsPerExpert: fc.integer({ min: 1, max: 8 }),
        }),
      ),
    );
  })
  .map((args) => ({ op: 'groupedGemm', args }));

/** linear with FP8 weights. */
const linearFp8Case: fc.Arbitrary<OpCase> = fc
  .record({ rows: fc.integer({ min: 0, max: 6 }), depth: fp8Extent, width: fp8Extent })
  .chain(({ rows, depth, width }) =>
    fp8GemmOperands(rows, depth, [width, depth]).chain(([input, weight]) =>
      fc.tuple(fc.constant(input), fc.constant(weight), options({ bias: floatTensor([width]), outDtype: fp8OutDtype })),
    ),
  )
  .map((args) => ({ op: 'linear', args }));

/** Weights for quantizeWeights and QuantizedWeights: [N, K] or [E, N, K], sometimes another rank. */
const weightShape: fc.Arbitrary<number[]> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fp8Extent, fp8Extent).map(([n, k]) => [n, k]) },
  { weight: 4, arbitrary: fc.tuple(fc.integer({ min: 0, max: 3 }), fp8Extent, fp8Extent).map(([e, n, k]) => [e, n, k]) },
  { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 4 }) },
);

const quantizeWeightsCase: fc.Arbitrary<OpCase> = weightShape
  .chain((shape) => fc.tuple(floatTensor(shape), fc.constant(FP8_FORMAT)))
  .map((args) => ({ op: 'quantizeWeights', args }));

/** new QuantizedWeights({ format, data, scales }) with parts that fit. */
const quantizedWeightsCase: fc.Arbitrary<OpCase> = weightShape
  .chain((shape) => fc.tuple(fp8Tensor(shape), scaleTensor(shape.length >= 2 ? weightScaleShape(shape) : shape)))
  .map(([data, scales]) => ({ op: 'QuantizedWeights', args: [{ format: FP8_FORMAT, data, scales }] }));

/** new Fp8Rows({ data, scales }) with parts that fit. */
const fp8RowsCase: fc.Arbitrary<OpCase> = fc
  .tuple(fc.integer({ min: 0, max: 6 }), fp8Extent)
  .chain(([rows, width]) => fp8RowsSpec(rows, width))
  .map((rows) => ({ op: 'Fp8Rows', args: [rows.$fp8rows] }));

/** The whole MoE pipeline on ids that may be out of range: a failure must reach the final output. */
const pipelineCase: fc.Arbitrary<OpCase> = fc
  .record({
    tokens: fc.integer({ min: 1, max: 4 }),
    hidden: fc.integer({ min: 1, max: 4 }),
    experts: fc.integer({ min: 1, max: 4 }),
    inter: fc.integer({ min: 1, max: 3 }),
    dtype: floatDType,
  })
  .chain(({ tokens, hidden, experts, inter, dtype }) =>
    fc.integer({ min: 1, max: experts }).chain((topK) =>
      fc.tuple(
        floatTensor([tokens, hidden], [dtype]),
        indexTensor([tokens, topK], fc.integer({ min: 0, max: experts - 1 }), [-1, experts, ...FAR_INDICES]),
        fc.constant(experts),
        floatTensor([experts, 2 * inter, hidden], [dtype]),
        floatTensor([experts, hidden, inter], [dtype]),
        floatTensor([tokens, topK], ['float32']),
      ),
    ),
  )
  .map((args) => ({ op: 'pipeline', args }));

/**
 * The FP8 pipeline on ids that may be out of range: permute quantizing → groupedGemm (swiglu,
 * FP8 out) → groupedGemm → combine. Weights are tame (random, |w| <= 1 before their scales), so a
 * valid call's output is finite.
 */
const pipelineFp8Case: fc.Arbitrary<OpCase> = fc
  .record({
    tokens: fc.integer({ min: 1, max: 4 }),
    hidden: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 5 }) }, { weight: 1, arbitrary: fc.constantFrom(128, 129, 200) }),
    experts: fc.integer({ min: 1, max: 3 }),
    inter: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 3 }) }, { weight: 1, arbitrary: fc.constantFrom(64, 65, 100) }),
    dtype: floatDType,
  })
  .chain(({ tokens, hidden, experts, inter, dtype }) => {
    const tame = (shape: number[]): fc.Arbitrary<QuantizedSpec> =>
      fc.oneof(
        floatTensor(shape, [dtype]).filter((from) => from.$tensor.values === undefined).map((from): QuantizedSpec => ({ $quantized: { format: FP8_FORMAT, from } })),
        fc
          .tuple(randomSeed, fc.array(fc.constantFrom(...TAME_SCALES), { minLength: 1, maxLength: 3 }))
          .map(([seed, values]): QuantizedSpec => ({ $quantized: { format: FP8_FORMAT, data: spec({ dtype: 'float8_e4m3', shape, seed }), scales: spec({ dtype: 'float32', shape: weightScaleShape(shape), values }) } })),
      );
    return fc.integer({ min: 1, max: experts }).chain((topK) =>
      fc.tuple(
        floatTensor([tokens, hidden], [dtype]).filter((x) => x.$tensor.values === undefined),
        indexTensor([tokens, topK], fc.integer({ min: 0, max: experts - 1 }), [-1, experts, ...FAR_INDICES]),
        fc.constant(experts),
        tame([experts, 2 * inter, hidden]),
        tame([experts, hidden, inter]),
        floatTensor([tokens, topK], ['float32']).filter((weights) => weights.$tensor.values === undefined),
      ),
    );
  })
  .map((args) => ({ op: 'pipelineFp8', args }));

// ---- Tensor factories ---------------------------------------------------------------------

const dtypeOption = fc.constantFrom(...DTYPES);
const deviceOption = (device: string): fc.Arbitrary<string> => fc.oneof({ weight: 4, arbitrary: fc.constant(device) }, { weight: 1, arbitrary: fc.constantFrom(...DEVICE_STRINGS) });

/**
 * Shapes for the factories: small ones, ones with a huge extent (1e6 elements is fine; the rest
 * are too large to allocate, or beyond what a byte count can say), and malformed ones.
 */
const factoryShape: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: fc.array(smallDim, { maxLength: 4 }) },
  { weight: 1, arbitrary: fc.array(fc.oneof(smallDim, fc.constantFrom(1e6, INT32_MAX, 2 ** 31, 2 ** 32, 2 ** 53 - 1)), { minLength: 1, maxLength: 3 }) },
  { weight: 1, arbitrary: fc.array(fc.oneof(smallDim, fc.constantFrom(...JUNK_VALUES)), { minLength: 1, maxLength: 3 }) },
);

/** Data for fromArray: each array kind moekit takes, of the shape's length or one off, or junk. */
function fromArrayData(length: number): fc.Arbitrary<unknown> {
  const floats = fc.oneof(fc.float(), fc.constantFrom(...SPECIAL_FLOATS));
  const sized = (size: number): fc.Arbitrary<unknown> =>
    fc.oneof(
      fc.array(fc.float({ noNaN: true }), { minLength: size, maxLength: size }).map((values) => Float32Array.from(values)),
      fc.array(fc.integer({ min: -(2 ** 31), max: INT32_MAX }), { minLength: size, maxLength: size }).map((values) => Int32Array.from(values)),
      fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: size, maxLength: size }).map((values) => Uint16Array.from(values)),
      fc.array(fc.integer({ min: 0, max: 0xff }), { minLength: size, maxLength: size }).map((values) => Uint8Array.from(values)),
      fc.array(floats, { minLength: size, maxLength: size }),
    );
  return fc.oneof({ weight: 8, arbitrary: sized(length) }, { weight: 1, arbitrary: sized(length + 1) }, { weight: 1, arbitrary: junkValue });
}

function factoryCases(device: string): fc.Arbitrary<OpCase> {
  const fromArray = fc
    .array(smallDim, { maxLength: 3 })
    .chain((shape) => fc.tuple(fromArrayData(numel(shape)), fc.constant(shape), options({ dtype: dtypeOption, device: deviceOption(device) })))
    .map((args) => ({ op: 'Tensor.fromArray' as const, args }));
  const empty = fc.tuple(factoryShape, options({ dtype: dtypeOption, device: deviceOption(device) })).map((args) => ({ op: 'Tensor.empty' as const, args }));
  const random = fc
    .tuple(
      factoryShape,
      options({
        dtype: dtypeOption,
        device: deviceOption(device),
        seed: fc.oneof(randomSeed, fc.constantFrom(2 ** 53 - 1, 2 ** 53, -1, 0.5)),
        scale: fc.oneof(fc.double({ min: -1e3, max: 1e3, noNaN: true }), fc.constantFrom(0, 3.4e38, 1e39, NaN, Infinity)),
      }),
    )
    .map((args) => ({ op: 'Tensor.random' as const, args }));
  const to = fc
    .array(smallDim, { maxLength: 3 })
    .chain((shape) =>
      fc.tuple(
        fc.oneof(
          floatTensor(shape),
          fc.array(fc.integer({ min: -5, max: 5 }), { minLength: 1, maxLength: 4 }).map((values) => spec({ dtype: 'int32', shape, values })),
          fp8Tensor(shape),
          fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 4 }).map((values) => spec({ dtype: 'uint8', shape, values })),
        ),
        fc.option(deviceOption(device), { nil: undefined }),
        fc.option(dtypeOption, { nil: undefined }),
      ),
    )
    .map((args) => ({ op: 'tensor.to' as const, args }));
  return fc.oneof(fromArray, empty, random, to);
}

// ---- Mutations ----------------------------------------------------------------------------

/**
 * Where a tensor spec sits: an argument, a field of an options argument (one level, or two for
 * groupedGemm's activation), or a part of a QuantizedWeights or Fp8Rows spec (data, scales, from).
 */
type ArgPath = readonly [number, ...string[]];

/** A part of a wrapper spec (format, data, scales, from) replaced by junk, or left out (value absent). */
type Mutation =
  | { kind: 'junk-arg'; index: number; value: unknown }
  | { kind: 'drop-args'; keep: number }
  | { kind: 'junk-option'; index: number; key: string; value: unknown }
  | { kind: 'retype'; path: ArgPath; dtype: DTypeName }
  | { kind: 'reshape'; path: ArgPath; shape: readonly number[] }
  | { kind: 'dispose'; path: ArgPath }
  | { kind: 'move'; path: ArgPath; device: string }
  | { kind: 'junk-part'; index: number; key: string; value?: unknown; drop: boolean }
  | { kind: 'dispose-part'; index: number; part: 'data' | 'scales' }
  | { kind: 'unwrap'; index: number };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === 'object' && value !== null && !Array.isArray(value) && !isTensorSpec(value) && wrapperBody(value) === undefined &&
    Object.getPrototypeOf(value) === Object.prototype
  );
}

/** The fields of an options object or a wrapper spec: where tensor specs may sit below an argument. */
function fieldsOf(value: unknown): Record<string, unknown> | undefined {
  return isPlainObject(value) ? value : wrapperBody(value);
}

function tensorPaths(args: readonly unknown[]): ArgPath[] {
  const paths: ArgPath[] = [];
  const visit = (value: unknown, path: ArgPath): void => {
    const fields = fieldsOf(value);
    if (isTensorSpec(value)) paths.push(path);
    else if (fields !== undefined && path.length < 3) for (const [key, item] of Object.entries(fields)) visit(item, [...path, key]);
  };
  args.forEach((arg, index) => visit(arg, [index]));
  return paths;
}

function getAt(args: readonly unknown[], path: ArgPath): unknown {
  const [index, ...keys] = path;
  return keys.reduce<unknown>((value, key) => fieldsOf(value)?.[key], args[index]);
}

/** `fields` with `key` set to `value`, or left out when `drop` (a copy; key order kept for the rest). */
function withField(fields: Record<string, unknown>, key: string, value: unknown, drop = false): Record<string, unknown> {
  return Object.fromEntries([...Object.entries(fields).filter(([name]) => name !== key), ...(drop ? [] : [[key, value]])]);
}

/** A copy of `args` with the value at `path` replaced (objects on the path copied, never changed in place). */
function setAt(args: readonly unknown[], path: ArgPath, value: unknown): unknown[] {
  const [index, ...keys] = path;
  const replace = (current: unknown, rest: readonly string[]): unknown => {
    if (rest.length === 0) return value;
    const fields = fieldsOf(current);
    if (fields === undefined) return current;
    const [key, ...deeper] = rest as [string, ...string[]];
    const updated = withField(fields, key, replace(fields[key], deeper));
    return isPlainObject(current) ? updated : rewrap(current as QuantizedSpec | Fp8RowsSpec, updated);
  };
  const copy = [...args];
  copy[index] = replace(args[index], keys);
  return copy;
}

/** Shapes one step from `shape`: an axis added or dropped, an extent zeroed, grown or shrunk. */
function nearbyShapes(shape: readonly number[]): number[][] {
  const shapes: number[][] = [[...shape, 1], [2, ...shape]];
  shape.forEach((extent, axis) => {
    const withExtent = (value: number): number[] => shape.map((old, at) => (at === axis ? value : old));
    shapes.push(shape.filter((_, at) => at !== axis), withExtent(0), withExtent(extent + 1));
    if (extent > 0) shapes.push(withExtent(extent - 1));
  });
  return shapes;
}

function mutationOf(base: OpCase, otherDevice: string | undefined): fc.Arbitrary<Mutation> {
  const { args } = base;
  // tensor.to is a method: its receiver stays a tensor (calling it on junk is not a call a user makes).
  const firstArg = base.op === 'tensor.to' ? 1 : 0;
  const choices: fc.Arbitrary<Mutation>[] = [
    fc.record({ kind: fc.constant('junk-arg' as const), index: fc.integer({ min: firstArg, max: args.length - 1 }), value: junkValue }),
    fc.record({ kind: fc.constant('drop-args' as const), keep: fc.integer({ min: firstArg, max: args.length - 1 }) }),
  ];
  const optionIndexes = args.flatMap((arg, index) => (isPlainObject(arg) ? [index] : []));
  if (optionIndexes.length > 0) {
    const keys = [...new Set(optionIndexes.flatMap((index) => Object.keys(args[index] as object))), 'unknownOption', '__proto__'];
    choices.push(fc.record({ kind: fc.constant('junk-option' as const), index: fc.constantFrom(...optionIndexes), key: fc.constantFrom(...keys), value: junkValue }));
  }
  const wrapperIndexes = args.flatMap((arg, index) => (wrapperBody(arg) !== undefined ? [index] : []));
  if (wrapperIndexes.length > 0) {
    const wrapperIndex = fc.constantFrom(...wrapperIndexes);
    const partKeys = [...new Set(wrapperIndexes.flatMap((index) => Object.keys(wrapperBody(args[index])!).filter((key) => key !== 'disposePart')))];
    choices.push(
      fc.record({ kind: fc.constant('junk-part' as const), index: wrapperIndex, key: fc.constantFrom(...partKeys, 'format'), value: junkValue, drop: fc.boolean() }),
      fc.record({ kind: fc.constant('dispose-part' as const), index: wrapperIndex, part: fc.constantFrom('data' as const, 'scales' as const) }),
      fc.record({ kind: fc.constant('unwrap' as const), index: wrapperIndex }),
    );
  }
  const paths = tensorPaths(args);
  if (paths.length > 0) {
    const path = fc.constantFrom(...paths);
    choices.push(
      fc.record({ kind: fc.constant('retype' as const), path, dtype: fc.constantFrom(...DTYPES) }),
      path.chain((at) => fc.record({ kind: fc.constant('reshape' as const), path: fc.constant(at), shape: fc.constantFrom(...nearbyShapes((getAt(args, at) as TensorSpec).$tensor.shape)) })),
      fc.record({ kind: fc.constant('dispose' as const), path }),
    );
    if (otherDevice !== undefined) choices.push(fc.record({ kind: fc.constant('move' as const), path, device: fc.constant(otherDevice) }));
  }
  return fc.oneof(...choices);
}

/** A tensor spec changed by `change`, or the args unchanged when the path no longer holds one (an earlier mutation moved it). */
function updateSpec(args: readonly unknown[], path: ArgPath, change: (body: TensorSpecBody) => TensorSpecBody): readonly unknown[] {
  const current = getAt(args, path);
  return isTensorSpec(current) ? setAt(args, path, spec(change(current.$tensor))) : args;
}

/** A wrapper argument changed by `change`, or the args unchanged when it no longer holds one. */
function updateWrapper(args: readonly unknown[], index: number, change: (body: Record<string, unknown>) => unknown): readonly unknown[] {
  const body = wrapperBody(args[index]);
  if (body === undefined) return args;
  const copy = [...args];
  copy[index] = change(body);
  return copy;
}

function applyMutation(args: readonly unknown[], mutation: Mutation): readonly unknown[] {
  switch (mutation.kind) {
    case 'junk-arg':
      return mutation.index < args.length ? setAt(args, [mutation.index], mutation.value) : args;
    case 'drop-args':
      return args.slice(0, mutation.keep);
    case 'junk-option': {
      const target = args[mutation.index];
      return isPlainObject(target) ? setAt(args, [mutation.index, mutation.key], mutation.value) : args;
    }
    case 'retype':
      return updateSpec(args, mutation.path, (body) => ({
        ...body,
        dtype: mutation.dtype,
        // int32 and uint8 tensors are made from values; a random float tensor turned one gets a few small ones.
        ...(needsValues(mutation.dtype) && body.values === undefined && { values: [0, 1, (body.seed ?? 0) % 7] }),
      }));
    case 'reshape':
      return updateSpec(args, mutation.path, (body) => ({ ...body, shape: mutation.shape }));
    case 'dispose':
      return updateSpec(args, mutation.path, (body) => ({ ...body, disposed: true }));
    case 'move':
      return updateSpec(args, mutation.path, (body) => ({ ...body, device: mutation.device }));
    case 'junk-part':
      return updateWrapper(args, mutation.index, (body) => rewrap(args[mutation.index] as QuantizedSpec, withField(body, mutation.key, mutation.value, mutation.drop)));
    case 'dispose-part':
      return updateWrapper(args, mutation.index, (body) => rewrap(args[mutation.index] as QuantizedSpec, { ...body, disposePart: mutation.part }));
    case 'unwrap':
      // The bare tensor where the pair belongs: an FP8 tensor without its scales, or the float weights it was quantized from.
      return updateWrapper(args, mutation.index, (body) => body.data ?? body.from);
  }
}

function mutated(base: fc.Arbitrary<OpCase>, otherDevice: string | undefined): fc.Arbitrary<OpCase> {
  return base.chain((call) => {
    const mutation = mutationOf(call, otherDevice);
    const mutations = fc.oneof(
      { weight: 11, arbitrary: fc.constant<Mutation[]>([]) },
      { weight: 6, arbitrary: fc.tuple(mutation) },
      { weight: 3, arbitrary: fc.tuple(mutation, mutation) },
    );
    return mutations.map((list): OpCase => ({ op: call.op, args: list.reduce(applyMutation, call.args) }));
  });
}

export interface OpCaseOptions {
  /** Where the case's tensors live ('cpu' or 'cuda:N'). */
  device: string;
  /** Another device tensors may be moved to, to test device mismatches (none on a CPU-only machine). */
  otherDevice?: string;
  /** Only these ops (default: all). */
  ops?: readonly OpName[];
}

/** Every kind of case, the ops weighted alike, factories together as one. */
export function opCases({ device, otherDevice, ops }: OpCaseOptions): fc.Arbitrary<OpCase> {
  const byOp: Record<Exclude<OpName, `Tensor.${string}` | 'tensor.to'>, fc.Arbitrary<OpCase>> = {
    route: routeCase,
    permute: permuteCase,
    permuteMaps: permuteMapsCase,
    groupedGemm: fc.oneof(groupedGemmCase, groupedGemmFp8Case),
    activation: activationCase,
    combine: combineCase,
    linear: fc.oneof(linearCase, linearFp8Case),
    pipeline: pipelineCase,
    quantizeWeights: quantizeWeightsCase,
    QuantizedWeights: quantizedWeightsCase,
    Fp8Rows: fp8RowsCase,
    pipelineFp8: pipelineFp8Case,
  };
  const wanted = (op: OpName): boolean => ops === undefined || ops.includes(op);
  const arbitraries = Object.entries(byOp)
    .filter(([op]) => wanted(op as OpName))
    // The pipelines test poison propagating through valid calls: mutations would only stop it at the first.
    .map(([op, arbitrary]) => (op === 'pipeline' || op === 'pipelineFp8' ? arbitrary : mutated(arbitrary, otherDevice)));
  const factories = factoryCases(device).filter((call) => wanted(call.op));
  if (OP_NAMES.some((op) => op.toLowerCase().startsWith('tensor') && wanted(op))) arbitraries.push(mutated(factories, otherDevice));
  if (arbitraries.length === 0) throw new Error(`no ops selected from ${OP_NAMES.join(', ')}`);
  return fc.oneof(...arbitraries);
}
