/**
 * Cases for the ops property: one call of an op or a Tensor factory, as plain data. Tensors are
 * specs ({ $tensor: ... }) that the property builds on the device before the call, so a case can
 * be printed as a reproducer and shrunk.
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
export const DTYPES = [...FLOAT_DTYPES, 'int32'] as const;
export type DTypeName = (typeof DTYPES)[number];
type FloatDTypeName = (typeof FLOAT_DTYPES)[number];

export interface TensorSpecBody {
  readonly dtype: DTypeName;
  readonly shape: readonly number[];
  /** Element values, repeated to fill the tensor; absent: Tensor.random(shape, { seed }). int32 specs always have values. */
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

export function numel(shape: readonly number[]): number {
  return shape.reduce((product, extent) => product * extent, 1);
}

export const OP_NAMES = [
  'route', 'permute', 'groupedGemm', 'activation', 'combine', 'linear',
  'Tensor.fromArray', 'Tensor.empty', 'Tensor.random', 'tensor.to', 'pipeline',
] as const;
export type OpName = (typeof OP_NAMES)[number];

/**
 * One call. `tensor.to`: args[0] is the tensor whose to() is called. `pipeline`: args are
 * [x, topkIds, numExperts, w13, w2, topkWeights] for permute → groupedGemm (swiglu) →
 * groupedGemm → combine, with only the final output awaited.
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

const permuteCase: fc.Arbitrary<OpCase> = fc
  .record({ tokens: smallDim, hidden: smallDim, topK: fc.integer({ min: 1, max: 3 }), experts: fc.integer({ min: 1, max: 6 }) })
  .chain(({ tokens, hidden, topK, experts }) =>
    fc.tuple(
      floatTensor([tokens, hidden]),
      indexTensor([tokens, topK], fc.integer({ min: 0, max: experts - 1 }), [-1, -2, experts, experts + 1, ...FAR_INDICES]),
      // Mostly the ids' range; sometimes a wider one (valid), or so many experts that the offsets cannot be allocated.
      fc.oneof({ weight: 12, arbitrary: fc.constant(experts) }, { weight: 1, arbitrary: fc.constantFrom(experts + 1, 1e6, INT32_MAX, 2 ** 31, 2 ** 53 - 1) }),
      options({
        localExperts: fc.integer({ min: 0, max: experts - 1 }).chain((first) => fc.record({ first: fc.constant(first), count: fc.integer({ min: 1, max: experts - first }) })),
      }),
    ),
  )
  .map((args) => ({ op: 'permute', args }));

/** Expert offsets [E+1] for `rows` rows: sorted values in [0, rows] mostly, else anything (decreasing, negative, past the end). */
function expertOffsets(experts: number, rows: number): fc.Arbitrary<TensorSpec> {
  const count = experts + 1;
  const inRange = fc.integer({ min: 0, max: rows });
  const sorted = fc.array(inRange, { minLength: count, maxLength: count }).map((list) => [...list].sort((a, b) => a - b));
  const unordered = fc.array(fc.oneof(inRange, fc.constantFrom(-1, rows + 1, ...FAR_INDICES)), { minLength: count, maxLength: count });
  return fc.oneof({ weight: 3, arbitrary: sorted }, { weight: 1, arbitrary: unordered }).map((values) => spec({ dtype: 'int32', shape: [count], values }));
}

const groupedGemmCase: fc.Arbitrary<OpCase> = fc
  .record({
    rows: fc.integer({ min: 0, max: 6 }),
    depth: fc.integer({ min: 0, max: 5 }),
    halfWidth: fc.integer({ min: 1, max: 3 }),
    experts: fc.integer({ min: 1, max: 4 }),
    dtype: floatDType,
    kind: fc.option(fc.constantFrom(...ACTIVATION_KINDS), { nil: undefined }),
  })
  .chain(({ rows, depth, halfWidth, experts, dtype, kind }) => {
    // Gated activations need an even width; otherwise any width goes.
    const width = kind === undefined || GATED_KINDS.includes(kind) ? 2 * halfWidth : 2 * halfWidth - 1;
    return fc.tuple(
      floatTensor([rows, depth], [dtype]),
      floatTensor([experts, width, depth], [dtype]),
      expertOffsets(experts, rows),
      options({
        bias: floatTensor([experts, width], [dtype]),
        outDtype: fc.constantFrom('float32', dtype),
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
      options({ bias: floatTensor([width], [dtype]), outDtype: fc.constantFrom('float32', dtype) }),
    ),
  )
  .map((args) => ({ op: 'linear', args }));

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
        fc.oneof(floatTensor(shape), fc.array(fc.integer({ min: -5, max: 5 }), { minLength: 1, maxLength: 4 }).map((values) => spec({ dtype: 'int32', shape, values }))),
        fc.option(deviceOption(device), { nil: undefined }),
        fc.option(dtypeOption, { nil: undefined }),
      ),
    )
    .map((args) => ({ op: 'tensor.to' as const, args }));
  return fc.oneof(fromArray, empty, random, to);
}

// ---- Mutations ----------------------------------------------------------------------------

/** Where a tensor spec sits: an argument, or a field of an options argument (one level, or two for groupedGemm's activation). */
type ArgPath = readonly [number, ...string[]];

type Mutation =
  | { kind: 'junk-arg'; index: number; value: unknown }
  | { kind: 'drop-args'; keep: number }
  | { kind: 'junk-option'; index: number; key: string; value: unknown }
  | { kind: 'retype'; path: ArgPath; dtype: DTypeName }
  | { kind: 'reshape'; path: ArgPath; shape: readonly number[] }
  | { kind: 'dispose'; path: ArgPath }
  | { kind: 'move'; path: ArgPath; device: string };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !isTensorSpec(value) && Object.getPrototypeOf(value) === Object.prototype;
}

function tensorPaths(args: readonly unknown[]): ArgPath[] {
  const paths: ArgPath[] = [];
  const visit = (value: unknown, path: ArgPath): void => {
    if (isTensorSpec(value)) paths.push(path);
    else if (isPlainObject(value) && path.length < 3) for (const [key, item] of Object.entries(value)) visit(item, [...path, key]);
  };
  args.forEach((arg, index) => visit(arg, [index]));
  return paths;
}

function getAt(args: readonly unknown[], path: ArgPath): unknown {
  const [index, ...keys] = path;
  return keys.reduce<unknown>((value, key) => (isPlainObject(value) ? value[key] : undefined), args[index]);
}

/** A copy of `args` with the value at `path` replaced (objects on the path copied, never changed in place). */
function setAt(args: readonly unknown[], path: ArgPath, value: unknown): unknown[] {
  const [index, ...keys] = path;
  const replace = (current: unknown, rest: readonly string[]): unknown => {
    if (rest.length === 0) return value;
    if (!isPlainObject(current)) return current;
    const [key, ...deeper] = rest as [string, ...string[]];
    return Object.fromEntries([...Object.entries(current).filter(([name]) => name !== key), [key, replace(current[key], deeper)]]);
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
        // int32 tensors are made from values; a random float tensor turned int32 gets a few small ones.
        ...(mutation.dtype === 'int32' && body.values === undefined && { values: [0, 1, (body.seed ?? 0) % 7] }),
      }));
    case 'reshape':
      return updateSpec(args, mutation.path, (body) => ({ ...body, shape: mutation.shape }));
    case 'dispose':
      return updateSpec(args, mutation.path, (body) => ({ ...body, disposed: true }));
    case 'move':
      return updateSpec(args, mutation.path, (body) => ({ ...body, device: mutation.device }));
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
    groupedGemm: groupedGemmCase,
    activation: activationCase,
    combine: combineCase,
    linear: linearCase,
    pipeline: pipelineCase,
  };
  const wanted = (op: OpName): boolean => ops === undefined || ops.includes(op);
  const arbitraries = Object.entries(byOp)
    .filter(([op]) => wanted(op as OpName))
    // The pipeline tests poison propagating through valid calls: mutations would only stop it at the first.
    .map(([op, arbitrary]) => (op === 'pipeline' ? arbitrary : mutated(arbitrary, otherDevice)));
  const factories = factoryCases(device).filter((call) => wanted(call.op));
  if (OP_NAMES.some((op) => op.toLowerCase().startsWith('tensor') && wanted(op))) arbitraries.push(mutated(factories, otherDevice));
  if (arbitraries.length === 0) throw new Error(`no ops selected from ${OP_NAMES.join(', ')}`);
  return fc.oneof(...arbitraries);
}
