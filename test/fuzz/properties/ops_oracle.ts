/**
 * What the ops property expects of a call moekit accepted, worked out from the case alone:
 * whether its index inputs are out of range (then every output must reject), and what its
 * outputs must hold when they resolve (ids in range, offsets that add up, values that round-trip).
 * Pure functions of plain data, so harness tests can check them without the addon.
 */
import { isTensorSpec, numel, type OpCase, type TensorSpec } from './ops_cases';

type HostArray = Float32Array | Int32Array | Uint16Array | Uint8Array;

/** A spec's values as the tensor holds them: repeated to its length (zeros for an empty pattern). */
export function repeatValues(values: readonly number[], length: number): number[] {
  return Array.from({ length }, (_, index) => (values.length === 0 ? 0 : values[index % values.length]!));
}

/** The int32 values of an index spec, as the tensor holds them (int32 wrap-around included). */
function indexValues(spec: TensorSpec): number[] {
  return Array.from(Int32Array.from(repeatValues(spec.$tensor.values ?? [], numel(spec.$tensor.shape))));
}

function intSpec(value: unknown): TensorSpec | undefined {
  return isTensorSpec(value) && value.$tensor.dtype === 'int32' ? value : undefined;
}

function optionsOf(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

function firstOutside(values: readonly number[], min: number, maxExclusive: number): number | undefined {
  return values.find((value) => value < min || value >= maxExclusive);
}

/** Offsets are valid when 0 <= o[0] <= o[1] <= ... <= o[E] <= rows. */
function offsetsProblem(offsets: readonly number[], rows: number): string | undefined {
  if (offsets.length === 0) return undefined;
  if (offsets[0]! < 0) return `expertOffsets[0] is ${offsets[0]}`;
  for (let e = 1; e < offsets.length; e++) {
    if (offsets[e]! < offsets[e - 1]!) return `expertOffsets decrease at ${e} (${offsets[e - 1]} then ${offsets[e]})`;
  }
  const last = offsets[offsets.length - 1]!;
  return last > rows ? `expertOffsets end at ${last}, past the ${rows} input rows` : undefined;
}

/**
 * Why the index inputs of an accepted call are out of range, or undefined when they are in range
 * (or the op has none). Meaningful only for a call moekit accepted: its shapes and dtypes passed
 * the checks, so the specs are what the op saw.
 */
export function outOfRangeReason(call: OpCase): string | undefined {
  const { args } = call;
  switch (call.op) {
    case 'permute':
    case 'pipeline': {
      const ids = intSpec(args[1]);
      const experts = args[2];
      if (!ids || typeof experts !== 'number') return undefined;
      const bad = firstOutside(indexValues(ids), 0, experts);
      return bad === undefined ? undefined : `topkIds holds expert ${bad}, outside [0, ${experts})`;
    }
    case 'combine': {
      const rowsSpec = args[0];
      const map = intSpec(args[2]);
      if (!isTensorSpec(rowsSpec) || !map) return undefined;
      const rows = rowsSpec.$tensor.shape[0] ?? 0;
      // -1 is a pair dropped on purpose (Expert Parallel); below that, or from `rows` on, there is no such row.
      const bad = firstOutside(indexValues(map), -1, rows);
      return bad === undefined ? undefined : `sourceToPermuted holds row ${bad}, outside [-1, ${rows})`;
    }
    case 'groupedGemm': {
      const input = args[0];
      const offsets = intSpec(args[2]);
      if (!isTensorSpec(input) || !offsets) return undefined;
      return offsetsProblem(indexValues(offsets), input.$tensor.shape[0] ?? 0);
    }
    default:
      return undefined;
  }
}

/** Whether every float tensor of the call holds random values (no NaN, infinities or huge values were put in). */
export function onlyRandomFloats(call: OpCase): boolean {
  const specs: TensorSpec[] = [];
  // Specs sit at most two levels down (see ops.ts materialize); junk values below may be cyclic or deep.
  const collect = (value: unknown, depth: number): void => {
    if (isTensorSpec(value)) specs.push(value);
    else if (depth < 2 && typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
      for (const item of Object.values(value)) collect(item, depth + 1);
    }
  };
  for (const arg of call.args) collect(arg, 0);
  return specs.every((spec) => spec.$tensor.dtype === 'int32' || spec.$tensor.values === undefined);
}

// ---- Resolved outputs ----------------------------------------------------------------------

function sameValue(actual: number, expected: number): boolean {
  return Object.is(actual, expected) || (Number.isNaN(actual) && Number.isNaN(expected));
}

/** The first index where two arrays differ (NaN equals NaN, -0 differs from 0), or undefined. */
export function firstDifference(actual: ArrayLike<number>, expected: ArrayLike<number>): string | undefined {
  if (actual.length !== expected.length) return `${actual.length} values, expected ${expected.length}`;
  for (let i = 0; i < expected.length; i++) {
    if (!sameValue(actual[i]!, expected[i]!)) return `value ${i} is ${actual[i]}, expected ${expected[i]}`;
  }
  return undefined;
}

function firstNonFinite(values: ArrayLike<number>): string | undefined {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) return `value ${i} is ${values[i]}`;
  return undefined;
}

/** route: ids of real experts, distinct within a token, counted in expertCounts; finite weights from finite logits. */
function routeProblem(call: OpCase, outputs: Record<string, HostArray>): string | undefined {
  const logits = call.args[0] as TensorSpec;
  const [tokens = 0, experts = 0] = logits.$tensor.shape;
  const ids = outputs.topkIds as Int32Array;
  const weights = outputs.topkWeights as Float32Array;
  const counts = outputs.expertCounts as Int32Array;
  if (tokens === 0) return undefined;
  const topK = ids.length / tokens;
  const expectedCounts = new Array<number>(experts).fill(0);
  for (let t = 0; t < tokens; t++) {
    const row = Array.from(ids.subarray(t * topK, (t + 1) * topK));
    const bad = firstOutside(row, 0, experts);
    if (bad !== undefined) return `topkIds of token ${t} holds ${bad}, not an expert of [0, ${experts})`;
    if (new Set(row).size !== row.length) return `topkIds of token ${t} repeats an expert: [${row.join(', ')}]`;
    for (const id of row) expectedCounts[id]!++;
  }
  const counted = firstDifference(counts, expectedCounts);
  if (counted) return `expertCounts disagree with topkIds: ${counted}`;
  if (onlyRandomFloats(call)) {
    const weight = firstNonFinite(weights);
    if (weight) return `topkWeights not finite for finite logits: ${weight}`;
  }
  return undefined;
}

/** permute: exactly the counting sort the contract describes (stable within an expert; -1 for other ranks' experts). */
function permuteProblem(call: OpCase, outputs: Record<string, HostArray>): string | undefined {
  const ids = indexValues(call.args[1] as TensorSpec);
  const experts = call.args[2] as number;
  const local = (optionsOf(call.args[3]).localExperts as { first: number; count: number } | undefined) ?? { first: 0, count: experts };
  const localOf = (id: number): number => (id >= local.first && id < local.first + local.count ? id - local.first : -1);
  const offsets = new Array<number>(local.count + 1).fill(0);
  for (const id of ids) if (localOf(id) >= 0) offsets[localOf(id) + 1]!++;
  for (let e = 0; e < local.count; e++) offsets[e + 1]! += offsets[e]!;
  const next = offsets.slice(0, local.count);
  const sourceToPermuted = ids.map((id) => (localOf(id) < 0 ? -1 : next[localOf(id)]!++));
  const offsetsDiffer = firstDifference(outputs.expertOffsets!, offsets);
  if (offsetsDiffer) return `expertOffsets: ${offsetsDiffer}`;
  const mapDiffers = firstDifference(outputs.sourceToPermuted!, sourceToPermuted);
  if (mapDiffers) return `sourceToPermuted: ${mapDiffers}`;
  const inverse = outputs.permutedToSource!;
  for (const [pair, row] of sourceToPermuted.entries()) {
    if (row >= 0 && inverse[row] !== pair) return `permutedToSource[${row}] is ${inverse[row]}, expected ${pair}`;
  }
  return undefined;
}

export interface HalfCodec {
  encodeHalf(values: ArrayLike<number>, dtype: 'float16' | 'bfloat16'): Uint16Array;
  decodeHalf(bits: Uint16Array, dtype: 'float16' | 'bfloat16'): Float32Array;
}

/** A tensor's values as numbers: float16/bfloat16 bits decoded. */
export function asNumbers(values: HostArray, dtype: string, codec: HalfCodec): ArrayLike<number> {
  return dtype === 'float16' || dtype === 'bfloat16' ? codec.decodeHalf(values as Uint16Array, dtype) : values;
}

/** `source` (numbers) converted to `dtype` the way moekit documents: float32 rounding, then 16-bit rounding to nearest even. */
function converted(source: ArrayLike<number>, dtype: string, codec: HalfCodec): ArrayLike<number> {
  const asFloat32 = Float32Array.from(source);
  return dtype === 'float16' || dtype === 'bfloat16' ? codec.decodeHalf(codec.encodeHalf(asFloat32, dtype), dtype) : asFloat32;
}

/** fromArray: the values given, converted to the tensor's dtype. */
function fromArrayProblem(call: OpCase, output: HostArray, dtype: string, codec: HalfCodec): string | undefined {
  const data = call.args[0];
  let expected: ArrayLike<number>;
  if (data instanceof Uint16Array) expected = codec.decodeHalf(data, dtype as 'float16' | 'bfloat16');
  else if (data instanceof Int32Array) expected = data;
  else if (Array.isArray(data) && dtype === 'int32') expected = Int32Array.from(data as number[]);
  else expected = converted(data as ArrayLike<number>, dtype, codec);
  const differs = firstDifference(asNumbers(output, dtype, codec), expected);
  return differs ? `fromArray did not keep the values: ${differs}` : undefined;
}

/** random: finite values in [-|scale|, |scale|] (a 16-bit dtype may round onto the bound). */
function randomProblem(call: OpCase, output: HostArray, dtype: string, codec: HalfCodec): string | undefined {
  const scale = (optionsOf(call.args[1]).scale as number | undefined) ?? 1;
  if (Math.abs(scale) > 1000) return undefined;
  const values = asNumbers(output, dtype, codec);
  const bound = Math.abs(scale) * (1 + 2 ** -7);
  for (let i = 0; i < values.length; i++) {
    if (!(Math.abs(values[i]!) <= bound)) return `random value ${i} is ${values[i]}, outside [-${Math.abs(scale)}, ${Math.abs(scale)}]`;
  }
  return undefined;
}

export interface ResolvedCall {
  call: OpCase;
  /** Each output's values, by name. */
  outputs: Record<string, HostArray>;
  /** Each output's dtype, by name. */
  dtypes: Record<string, string>;
  /** tensor.to: the source tensor's values and dtype, read before the call. */
  source?: { values: HostArray; dtype: string };
}

/**
 * What is wrong with the outputs of an accepted call with in-range indices that all resolved, or
 * undefined. Ops whose outputs are not fully determined by the case (groupedGemm leaves rows
 * outside the offsets as they were) are only checked for what is.
 */
export function resolvedOutputsProblem(resolved: ResolvedCall, codec: HalfCodec): string | undefined {
  const { call, outputs, dtypes } = resolved;
  const output = outputs.output;
  const dtype = dtypes.output ?? 'float32';
  switch (call.op) {
    case 'route':
      return routeProblem(call, outputs);
    case 'permute':
      return permuteProblem(call, outputs);
    case 'linear':
    case 'activation':
    case 'combine':
    case 'pipeline': {
      if (!output || !onlyRandomFloats(call)) return undefined;
      const bad = firstNonFinite(asNumbers(output, dtype, codec));
      return bad ? `output not finite for finite inputs: ${bad}` : undefined;
    }
    case 'Tensor.fromArray':
      return output && fromArrayProblem(call, output, dtype, codec);
    case 'Tensor.random':
      return output && randomProblem(call, output, dtype, codec);
    case 'tensor.to': {
      if (!output || !resolved.source) return undefined;
      const source = asNumbers(resolved.source.values, resolved.source.dtype, codec);
      const differs = firstDifference(asNumbers(output, dtype, codec), dtype === 'int32' ? source : converted(source, dtype, codec));
      return differs ? `to() changed the values: ${differs}` : undefined;
    }
    default:
      return undefined;
  }
}
