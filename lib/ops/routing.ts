import { deviceIndex, type Device } from '../device';
import { describeValue, MoekitError } from '../errors';
import { addon, type NativeTensor } from '../native';
import { requiredObject } from '../options';
import { Tensor } from '../tensor';
import { ROUTING_METHOD_CODES, type RoutingMethod } from '../vocabulary';
import { MAX_EXPERTS, requireDType, requireFloat, requireFloat32, requireInteger, requireOutput, requireShape, requireTensor, withOutputs } from './validate';

export interface RoutingConfig {
  method: RoutingMethod;
  topK: number;
  /** Divide the k weights by their sum (softmax_topk, sigmoid_group_topk). */
  renormalize: boolean;
  /** sigmoid_group_topk: number of expert groups (1 = no group limit). */
  numGroups: number;
  /** sigmoid_group_topk: how many groups stay eligible. */
  topkGroups: number;
  /** Multiplies the final weights (DeepSeek-V3's routed_scaling_factor). */
  scalingFactor: number;
}

/**
 * sigmoid_group_topk: how many experts a token may choose from once the group limit has kept
 * `topkGroups` whole groups of numExperts / numGroups experts. A larger topK cannot be filled
 * with distinct eligible experts (the kernels would repeat ids or take excluded ones), so routing
 * and every config check refuse it.
 */
export function groupLimitedExperts(numExperts: number, numGroups: number, topkGroups: number): number {
  return topkGroups * (numExperts / numGroups);
}

export interface RoutingOptions extends Partial<Omit<RoutingConfig, 'topK'>> {
  topK: number;
  /** sigmoid_group_topk: [E] float32 bias added to the scores for choosing experts only. */
  correctionBias?: Tensor;
}

export interface RoutingResult {
  /** [T, K] int32 expert ids, best first. */
  topkIds: Tensor;
  /** [T, K] float32 weights. */
  topkWeights: Tensor;
  /** [E] int32: how many (token, slot) pairs chose each expert. */
  expertCounts: Tensor;
}

/**
 * Router logits [T, E] → top-k experts and weights per token, by one of three methods (see
 * RoutingMethod): softmax→top-k (default), top-k→softmax, or DeepSeek-V3's sigmoid with a
 * correction bias and group-limited choice.
 */
export function route(logits: Tensor, options: RoutingOptions): RoutingResult {
  const call = routingCall(logits, options);
  const { tokens, experts, topK, device } = call;
  return withOutputs(
    () => ({
      topkIds: Tensor.empty([tokens, topK], { dtype: 'int32', device }),
      topkWeights: Tensor.empty([tokens, topK], { dtype: 'float32', device }),
      expertCounts: Tensor.empty([experts], { dtype: 'int32', device }),
    }),
    call.fill,
  );
}

/**
 * route() into tensors the caller made for exactly these results (a captured forward's persistent
 * outputs, lib/layer/captured_forward.ts), so a graph writes them without a copy. Not public:
 * its one caller makes the outputs itself, so they never overlap the inputs.
 */
export function routeInto(logits: Tensor, options: RoutingOptions, into: RoutingResult): void {
  const call = routingCall(logits, options);
  const { tokens, experts, topK, device } = call;
  requireOutput(into.topkIds, 'route', 'into.topkIds', [tokens, topK], 'int32', device);
  requireOutput(into.topkWeights, 'route', 'into.topkWeights', [tokens, topK], 'float32', device);
  requireOutput(into.expertCounts, 'route', 'into.expertCounts', [experts], 'int32', device);
  call.fill(into);
}

/** route()'s checked arguments, and the native call that fills a result with them. */
function routingCall(logits: Tensor, options: RoutingOptions) {
  const op = 'route';
  requireTensor(logits, op, 'logits');
  requireFloat(logits, op, 'logits');
  const [tokens, experts] = requireShape(logits, op, 'logits', [null, null]) as [number, number];
  const device = logits.device;
  const rule = routingRule(op, options, experts, { name: 'logits', device });
  const fill = (out: RoutingResult): void =>
    addon().routing(deviceIndex(device), {
      logits: logits.toNative(),
      topkIds: out.topkIds.toNative(),
      topkWeights: out.topkWeights.toNative(),
      expertCounts: out.expertCounts.toNative(),
      ...rule,
    });
  return { tokens, experts, topK: rule.topK, device, fill };
}

/** A routing rule in the native op's fields (native/core/op_args.h, RoutingArgs). */
export interface NativeRoutingRule {
  correctionBias: NativeTensor | undefined;
  method: number;
  topK: number;
  renormalize: boolean;
  numGroups: number;
  topkGroups: number;
  scalingFactor: number;
}

/**
 * Routing options checked for `experts` experts (route(), and the fused MoE op's routing); the
 * correction bias must be on `on.device`, where the tensor named `on.name` is.
 */
export function routingRule(op: string, options: RoutingOptions, experts: number, on: { name: string; device: Device }): NativeRoutingRule {
  const routing = requiredObject(options, `${op}: options`, ['topK']);
  const method = routing.method ?? 'softmax_topk';
  if (typeof method !== 'string' || !Object.hasOwn(ROUTING_METHOD_CODES, method)) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: unknown method ${describeValue(method)} (expected ${Object.keys(ROUTING_METHOD_CODES).join(', ')})`);
  }
  if (experts < 1) throw new MoekitError('E_SHAPE', `${op}: ${on.name} has no experts`);
  if (experts > MAX_EXPERTS) throw new MoekitError('E_SHAPE', `${op}: ${on.name} has ${experts} experts, more than the ${MAX_EXPERTS} moekit takes`);
  const topK = requireInteger(routing.topK, op, 'topK', 1);
  if (topK > experts) throw new MoekitError('E_INVALID_ARGUMENT', `${op}: topK ${topK} is larger than the expert count ${experts}`);
  const numGroups = requireInteger(routing.numGroups ?? 1, op, 'numGroups', 1, experts);
  if (experts % numGroups !== 0) throw new MoekitError('E_INVALID_ARGUMENT', `${op}: numGroups ${numGroups} does not divide the expert count ${experts}`);
  const topkGroups = requireInteger(routing.topkGroups ?? numGroups, op, 'topkGroups', 1, numGroups);
  const eligible = groupLimitedExperts(experts, numGroups, topkGroups);
  if (method === 'sigmoid_group_topk' && topK > eligible) {
    throw new MoekitError('E_INVALID_ARGUMENT',
      `${op}: topK ${topK} is larger than the ${eligible} experts that topkGroups ${topkGroups} of numGroups ${numGroups} leave eligible (topkGroups × experts / numGroups = ${topkGroups} × ${experts} / ${numGroups})`);
  }
  const scalingFactor = requireFloat32(routing.scalingFactor ?? 1, op, 'scalingFactor');
  const renormalize = routing.renormalize ?? false;
  if (typeof renormalize !== 'boolean') throw new MoekitError('E_INVALID_ARGUMENT', `${op}: renormalize must be a boolean`);
  const correctionBias = routing.correctionBias;
  if (correctionBias !== undefined) {
    requireTensor(correctionBias, op, 'correctionBias');
    requireShape(correctionBias, op, 'correctionBias', [experts]);
    requireDType(correctionBias, op, 'correctionBias', ['float32']);
    if (correctionBias.device !== on.device) throw new MoekitError('E_DEVICE', `${op}: correctionBias is on ${correctionBias.device} but ${on.name} is on ${on.device}`);
    if (method !== 'sigmoid_group_topk') throw new MoekitError('E_INVALID_ARGUMENT', `${op}: correctionBias applies to method 'sigmoid_group_topk' only`);
  }
  return {
    correctionBias: correctionBias?.toNative(),
    method: ROUTING_METHOD_CODES[method],
    topK,
    renormalize,
    numGroups,
    topkGroups,
    scalingFactor,
  };
}
