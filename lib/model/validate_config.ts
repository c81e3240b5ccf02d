import { FLOAT32_MAX } from '../dtype';
import { describeValue, MoekitError } from '../errors';
import { depthProblem, EXPERT_QUANTIZATIONS, type ExpertQuantization, isExpertQuantization, QUANTIZATION_FORMATS, requireGroupSize } from '../ops/quantized';
import { groupLimitedExperts } from '../ops/routing';
import { ACTIVATIONS, GATED_ACTIVATIONS, ROUTING_METHODS } from '../vocabulary';
import type { MoEConfig } from './config';

function positiveInteger(value: unknown, field: string): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new MoekitError('E_CONFIG', `MoE config: ${field} must be a positive integer, got ${describeValue(value)}`);
  }
}

/** A number the kernels take as a finite float32 (at least `min`). */
function float32Field(value: unknown, field: string, min = -FLOAT32_MAX): void {
  if (typeof value !== 'number' || !(Math.abs(value) <= FLOAT32_MAX) || value < min) {
    const range = min === -FLOAT32_MAX ? "within float32's range" : `within float32's range and at least ${min}`;
    throw new MoekitError('E_CONFIG', `MoE config: ${field} must be a finite number ${range}, got ${describeValue(value)}`);
  }
}

/**
 * The routed experts' K (hiddenSize for w13, intermediateSize for w2) against the format's rules
 * (int4: even; mxfp4: a multiple of 32). The shared expert's needs none: int8 and int4 leave it in
 * 16 bits, fp8 has no rule on K, and mxfp4 checkpoints (gpt-oss) have no shared expert.
 */
function quantizedDepths(config: MoEConfig, quantization: ExpertQuantization): void {
  for (const [field, matrix] of [['hiddenSize', 'w13'], ['intermediateSize', 'w2']] as const) {
    const problem = depthProblem(QUANTIZATION_FORMATS[quantization], config[field]);
    if (problem) throw new MoekitError('E_CONFIG', `MoE config: ${field} (${config[field]}) is the K of the ${quantization} experts' ${matrix}: ${problem}`);
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
    throw new MoekitError('E_CONFIG', `MoE config: routing.method must be one of ${ROUTING_METHODS.join(', ')}, got ${describeValue(routing.method)}`);
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
  float32Field(routing.scalingFactor, 'routing.scalingFactor');
  float32Field(config.activationAlpha, 'activationAlpha');
  float32Field(config.activationLimit, 'activationLimit', 0);
  if (!ACTIVATIONS.includes(config.activation)) {
    throw new MoekitError('E_CONFIG', `MoE config: activation must be one of ${ACTIVATIONS.join(', ')}, got ${describeValue(config.activation)}`);
  }
  if (config.sharedExpert !== null) {
    // JavaScript callers can pass anything here; `undefined` is a common slip for "none".
    if (typeof config.sharedExpert !== 'object') {
      throw new MoekitError('E_CONFIG', `MoE config: sharedExpert must be null or { intermediateSize, gated }, got ${describeValue(config.sharedExpert)}`);
    }
    positiveInteger(config.sharedExpert.intermediateSize, 'sharedExpert.intermediateSize');
    if (!GATED_ACTIVATIONS.includes(config.activation)) {
      throw new MoekitError('E_CONFIG', `MoE config: shared experts need a gated activation (${GATED_ACTIVATIONS.join(', ')}), got ${config.activation}`);
    }
  }
  const { quantization } = config;
  if (quantization !== undefined && quantization !== null && !isExpertQuantization(quantization)) {
    throw new MoekitError('E_CONFIG', `MoE config: quantization must be null or one of ${EXPERT_QUANTIZATIONS.join(', ')}, got ${describeValue(quantization)}`);
  }
  if (quantization) quantizedDepths(config, quantization);
  const { quantizationGroupSize } = config;
  if (quantizationGroupSize !== undefined && quantizationGroupSize !== null) {
    if (quantization !== 'int8' && quantization !== 'int4') {
      throw new MoekitError('E_CONFIG', `MoE config: quantizationGroupSize goes only with quantization int8 or int4, got ${describeValue(quantizationGroupSize)} with ${describeValue(quantization ?? null)}`);
    }
    requireGroupSize(quantizationGroupSize, QUANTIZATION_FORMATS[quantization], 'MoE config', { name: 'quantizationGroupSize', code: 'E_CONFIG' });
  }
  return config;
}
