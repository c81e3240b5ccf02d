/**
 * Property: weight-only quantized experts (issue 13; native/core/op_args.h, "The weight-only
 * rule"; lib/ops/quantized.ts). Each case is one of
 * - quantizeWeights(w, 'int8' | 'int4', { groupSize }): what resolves is bit for bit what
 *   test/reference/weight_only.ts's at-load rule makes of the weights as the tensor holds them;
 * - new QuantizedWeights({ format: 'int8' | 'int4' | 'mxfp4', data, scales, groupSize }): it keeps
 *   the parts, the format, the group size (or the format's default) and the logical shape;
 * - linear / groupedGemm with such weights (quantized from float weights, or given as parts):
 *   what resolves is, row by row, float math on the input as the tensor holds it and the
 *   weights dequantized by the reference (q · scale in float32), within float32 accumulation and
 *   the output's rounding; NaN where the math says NaN.
 * Cases start well-formed (K even for int4, a multiple of 32 for mxfp4, group sizes multiples of
 * 32 or 'channel', scales of the shape the group size says) and then get up to two breaks: a
 * group size or format that is wrong (16, 33, 0, -32, NaN, 2^31, 'channel' for mxfp4, junk), a
 * part of another dtype or shape, disposed, junk for an argument or an option, the weights'
 * fields reassigned after they were made (format, groupSize, data, scales: JavaScript callers
 * can), out-of-range expert offsets. Values include NaN, ±Inf, huge and negative scales, e8m0 255
 * (NaN). Whatever the case, moekit throws a MoekitError with a code for bad input, or its outputs
 * resolve right or reject with one (out-of-range offsets: they must reject); the process never
 * dies or hangs, and after each case a known int8 linear still computes right.
 *
 * params: device (default cpu).
 */
import * as fc from 'fast-check';

import { dequantizeWeightOnly, quantizeIntegerWeights, scaleGroupCount, type WeightOnlyFormat } from '../../reference/weight_only';
import type { MoekitApi } from '../harness/moekit';
import { defineProperty } from '../harness/property';
import { errorText } from '../harness/protocol';
import { buildTensor, INPUT_ERROR_CODES, renderTensor } from './ops';
import { FLOAT_DTYPES, type DTypeName, type TensorSpec, type TensorSpecBody } from './ops_cases';
import { firstDifference } from './ops_oracle';
import { RENDER_PRELUDE, renderValue } from './render';
import { junkValue, SPECIAL_FLOATS } from './values';

type Tensor = MoekitApi['Tensor']['prototype'];
type QuantizedWeights = MoekitApi['QuantizedWeights']['prototype'];

export const WEIGHT_ONLY_OPS = ['quantizeWeights', 'QuantizedWeights', 'linear', 'groupedGemm'] as const;
export type WeightOnlyOp = (typeof WEIGHT_ONLY_OPS)[number];

/** The tensors of a case, by role. */
export const PARTS = ['source', 'data', 'scales', 'input', 'offsets', 'bias'] as const;
export type Part = (typeof PARTS)[number];

export type Break =
  /** The group size passed (to quantizeWeights or the constructor) set to this; `absent`: left out. */
  | { kind: 'groupSize'; value: unknown; absent?: boolean }
  /** The format passed set to this. */
  | { kind: 'format'; value: unknown }
  | { kind: 'retype'; part: Part; dtype: DTypeName }
  | { kind: 'reshape'; part: Part; axis: number; delta: number }
  | { kind: 'dispose'; part: Part }
  /** A field of the made QuantizedWeights reassigned before the GEMM (JavaScript callers can). */
  | { kind: 'tamper'; field: 'format' | 'groupSize'; value: unknown }
  /** The weights' data or scales swapped for the other part, or for a tensor of this spec. */
  | { kind: 'swap'; field: 'data' | 'scales' }
  /** The made weights disposed before the GEMM. */
  | { kind: 'dispose-weights' }
  /** A call argument replaced by junk (0 input, 1 weights, 2 offsets (groupedGemm) or options). */
  | { kind: 'junk-arg'; index: number; value: unknown }
  | { kind: 'junk-option'; key: string; value: unknown }
  /** groupedGemm's offsets: this value at this position (decreasing, negative, past the rows). */
  | { kind: 'offset'; at: number; value: number };

export interface WeightOnlyCase {
  op: WeightOnlyOp;
  format: WeightOnlyFormat;
  /** Passed when present (an own key), as given. */
  groupSize?: unknown;
  /** The logical weights [N, K] or [E, N, K]. */
  shape: number[];
  /** Float weights: quantizeWeights' argument, and the GEMM's weights when fromFloat. */
  source: TensorSpec;
  /** GEMMs: weights made by quantizeWeights(source) (int8, int4) rather than from data and scales. */
  fromFloat: boolean;
  data: TensorSpec;
  scales: TensorSpec;
  input: TensorSpec;
  offsets: TensorSpec;
  bias?: TensorSpec;
  outDtype?: string;
  breaks: Break[];
}

// ---- Cases ----------------------------------------------------------------------------------

function spec(body: TensorSpecBody): TensorSpec {
  return { $tensor: body };
}

const randomSeed = fc.integer({ min: 0, max: 1000 });

/** Float values: random mostly, sometimes a pattern of special values (NaN, ±Inf, huge, subnormal). */
function floatSpec(shape: number[], dtypes: readonly DTypeName[] = FLOAT_DTYPES): fc.Arbitrary<TensorSpec> {
  return fc.record({
    dtype: fc.constantFrom(...dtypes),
    fill: fc.oneof(
      { weight: 8, arbitrary: randomSeed.map((seed) => ({ seed })) },
      { weight: 2, arbitrary: fc.array(fc.constantFrom(...SPECIAL_FLOATS), { minLength: 1, maxLength: 6 }).map((values) => ({ values })) },
    ),
  }).map(({ dtype, fill }) => spec({ dtype, shape, ...fill }));
}

/** Packed bytes: a random pattern (repeated to fill), mostly long enough to look random. */
function byteSpec(shape: number[]): fc.Arbitrary<TensorSpec> {
  return fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 37 }).map((values) => spec({ dtype: 'uint8', shape, values }));
}

/** Scales as the at-load rule makes them (amax / 127 or / 7) mostly; else 0, negative, huge, NaN, ±Inf. */
const TAME_INT_SCALES = [2 ** -10, 1 / 127, 1 / 7, 0.01, 0.05, 0.3, 1];
function intScaleSpec(shape: number[]): fc.Arbitrary<TensorSpec> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.array(fc.constantFrom(...TAME_INT_SCALES), { minLength: 1, maxLength: 5 }) },
    { weight: 1, arbitrary: fc.array(fc.constantFrom(...SPECIAL_FLOATS, -0.01, 3e36), { minLength: 1, maxLength: 4 }) },
  ).map((values) => spec({ dtype: 'float32', shape, values }));
}

/** e8m0 scales: about 2^0 mostly; else any byte (0: 2^-127, 254: 2^127, 255: NaN). */
function e8m0ScaleSpec(shape: number[]): fc.Arbitrary<TensorSpec> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.array(fc.integer({ min: 118, max: 130 }), { minLength: 1, maxLength: 5 }) },
    { weight: 1, arbitrary: fc.array(fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 254, 255)), { minLength: 1, maxLength: 4 }) },
  ).map((values) => spec({ dtype: 'uint8', shape, values }));
}

/** K for a format: small and around the group sizes (whole, partial and several groups). */
function depthFor(format: WeightOnlyFormat): fc.Arbitrary<number> {
  if (format === 'mxfp4') return fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 8, arbitrary: fc.integer({ min: 1, max: 9 }).map((n) => 32 * n) });
  const any = fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 0, max: 8 }) },
    { weight: 4, arbitrary: fc.constantFrom(31, 32, 33, 64, 96, 127, 128, 129, 160, 200, 256, 258) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 300 }) },
  );
  return format === 'int4' ? any.map((k) => k + (k % 2)) : any;
}

/** Group sizes a format takes (a key left out: the default). */
function validGroupSize(format: WeightOnlyFormat): fc.Arbitrary<{ groupSize?: unknown }> {
  if (format === 'mxfp4') return fc.constantFrom({}, { groupSize: 32 }, { groupSize: undefined });
  return fc.oneof(fc.constant({}), fc.constantFrom(32, 64, 96, 128, 256, 'channel', 2 ** 30).map((groupSize) => ({ groupSize })));
}

/** Group sizes no format takes, and ones only others take. */
const BAD_GROUP_SIZES: readonly unknown[] = [0, -32, 16, 33, 48, 31.5, 1.5, NaN, Infinity, 2 ** 31, 2 ** 53, -(2 ** 31), '32', 'channels', 32n, null, 'channel', 128, 64];

function scaleShapeFor(format: WeightOnlyFormat, groupSize: unknown, shape: number[]): number[] {
  const depth = shape.at(-1)!;
  const size = groupSize === undefined ? (format === 'int8' ? 'channel' : format === 'int4' ? 128 : 32) : (groupSize as number | 'channel');
  return [...shape.slice(0, -1), scaleGroupCount(format, size, depth)];
}

function dataShapeFor(format: WeightOnlyFormat, shape: number[]): number[] {
  return [...shape.slice(0, -1), format === 'int8' ? shape.at(-1)! : shape.at(-1)! / 2];
}

/** Sorted offsets [E + 1] in [0, rows]. */
function offsetsSpec(experts: number, rows: number): fc.Arbitrary<TensorSpec> {
  return fc.array(fc.integer({ min: 0, max: rows }), { minLength: experts + 1, maxLength: experts + 1 })
    .map((values) => spec({ dtype: 'int32', shape: [experts + 1], values: [...values].sort((a, b) => a - b) }));
}

function breakOf(testCase: WeightOnlyCase): fc.Arbitrary<Break> {
  const gemm = testCase.op === 'linear' || testCase.op === 'groupedGemm';
  const parts: Part[] = testCase.op === 'quantizeWeights' ? ['source'] : testCase.op === 'QuantizedWeights' ? ['data', 'scales']
    : [...(testCase.fromFloat ? ['source' as const] : ['data' as const, 'scales' as const]), 'input', ...(testCase.op === 'groupedGemm' ? ['offsets' as const] : []), ...(testCase.bias ? ['bias' as const] : [])];
  const part = fc.constantFrom(...parts);
  const choices: fc.Arbitrary<Break>[] = [
    fc.record({ kind: fc.constant('groupSize' as const), value: fc.oneof(fc.constantFrom(...BAD_GROUP_SIZES), junkValue), absent: fc.boolean() }),
    fc.record({ kind: fc.constant('format' as const), value: fc.oneof(fc.constantFrom('int8', 'int4', 'mxfp4', 'fp8_block128', 'INT8', 'int2', 'fp8'), junkValue) }),
    fc.record({ kind: fc.constant('retype' as const), part, dtype: fc.constantFrom<DTypeName>('float32', 'float16', 'bfloat16', 'int32', 'float8_e4m3', 'uint8') }),
    fc.record({ kind: fc.constant('reshape' as const), part, axis: fc.integer({ min: -1, max: 3 }), delta: fc.constantFrom(-32, -2, -1, 1, 2, 32) }),
    fc.record({ kind: fc.constant('dispose' as const), part }),
  ];
  if (gemm) {
    choices.push(
      fc.record({ kind: fc.constant('tamper' as const), field: fc.constantFrom('format' as const, 'groupSize' as const), value: fc.oneof(fc.constantFrom('int8', 'int4', 'mxfp4', 'fp8_block128', 'channel', 32, 64, 128, 0, 7, -32, 2 ** 40), junkValue) }),
      fc.record({ kind: fc.constant('swap' as const), field: fc.constantFrom('data' as const, 'scales' as const) }),
      fc.constant<Break>({ kind: 'dispose-weights' }),
      fc.record({ kind: fc.constant('junk-arg' as const), index: fc.integer({ min: 0, max: testCase.op === 'groupedGemm' ? 3 : 2 }), value: junkValue }),
      fc.record({ kind: fc.constant('junk-option' as const), key: fc.constantFrom('bias', 'outDtype', 'activation', 'maxRowsPerExpert', '__proto__'), value: junkValue }),
    );
    if (testCase.op === 'groupedGemm') {
      const count = testCase.offsets.$tensor.shape[0]!;
      choices.push(fc.record({ kind: fc.constant('offset' as const), at: fc.integer({ min: 0, max: count - 1 }), value: fc.constantFrom(-1, 7, 1e6, 2 ** 31 - 1, -(2 ** 31)) }));
    }
  }
  return fc.oneof(...choices);
}

const weightOnlyFormat = fc.constantFrom<WeightOnlyFormat>('int8', 'int4', 'mxfp4');

const baseCase: fc.Arbitrary<WeightOnlyCase> = fc
  .record({
    op: fc.constantFrom(...WEIGHT_ONLY_OPS),
    format: weightOnlyFormat,
    experts: fc.integer({ min: 1, max: 3 }),
    n: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 5 }) }, { weight: 1, arbitrary: fc.constantFrom(16, 33) }),
    rows: fc.integer({ min: 0, max: 6 }),
    rank3: fc.boolean(),
    fromFloat: fc.boolean(),
    dtype: fc.constantFrom(...FLOAT_DTYPES),
  })
  .chain(({ op, format: given, experts, n, rows, rank3, fromFloat, dtype }) => {
    // quantizeWeights only makes int8 and int4 (mxfp4 is a break: it is only read).
    const format = op === 'quantizeWeights' && given === 'mxfp4' ? 'int4' : given;
    const weightsFromFloat = format !== 'mxfp4' && fromFloat;
    return fc.tuple(depthFor(format), validGroupSize(format)).chain(([depth, group]) => {
      const shape = op === 'groupedGemm' || (op !== 'linear' && rank3) ? [op === 'groupedGemm' ? experts : experts - 1, n, depth] : [n, depth];
      const groupSize = (group as { groupSize?: unknown }).groupSize;
      const scaleShape = scaleShapeFor(format, groupSize, shape);
      return fc.record({
        source: floatSpec(shape),
        data: byteSpec(dataShapeFor(format, shape)),
        scales: format === 'mxfp4' ? e8m0ScaleSpec(scaleShape) : intScaleSpec(scaleShape),
        input: floatSpec([rows, depth], [dtype]),
        offsets: offsetsSpec(shape.length === 3 ? shape[0]! : 1, rows),
        bias: fc.option(floatSpec(op === 'groupedGemm' ? [shape[0]!, n] : [n]), { nil: undefined }),
        outDtype: fc.option(fc.constantFrom('float32', dtype), { nil: undefined }),
      }).map((parts): WeightOnlyCase => {
        const { bias, outDtype, ...rest } = parts;
        return {
          op, format, ...group, shape, fromFloat: weightsFromFloat, ...rest,
          ...(bias !== undefined && { bias }), ...(outDtype !== undefined && { outDtype }), breaks: [],
        };
      });
    });
  });

/** Well-formed cases (about a third), else one or two breaks. */
export const weightOnlyCases: fc.Arbitrary<WeightOnlyCase> = baseCase.chain((testCase) => {
  const one = breakOf(testCase);
  return fc.oneof(
    { weight: 5, arbitrary: fc.constant<Break[]>([]) },
    { weight: 6, arbitrary: fc.tuple(one) },
    { weight: 3, arbitrary: fc.tuple(one, one) },
  ).map((breaks): WeightOnlyCase => ({ ...testCase, breaks }));
});

// ---- Applying breaks to the plain case ----------------------------------------------------

/** The tensor specs after retype / reshape / dispose / offset breaks. */
function brokenSpecs(testCase: WeightOnlyCase): Record<Part, TensorSpec | undefined> {
  const specs: Record<Part, TensorSpec | undefined> = {
    source: testCase.source, data: testCase.data, scales: testCase.scales, input: testCase.input, offsets: testCase.offsets, bias: testCase.bias,
  };
  for (const change of testCase.breaks) {
    if (change.kind !== 'retype' && change.kind !== 'reshape' && change.kind !== 'dispose' && change.kind !== 'offset') continue;
    const part = change.kind === 'offset' ? 'offsets' : change.part;
    const current = specs[part];
    if (!current) continue;
    const body = current.$tensor;
    switch (change.kind) {
      case 'retype': {
        const needsValues = change.dtype === 'int32' || change.dtype === 'uint8';
        specs[part] = spec({ ...body, dtype: change.dtype, ...(needsValues && body.values === undefined && { values: [0, 1, 200, 7] }) });
        break;
      }
      case 'reshape': {
        const shape = [...body.shape];
        if (change.axis < 0) shape.push(1);
        else if (change.axis >= shape.length) shape.shift();
        else shape[change.axis] = Math.max(0, shape[change.axis]! + change.delta);
        specs[part] = spec({ ...body, shape });
        break;
      }
      case 'dispose':
        specs[part] = spec({ ...body, disposed: true });
        break;
      case 'offset': {
        const values = [...(body.values ?? [])];
        values[change.at] = change.value;
        specs[part] = spec({ ...body, values });
        break;
      }
    }
  }
  return specs;
}

/** The format and group size passed, after breaks; groupSize undefined with `has` false: not passed. */
function passedSettings(testCase: WeightOnlyCase): { format: unknown; group: { has: boolean; value: unknown } } {
  let format: unknown = testCase.op === 'quantizeWeights' && testCase.format === 'mxfp4' ? 'int4' : testCase.format;
  const group = { has: Object.hasOwn(testCase, 'groupSize'), value: testCase.groupSize };
  for (const change of testCase.breaks) {
    if (change.kind === 'format') format = change.value;
    if (change.kind === 'groupSize') Object.assign(group, change.absent ? { has: false, value: undefined } : { has: true, value: change.value });
  }
  return { format, group };
}

function hasOffsetBreak(testCase: WeightOnlyCase): boolean {
  return testCase.breaks.some((change) => change.kind === 'offset');
}

// ---- Describing a case as code --------------------------------------------------------------

export const WEIGHT_ONLY_PRELUDE = [
  "const { Tensor, groupedGemm, linear, quantizeWeights, QuantizedWeights } = require('moekit');",
  RENDER_PRELUDE,
  'const repeat = (Type, values, n) => Type.from({ length: n }, (_, i) => values[i % values.length] ?? 0);',
  'const disposed = (t) => (t.dispose(), t);',
].join('\n');

export function describeWeightOnly(testCase: WeightOnlyCase, device = 'cpu'): string {
  const specs = brokenSpecs(testCase);
  const t = (part: Part): string => (specs[part] ? renderTensor(specs[part]!.$tensor, device) : 'undefined');
  const { format, group } = passedSettings(testCase);
  const groupText = group.has ? `, groupSize: ${renderValue(group.value)}` : '';
  const makeWeights = testCase.op === 'quantizeWeights' || testCase.fromFloat
    ? `quantizeWeights(${t('source')}, ${renderValue(format)}${group.has ? `, { groupSize: ${renderValue(group.value)} }` : ''})`
    : `new QuantizedWeights({ format: ${renderValue(format)}, data: ${t('data')}, scales: ${t('scales')}${groupText} })`;
  if (testCase.op === 'quantizeWeights' || testCase.op === 'QuantizedWeights') return makeWeights;
  const lines = [`const w = ${makeWeights};`];
  for (const change of testCase.breaks) {
    if (change.kind === 'tamper') lines.push(`w.${change.field} = ${renderValue(change.value)};`);
    if (change.kind === 'swap') lines.push(`w.${change.field} = w.${change.field === 'data' ? 'scales' : 'data'};`);
    if (change.kind === 'dispose-weights') lines.push('w.dispose();');
  }
  const args = callArgs(testCase, ['x', 'w', 'offsets', 'options'] as const);
  lines.push(`const x = ${t('input')};`);
  if (testCase.op === 'groupedGemm') lines.push(`const offsets = ${t('offsets')};`);
  const options = renderValue(optionsOf(testCase, { bias: specs.bias ? { $code: t('bias') } : undefined }), (value) =>
    (typeof value === 'object' && value !== null && Object.hasOwn(value, '$code') ? String((value as { $code: string }).$code) : undefined));
  lines.push(`const options = ${options};`);
  lines.push(`return ${testCase.op}(${args.map((arg) => (typeof arg === 'string' ? arg : renderValue(arg.junk))).join(', ')});`);
  return `(() => { ${lines.join(' ')} })()`;
}

/** The options object, with `extra` values for tensors (bias) and junk-option breaks applied. */
function optionsOf(testCase: WeightOnlyCase, tensors: { bias: unknown }): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  if (testCase.bias) options.bias = tensors.bias;
  if (testCase.outDtype !== undefined) options.outDtype = testCase.outDtype;
  for (const change of testCase.breaks) if (change.kind === 'junk-option') options[change.key] = change.value;
  return options;
}

/** The call's arguments by name, junk where a junk-arg break put it. */
function callArgs<T extends string>(testCase: WeightOnlyCase, names: readonly [T, T, T, T]): Array<T | { junk: unknown }> {
  const args: Array<T | { junk: unknown }> = testCase.op === 'groupedGemm' ? [...names] : [names[0], names[1], names[3]];
  for (const change of testCase.breaks) if (change.kind === 'junk-arg' && change.index < args.length) args[change.index] = { junk: change.value };
  return args;
}

// ---- Checking -----------------------------------------------------------------------------

class PropertyViolation extends Error {}

function requireInputError(api: MoekitApi, error: unknown, where: string): void {
  if (!(error instanceof api.MoekitError)) throw new PropertyViolation(`${where} with an error that is not a MoekitError: ${errorText(error)}`);
  if (!INPUT_ERROR_CODES.has(error.code)) throw new PropertyViolation(`${where} with ${error.code}, not a code for bad input: ${error.message}`);
}

/** Resolves a read, or undefined when it rejects with an input error (anything else is a violation). */
async function readOrReject<T>(api: MoekitApi, where: string, read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read();
  } catch (error) {
    requireInputError(api, error, where);
    return undefined;
  }
}

function sameShape(actual: readonly number[], expected: readonly number[]): boolean {
  return actual.length === expected.length && actual.every((extent, axis) => extent === expected[axis]);
}

/** A QuantizedWeights' fields as given to a GEMM (read at call time, so tampering shows). */
interface WeightsSeen {
  format: WeightOnlyFormat;
  groupSize: number | 'channel';
  data: Tensor;
  scales: Tensor;
}

function formatOf(value: unknown): WeightOnlyFormat | undefined {
  return value === 'int8' || value === 'int4' || value === 'mxfp4' ? value : undefined;
}

/** quantizeWeights' result against the reference rule, bit for bit. */
async function checkQuantized(api: MoekitApi, weights: QuantizedWeights, source: Tensor, format: 'int8' | 'int4', groupSize: number | 'channel'): Promise<void> {
  if (!(weights instanceof api.QuantizedWeights)) throw new PropertyViolation(`quantizeWeights returned ${String(weights)}, not QuantizedWeights`);
  if (weights.format !== format || weights.groupSize !== groupSize) throw new PropertyViolation(`quantizeWeights made ${weights.format} weights of groupSize ${String(weights.groupSize)}, asked for ${format} / ${String(groupSize)}`);
  if (!sameShape(weights.shape, source.shape)) throw new PropertyViolation(`quantizeWeights made shape [${weights.shape.join(', ')}] of weights [${source.shape.join(', ')}]`);
  const values = await readOrReject(api, 'reading the source weights', () => source.toFloat32Array());
  const bytes = await readOrReject(api, 'quantizeWeights: data rejected', () => weights.data.toArray());
  const scales = await readOrReject(api, 'quantizeWeights: scales rejected', () => weights.scales.toArray());
  if (!values || !bytes || !scales) throw new PropertyViolation('quantizeWeights of readable weights made parts that do not read back');
  const [n, k] = [source.shape.at(-2)!, source.shape.at(-1)!];
  const matrices = source.shape.length === 3 ? source.shape[0]! : 1;
  const expected = quantizeIntegerWeights(format, values, matrices, n, k, groupSize);
  const scaleDiff = firstDifference(scales as Float32Array, expected.scales);
  if (scaleDiff) throw new PropertyViolation(`quantizeWeights(${format}, groupSize ${String(groupSize)}): scales differ from the rule: ${scaleDiff}`);
  const byteDiff = firstDifference(bytes as Uint8Array, expected.bytes);
  if (byteDiff) throw new PropertyViolation(`quantizeWeights(${format}, groupSize ${String(groupSize)}): bytes differ from the rule: ${byteDiff}`);
}

const FLOAT32_MAX = 3.4028234663852886e38;

/** Largest |error| of rounding a float32 result to `dtype`, and its largest finite value. */
function rounding(dtype: string): { relative: number; absolute: number; max: number } {
  switch (dtype) {
    case 'float16': return { relative: 2 ** -11, absolute: 2 ** -25, max: 65504 };
    case 'bfloat16': return { relative: 2 ** -8, absolute: 2 ** -134, max: 3.3895313892515355e38 };
    default: return { relative: 2 ** -24, absolute: 2 ** -150, max: FLOAT32_MAX };
  }
}

/**
 * One output value against float math: `terms` are x · w (w dequantized), `bias` the bias. NaN
 * when the math is NaN (a NaN, Inf − Inf, 0 · Inf); an infinity when it is one; else within
 * float32 accumulation over the terms and the output's rounding, unless the sum passes float32's
 * range along the way (then anything non-finite or in tolerance).
 */
function valueProblem(got: number, terms: readonly number[], bias: number, dtype: string): string | undefined {
  let sum = bias;
  let magnitude = Math.abs(bias);
  let finiteMagnitude = 0;
  for (const term of terms) {
    sum += term;
    magnitude += Math.abs(term);
    if (Number.isFinite(term)) finiteMagnitude += Math.abs(term);
  }
  if (Number.isNaN(sum)) return Number.isNaN(got) ? undefined : `${got}, expected NaN`;
  if (!Number.isFinite(sum)) {
    // Finite terms that overflow float32 on the way may meet the infinite one as Inf - Inf.
    if (got === sum || (finiteMagnitude >= FLOAT32_MAX / 2 && !Number.isFinite(got))) return undefined;
    return `${got}, expected ${sum}`;
  }
  const { relative, absolute, max } = rounding(dtype);
  // Each float32 product and partial sum may round (relatively, or by half a subnormal step).
  const tolerance = (terms.length + 3) * (2 ** -23 * magnitude + 2 ** -149) + relative * Math.abs(sum) + absolute;
  if (magnitude >= FLOAT32_MAX / 2 || Math.abs(sum) + tolerance >= max) {
    if (!Number.isFinite(got) || Math.abs(got - sum) <= tolerance) return undefined;
    return `${got}, expected about ${sum} (or an overflow)`;
  }
  return Math.abs(got - sum) <= tolerance ? undefined : `${got}, expected ${sum} ± ${tolerance}`;
}

interface GemmSeen {
  input: Tensor;
  weights: WeightsSeen;
  offsets?: Tensor;
  bias?: Tensor;
  output: Tensor;
}

async function checkGemmOutput(api: MoekitApi, op: 'linear' | 'groupedGemm', seen: GemmSeen): Promise<void> {
  const { input, weights, output } = seen;
  const x = await readOrReject(api, 'reading the input', () => input.toFloat32Array());
  const bytes = await readOrReject(api, 'reading the weights', () => weights.data.toArray());
  const scales = await readOrReject(api, 'reading the scales', () => weights.scales.toArray());
  const bias = seen.bias ? await readOrReject(api, 'reading the bias', () => seen.bias!.toFloat32Array()) : undefined;
  const offsets = seen.offsets ? ((await readOrReject(api, 'reading the offsets', () => seen.offsets!.toArray())) as Int32Array | undefined) : undefined;
  const got = await output.toFloat32Array();
  if (!x || !bytes || !scales || (seen.bias && !bias) || (seen.offsets && !offsets)) throw new PropertyViolation(`${op} resolved though an operand does not read back`);
  const shape = weights.data.shape;
  const [n, rowBytes] = [shape.at(-2)!, shape.at(-1)!];
  const k = weights.format === 'int8' ? rowBytes : rowBytes * 2;
  const experts = shape.length === 3 ? shape[0]! : 1;
  const rows = input.shape[0]!;
  if (!sameShape(output.shape, [rows, n])) throw new PropertyViolation(`${op} output has shape [${output.shape.join(', ')}], expected [${rows}, ${n}]`);
  const expectedDType = seen.output.dtype;
  const w = dequantizeWeightOnly(weights.format, bytes as Uint8Array, scales as ArrayLike<number>, experts, n, k, weights.groupSize);
  const bounds = offsets ? Array.from(offsets) : [0, rows];
  for (let e = 0; e < experts; e++) {
    for (let r = bounds[e]!; r < bounds[e + 1]!; r++) {
      for (let col = 0; col < n; col++) {
        const terms: number[] = [];
        for (let i = 0; i < k; i++) terms.push(x[r * k + i]! * w[(e * n + col) * k + i]!);
        const problem = valueProblem(got[r * n + col]!, terms, bias ? bias[e * n + col]! : 0, expectedDType);
        if (problem) throw new PropertyViolation(`${op} with ${weights.format} weights (groupSize ${String(weights.groupSize)}, K ${k}): output[${r}, ${col}] (expert ${e}) is ${problem}`);
      }
    }
  }
}

/** Runs the case; every tensor made goes into `made`. */
async function runCase(api: MoekitApi, testCase: WeightOnlyCase, device: string, made: Tensor[]): Promise<void> {
  const specs = brokenSpecs(testCase);
  const { format, group } = passedSettings(testCase);
  const build = (part: Part): Tensor | undefined => {
    const body = specs[part]?.$tensor;
    if (!body) return undefined;
    const tensor = buildTensor(api, body, device);
    made.push(tensor);
    return tensor;
  };
  const expectThrowOrFine = (error: unknown, where: string): void => {
    requireInputError(api, error, where);
    // A well-formed case must not be refused.
    if (testCase.breaks.length === 0) throw new PropertyViolation(`${where} for a well-formed case: ${errorText(error)}`);
  };
  let source: Tensor | undefined;
  let data: Tensor | undefined;
  let scales: Tensor | undefined;
  try {
    if (testCase.op === 'quantizeWeights' || testCase.fromFloat) source = build('source');
    else [data, scales] = [build('data'), build('scales')];
  } catch (error) {
    expectThrowOrFine(error, 'building the parts failed');
    return;
  }
  let weights: QuantizedWeights;
  try {
    weights = source
      ? api.quantizeWeights(source, format as 'int8', group.has ? { groupSize: group.value as number } : undefined)
      : new api.QuantizedWeights({ format: format as 'int8', data: data!, scales: scales!, ...(group.has && { groupSize: group.value as number }) });
  } catch (error) {
    expectThrowOrFine(error, source ? 'quantizeWeights threw' : 'new QuantizedWeights threw');
    return;
  }
  made.push(weights.data, weights.scales);
  // fp8_block128 (a format break) is the ops property's business.
  if (format === 'fp8_block128') return;
  const groupSize = (group.has && group.value !== undefined ? group.value : format === 'int8' ? 'channel' : format === 'int4' ? 128 : 32) as number | 'channel';
  if (source) {
    if (!formatOf(format) || format === 'mxfp4') throw new PropertyViolation(`quantizeWeights accepted format ${renderValue(format)}`);
    if (!source.disposed) await checkQuantized(api, weights, source, format as 'int8' | 'int4', groupSize);
  } else {
    if (weights.data !== data || weights.scales !== scales) throw new PropertyViolation('new QuantizedWeights does not hold the parts it was given');
    if (weights.format !== format || weights.groupSize !== groupSize) throw new PropertyViolation(`new QuantizedWeights holds ${weights.format} / ${String(weights.groupSize)}, given ${renderValue(format)} / ${renderValue(groupSize)}`);
    const logical = [...data!.shape.slice(0, -1), data!.shape.at(-1)! * (format === 'int8' ? 1 : 2)];
    if (!sameShape(weights.shape, logical)) throw new PropertyViolation(`new QuantizedWeights has shape [${weights.shape.join(', ')}], expected [${logical.join(', ')}]`);
  }
  if (testCase.op === 'quantizeWeights' || testCase.op === 'QuantizedWeights') return;

  // Tampering with the made weights, as a JavaScript caller can.
  const mutable = weights as unknown as Record<string, unknown>;
  for (const change of testCase.breaks) {
    if (change.kind === 'tamper') mutable[change.field] = change.value;
    if (change.kind === 'swap') mutable[change.field] = change.field === 'data' ? weights.scales : weights.data;
    if (change.kind === 'dispose-weights') weights.dispose();
  }
  // groupSize 0 is what native/core/op_args.h reads as per output channel (lib passes numbers through).
  const seenGroup = (weights.groupSize as unknown) === 0 ? 'channel' : weights.groupSize;
  const seenWeights = { format: weights.format, groupSize: seenGroup, data: weights.data, scales: weights.scales };
  let input: Tensor | undefined;
  let offsets: Tensor | undefined;
  let bias: Tensor | undefined;
  try {
    input = build('input');
    if (testCase.op === 'groupedGemm') offsets = build('offsets');
    bias = build('bias');
  } catch (error) {
    expectThrowOrFine(error, 'building the operands failed');
    return;
  }
  const options = optionsOf(testCase, { bias });
  const named = { x: input, w: weights, offsets, options } as const;
  const args = callArgs(testCase, ['x', 'w', 'offsets', 'options'] as const).map((arg) => (typeof arg === 'string' ? named[arg] : arg.junk));
  let output: unknown;
  try {
    output = (api[testCase.op] as (...callArgs: unknown[]) => unknown)(...args);
  } catch (error) {
    expectThrowOrFine(error, `${testCase.op} threw`);
    return;
  }
  if (!(output instanceof api.Tensor)) throw new PropertyViolation(`${testCase.op} returned ${String(output)}, not a Tensor`);
  made.push(output);
  let resolved: boolean;
  try {
    await output.toArray();
    resolved = true;
  } catch (error) {
    requireInputError(api, error, `${testCase.op}: output rejected`);
    resolved = false;
  }
  if (hasOffsetBreak(testCase) && testCase.op === 'groupedGemm' && offsets && !offsets.disposed) {
    const values = Array.from((await offsets.toArray()) as Int32Array);
    const rows = input!.shape[0] ?? 0;
    const bad = values.some((value, at) => value < 0 || value > rows || (at > 0 && value < values[at - 1]!));
    if (bad && resolved) throw new PropertyViolation(`groupedGemm with out-of-range offsets [${values.join(', ')}] resolved; it must reject`);
    if (bad) return;
  }
  if (!resolved) {
    if (testCase.breaks.length === 0) throw new PropertyViolation(`${testCase.op}: the output of a well-formed call rejected`);
    return;
  }
  const weightsFormat = formatOf(seenWeights.format);
  if (!weightsFormat) throw new PropertyViolation(`${testCase.op} resolved with weights of format ${renderValue(seenWeights.format)}`);
  await checkGemmOutput(api, testCase.op, { input: input!, weights: { ...seenWeights, format: weightsFormat }, ...(offsets && { offsets }), ...(args.includes(options) && options.bias instanceof api.Tensor && { bias: options.bias }), output });
}

/** After each case: a known int8 linear still computes right (w = [0.5, -0.5], x = [2, 4] → -1). */
async function requireHealthyDevice(api: MoekitApi, device: string): Promise<void> {
  const where = { device: device as 'cpu' };
  const made: Tensor[] = [];
  try {
    const data = api.Tensor.fromArray(new Uint8Array([1, 0xff]), [1, 2], { dtype: 'uint8', ...where });
    made.push(data);
    const scales = api.Tensor.fromArray(new Float32Array([0.5]), [1, 1], where);
    made.push(scales);
    const x = api.Tensor.fromArray(new Float32Array([2, 4]), [1, 2], where);
    made.push(x);
    const output = api.linear(x, new api.QuantizedWeights({ format: 'int8', data, scales }));
    made.push(output);
    const values = await output.toArray();
    if (values[0] !== -1) throw new Error(`a known int8 linear gave ${values[0]}, expected -1`);
  } catch (error) {
    throw new PropertyViolation(`${device} is not usable after the case: ${errorText(error)}`);
  } finally {
    for (const tensor of made) tensor.dispose();
  }
}

export async function checkWeightOnlyCase(api: MoekitApi, testCase: WeightOnlyCase, device = 'cpu'): Promise<void> {
  const made: Tensor[] = [];
  try {
    await runCase(api, testCase, device, made);
  } finally {
    for (const tensor of made) if (tensor instanceof api.Tensor) tensor.dispose();
  }
  await requireHealthyDevice(api, device);
}

export const weightOnlyProperty = defineProperty<WeightOnlyCase>(({ moekit, params }) => {
  const device = params.device ?? 'cpu';
  return {
    arbitrary: weightOnlyCases,
    describe: (testCase) => describeWeightOnly(testCase, device),
    check: (testCase) => checkWeightOnlyCase(moekit.api, testCase, device),
  };
});

