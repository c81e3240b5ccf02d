import { deviceIndex } from '../device';
import type { FloatDType } from '../dtype';
import { describeValue, MoekitError } from '../errors';
import { addon } from '../native';
import { optionalOptions } from '../options';
import { Tensor } from '../tensor';
import { ACTIVATION_CODES, GATE_LAYOUT_CODES, isGated, type ActivationKind, type GateLayout } from '../vocabulary';
import { requireFloat, requireFloat32, requireShape, requireTensor, withOutputs } from './validate';

/** How an activation is applied: its layout and gpt-oss parameters. */
export interface ActivationParameters {
  /** Gated kinds: 'halves' (gate = columns [0, I), up = [I, 2I); default) or 'interleaved' (gate = even, up = odd). */
  layout?: GateLayout;
  /** gptoss_swiglu: sigmoid slope, default 1.702. */
  alpha?: number;
  /** gptoss_swiglu: clamp limit, default 7. */
  limit?: number;
}

export interface ActivationOptions extends ActivationParameters {
  /** Output dtype, default the input's. */
  outDtype?: FloatDType;
}

/** An activation checked and turned into the native codes (native/core/op_args.h). */
export interface NativeActivation {
  kind: number;
  layout: number;
  alpha: number;
  limit: number;
  gated: boolean;
}

/** Validates an activation kind and its parameters for `op`. */
export function nativeActivation(op: string, kind: ActivationKind, options: ActivationParameters = {}): NativeActivation {
  if (typeof kind !== 'string' || !Object.hasOwn(ACTIVATION_CODES, kind)) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: unknown activation ${describeValue(kind)} (expected ${Object.keys(ACTIVATION_CODES).join(', ')})`);
  }
  const layout = options.layout ?? 'halves';
  if (typeof layout !== 'string' || !Object.hasOwn(GATE_LAYOUT_CODES, layout)) throw new MoekitError('E_INVALID_ARGUMENT', `${op}: unknown layout ${describeValue(layout)}`);
  const alpha = requireFloat32(options.alpha ?? 1.702, op, 'alpha');
  // gpt-oss clamps to [-limit, limit]: a negative limit has no meaning.
  const limit = requireFloat32(options.limit ?? 7, op, 'limit', 0);
  return { kind: ACTIVATION_CODES[kind], layout: GATE_LAYOUT_CODES[layout], alpha, limit, gated: isGated(kind) };
}

/**
 * The expert MLP's activation: gated kinds map [M, 2I] → [M, I] (swiglu, geglu, gptoss_swiglu),
 * the others apply elementwise to [M, I] (silu, gelu, relu).
 */
export function activation(input: Tensor, kind: ActivationKind, options?: ActivationOptions | null): Tensor {
  const op = 'activation';
  const given = optionalOptions(options, `${op}: options`);
  requireTensor(input, op, 'input');
  requireFloat(input, op, 'input');
  const act = nativeActivation(op, kind, given);
  const [rows, width] = requireShape(input, op, 'input', [null, null]) as [number, number];
  if (act.gated && width % 2 !== 0) throw new MoekitError('E_SHAPE', `${op}: a gated activation needs an even input width, got ${width}`);
  const dtype = given.outDtype ?? (input.dtype as FloatDType);
  requireFloatDType(op, dtype);
  return withOutputs(
    () => ({ output: Tensor.empty([rows, act.gated ? width / 2 : width], { dtype, device: input.device }) }),
    (out) =>
      addon().activation(deviceIndex(input.device), {
        input: input.toNative(),
        output: out.output.toNative(),
        kind: act.kind,
        layout: act.layout,
        alpha: act.alpha,
        limit: act.limit,
      }),
  ).output;
}

function requireFloatDType(op: string, dtype: unknown): void {
  if (dtype !== 'float32' && dtype !== 'float16' && dtype !== 'bfloat16') {
    throw new MoekitError('E_DTYPE', `${op}: outDtype must be a float dtype, got ${describeValue(dtype)}`);
  }
}
