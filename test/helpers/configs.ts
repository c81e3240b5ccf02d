/** MoE configs for tests that build layers by hand. */
import type { MoEConfig } from '../../lib/model/config';

/** A SwiGLU layer with softmax top-k routing; override any field. */
export function swigluConfig(shape: { hidden: number; intermediate: number; experts: number; topK: number }, overrides: Partial<MoEConfig> = {}): MoEConfig {
  return {
    family: 'custom',
    hiddenSize: shape.hidden,
    intermediateSize: shape.intermediate,
    numExperts: shape.experts,
    routing: { method: 'softmax_topk', topK: shape.topK, renormalize: true, numGroups: 1, topkGroups: 1, scalingFactor: 1 },
    activation: 'swiglu',
    activationAlpha: 1.702,
    activationLimit: 7,
    routerBias: false,
    expertBias: false,
    sharedExpert: null,
    ...overrides,
  };
}
