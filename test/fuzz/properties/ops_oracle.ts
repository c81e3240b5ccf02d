/**
 * What the ops property expects of a call moekit accepted, worked out from the case alone:
 * whether its index inputs are out of range (then every output must reject), and what its
 * outputs must hold when they resolve (ids in range, offsets that add up, values that round-trip).
 * Pure functions of plain data, so harness tests can check them without the addon.
 */
import { FP8_BLOCK, fp8Blocks, isFp8RowsSpec, isQuantizedSpec, isTensorSpec, numel, wrapperBody, type OpCase, type TensorSpec } from './ops_cases';

type HostArray = Float32Array | Int32Array | Uint16Array | Uint8Array;

// ---- float8 e4m3 (e4m3fn: no infinities, 0x7f/0xff NaN, largest finite 448) -------------------

/** Each e4m3 pattern's value, worked out here (not taken from moekit): 1 sign, 4 exponent (bias 7), 3 mantissa bits. */
const E4M3_VALUES: Float64Array = Float64Array.from({ length: 256 }, (_, bits) => {
  const sign = bits & 0x80 ? -1 : 1;
  const exponent = (bits >> 3) & 0xf;
  const mantissa = bits & 0x7;
  if (exponent === 0xf && mantissa === 0x7) return NaN;
  return sign * (exponent === 0 ? mantissa * 2 ** -9 : (1 + mantissa / 8) * 2 ** (exponent - 7));
});

export const E4M3_MAX = 448;

export function decodeE4m3(bits: number): number {
  return E4M3_VALUES[bits & 0xff]!;
}

export function isE4m3NaN(bits: number): boolean {
  return (bits & 0x7f) === 0x7f;
}

/**
 * A float32 value's e4m3 pattern as moekit documents the conversion: rounded to nearest even,
 * saturating to ±448 (infinities too), NaN staying NaN.
 */
export function encodeE4m3(value: number): number {
  const sign = value < 0 || Object.is(value, -0) ? 0x80 : 0;
  if (Number.isNaN(value)) return 0x7f;
  const magnitude = Math.abs(value);
  if (magnitude >= E4M3_MAX) return sign | 0x7e;
  // The largest pattern at or below the magnitude (the non-negative patterns 0..0x7e increase), then the nearer of it and the next.
  let low = 0;
  let high = 0x7e;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (E4M3_VALUES[middle]! <= magnitude) low = middle;
    else high = middle - 1;
  }
  const below = E4M3_VALUES[low]!;
  if (below === magnitude) return sign | low;
  const above = E4M3_VALUES[low + 1]!;
  const twice = 2 * magnitude;
  const rounded = twice < below + above ? low : twice > below + above ? low + 1 : low % 2 === 0 ? low : low + 1;
  return sign | rounded;
}

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
    case 'permuteMaps':
    case 'pipeline': {
      // permuteMaps takes permute's arguments without the rows.
      const first = call.op === 'permuteMaps' ? 0 : 1;
      const ids = intSpec(args[first]);
      const experts = args[first + 1];
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
      const input = isFp8RowsSpec(args[0]) ? args[0].$fp8rows.data : args[0];
      const offsets = intSpec(args[2]);
      if (!isTensorSpec(input) || !offsets) return undefined;
      const inputRows = input.$tensor.shape[0] ?? 0;
      const given = optionsOf(args[3]);
      const gathered = intSpec(given.gatherRows);
      const offsetValues = indexValues(offsets);
      if (!gathered) return offsetsProblem(offsetValues, inputRows);
      // Gathered rows: the offsets count gatherRows' rows, and only rows the experts own are read.
      const problem = offsetsProblem(offsetValues, gathered.$tensor.shape[0] ?? 0);
      if (problem) return problem;
      const bound = inputRows * (typeof given.gatherDivisor === 'number' ? given.gatherDivisor : 1);
      const read = indexValues(gathered).slice(offsetValues[0] ?? 0, offsetValues[offsetValues.length - 1] ?? 0);
      const bad = firstOutside(read, 0, bound);
      return bad === undefined ? undefined : `gatherRows holds ${bad}, outside [0, ${bound})`;
    }
    case 'pipelineFp8':
      return outOfRangeReason({ ...call, op: 'pipeline' });
    default:
      return undefined;
  }
}

/** Whether a spec's values are tame: random ones, float values finite and at most 1 in magnitude, float8 patterns other than NaN. */
function tameSpec({ $tensor: { dtype, values } }: TensorSpec): boolean {
  if (dtype === 'int32' || dtype === 'uint8' || values === undefined) return true;
  if (dtype === 'float8_e4m3') return Array.from(Uint8Array.from(values)).every((bits) => !isE4m3NaN(bits));
  return values.every((value) => Number.isFinite(value) && Math.abs(value) <= 1);
}

/**
 * Whether every tensor of the call holds tame values (random ones, or small finite ones: no NaN,
 * infinities or huge values were put in), so that finite results can be expected.
 */
export function onlyRandomFloats(call: OpCase): boolean {
  const specs: TensorSpec[] = [];
  // Specs sit at most two levels down (see ops.ts materialize); junk values below may be cyclic or deep.
  const collect = (value: unknown, depth: number): void => {
    const body = wrapperBody(value);
    if (isTensorSpec(value)) specs.push(value);
    else if (body !== undefined) for (const item of Object.values(body)) collect(item, depth + 1);
    else if (depth < 2 && typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
      for (const item of Object.values(value)) collect(item, depth + 1);
    }
  };
  for (const arg of call.args) collect(arg, 0);
  return specs.every(tameSpec);
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

/** permute and permuteMaps: exactly the counting sort the contract describes (stable within an expert; -1 for other ranks' experts). */
function permuteProblem(call: OpCase, outputs: Record<string, HostArray>): string | undefined {
  // permuteMaps takes permute's arguments without the rows.
  const first = call.op === 'permuteMaps' ? 0 : 1;
  const ids = indexValues(call.args[first] as TensorSpec);
  const experts = call.args[first + 1] as number;
  const local = (optionsOf(call.args[first + 2]).localExperts as { first: number; count: number } | undefined) ?? { first: 0, count: experts };
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

/** A tensor's values as numbers: float16/bfloat16 and float8_e4m3 bits decoded. */
export function asNumbers(values: HostArray, dtype: string, codec: HalfCodec): ArrayLike<number> {
  if (dtype === 'float8_e4m3') return Float64Array.from(values, decodeE4m3);
  return dtype === 'float16' || dtype === 'bfloat16' ? codec.decodeHalf(values as Uint16Array, dtype) : values;
}

/**
 * `source` (numbers) converted to `dtype` the way moekit documents: float32 rounding, then 16-bit
 * rounding to nearest even, or e4m3 rounding to nearest even saturating at ±448.
 */
function converted(source: ArrayLike<number>, dtype: string, codec: HalfCodec): ArrayLike<number> {
  const asFloat32 = Float32Array.from(source);
  if (dtype === 'float8_e4m3') return Float64Array.from(asFloat32, (value) => decodeE4m3(encodeE4m3(value)));
  return dtype === 'float16' || dtype === 'bfloat16' ? codec.decodeHalf(codec.encodeHalf(asFloat32, dtype), dtype) : asFloat32;
}

/** fromArray: the values given, converted to the tensor's dtype. */
function fromArrayProblem(call: OpCase, output: HostArray, dtype: string, codec: HalfCodec): string | undefined {
  const data = call.args[0];
  let expected: ArrayLike<number>;
  if (data instanceof Uint8Array) {
    // float8_e4m3 bits or uint8 bytes: kept as they are, bit for bit.
    const differs = firstDifference(output, data);
    return differs ? `fromArray did not keep the ${dtype} bits: ${differs}` : undefined;
  }
  if (data instanceof Uint16Array) expected = codec.decodeHalf(data, dtype as 'float16' | 'bfloat16');
  else if (data instanceof Int32Array) expected = data;
  else if (Array.isArray(data) && dtype === 'int32') expected = Int32Array.from(data as number[]);
  else if (Array.isArray(data) && dtype === 'uint8') expected = Uint8Array.from(data as number[]);
  else expected = converted(data as ArrayLike<number>, dtype, codec);
  const differs = firstDifference(asNumbers(output, dtype, codec), expected);
  return differs ? `fromArray did not keep the values: ${differs}` : undefined;
}

/** The smallest positive value of each float dtype: the step between its subnormals. */
const SMALLEST_STEP: Readonly<Record<string, number>> = { float32: 2 ** -149, float16: 2 ** -24, bfloat16: 2 ** -133 };

/** random: finite values in [-|scale|, |scale|] (a 16-bit dtype may round onto the bound). */
function randomProblem(call: OpCase, output: HostArray, dtype: string, codec: HalfCodec): string | undefined {
  const scale = (optionsOf(call.args[1]).scale as number | undefined) ?? 1;
  if (Math.abs(scale) > 1000) return undefined;
  const values = asNumbers(output, dtype, codec);
  // A 16-bit dtype rounds onto the bound; near its subnormals any dtype rounds up to half a step past it.
  const bound = Math.abs(scale) * (1 + 2 ** -7) + (SMALLEST_STEP[dtype] ?? 0) / 2;
  for (let i = 0; i < values.length; i++) {
    if (!(Math.abs(values[i]!) <= bound)) return `random value ${i} is ${values[i]}, outside [-${Math.abs(scale)}, ${Math.abs(scale)}]`;
  }
  return undefined;
}

/** An input tensor of the call as read back after it: values, dtype, shape. */
export interface HostTensor {
  values: HostArray;
  dtype: string;
  shape: readonly number[];
}

export interface ResolvedCall {
  call: OpCase;
  /** Each output's values, by name (an Fp8Rows or QuantizedWeights output `x` as `x.data` and `x.scales`). */
  outputs: Record<string, HostArray>;
  /** Each output's dtype, by name. */
  dtypes: Record<string, string>;
  /** tensor.to: the source tensor's values and dtype, read before the call. */
  source?: { values: HostArray; dtype: string };
  /**
   * The call's input tensors read back after it, by where their specs sit (inputKey): for the ops
   * whose outputs are checked against their inputs (needsInputs).
   */
  inputs?: Record<string, HostTensor>;
}

/** Where an input tensor sits in a call: its argument, then option or part names ('0', '1.data', '3.bias'). */
export function inputKey(path: readonly (number | string)[]): string {
  return path.join('.');
}

/** Whether the call's GEMM has FP8 operands (quantized weights or FP8 input rows). */
function fp8Gemm(call: OpCase): boolean {
  return (call.op === 'groupedGemm' || call.op === 'linear') && (isQuantizedSpec(call.args[1]) || isFp8RowsSpec(call.args[0]));
}

/** Whether resolvedOutputsProblem compares the call's outputs with its inputs (then ResolvedCall.inputs is wanted). */
export function needsInputs(call: OpCase): boolean {
  return call.op === 'quantizeWeights' || call.op === 'permute' || (fp8Gemm(call) && isQuantizedSpec(call.args[1]));
}

// ---- FP8 outputs ---------------------------------------------------------------------------

/** The smallest normal float32: scales below it (other than 0) lose precision, and the checks leave them out. */
const FLOAT32_MIN_NORMAL = 2 ** -126;

function allFinite(values: ArrayLike<number>): boolean {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) return false;
  return true;
}

/**
 * How far q · scale may be from the value x it quantizes, scale = amax / 448: half an e4m3 step
 * (2^-4 relative for normals, 2^-10 · scale below 2^-6 · scale), plus float32 rounding of x / scale and q · scale.
 */
function quantizationTolerance(x: number, scale: number): number {
  return (2 ** -4 + 2 ** -20) * Math.abs(x) + 2 ** -10 * Math.abs(scale) * (1 + 2 ** -10);
}

/** A scale that the rule makes from amax: amax / 448 in float32 (within 2 ulps, for backends that divide otherwise). */
function scaleProblem(scale: number, amax: number): string | undefined {
  const expected = Math.fround(amax / E4M3_MAX);
  return Math.abs(scale - expected) <= 2 ** -22 * expected ? undefined : `scale is ${scale}, expected amax / 448 = ${amax} / 448 = ${expected}`;
}

/**
 * One group of quantized values (a 128 × 128 weight block or a row's 128 channels): scale finite
 * and not negative; a scale of 0 has every q 0; else no q is NaN and the largest |q| is 448
 * (amax / scale). With the source values x: the scale is amax / 448 and q · scale is x within
 * e4m3's precision (a NaN in x takes no part in amax and stays NaN).
 */
function groupProblem(q: Uint8Array, indices: readonly number[], scale: number, source?: ArrayLike<number>): string | undefined {
  if (!Number.isFinite(scale) || scale < 0) return `scale is ${scale}`;
  if (source !== undefined) {
    let amax = 0;
    for (const i of indices) if (!Number.isNaN(source[i]!)) amax = Math.max(amax, Math.abs(source[i]!));
    const wrong = scaleProblem(scale, amax);
    if (wrong) return wrong;
  }
  if (scale === 0) {
    // Every q is 0, except that a NaN stays NaN (with the source values known: exactly where they
    // are NaN; without them, a GEMM's FP8 output, NaN is allowed).
    for (const i of indices) {
      const nan = isE4m3NaN(q[i]!);
      const wrong = source === undefined ? !nan && decodeE4m3(q[i]!) !== 0 : Number.isNaN(source[i]!) ? !nan : decodeE4m3(q[i]!) !== 0;
      if (wrong) return `q[${i}] is ${decodeE4m3(q[i]!)} under a scale of 0`;
    }
    return undefined;
  }
  if (scale < FLOAT32_MIN_NORMAL) return undefined;
  let largest = 0;
  for (const i of indices) {
    const value = decodeE4m3(q[i]!);
    if (source !== undefined && Number.isNaN(source[i]!)) {
      if (!Number.isNaN(value)) return `q[${i}] is ${value} for a NaN`;
      continue;
    }
    if (Number.isNaN(value)) return `q[${i}] is NaN`;
    largest = Math.max(largest, Math.abs(value));
    if (source !== undefined) {
      const x = source[i]!;
      const back = Math.fround(value * scale);
      if (!(Math.abs(back - x) <= quantizationTolerance(x, scale))) return `q[${i}] · scale = ${value} · ${scale} = ${back}, but the value quantized is ${x}`;
    }
  }
  return largest === E4M3_MAX ? undefined : `the largest |q| is ${largest}, not 448, under scale ${scale}`;
}

/** The indices of matrix m's block (bn, bk) in row-major [.., rows, cols] data. */
function blockIndices(m: number, bn: number, bk: number, rows: number, cols: number): number[] {
  const indices: number[] = [];
  for (let n = bn * FP8_BLOCK; n < Math.min(rows, (bn + 1) * FP8_BLOCK); n++) {
    for (let k = bk * FP8_BLOCK; k < Math.min(cols, (bk + 1) * FP8_BLOCK); k++) indices.push((m * rows + n) * cols + k);
  }
  return indices;
}

/**
 * fp8_block128 weights made from `weights` (numbers) of `shape` ([N, K] or [E, N, K]): per 128×128
 * block, scale = amax / 448 and q · scale within e4m3's precision of each weight.
 */
export function blockQuantizationProblem(weights: ArrayLike<number>, shape: readonly number[], q: Uint8Array, scales: ArrayLike<number>): string | undefined {
  const [rows = 0, cols = 0] = shape.slice(-2);
  const matrices = shape.length === 3 ? shape[0]! : 1;
  const [rowBlocks, colBlocks] = [fp8Blocks(rows), fp8Blocks(cols)];
  if (q.length !== weights.length) return `data holds ${q.length} values for ${weights.length} weights`;
  if (scales.length !== matrices * rowBlocks * colBlocks) return `scales hold ${scales.length} values, expected ${matrices * rowBlocks * colBlocks}`;
  // NaN takes no part in amax and stays NaN; infinities (amax infinite) are left unchecked.
  for (let i = 0; i < weights.length; i++) if (Math.abs(weights[i]!) === Infinity) return undefined;
  for (let m = 0; m < matrices; m++) {
    for (let bn = 0; bn < rowBlocks; bn++) {
      for (let bk = 0; bk < colBlocks; bk++) {
        const problem = groupProblem(q, blockIndices(m, bn, bk, rows, cols), scales[(m * rowBlocks + bn) * colBlocks + bk]!, weights);
        if (problem) return `block (${m}, ${bn}, ${bk}): ${problem}`;
      }
    }
  }
  return undefined;
}

/**
 * Rows quantized by the W8A8 rule (Fp8Rows of width `width`): each row's groups of 128 channels as
 * groupProblem says; with `sourceRow`, against the values each row quantizes.
 */
export function rowQuantizationProblem(q: Uint8Array, scales: ArrayLike<number>, width: number, rows: Iterable<number>, sourceRow?: (row: number) => ArrayLike<number> | undefined): string | undefined {
  const groups = fp8Blocks(width);
  for (const row of rows) {
    const source = sourceRow?.(row);
    for (let g = 0; g < groups; g++) {
      const indices: number[] = [];
      for (let k = g * FP8_BLOCK; k < Math.min(width, (g + 1) * FP8_BLOCK); k++) indices.push(source ? k : row * width + k);
      const rowQ = source ? q.subarray(row * width, (row + 1) * width) : q;
      const problem = groupProblem(rowQ, indices, scales[row * groups + g]!, source);
      if (problem) return `row ${row}, group ${g}: ${problem}`;
    }
  }
  return undefined;
}

/** Fp8Rows.toFloat32Array's documented values: q · scale of each row's group, rounded to float32 once. */
export function fp8RowsAsFloat(q: Uint8Array, scales: ArrayLike<number>, width: number): Float32Array {
  const groups = fp8Blocks(width);
  return Float32Array.from(q, (bits, i) => decodeE4m3(bits) * scales[Math.floor(i / width) * groups + Math.floor((i % width) / FP8_BLOCK)]!);
}

// ---- GEMMs with FP8 weights ----------------------------------------------------------------

/**
 * A float row's values as a GEMM with FP8 weights uses them, by the W8A8 rule written out here in
 * float32 steps (amax / 448, x / scale, e4m3 nearest even, q · scale), and for each the size of
 * one e4m3 step there (what rounding a tie the other way would change).
 */
function w8a8Row(values: ArrayLike<number>, first: number, width: number): { values: Float64Array; step: Float64Array } {
  const quantized = new Float64Array(width);
  const step = new Float64Array(width);
  for (let begin = 0; begin < width; begin += FP8_BLOCK) {
    const end = Math.min(width, begin + FP8_BLOCK);
    let amax = 0;
    for (let k = begin; k < end; k++) amax = Math.max(amax, Math.abs(values[first + k]!));
    const scale = Math.fround(amax / E4M3_MAX);
    for (let k = begin; k < end; k++) {
      const q = scale === 0 ? 0 : decodeE4m3(encodeE4m3(Math.fround(values[first + k]! / scale)));
      quantized[k] = Math.fround(q * scale);
      step[k] = (2 ** -3 * Math.abs(q) + 2 ** -9) * scale;
    }
  }
  return { values: quantized, step };
}

function range(first: number, end: number): number[] {
  return Array.from({ length: Math.max(0, end - first) }, (_, i) => first + i);
}

/** The rows a GEMM writes, by expert: the offsets' ranges for groupedGemm, every row for linear. */
function gemmRows(call: OpCase, rows: number): number[][] {
  if (call.op === 'linear') return [range(0, rows)];
  const offsets = indexValues(call.args[2] as TensorSpec);
  return offsets.slice(0, -1).map((first, e) => range(first, offsets[e + 1]!));
}

/** Largest |error| of a float32 result rounded to `dtype`, and the magnitude past which it may overflow. */
function outputRounding(dtype: string): { relative: number; absolute: number; overflow: number } {
  switch (dtype) {
    case 'float16': return { relative: 2 ** -11, absolute: 2 ** -25, overflow: 65504 };
    case 'bfloat16': return { relative: 2 ** -8, absolute: 2 ** -134, overflow: 3.3e38 };
    default: return { relative: 2 ** -24, absolute: 2 ** -150, overflow: 3.4e38 };
  }
}

/**
 * A GEMM with FP8 weights against float math on its operands as the contract defines them: the
 * input rows by the W8A8 rule (FP8 rows as q · scale) and the weights dequantized (q · block
 * scale). Each written row's products, within what float32 accumulation, one input value rounded
 * a step the other way, and rounding the output (to a 16-bit float, or to FP8 rows by the W8A8
 * rule) may change. Only without an activation, and for finite inputs; FP8 outputs are also
 * checked for the rule's structure (groupProblem).
 */
function fp8GemmProblem(call: OpCase, resolved: ResolvedCall, codec: HalfCodec): string | undefined {
  const { outputs, dtypes } = resolved;
  const inputs = resolved.inputs ?? {};
  const grouped = call.op === 'groupedGemm';
  const optionIndex = grouped ? 3 : 2;
  const given = optionsOf(call.args[optionIndex]);
  const fp8Input = isFp8RowsSpec(call.args[0]);
  const [weightData, weightScales] = [inputs['1.data'], inputs['1.scales']];
  const input = fp8Input ? inputs['0.data'] : inputs['0'];
  const inputScales = inputs['0.scales'];
  if (!weightData || !weightScales || !input || (fp8Input && !inputScales)) return undefined;
  const [rows = 0, depth = 0] = input.shape;
  const [width = 0] = weightData.shape.slice(-2);
  const fp8Output = outputs['output.data'] !== undefined;
  // The rows as float values: FP8 rows as q · scale, float rows as they are.
  const x = fp8Input ? fp8RowsAsFloat(input.values as Uint8Array, inputScales!.values as Float32Array, depth) : asNumbers(input.values, input.dtype, codec);
  const bias = inputs[`${optionIndex}.bias`];
  const biasValues = bias ? asNumbers(bias.values, bias.dtype, codec) : undefined;
  const weightScaleValues = weightScales.values as Float32Array;
  const q = weightData.values as Uint8Array;
  // Quantized weights made from float ones: those must be what quantizeWeights makes of them.
  const from = inputs['1.from'];
  if (from) {
    const wrong = blockQuantizationProblem(asNumbers(from.values, from.dtype, codec), from.shape, q, weightScaleValues);
    if (wrong) return `quantizeWeights: ${wrong}`;
  }
  if (!allFinite(x) || !allFinite(weightScaleValues) || (biasValues && !allFinite(biasValues))) return undefined;
  if (q.some(isE4m3NaN)) return undefined;
  // Products that may overflow (huge scales) are not checked: bound every |output| first.
  const largest = (values: ArrayLike<number>): number => {
    let max = 0;
    for (let i = 0; i < values.length; i++) max = Math.max(max, Math.abs(values[i]!));
    return max;
  };
  const bound = largest(x) * E4M3_MAX * largest(weightScaleValues) * depth + (biasValues ? largest(biasValues) : 0);
  if (!(bound < 1e15)) return undefined;
  const rowsByExpert = gemmRows(call, rows);
  const outData = fp8Output ? (outputs['output.data'] as Uint8Array) : undefined;
  const outScales = fp8Output ? (outputs['output.scales'] as Float32Array) : undefined;
  if (fp8Output) {
    // [rows, width], or [rows, width / 2] after a gated activation.
    const outputWidth = rows === 0 ? 0 : outData!.length / rows;
    const structure = rowQuantizationProblem(outData!, outScales!, outputWidth, rowsByExpert.flat());
    if (structure) return `FP8 output: ${structure}`;
  }
  const activation = activationOf(given.activation);
  if (activation === undefined) return undefined;
  const outDtype = fp8Output ? 'float8_e4m3' : (dtypes.output ?? 'float32');
  const out = fp8Output ? undefined : asNumbers(outputs.output!, outDtype, codec);
  const rounding = outputRounding(outDtype);
  const [colBlocks, rowBlocks] = [fp8Blocks(depth), fp8Blocks(width)];
  const dequantized = new Float64Array(width * depth);
  const products = new Float64Array(width);
  const errors = new Float64Array(width);
  for (const [expert, expertRows] of rowsByExpert.entries()) {
    if (expertRows.length === 0) continue;
    for (let n = 0; n < width; n++) {
      for (let k = 0; k < depth; k++) {
        const at = (expert * width + n) * depth + k;
        dequantized[n * depth + k] = Math.fround(decodeE4m3(q[at]!) * weightScaleValues[(expert * rowBlocks + Math.floor(n / FP8_BLOCK)) * colBlocks + Math.floor(k / FP8_BLOCK)]!);
      }
    }
    for (const row of expertRows) {
      // The row as the GEMM uses it: FP8 rows as they are, float rows by the W8A8 rule.
      const { values: xRow, step } = fp8Input ? { values: (x as Float32Array).subarray(row * depth, (row + 1) * depth), step: new Float64Array(depth) } : w8a8Row(x, row * depth, depth);
      for (let n = 0; n < width; n++) {
        let sum = 0;
        let magnitude = 0;
        let oneStep = 0;
        for (let k = 0; k < depth; k++) {
          const w = dequantized[n * depth + k]!;
          sum += xRow[k]! * w;
          magnitude += Math.abs(xRow[k]! * w);
          oneStep = Math.max(oneStep, step[k]! * Math.abs(w));
        }
        const b = biasValues ? biasValues[grouped ? expert * width + n : n]! : 0;
        products[n] = sum + b;
        // float32 accumulation in any order, and one input value a step off (a backend dividing otherwise at a tie).
        errors[n] = oneStep + 1e-4 * magnitude + 2 ** -20 * Math.abs(b) + 1e-30;
      }
      const { values: expectedRow, errors: errorRow } = activation(products, errors);
      const outWidth = expectedRow.length;
      for (let j = 0; j < outWidth; j++) {
        const [expected, error] = [expectedRow[j]!, errorRow[j]!];
        let actual: number;
        let tolerance: number;
        if (fp8Output) {
          const scale = outScales![row * fp8Blocks(outWidth) + Math.floor(j / FP8_BLOCK)]!;
          actual = Math.fround(decodeE4m3(outData![row * outWidth + j]!) * scale);
          tolerance = error + quantizationTolerance(Math.abs(expected) + error, scale);
        } else {
          if (Math.abs(expected) + error >= rounding.overflow) continue;
          actual = out![row * outWidth + j]!;
          tolerance = error + rounding.relative * (Math.abs(expected) + error) + rounding.absolute;
        }
        // Where the math itself gives NaN (an infinite weight times a zero row, say), so must moekit.
        if (Number.isNaN(expected) || Number.isNaN(tolerance)) {
          if (Number.isNaN(actual) || !Number.isNaN(expected)) continue;
          return `output[${row}, ${j}] is ${actual}, expected NaN (float math on the W8A8 rows and dequantized weights, expert ${expert})`;
        }
        if (!(Math.abs(actual - expected) <= tolerance)) {
          return `output[${row}, ${j}] is ${actual}, expected ${expected} ± ${tolerance} (float math on the W8A8 rows and dequantized weights, expert ${expert}${given.activation ? ', then the activation' : ''})`;
        }
      }
    }
  }
  return undefined;
}

type RowActivation = (values: Float64Array, errors: Float64Array) => { values: Float64Array; errors: Float64Array };

const silu = (v: number): number => v / (1 + Math.exp(-v));

/**
 * An activation applied to a row of products known within `errors`: the values it gives and how
 * far off they may be (silu's slope is below 1.1; float32 evaluation adds a little). No
 * activation: the row as it is. Kinds other than swiglu, silu and relu: undefined (not checked).
 */
function activationOf(activation: unknown): RowActivation | undefined {
  if (activation === undefined || activation === null) return (values, errors) => ({ values, errors });
  const { kind, layout = 'halves' } = activation as { kind?: unknown; layout?: unknown };
  const rounding = (value: number): number => 2 ** -20 * Math.abs(value) + 1e-30;
  switch (kind) {
    case 'relu':
      return (values, errors) => ({ values: values.map((v) => Math.max(0, v)), errors: errors.map((e, n) => e + rounding(values[n]!)) });
    case 'silu':
      return (values, errors) => ({ values: values.map(silu), errors: errors.map((e, n) => 1.1 * e + rounding(values[n]!)) });
    case 'swiglu':
      return (values, errors) => {
        const half = values.length / 2;
        const [gate, up] = layout === 'interleaved' ? [(i: number): number => 2 * i, (i: number): number => 2 * i + 1] : [(i: number): number => i, (i: number): number => half + i];
        const out = new Float64Array(half);
        const outErrors = new Float64Array(half);
        for (let i = 0; i < half; i++) {
          const [g, u, eg, eu] = [values[gate(i)]!, values[up(i)]!, errors[gate(i)]!, errors[up(i)]!];
          out[i] = silu(g) * u;
          outErrors[i] = 1.1 * eg * (Math.abs(u) + eu) + (Math.abs(silu(g)) + 1.1 * eg) * eu + rounding(out[i]!) + 2 ** -20 * Math.abs(g * u);
        }
        return { values: out, errors: outErrors };
      };
    default:
      return undefined;
  }
}

/** The output dtype a GEMM's options ask for: outDtype, else the input's dtype (float32 for FP8 rows). */
function gemmOutputProblem(call: OpCase, dtypes: Record<string, string>): string | undefined {
  const given = optionsOf(call.args[call.op === 'groupedGemm' ? 3 : 2]);
  const input = call.args[0];
  const expected = (given.outDtype as string | undefined) ?? (isTensorSpec(input) ? input.$tensor.dtype : 'float32');
  if (expected === 'float8_e4m3') return dtypes['output.data'] === 'float8_e4m3' && dtypes['output.scales'] === 'float32' ? undefined : `outDtype float8_e4m3 gave ${JSON.stringify(dtypes)}, not Fp8Rows`;
  return dtypes.output === expected ? undefined : `the output is ${JSON.stringify(dtypes)}, expected a ${expected} Tensor`;
}

/** The FP8 pipeline's intermediates: permuted rows [T·K, H] and the first GEMM's [T·K, I], every row written, by the W8A8 rule. */
function pipelineFp8RowsProblem(call: OpCase, outputs: Record<string, HostArray>): string | undefined {
  const hidden = (call.args[0] as TensorSpec).$tensor.shape[1] ?? 0;
  const w13 = wrapperBody(call.args[3]);
  const w13Spec = (w13?.from ?? w13?.data) as TensorSpec | undefined;
  const inter = (w13Spec?.$tensor.shape[1] ?? 0) / 2;
  for (const [name, width] of [['permuted', hidden], ['h', inter]] as const) {
    const [q, scales] = [outputs[`${name}.data`] as Uint8Array | undefined, outputs[`${name}.scales`]];
    if (!q || !scales) return `${name} is not Fp8Rows`;
    const wrong = rowQuantizationProblem(q, scales, width, range(0, width === 0 ? 0 : q.length / width));
    if (wrong) return `${name}: ${wrong}`;
  }
  return undefined;
}

// ---- permute ------------------------------------------------------------------------------

/**
 * permute's rows: row p of `permuted` is the row of token permutedToSource[p] / K: bit for bit, or
 * quantized by the W8A8 rule (the same bits wherever the token goes).
 */
/** permute of Fp8Rows: each used row's FP8 bytes and scales are its token's, bit for bit. */
function copiedFp8RowsProblem(resolved: ResolvedCall, used: readonly number[], tokenOf: (row: number) => number): string | undefined {
  const { outputs } = resolved;
  const data = resolved.inputs?.['0.data'];
  const scales = resolved.inputs?.['0.scales'];
  if (!data || !scales) return undefined;
  const q = outputs['permuted.data'];
  const s = outputs['permuted.scales'];
  if (!q || !s) return `permute(Fp8Rows) gave no Fp8Rows (${Object.keys(outputs).join(', ')})`;
  const [, hidden = 0] = data.shape;
  const [, groups = 0] = scales.shape;
  for (const row of used) {
    const t = tokenOf(row);
    const differs = firstDifference(q.subarray(row * hidden, (row + 1) * hidden), data.values.subarray(t * hidden, (t + 1) * hidden)) ??
      firstDifference(new Uint32Array(Float32Array.from(s.subarray(row * groups, (row + 1) * groups)).buffer),
        new Uint32Array(Float32Array.from(scales.values.subarray(t * groups, (t + 1) * groups)).buffer));
    if (differs) return `permuted FP8 row ${row} is not token ${t}'s row and scales: ${differs}`;
  }
  return undefined;
}

function permutedRowsProblem(call: OpCase, resolved: ResolvedCall, codec: HalfCodec): string | undefined {
  const { outputs } = resolved;
  const ids = call.args[1] as TensorSpec;
  const topK = ids.$tensor.shape[1] ?? 1;
  const offsets = outputs.expertOffsets!;
  const sources = outputs.permutedToSource!;
  if (isFp8RowsSpec(call.args[0])) return copiedFp8RowsProblem(resolved, range(0, offsets[offsets.length - 1] ?? 0), (row) => Math.floor(sources[row]! / topK));
  const input = resolved.inputs?.['0'];
  if (!input) return undefined;
  const [, hidden = 0] = input.shape;
  const used = range(0, offsets[offsets.length - 1] ?? 0);
  const tokenOf = (row: number): number => Math.floor(sources[row]! / topK);
  if (outputs.permuted !== undefined) {
    for (const row of used) {
      const t = tokenOf(row);
      const differs = firstDifference(outputs.permuted.subarray(row * hidden, (row + 1) * hidden), input.values.subarray(t * hidden, (t + 1) * hidden));
      if (differs) return `permuted row ${row} is not token ${t}'s row: ${differs}`;
    }
    return undefined;
  }
  const q = outputs['permuted.data'] as Uint8Array | undefined;
  const scales = outputs['permuted.scales'] as Float32Array | undefined;
  if (!q || !scales) return `permute({ quantize: 'fp8' }) gave no Fp8Rows (${Object.keys(outputs).join(', ')})`;
  const x = asNumbers(input.values, input.dtype, codec);
  const groups = fp8Blocks(hidden);
  const firstRowOf = new Map<number, number>();
  for (const row of used) {
    const t = tokenOf(row);
    const first = firstRowOf.get(t);
    if (first === undefined) firstRowOf.set(t, row);
    else {
      const differs = firstDifference(q.subarray(row * hidden, (row + 1) * hidden), q.subarray(first * hidden, (first + 1) * hidden)) ??
        firstDifference(scales.subarray(row * groups, (row + 1) * groups), scales.subarray(first * groups, (first + 1) * groups));
      if (differs) return `token ${t} quantized differently in permuted rows ${first} and ${row}: ${differs}`;
    }
  }
  const sourceRow = (row: number): ArrayLike<number> | undefined => {
    const t = tokenOf(row);
    const values = Array.from({ length: hidden }, (_, k) => x[t * hidden + k]!);
    return values.some((value) => value === Infinity || value === -Infinity) ? undefined : values;
  };
  const rows = [...firstRowOf.values()].filter((row) => sourceRow(row) !== undefined);
  const wrong = rowQuantizationProblem(q, scales, hidden, rows, sourceRow);
  return wrong ? `permuted rows (W8A8): ${wrong}` : undefined;
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
      return permuteProblem(call, outputs) ?? permutedRowsProblem(call, resolved, codec);
    case 'permuteMaps':
      return permuteProblem(call, outputs);
    case 'groupedGemm':
    case 'linear': {
      if (!fp8Gemm(call)) {
        if (call.op === 'groupedGemm' || !output || !onlyRandomFloats(call)) return undefined;
        const bad = firstNonFinite(asNumbers(output, dtype, codec));
        return bad ? `output not finite for finite inputs: ${bad}` : undefined;
      }
      return gemmOutputProblem(call, dtypes) ?? fp8GemmProblem(call, resolved, codec);
    }
    case 'activation':
    case 'combine':
    case 'pipeline': {
      if (!output || !onlyRandomFloats(call)) return undefined;
      const bad = firstNonFinite(asNumbers(output, dtype, codec));
      return bad ? `output not finite for finite inputs: ${bad}` : undefined;
    }
    case 'pipelineFp8': {
      if (!output || !onlyRandomFloats(call)) return undefined;
      const bad = firstNonFinite(asNumbers(output, dtype, codec));
      if (bad) return `output not finite for finite inputs: ${bad}`;
      return pipelineFp8RowsProblem(call, outputs);
    }
    case 'quantizeWeights': {
      const weights = resolved.inputs?.['0'];
      const [q, scales] = [outputs['output.data'] as Uint8Array | undefined, outputs['output.scales']];
      if (!weights || !q || !scales) return undefined;
      const wrong = blockQuantizationProblem(asNumbers(weights.values, weights.dtype, codec), weights.shape, q, scales);
      return wrong ? `quantizeWeights: ${wrong}` : undefined;
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
