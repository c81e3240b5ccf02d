import { deviceIndex } from '../device';
import type { FloatDType } from '../dtype';
import { describeValue, MoekitError } from '../errors';
import type { ActivationKind } from '../layer/config';
import { addon } from '../native';
import { optionalOptions, requiredObject } from '../options';
import { nativeActivation, type ActivationParameters, type NativeActivation } from './activation';
import { Tensor } from '../tensor';
import { MAX_EXPERTS, requireDType, requireFloat, requireSameDevice, requireShape, requireTensor, withOutputs } from './validate';

export interface GemmOptions {
  /** Bias added to every output row: [E, N] for groupedGemm, [N] for linear. */
  bias?: Tensor;
  /** float32, or the input's dtype (the default). Accumulation is float32 either way. */
  outDtype?: FloatDType;
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
}

function outputDType(op: string, input: Tensor, requested: FloatDType | undefined): FloatDType {
  const dtype = requested ?? (input.dtype as FloatDType);
  if (dtype !== 'float32' && dtype !== input.dtype) {
    throw new MoekitError('E_DTYPE', `${op}: outDtype must be float32 or the input dtype ${input.dtype}, got ${describeValue(dtype)}`);
  }
  return dtype;
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
 */
export function groupedGemm(input: Tensor, weights: Tensor, expertOffsets: Tensor, options?: GroupedGemmOptions | null): Tensor {
  const op = 'groupedGemm';
  const given = optionalOptions(options, `${op}: options`);
  requireTensor(input, op, 'input');
  requireTensor(weights, op, 'weights');
  requireTensor(expertOffsets, op, 'expertOffsets');
  requireFloat(input, op, 'input');
  requireFloat(weights, op, 'weights');
  requireDType(expertOffsets, op, 'expertOffsets', ['int32']);
  const [rows, inFeatures] = requireShape(input, op, 'input', [null, null]) as [number, number];
  const [experts, outFeatures] = requireShape(weights, op, 'weights', [null, null, inFeatures]) as [number, number, number];
  if (experts > MAX_EXPERTS) throw new MoekitError('E_SHAPE', `${op}: weights hold ${experts} experts, more than the ${MAX_EXPERTS} moekit takes`);
  requireShape(expertOffsets, op, 'expertOffsets', [experts + 1]);
  const bias = given.bias;
  if (bias !== undefined) {
    requireTensor(bias, op, 'bias');
    requireFloat(bias, op, 'bias');
    requireShape(bias, op, 'bias', [experts, outFeatures]);
    requireDType(bias, op, 'bias', [weights.dtype]);
  }
  const device = requireSameDevice(op, { input, weights, expertOffsets, bias });
  const dtype = outputDType(op, input, given.outDtype);
  const act = fusedActivation(op, given.activation);
  if (act?.gated && outFeatures % 2 !== 0) {
    throw new MoekitError('E_SHAPE', `${op}: a gated activation needs an even number of weight rows, got ${outFeatures}`);
  }
  const maxRowsPerExpert = given.maxRowsPerExpert;
  if (maxRowsPerExpert !== undefined && !(Number.isSafeInteger(maxRowsPerExpert) && maxRowsPerExpert >= 1 && maxRowsPerExpert <= 2 ** 31 - 1)) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: maxRowsPerExpert must be a positive 32-bit integer, got ${describeValue(maxRowsPerExpert)}`);
  }
  const outWidth = act?.gated ? outFeatures / 2 : outFeatures;
  return withOutputs(
    () => ({ output: Tensor.empty([rows, outWidth], { dtype, device }) }),
    (out) =>
      addon().groupedGemm(deviceIndex(device), {
        input: input.toNative(),
        weights: weights.toNative(),
        bias: bias?.toNative(),
        expertOffsets: expertOffsets.toNative(),
        output: out.output.toNative(),
        ...(act && { activation: act.kind, layout: act.layout, alpha: act.alpha, limit: act.limit }),
        ...(maxRowsPerExpert !== undefined && { maxRowsPerExpert }),
      }),
  ).output;
}

/** A dense projection: output = input · weightᵀ (+ bias). input [M, K], weight [N, K]. */
export function linear(input: Tensor, weight: Tensor, options?: GemmOptions | null): Tensor {
  const op = 'linear';
  const given = optionalOptions(options, `${op}: options`);
  requireTensor(input, op, 'input');
  requireTensor(weight, op, 'weight');
  requireFloat(input, op, 'input');
  requireFloat(weight, op, 'weight');
  const [rows, inFeatures] = requireShape(input, op, 'input', [null, null]) as [number, number];
  const [outFeatures] = requireShape(weight, op, 'weight', [null, inFeatures]) as [number, number];
  const bias = given.bias;
  if (bias !== undefined) {
    requireTensor(bias, op, 'bias');
    requireFloat(bias, op, 'bias');
    requireShape(bias, op, 'bias', [outFeatures]);
    requireDType(bias, op, 'bias', [weight.dtype]);
  }
  const device = requireSameDevice(op, { input, weight, bias });
  const dtype = outputDType(op, input, given.outDtype);
  return withOutputs(
    () => ({ output: Tensor.empty([rows, outFeatures], { dtype, device }) }),
    (out) =>
      addon().linear(deviceIndex(device), {
        input: input.toNative(),
        weight: weight.toNative(),
        bias: bias?.toNative(),
        output: out.output.toNative(),
      }),
  ).output;
}
