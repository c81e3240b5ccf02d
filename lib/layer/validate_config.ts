import { MoekitError } from '../errors';
import { isQuantization, QUANTIZATIONS } from '../ops/quantized';
import { describeValue } from '../options';
import { GATED_ACTIVATIONS, groupLimitedExperts, type ActivationKind, type MoEConfig, type RoutingMethod } from './config';

const ROUTING_METHODS: readonly RoutingMethod[] = ['softmax_topk', 'topk_softmax', 'sigmoid_group_topk'];
const ACTIVATIONS: readonly ActivationKind[] = ['swiglu', 'geglu', 'gptoss_swiglu', 'silu', 'gelu', 'relu'];

function positiveInteger(value: unknown, field: string): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new MoekitError('E_CONFIG', `MoE config: ${field} must be a positive integer, got ${JSON.stringify(value)}`);
  }
}

/** Checks a config made by hand or by a loader; throws E_CONFIG naming the field. */
export function validateMoEConfig(config: MoEConfig): MoEConfig {
  if (typeof config !== 'object' || config === null) throw new MoekitError('E_CONFIG', 'MoE config must be an object');
  positiveInteger(config.hiddenSize, 'hiddenSize');
  positiveInteger(config.intermediateSize, 'intermediateSize');
  positiveInteger(config.numExperts, 'numExperts');
  const routing = config.routing;
  if (typeof routing !== 'object' || routing === null) throw new MoekitError('E_CONFIG', 'MoE config: routing is missing');
  if (!ROUTING_METHODS.includes(routing.method)) {
    throw new MoekitError('E_CONFIG', `MoE config: routing.method must be one of ${ROUTING_METHODS.join(', ')}, got ${JSON.stringify(routing.method)}`);
  }
  positiveInteger(routing.topK, 'routing.topK');
  if (routing.topK > config.numExperts) {
    throw new MoekitError('E_CONFIG', `MoE config: routing.topK (${routing.topK}) is larger than numExperts (${config.numExperts})`);
  }
  positiveInteger(routing.numGroups, 'routing.numGroups');
  positiveInteger(routing.topkGroups, 'routing.topkGroups');
  if (config.numExperts % routing.numGroups !== 0) {
    throw new MoekitError('E_CONFIG', `MoE config: routing.numGroups (${routing.numGroups}) must divide numExperts (${config.numExperts})`);
  }
  if (routing.topkGroups > routing.numGroups) {
    throw new MoekitError('E_CONFIG', `MoE config: routing.topkGroups (${routing.topkGroups}) exceeds routing.numGroups (${routing.numGroups})`);
  }
  const eligible = groupLimitedExperts(config.numExperts, routing.numGroups, routing.topkGroups);
  if (routing.method === 'sigmoid_group_topk' && routing.topK > eligible) {
    throw new MoekitError('E_CONFIG',
      `MoE config: routing.topK (${routing.topK}) is larger than the ${eligible} experts that routing.topkGroups (${routing.topkGroups}) of routing.numGroups (${routing.numGroups}) leave eligible (topkGroups × numExperts / numGroups = ${routing.topkGroups} × ${config.numExperts} / ${routing.numGroups})`);
  }
  if (!Number.isFinite(routing.scalingFactor)) throw new MoekitError('E_CONFIG', 'MoE config: routing.scalingFactor must be finite');
  if (!ACTIVATIONS.includes(config.activation)) {
    throw new MoekitError('E_CONFIG', `MoE config: activation must be one of ${ACTIVATIONS.join(', ')}, got ${JSON.stringify(config.activation)}`);
  }
  if (config.sharedExpert !== null) {
    // JavaScript callers can pass anything here; `undefined` is a common slip for "none".
    if (typeof config.sharedExpert !== 'object') {
      throw new MoekitError('E_CONFIG', `MoE config: sharedExpert must be null or { intermediateSize, gated }, got ${String(config.sharedExpert)}`);
    }
    positiveInteger(config.sharedExpert.intermediateSize, 'sharedExpert.intermediateSize');
    if (!GATED_ACTIVATIONS.includes(config.activation)) {
      throw new MoekitError('E_CONFIG', 'MoE config: shared experts need a gated activation');
    }
  }
  const { quantization } = config;
  if (quantization !== undefined && quantization !== null && !isQuantization(quantization)) {
    throw new MoekitError('E_CONFIG', `MoE config: quantization must be null or one of ${QUANTIZATIONS.join(', ')}, got ${describeValue(quantization)}`);
  }
  return config;
}
