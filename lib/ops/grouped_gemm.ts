import { deviceIndex, type Device } from '../device';
import type { FloatDType } from '../dtype';
import { describeValue, MoekitError } from '../errors';
import type { ActivationKind } from '../vocabulary';
import { addon, type NativeQuantizedGemm, type NativeTensor } from '../native';
import { optionalOptions, requiredObject } from '../options';
import { nativeActivation, type ActivationParameters, type NativeActivation } from './activation';
import { fp8Blocks, Fp8Rows, isWeightOnly, nativeGroupSize, QuantizedWeights, requireFormat, requireGroupSize, requireRows, WEIGHT_FORMAT_CODES } from './quantized';
import { Tensor } from '../tensor';
import { MAX_EXPERTS, requireDType, requireFloat, requireInteger, requireSameDevice, requireShape, requireTensor, withOutputs } from './validate';

/** A GEMM's input rows: float, or FP8 with their scales (for quantized weights). */
export type GemmInput = Tensor | Fp8Rows;
/** A GEMM's weights: float, or quantized. */
export type GemmWeights = Tensor | QuantizedWeights;

export interface GemmOptions {
  /** Bias added to every output row: [E, N] for groupedGemm, [N] for linear. */
  bias?: Tensor;
  /**
   * float32, or the input's dtype (the default). Accumulation is float32 either way. With
   * fp8_block128 weights any float dtype (the default for Fp8Rows input: float32), or
   * 'float8_e4m3': the results quantized by the W8A8 rule, returned as Fp8Rows for the next GEMM.
   * Weight-only weights (int8, int4, mxfp4) take what dense weights take.
   */
  outDtype?: FloatDType | 'float8_e4m3';
}

export interface GroupedGemmOptions extends GemmOptions {
  /**
   * An activation applied to the float32 products (after the bias) before anything is rounded;
   * only its result is written, [M, N/2] for gated kinds. The CUDA backend fuses it into the
   * GEMM where it can, which saves writing and re-reading the [M, N] products.
   */
  activation?: { kind: ActivationKind } & ActivationParameters;
  /**
   * An upper bound on the rows of any one expert, when the caller knows one (a layer passes its
   * token count: a token visits an expert at most once). It only picks the kernel (small bounds
   * take the decode kernel); results never depend on it.
   */
  maxRowsPerExpert?: number;
  /**
   * Gathered rows: row r of the product reads input row floor(gatherRows[r] / gatherDivisor) in
   * place of input row r. int32 [M] on the input's device; the input may then have any number of
   * rows T, and the output (and expertOffsets) count M = gatherRows.shape[0] rows. permuteMaps()
   * gives such rows, so the token rows are read where they are instead of being permuted first:
   * `permuteMaps(topkIds, E).permutedToSource` with gatherDivisor topK (the pair index
   * t·topK + j names token t). Only rows inside an expert's range are read; a value there outside
   * [0, T · gatherDivisor) poisons the output (E_INVALID_ARGUMENT naming gatherRows, when it is
   * read). Not with Fp8Rows input: FP8 rows are permuted with their scales.
   */
  gatherRows?: Tensor;
  /** What gatherRows' values are divided by (integer division): a positive 32-bit integer, 1 by default; only with gatherRows. */
  gatherDivisor?: number;
}

/** Options whose output is float (a Tensor), and those whose output is FP8 rows. */
type FloatOut<T extends GemmOptions> = T & { outDtype?: FloatDType };
type Fp8Out<T extends GemmOptions> = T & { outDtype: 'float8_e4m3' };

/** Input and weights checked against each other; what the native call needs of them. */
interface CheckedOperands {
  rows: number;
  /** [N, K] or [E, N, K] */
  weightShape: readonly number[];
  device: Device;
  /** fp8_block128 weights (W8A8): FP8 input rows and outputs are allowed. */
  w8a8: boolean;
  /** The input's dtype when it is float. */
  inputDType: FloatDType | undefined;
  native: NativeQuantizedGemm & { input: ReturnType<Tensor['toNative']>; weights: ReturnType<Tensor['toNative']> };
}

function checkOperands(op: string, input: GemmInput, weights: GemmWeights, weightsName: string, weightRank: 2 | 3): CheckedOperands {
  requireRows(input, op);
  const fp8Input = input instanceof Fp8Rows;
  const quantized = weights instanceof QuantizedWeights;
  if (!quantized && !(weights instanceof Tensor)) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: ${weightsName} must be a Tensor or QuantizedWeights, got ${describeValue(weights)}`);
  }
  if (weights.disposed) throw new MoekitError('E_DISPOSED', `${op}: ${weightsName} was used after dispose()`);
  const inputData = fp8Input ? input.data : input;
  const weightData = quantized ? weights.data : weights;
  const w8a8 = quantized && !isWeightOnly(weights.format);
  if (!quantized) requireFloat(weightData, op, weightsName);
  if (fp8Input && !w8a8) {
    const what = quantized ? `${weights.format} QuantizedWeights (weight-only: the input stays float)` : `a ${weightData.dtype} Tensor`;
    throw new MoekitError('E_DTYPE', `${op}: FP8 input rows (Fp8Rows) need fp8_block128 weights, but ${weightsName} is ${what}`);
  }
  if (!fp8Input) requireFloat(inputData, op, 'input');
  const [rows, inFeatures] = requireShape(inputData, op, 'input', [null, null]) as [number, number];
  const expected = weightRank === 3 ? [null, null, inFeatures] : [null, inFeatures];
  const weightShape = quantized ? requireLogicalShape(weights, op, weightsName, expected) : requireShape(weightData, op, weightsName, expected);
  const device = requireSameDevice(op, { input: inputData, [weightsName]: weightData });
  const native: CheckedOperands['native'] = { input: inputData.toNative(), weights: weightData.toNative() };
  if (fp8Input) native.inputScales = input.scales.toNative();
  if (quantized) {
    // Checked again: a JavaScript caller can reassign the fields after construction.
    const format = requireFormat(weights.format, `${op}: ${weightsName}`);
    native.weightScales = weights.scales.toNative();
    native.weightFormat = WEIGHT_FORMAT_CODES[format];
    const groupSize = nativeGroupSize(format, requireGroupSize(weights.groupSize, format, `${op}: ${weightsName}`));
    if (groupSize !== 0) native.weightGroupSize = groupSize;
  }
  return { rows, weightShape, device, w8a8, inputDType: fp8Input ? undefined : (inputData.dtype as FloatDType), native };
}

/** Quantized weights' logical shape [.., N, K] checked against `expected` (as requireShape does a tensor's). */
function requireLogicalShape(weights: QuantizedWeights, op: string, name: string, expected: readonly (number | null)[]): readonly number[] {
  const { shape } = weights;
  const matches = shape.length === expected.length && expected.every((extent, axis) => extent === null || shape[axis] === extent);
  if (!matches) {
    const wanted = `[${expected.map((extent) => (extent === null ? '*' : String(extent))).join(', ')}]`;
    throw new MoekitError('E_SHAPE', `${op}: ${name} must have shape ${wanted}, got [${shape.join(', ')}]`);
  }
  return shape;
}

/** The output dtype: float32 or the input's for dense and weight-only weights; any float or float8_e4m3 for fp8_block128 ones. */
function outputDType(op: string, operands: CheckedOperands, requested: FloatDType | 'float8_e4m3' | undefined): FloatDType | 'float8_e4m3' {
  const { inputDType, w8a8 } = operands;
  if (requested === undefined) return inputDType ?? 'float32';
  if (w8a8) {
    if (requested === 'float8_e4m3' || requested === 'float32' || requested === 'float16' || requested === 'bfloat16') return requested;
    throw new MoekitError('E_DTYPE', `${op}: outDtype must be float32, float16, bfloat16 or float8_e4m3, got ${describeValue(requested)}`);
  }
  if (requested === 'float8_e4m3') throw new MoekitError('E_DTYPE', `${op}: outDtype float8_e4m3 needs fp8_block128 weights`);
  if (requested !== 'float32' && requested !== inputDType) {
    throw new MoekitError('E_DTYPE', `${op}: outDtype must be float32 or the input dtype ${inputDType}, got ${describeValue(requested)}`);
  }
  return requested;
}

/** A tensor that goes with the operands: on the input's device. */
function requireInputDevice(tensor: Tensor, op: string, name: string, operands: CheckedOperands): void {
  if (tensor.device !== operands.device) throw new MoekitError('E_DEVICE', `${op}: ${name} is on ${tensor.device} but input is on ${operands.device}`);
}

/** The bias: float, of `shape`, on the operands' device; for dense weights also of the weights' dtype. */
function checkBias(op: string, bias: Tensor | undefined, shape: number[], operands: CheckedOperands, weights: GemmWeights): void {
  if (bias === undefined) return;
  requireTensor(bias, op, 'bias');
  requireFloat(bias, op, 'bias');
  requireShape(bias, op, 'bias', shape);
  if (weights instanceof Tensor) requireDType(bias, op, 'bias', [weights.dtype]);
  requireInputDevice(bias, op, 'bias', operands);
}

/** The product's rows: the input's, or gatherRows' with the native fields that gather them. */
interface ProductRows {
  rows: number;
  native: { gatherRows?: NativeTensor; gatherDivisor?: number };
}

/** options.gatherRows and gatherDivisor checked against the input (absent: undefined or null). */
function productRows(op: string, given: Partial<GroupedGemmOptions>, input: GemmInput, operands: CheckedOperands): ProductRows {
  const gatherRows = given.gatherRows ?? undefined;
  const gatherDivisor = given.gatherDivisor ?? undefined;
  if (gatherRows === undefined) {
    if (gatherDivisor !== undefined) throw new MoekitError('E_INVALID_ARGUMENT', `${op}: gatherDivisor goes only with gatherRows`);
    return { rows: operands.rows, native: {} };
  }
  requireTensor(gatherRows, op, 'gatherRows');
  if (input instanceof Fp8Rows) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: gatherRows does not go with Fp8Rows input (FP8 rows are permuted with their scales)`);
  }
  requireDType(gatherRows, op, 'gatherRows', ['int32']);
  const [rows] = requireShape(gatherRows, op, 'gatherRows', [null]) as [number];
  requireInputDevice(gatherRows, op, 'gatherRows', operands);
  const divisor = requireInteger(gatherDivisor ?? 1, op, 'gatherDivisor', 1, 2 ** 31 - 1);
  return { rows, native: { gatherRows: gatherRows.toNative(), gatherDivisor: divisor } };
}

/**
 * Makes the output [rows, width] (with its row scales for FP8), runs `call` with the native output
 * fields, and returns the output as a Tensor or Fp8Rows.
 */
function runGemm(rows: number, width: number, dtype: FloatDType | 'float8_e4m3', device: Device,
  call: (output: { output: ReturnType<Tensor['toNative']>; outputScales?: ReturnType<Tensor['toNative']> }) => void): Tensor | Fp8Rows {
  if (dtype !== 'float8_e4m3') {
    return withOutputs(() => ({ output: Tensor.empty([rows, width], { dtype, device }) }), (out) => call({ output: out.output.toNative() })).output;
  }
  const out = withOutputs(
    () => ({ data: Tensor.empty([rows, width], { dtype, device }), scales: Tensor.empty([rows, fp8Blocks(width)], { dtype: 'float32', device }) }),
    (made) => call({ output: made.data.toNative(), outputScales: made.scales.toNative() }),
  );
  return new Fp8Rows(out);
}
/** options.activation checked: absent (undefined or null) is none; given, it needs a kind. */
function fusedActivation(op: string, activation: GroupedGemmOptions['activation'] | null): NativeActivation | undefined {
  if (activation === undefined || activation === null) return undefined;
  const { kind } = requiredObject(activation, `${op}: options.activation`, ['kind']);
  return nativeActivation(op, kind, activation);
}

/**
 * Per-expert matrix products over expert-sorted rows: for each expert e and row r in
 * [offsets[e], offsets[e+1]), output[r] = input[r] · weights[e]ᵀ (+ bias[e]).
 * input [M, K]; weights [E, N, K] (PyTorch Linear layout); expertOffsets [E+1] int32, read on the
 * device. Rows outside [offsets[0], offsets[E]) are left as they were.
 *
 * With options.gatherRows, row r reads input row floor(gatherRows[r] / gatherDivisor) instead of
 * row r: groupedGemm(x, w, expertOffsets, { gatherRows: permutedToSource, gatherDivisor: topK })
 * with permuteMaps(topkIds, E)'s maps equals groupedGemm(permute(x, topkIds, E).permuted, w,
 * expertOffsets), without the copy of the rows; the output has gatherRows.shape[0] rows.
 *
 * With fp8_block128 QuantizedWeights the product is W8A8 (see lib/ops/quantized.ts): the input,
 * float or Fp8Rows, is used as its per-row-per-128 quantization q · scale; outDtype 'float8_e4m3'
 * returns the output quantized the same way (Fp8Rows), ready for the next GEMM. With weight-only
 * QuantizedWeights (int8, int4, mxfp4) the input stays float and the weights are dequantized
 * (w = q · scale of its group), accumulating in float32.
 */
export function groupedGemm(input: GemmInput, weights: GemmWeights, expertOffsets: Tensor, options?: FloatOut<GroupedGemmOptions> | null): Tensor;
export function groupedGemm(input: GemmInput, weights: GemmWeights, expertOffsets: Tensor, options: Fp8Out<GroupedGemmOptions>): Fp8Rows;
export function groupedGemm(input: GemmInput, weights: GemmWeights, expertOffsets: Tensor, options?: GroupedGemmOptions | null): Tensor | Fp8Rows;
export function groupedGemm(input: GemmInput, weights: GemmWeights, expertOffsets: Tensor, options?: GroupedGemmOptions | null): Tensor | Fp8Rows {
  const op = 'groupedGemm';
  const given = optionalOptions(options, `${op}: options`);
  const operands = checkOperands(op, input, weights, 'weights', 3);
  const [experts, outFeatures] = operands.weightShape as [number, number, number];
  if (experts > MAX_EXPERTS) throw new MoekitError('E_SHAPE', `${op}: weights hold ${experts} experts, more than the ${MAX_EXPERTS} moekit takes`);
  requireTensor(expertOffsets, op, 'expertOffsets');
  requireDType(expertOffsets, op, 'expertOffsets', ['int32']);
  requireShape(expertOffsets, op, 'expertOffsets', [experts + 1]);
  requireInputDevice(expertOffsets, op, 'expertOffsets', operands);
  const product = productRows(op, given, input, operands);
  checkBias(op, given.bias, [experts, outFeatures], operands, weights);
  const dtype = outputDType(op, operands, given.outDtype);
  const act = fusedActivation(op, given.activation);
  if (act?.gated && outFeatures % 2 !== 0) {
    throw new MoekitError('E_SHAPE', `${op}: a gated activation needs an even number of weight rows, got ${outFeatures}`);
  }
  const maxRowsPerExpert = given.maxRowsPerExpert;
  if (maxRowsPerExpert !== undefined && !(Number.isSafeInteger(maxRowsPerExpert) && maxRowsPerExpert >= 1 && maxRowsPerExpert <= 2 ** 31 - 1)) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: maxRowsPerExpert must be a positive 32-bit integer, got ${describeValue(maxRowsPerExpert)}`);
  }
  const outWidth = act?.gated ? outFeatures / 2 : outFeatures;
  return runGemm(product.rows, outWidth, dtype, operands.device, (output) =>
    addon().groupedGemm(deviceIndex(operands.device), {
      ...operands.native,
      ...product.native,
      bias: given.bias?.toNative(),
      expertOffsets: expertOffsets.toNative(),
      ...output,
      ...(act && { activation: act.kind, layout: act.layout, alpha: act.alpha, limit: act.limit }),
      ...(maxRowsPerExpert !== undefined && { maxRowsPerExpert }),
    }),
  );
}

/**
 * A dense projection: output = input · weightᵀ (+ bias). input [M, K], weight [N, K]. Quantized
 * weights and FP8 rows as for groupedGemm.
 */
export function linear(input: GemmInput, weight: GemmWeights, options?: FloatOut<GemmOptions> | null): Tensor;
export function linear(input: GemmInput, weight: GemmWeights, options: Fp8Out<GemmOptions>): Fp8Rows;
export function linear(input: GemmInput, weight: GemmWeights, options?: GemmOptions | null): Tensor | Fp8Rows;
export function linear(input: GemmInput, weight: GemmWeights, options?: GemmOptions | null): Tensor | Fp8Rows {
  const op = 'linear';
  const given = optionalOptions(options, `${op}: options`);
  const operands = checkOperands(op, input, weight, 'weight', 2);
  const [outFeatures] = operands.weightShape as [number, number];
  checkBias(op, given.bias, [outFeatures], operands, weight);
  const dtype = outputDType(op, operands, given.outDtype);
  const { weights, ...native } = operands.native;
  return runGemm(operands.rows, outFeatures, dtype, operands.device, (output) =>
    addon().linear(deviceIndex(operands.device), { ...native, weight: weights, bias: given.bias?.toNative(), ...output }),
  );
}
