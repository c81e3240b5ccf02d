/**
 * Quantized weights and activations (native/core/op_args.h, "Quantized weights and activations").
 *
 * - QuantizedWeights: a GEMM's weights as narrow values and their scales. The one format so far,
 *   'fp8_block128', is how DeepSeek-V3 and Qwen3-FP8 publish their experts: data float8_e4m3
 *   [.., N, K] and scales float32 [.., ceil(N/128), ceil(K/128)], w[n, k] = q[n, k] · scale of its
 *   128×128 block. A GEMM with such weights computes W8A8: each input row is quantized per 128
 *   channels (scale = amax / 448, e4m3 rounded to nearest even, saturating) and used as q · scale.
 * - Fp8Rows: activation rows already quantized by that rule, data float8_e4m3 [M, K] with scales
 *   float32 [M, ceil(K/128)], as permute and a GEMM's FP8 output hand them to the next GEMM. The
 *   results are the same as quantizing inside the GEMM.
 */
import { deviceIndex, type Device } from '../device';
import { describeValue, MoekitError } from '../errors';
import { addon } from '../native';
import { Tensor } from '../tensor';
import { requireDType, requireFloat, requireShape, requireTensor, withOutputs } from './validate';

/** How quantized weights are stored (more formats to come: int8, int4, MXFP4). */
export type WeightFormat = 'fp8_block128';
export const WEIGHT_FORMATS: readonly WeightFormat[] = ['fp8_block128'];

/** Numeric codes shared with native/core/op_args.h (WeightFormat); dense weights are 0. */
export const WEIGHT_FORMAT_CODES: Readonly<Record<'dense' | WeightFormat, number>> = { dense: 0, fp8_block128: 1 };

/**
 * What a layer's experts are quantized to, as `quantize` options, `--quantize` and
 * `MoEConfig.quantization` name it: 'fp8' is FP8 e4m3 in 128×128 blocks ('fp8_block128'),
 * computed W8A8.
 */
export type Quantization = 'fp8';
export const QUANTIZATIONS: readonly Quantization[] = ['fp8'];
export const QUANTIZATION_FORMATS: Readonly<Record<Quantization, WeightFormat>> = { fp8: 'fp8_block128' };

export function isQuantization(value: unknown): value is Quantization {
  return typeof value === 'string' && (QUANTIZATIONS as readonly string[]).includes(value);
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
  /** The narrow values, in the weights' shape ([N, K] or [E, N, K]). */
  readonly data: T;
  readonly scales: T;
}

/** The scales' shape for weights of `shape` ([.., N, K]) in `format`. */
export function scaleShape(format: WeightFormat, shape: readonly number[]): number[] {
  switch (format) {
    case 'fp8_block128': return [...shape.slice(0, -2), fp8Blocks(shape.at(-2)!), fp8Blocks(shape.at(-1)!)];
  }
}

function requireFormat(value: unknown, where: string): WeightFormat {
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
 * pair is checked once (both Tensors, float8_e4m3 values, float32 scales of `scaleShape`, one
 * device) and owned: dispose() frees both.
 */
abstract class ScaledValues {
  readonly data: Tensor;
  readonly scales: Tensor;

  protected constructor(where: string, parts: { data: Tensor; scales: Tensor }, scaleShapeOf: (data: Tensor) => readonly (number | null)[]) {
    const data = requireTensor(parts.data, where, 'data');
    const scales = requireTensor(parts.scales, where, 'scales');
    requireDType(data, where, 'data', ['float8_e4m3']);
    const expected = scaleShapeOf(data);
    requireDType(scales, where, 'scales', ['float32']);
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
 * or from parts read elsewhere (a checkpoint's FP8 tensors and their scales) with `new
 * QuantizedWeights({ format, data, scales })`, which checks them and takes them over:
 * dispose() frees both.
 */
export class QuantizedWeights extends ScaledValues implements QuantizedParts<Tensor> {
  readonly format: WeightFormat;

  constructor(parts: QuantizedParts<Tensor>) {
    const where = 'QuantizedWeights';
    requireParts(where, parts, '{ format, data, scales }');
    const format = requireFormat(parts.format, where);
    super(where, parts, (data) => {
      if (data.shape.length !== 2 && data.shape.length !== 3) {
        throw new MoekitError('E_SHAPE', `${where}: data must be [N, K] or [E, N, K], got ${describeValue(data.shape)}`);
      }
      return scaleShape(format, data.shape);
    });
    this.format = format;
  }

  /** A copy on another device. */
  to(device: Device): QuantizedWeights {
    const data = this.data.to(device);
    try {
      return new QuantizedWeights({ format: this.format, data, scales: this.scales.to(device) });
    } catch (error) {
      data.dispose();
      throw error;
    }
  }

  override toString(): string {
    return `QuantizedWeights(${this.format}, [${this.shape.join(', ')}], ${this.device}${this.disposed ? ', disposed' : ''})`;
  }
}

/**
 * Quantizes float weights ([N, K] or [E, N, K], PyTorch Linear layout) on their device, as a loader
 * does with a 16-bit checkpoint. 'fp8_block128': per 128×128 block of each matrix (partial at the
 * edges), scale = block amax / 448 (float32) and q = e4m3(w / scale), rounded to nearest even.
 */
export function quantizeWeights(weights: Tensor, format: WeightFormat): QuantizedWeights {
  const op = 'quantizeWeights';
  requireTensor(weights, op, 'weights');
  requireFloat(weights, op, 'weights');
  const checkedFormat = requireFormat(format, op);
  if (weights.shape.length !== 2 && weights.shape.length !== 3) {
    throw new MoekitError('E_SHAPE', `${op}: weights must be [N, K] or [E, N, K], got [${weights.shape.join(', ')}]`);
  }
  const { device } = weights;
  const parts = withOutputs(
    () => ({
      data: Tensor.empty(weights.shape, { dtype: 'float8_e4m3', device }),
      scales: Tensor.empty(scaleShape(checkedFormat, weights.shape), { dtype: 'float32', device }),
    }),
    (out) =>
      addon().quantizeWeights(deviceIndex(device), {
        input: weights.toNative(),
        format: WEIGHT_FORMAT_CODES[checkedFormat],
        output: out.data.toNative(),
        scales: out.scales.toNative(),
      }),
  );
  return new QuantizedWeights({ format: checkedFormat, ...parts });
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
    super(where, parts, (data) => {
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
