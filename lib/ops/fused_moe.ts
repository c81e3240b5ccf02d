import { deviceIndex, type Device } from '../device';
import { MoekitError } from '../errors';
import { addon } from '../native';
import { requiredObject } from '../options';
import { Tensor } from '../tensor';
import type { ActivationKind } from '../vocabulary';
import { nativeActivation, type ActivationParameters } from './activation';
import { routingRule, type RoutingOptions, type RoutingResult } from './routing';
import { requireDType, requireFloat, requireOutput, requireSameDevice, requireShape, requireTensor, withOutputs } from './validate';

/** A routed MoE layer's weights, in one 16-bit dtype (the biases any float). */
export interface FusedMoeWeights {
  /** [E, H] */
  router: Tensor;
  /** [E] */
  routerBias?: Tensor;
  /** [E, N, H]: N = 2I for a gated activation, else I. */
  w13: Tensor;
  /** [E, N] */
  w13Bias?: Tensor;
  /** [E, H, I] */
  w2: Tensor;
  /** [E, H] */
  w2Bias?: Tensor;
}

export interface FusedMoeOptions {
  routing: RoutingOptions;
  /** The first GEMM's activation. */
  activation: { kind: ActivationKind } & ActivationParameters;
}

/** What fusedMoe() writes: routing's results and the layer's output [T, H] in the input's dtype. */
export type FusedMoeResult = RoutingResult & { output: Tensor };

/**
 * A routed MoE layer in one op (native/core/op_args.h, "Fused MoE"): the router, routing, both
 * expert GEMMs and the weighted combine, with the results of route → permute → groupedGemm →
 * groupedGemm → combine up to float32 rounding of the GEMMs' sums. For decode steps, where the
 * separate ops' launches cost more than their work. Not public: the layer calls it (MoELayer's
 * forward at a few tokens), with weights it has checked.
 */
export function fusedMoe(input: Tensor, weights: FusedMoeWeights, options: FusedMoeOptions): FusedMoeResult {
  const call = fusedMoeCall(input, weights, options);
  const { tokens, hidden, experts, topK, dtype, device } = call;
  return withOutputs(
    () => ({
      topkIds: Tensor.empty([tokens, topK], { dtype: 'int32', device }),
      topkWeights: Tensor.empty([tokens, topK], { dtype: 'float32', device }),
      expertCounts: Tensor.empty([experts], { dtype: 'int32', device }),
      output: Tensor.empty([tokens, hidden], { dtype, device }),
    }),
    call.fill,
  );
}

/** fusedMoe() into tensors the caller made for exactly these results (a captured forward's outputs). */
export function fusedMoeInto(input: Tensor, weights: FusedMoeWeights, options: FusedMoeOptions, into: FusedMoeResult): void {
  const call = fusedMoeCall(input, weights, options);
  const { tokens, hidden, experts, topK, dtype, device } = call;
  const op = 'fusedMoe';
  requireOutput(into.topkIds, op, 'into.topkIds', [tokens, topK], 'int32', device);
  requireOutput(into.topkWeights, op, 'into.topkWeights', [tokens, topK], 'float32', device);
  requireOutput(into.expertCounts, op, 'into.expertCounts', [experts], 'int32', device);
  requireOutput(into.output, op, 'into.output', [tokens, hidden], dtype, device);
  call.fill(into);
}

/** fusedMoe()'s checked arguments, and the native call that fills a result with them. */
function fusedMoeCall(input: Tensor, weights: FusedMoeWeights, options: FusedMoeOptions) {
  const op = 'fusedMoe';
  const given = requiredObject(options, `${op}: options`, ['routing', 'activation']);
  const { router, routerBias, w13, w13Bias, w2, w2Bias } = requiredObject(weights, `${op}: weights`, ['router', 'w13', 'w2']);
  for (const [name, tensor] of Object.entries({ input, router, w13, w2 })) requireTensor(tensor, op, name);
  requireDType(input, op, 'input', ['bfloat16', 'float16']);
  const dtype = input.dtype as 'bfloat16' | 'float16';
  const [tokens, hidden] = requireShape(input, op, 'input', [null, null]) as [number, number];
  const [experts, up] = requireShape(w13, op, 'w13', [null, null, hidden]) as [number, number, number];
  requireShape(router, op, 'router', [experts, hidden]);
  const act = nativeActivation(op, requiredObject(given.activation, `${op}: options.activation`, ['kind']).kind, given.activation);
  if (act.gated && up % 2 !== 0) throw new MoekitError('E_SHAPE', `${op}: a gated activation needs an even number of w13 rows, got ${up}`);
  const intermediate = act.gated ? up / 2 : up;
  requireShape(w2, op, 'w2', [experts, hidden, intermediate]);
  for (const [name, tensor] of Object.entries({ router, w13, w2 })) requireDType(tensor, op, name, [dtype]);
  for (const [name, tensor, shape] of [['routerBias', routerBias, [experts]], ['w13Bias', w13Bias, [experts, up]], ['w2Bias', w2Bias, [experts, hidden]]] as const) {
    if (tensor === undefined) continue;
    requireTensor(tensor, op, name);
    requireFloat(tensor, op, name);
    requireShape(tensor, op, name, shape);
  }
  const device: Device = requireSameDevice(op, { input, router, routerBias, w13, w13Bias, w2, w2Bias });
  const rule = routingRule(op, given.routing, experts, { name: 'input', device });
  const fill = (out: FusedMoeResult): void =>
    addon().fusedMoe(deviceIndex(device), {
      input: input.toNative(),
      routerWeight: router.toNative(),
      routerBias: routerBias?.toNative(),
      ...rule,
      w13: w13.toNative(),
      w13Bias: w13Bias?.toNative(),
      activation: act.kind,
      layout: act.layout,
      alpha: act.alpha,
      limit: act.limit,
      w2: w2.toNative(),
      w2Bias: w2Bias?.toNative(),
      topkIds: out.topkIds.toNative(),
      topkWeights: out.topkWeights.toNative(),
      expertCounts: out.expertCounts.toNative(),
      output: out.output.toNative(),
    });
  return { tokens, hidden, experts, topK: rule.topK, dtype, device, fill };
}
