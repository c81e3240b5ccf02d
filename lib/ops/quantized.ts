/**
 * Quantized weights and activations (native/core/op_args.h, "Quantized weights and activations").
 *
 * - QuantizedWeights: a GEMM's weights as narrow values and their scales, in one of the formats:
 *   - 'fp8_block128', as DeepSeek-V3 and Qwen3-FP8 publish their experts: data float8_e4m3
 *     [.., N, K] and scales float32 [.., ceil(N/128), ceil(K/128)], w[n, k] = q[n, k] · scale of
 *     its 128×128 block. A GEMM with such weights computes W8A8: each input row is quantized per
 *     128 channels (scale = amax / 448, e4m3 rounded to nearest even, saturating), used as q · scale.
 *   - Weight-only formats (W8A16 / W4A16: the input stays float, the weights are dequantized),
 *     data raw bytes (uint8), scales per group of g consecutive K values of an output row:
 *     'int8': data [.., N, K], one two's-complement int8 per byte; scales float32 [.., N, ceil(K/g)].
 *     'int4': data [.., N, K/2], two int4 per byte (even k in the low nibble); scales as int8.
 *     'mxfp4' (gpt-oss as published): data [.., N, K/2], two e2m1 per byte (low nibble first);
 *     scales uint8 e8m0 [.., N, K/32] (2^(s − 127)). w[n, k] = q[n, k] · scale[n, k / g].
 * - Fp8Rows: activation rows already quantized by that rule, data float8_e4m3 [M, K] with scales
 *   float32 [M, ceil(K/128)], as permute and a GEMM's FP8 output hand them to the next GEMM. The
 *   results are the same as quantizing inside the GEMM.
 */
import { deviceIndex, type Device } from '../device';
import { describeValue, MoekitError, type MoekitErrorCode } from '../errors';
import type { DType } from '../dtype';
import { addon } from '../native';
import { Tensor } from '../tensor';
import { optionalOptions } from '../options';
import { requireDType, requireFloat, requireShape, requireTensor, withOutputs } from './validate';

/** How quantized weights are stored. */
export type WeightFormat = 'fp8_block128' | 'int8' | 'int4' | 'mxfp4';

/** Numeric codes shared with native/core/op_args.h (WeightFormat); dense weights are 0. */
export const WEIGHT_FORMAT_CODES: Readonly<Record<'dense' | WeightFormat, number>> = { dense: 0, fp8_block128: 1, int8: 2, int4: 3, mxfp4: 4 };
export const WEIGHT_FORMATS = Object.keys(WEIGHT_FORMAT_CODES).filter((name) => name !== 'dense') as readonly WeightFormat[];

/** Formats whose GEMMs leave the input float (W8A16 / W4A16); the others' is W8A8. */
export function isWeightOnly(format: WeightFormat): boolean {
  return format !== 'fp8_block128';
}

/**
 * What a layer's experts are quantized to, as `MoEConfig.quantization` names it: 'fp8' is FP8 e4m3
 * in 128×128 blocks ('fp8_block128', W8A8); 'int8' and 'int4' are weight-only integers in groups
 * along K; 'mxfp4' is gpt-oss's published 4-bit format, only read from checkpoints.
 */
export type ExpertQuantization = 'fp8' | 'int8' | 'int4' | 'mxfp4';
export const QUANTIZATION_FORMATS = { fp8: 'fp8_block128', int8: 'int8', int4: 'int4', mxfp4: 'mxfp4' } as const satisfies Record<ExpertQuantization, WeightFormat>;
export const EXPERT_QUANTIZATIONS = Object.keys(QUANTIZATION_FORMATS) as readonly ExpertQuantization[];

/** What weights can be quantized to when a layer is built (`quantize` options, `--quantize`). */
export type Quantization = Exclude<ExpertQuantization, 'mxfp4'>;
export const QUANTIZATIONS = EXPERT_QUANTIZATIONS.filter((name) => name !== 'mxfp4') as readonly Quantization[];

export function isQuantization(value: unknown): value is Quantization {
  return typeof value === 'string' && (QUANTIZATIONS as readonly string[]).includes(value);
}

export function isExpertQuantization(value: unknown): value is ExpertQuantization {
  return typeof value === 'string' && (EXPERT_QUANTIZATIONS as readonly string[]).includes(value);
}

/**
 * K values per scale of a weight-only format: a positive multiple of WEIGHT_GROUP_QUANTUM, or
 * 'channel' (one scale per output row). 'mxfp4' is always 32; 'fp8_block128' has 128×128 blocks
 * and reports 128.
 */
export type GroupSize = number | 'channel';
export const WEIGHT_GROUP_QUANTUM = 32;
export const MXFP4_GROUP_SIZE = 32;
/** The group size each format takes when none is given. */
export const DEFAULT_GROUP_SIZES: Readonly<Record<WeightFormat, GroupSize>> = { fp8_block128: 128, int8: 'channel', int4: 128, mxfp4: MXFP4_GROUP_SIZE };

/** Whether a format's group size may be chosen (int8, int4). */
function hasChosenGroups(format: WeightFormat): boolean {
  return format === 'int8' || format === 'int4';
}

/**
 * `value` checked as the group size of `format` weights (undefined: the format's default); errors
 * name it `name` (groupSize) under `where`, with `code` (E_INVALID_ARGUMENT).
 */
export function requireGroupSize(value: unknown, format: WeightFormat, where: string,
  { name = 'groupSize', code = 'E_INVALID_ARGUMENT' }: { name?: string; code?: MoekitErrorCode } = {}): GroupSize {
  if (value === undefined) return DEFAULT_GROUP_SIZES[format];
  if (!hasChosenGroups(format)) {
    if (value === DEFAULT_GROUP_SIZES[format]) return value as GroupSize;
    throw new MoekitError(code, `${where}: ${name} goes only with int8 and int4 weights (${format} has fixed groups), got ${describeValue(value)}`);
  }
  const valid = value === 'channel' || (Number.isSafeInteger(value) && (value as number) > 0 && (value as number) <= 2 ** 30 && (value as number) % WEIGHT_GROUP_QUANTUM === 0);
  if (!valid) {
    throw new MoekitError(code, `${where}: ${name} must be a positive multiple of ${WEIGHT_GROUP_QUANTUM} or 'channel', got ${describeValue(value)}`);
  }
  return value as GroupSize;
}

/** The group size as native/core/op_args.h reads it (weightGroupSize: 0 per output channel, 0 for FP8). */
export function nativeGroupSize(format: WeightFormat, groupSize: GroupSize): number {
  if (!isWeightOnly(format) || groupSize === 'channel') return 0;
  return groupSize;
}

/** The block edge of FP8 weight scales and the group width of FP8 row scales. */
export const FP8_BLOCK_SIZE = 128;

/** Scales along an extent: one per 128 values, the last for what is left. */
export function fp8Blocks(extent: number): number {
  return Math.ceil(extent / FP8_BLOCK_SIZE);
}

/** The parts of quantized weights wherever they live: Tensors on a device, or host arrays when loading. */
export interface QuantizedParts<T> {
  readonly format: WeightFormat;
  /** The narrow values: [.., N, K] (fp8_block128, int8) or their bytes [.., N, K/2] (int4, mxfp4). */
  readonly data: T;
  readonly scales: T;
  /** int8 / int4: K values per scale (absent: the format's default, DEFAULT_GROUP_SIZES). */
  readonly groupSize?: GroupSize;
}

/** The dtypes of a format's data and scales. */
export function partDTypes(format: WeightFormat): { data: 'float8_e4m3' | 'uint8'; scales: 'float32' | 'uint8' } {
  switch (format) {
    case 'fp8_block128': return { data: 'float8_e4m3', scales: 'float32' };
    case 'mxfp4': return { data: 'uint8', scales: 'uint8' };
    default: return { data: 'uint8', scales: 'float32' };
  }
}

/** Values per element of a format's data: 2 for the packed 4-bit formats. */
function valuesPerElement(format: WeightFormat): number {
  return format === 'int4' || format === 'mxfp4' ? 2 : 1;
}

/** The data's shape for weights of logical shape [.., N, K]. */
export function dataShape(format: WeightFormat, shape: readonly number[]): number[] {
  return [...shape.slice(0, -1), shape.at(-1)! / valuesPerElement(format)];
}

/** The weights' logical shape [.., N, K] for data of `shape`. */
export function logicalShape(format: WeightFormat, shape: readonly number[]): number[] {
  return [...shape.slice(0, -1), shape.at(-1)! * valuesPerElement(format)];
}

/** Scales per row of K values in groups of `groupSize` (none when K is 0). */
function scaleGroups(depth: number, groupSize: GroupSize): number {
  return depth === 0 ? 0 : Math.ceil(depth / (groupSize === 'channel' ? depth : groupSize));
}

/** The scales' shape for weights of logical shape `shape` ([.., N, K]) in `format`. */
export function scaleShape(format: WeightFormat, shape: readonly number[], groupSize: GroupSize = DEFAULT_GROUP_SIZES[format]): number[] {
  const lead = shape.slice(0, -2);
  const [rows, depth] = [shape.at(-2)!, shape.at(-1)!];
  if (format === 'fp8_block128') return [...lead, fp8Blocks(rows), fp8Blocks(depth)];
  return [...lead, rows, scaleGroups(depth, groupSize)];
}

/**
 * The shape rules a format puts on K, as an error message (undefined when K fits): int4 needs K
 * even, mxfp4 a multiple of 32.
 */
export function depthProblem(format: WeightFormat, depth: number): string | undefined {
  if (format === 'int4' && depth % 2 !== 0) return `int4 weights need an even K, got ${depth}`;
  if (format === 'mxfp4' && depth % MXFP4_GROUP_SIZE !== 0) return `mxfp4 weights need K to be a multiple of ${MXFP4_GROUP_SIZE}, got ${depth}`;
  return undefined;
}

export function requireFormat(value: unknown, where: string): WeightFormat {
  if (typeof value !== 'string' || !(WEIGHT_FORMATS as readonly string[]).includes(value)) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${where}: format must be one of ${WEIGHT_FORMATS.join(', ')}, got ${describeValue(value)}`);
  }
  return value as WeightFormat;
}

/** Both tensors on one device, which is returned. */
function commonDevice(where: string, data: Tensor, scales: Tensor): Device {
  if (data.device !== scales.device) throw new MoekitError('E_DEVICE', `${where}: scales are on ${scales.device} but data is on ${data.device}`);
  return data.device;
}

/**
 * Narrow values and their scales, held together: what QuantizedWeights and Fp8Rows share. The
 * pair is checked once (both Tensors of the dtypes given, scales of `scaleShape`, one device)
 * and owned: dispose() frees both.
 */
abstract class ScaledValues {
  readonly data: Tensor;
  readonly scales: Tensor;

  protected constructor(where: string, parts: { data: Tensor; scales: Tensor }, dtypes: { data: DType; scales: DType },
    scaleShapeOf: (data: Tensor) => readonly (number | null)[]) {
    const data = requireTensor(parts.data, where, 'data');
    const scales = requireTensor(parts.scales, where, 'scales');
    requireDType(data, where, 'data', [dtypes.data]);
    const expected = scaleShapeOf(data);
    requireDType(scales, where, 'scales', [dtypes.scales]);
    requireShape(scales, where, 'scales', expected);
    commonDevice(where, data, scales);
    this.data = data;
    this.scales = scales;
  }

  /** The values' shape. */
  get shape(): readonly number[] {
    return this.data.shape;
  }

  get device(): Device {
    return this.data.device;
  }

  /** Bytes held: values and scales. */
  get nbytes(): number {
    return this.data.nbytes + this.scales.nbytes;
  }

  get disposed(): boolean {
    return this.data.disposed || this.scales.disposed;
  }

  dispose(): void {
    this.data.dispose();
    this.scales.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

function requireParts(where: string, parts: unknown, expected: string): void {
  if (typeof parts !== 'object' || parts === null) throw new MoekitError('E_INVALID_ARGUMENT', `${where}: expected ${expected}, got ${describeValue(parts)}`);
}

/**
 * Weights held quantized, for groupedGemm and linear. Made by quantizeWeights from float weights,
 * or from parts read elsewhere (a checkpoint's FP8 or MXFP4 tensors and their scales) with `new
 * QuantizedWeights({ format, data, scales, groupSize? })`, which checks them and takes them over:
 * dispose() frees both.
 */
export class QuantizedWeights extends ScaledValues implements QuantizedParts<Tensor> {
  readonly format: WeightFormat;
  /** K values per scale ('channel': one per output row); see GroupSize. */
  readonly groupSize: GroupSize;
  readonly #shape: readonly number[];

  constructor(parts: QuantizedParts<Tensor>) {
    const where = 'QuantizedWeights';
    requireParts(where, parts, '{ format, data, scales }');
    const format = requireFormat(parts.format, where);
    const groupSize = requireGroupSize(parts.groupSize, format, where);
    let shape: number[] = [];
    super(where, parts, partDTypes(format), (data) => {
      if (data.shape.length !== 2 && data.shape.length !== 3) {
        throw new MoekitError('E_SHAPE', `${where}: data must be [N, K] or [E, N, K]${valuesPerElement(format) === 2 ? ' (K/2 bytes per row)' : ''}, got ${describeValue(data.shape)}`);
      }
      shape = logicalShape(format, data.shape);
      const problem = depthProblem(format, shape.at(-1)!);
      if (problem) throw new MoekitError('E_SHAPE', `${where}: ${problem}`);
      return scaleShape(format, shape, groupSize);
    });
    this.format = format;
    this.groupSize = groupSize;
    this.#shape = shape;
  }

  /** The logical weight shape [.., N, K] (the data of the 4-bit formats holds K/2 bytes per row). */
  override get shape(): readonly number[] {
    return this.#shape;
  }

  /** A copy on another device. */
  to(device: Device): QuantizedWeights {
    const data = this.data.to(device);
    try {
      return new QuantizedWeights({ format: this.format, data, scales: this.scales.to(device), groupSize: this.groupSize });
    } catch (error) {
      data.dispose();
      throw error;
    }
  }

  override toString(): string {
    return `QuantizedWeights(${this.format}, [${this.shape.join(', ')}], ${this.device}${this.disposed ? ', disposed' : ''})`;
  }
}

/** What quantizeWeights makes: the formats with an at-load rule (mxfp4 is only read). */
export type QuantizableFormat = Exclude<WeightFormat, 'mxfp4'>;

export interface QuantizeWeightsOptions {
  /** int8 / int4: K values per scale, a positive multiple of 32 or 'channel' (default: int8 'channel', int4 128). */
  groupSize?: GroupSize;
}

/**
 * Quantizes float weights ([N, K] or [E, N, K], PyTorch Linear layout) on their device, as a loader
 * does with a 16-bit checkpoint.
 * - 'fp8_block128': per 128×128 block of each matrix (partial at the edges), scale = block amax /
 *   448 (float32) and q = e4m3(w / scale), rounded to nearest even.
 * - 'int8' / 'int4': per group of groupSize consecutive K values of an output row (the last group
 *   may be shorter), scale = amax / 127 (int8) or amax / 7 (int4), q = clamp(roundHalfEven(w /
 *   scale), −127, 127) or (−8, 7); a group holding a NaN or an infinity gets scale NaN and q = 0.
 */
export function quantizeWeights(weights: Tensor, format: QuantizableFormat, options?: QuantizeWeightsOptions | null): QuantizedWeights {
  const op = 'quantizeWeights';
  requireTensor(weights, op, 'weights');
  requireFloat(weights, op, 'weights');
  const checkedFormat = requireFormat(format, op);
  if (checkedFormat === 'mxfp4') {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: mxfp4 weights are only read from checkpoints (as gpt-oss publishes them); quantize to int4 or int8 instead`);
  }
  const given = optionalOptions(options, `${op}: options`);
  const groupSize = requireGroupSize(given.groupSize, checkedFormat, op);
  if (weights.shape.length !== 2 && weights.shape.length !== 3) {
    throw new MoekitError('E_SHAPE', `${op}: weights must be [N, K] or [E, N, K], got [${weights.shape.join(', ')}]`);
  }
  const problem = depthProblem(checkedFormat, weights.shape.at(-1)!);
  if (problem) throw new MoekitError('E_SHAPE', `${op}: ${problem}`);
  const { device } = weights;
  const dtypes = partDTypes(checkedFormat);
  const parts = withOutputs(
    () => ({
      data: Tensor.empty(dataShape(checkedFormat, weights.shape), { dtype: dtypes.data, device }),
      scales: Tensor.empty(scaleShape(checkedFormat, weights.shape, groupSize), { dtype: dtypes.scales, device }),
    }),
    (out) =>
      addon().quantizeWeights(deviceIndex(device), {
        input: weights.toNative(),
        format: WEIGHT_FORMAT_CODES[checkedFormat],
        groupSize: nativeGroupSize(checkedFormat, groupSize),
        output: out.data.toNative(),
        scales: out.scales.toNative(),
      }),
  );
  return new QuantizedWeights({ format: checkedFormat, ...parts, groupSize });
}

/**
 * Activation rows quantized by the W8A8 rule: data float8_e4m3 [M, K], scales float32
 * [M, ceil(K/128)] (row r's channels [128g, 128g + 128) are q · scales[r, g]). permute({ quantize:
 * 'fp8' }) and GEMMs with outDtype 'float8_e4m3' make them; GEMMs with quantized weights take them.
 * `new Fp8Rows({ data, scales })` checks the parts and takes them over: dispose() frees both.
 */
export class Fp8Rows extends ScaledValues {
  constructor(parts: { data: Tensor; scales: Tensor }) {
    const where = 'Fp8Rows';
    requireParts(where, parts, '{ data, scales }');
    super(where, parts, { data: 'float8_e4m3', scales: 'float32' }, (data) => {
      const [rows, width] = requireShape(data, where, 'data', [null, null]) as [number, number];
      return [rows, fp8Blocks(width)];
    });
  }

  /** The values the rows stand for, q · scale, once the work that makes them is done. */
  async toFloat32Array(): Promise<Float32Array> {
    const [values, scales] = await Promise.all([this.data.toFloat32Array(), this.scales.toArray() as Promise<Float32Array>]);
    const width = this.shape[1]!;
    const groups = fp8Blocks(width);
    for (let i = 0; i < values.length; i++) {
      const row = Math.floor(i / width);
      values[i] = Math.fround(values[i]! * scales[row * groups + Math.floor((i % width) / FP8_BLOCK_SIZE)]!);
    }
    return values;
  }

  override toString(): string {
    return `Fp8Rows([${this.shape.join(', ')}], ${this.device}${this.disposed ? ', disposed' : ''})`;
  }
}

/** An op's input rows: a Tensor, or Fp8Rows (FP8 rows with their scales), not disposed. */
export function requireRows(value: unknown, op: string): Tensor | Fp8Rows {
  if (!(value instanceof Fp8Rows) && !(value instanceof Tensor)) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: input must be a Tensor or Fp8Rows, got ${describeValue(value)}`);
  }
  if (value.disposed) throw new MoekitError('E_DISPOSED', `${op}: input was used after dispose()`);
  return value;
}
