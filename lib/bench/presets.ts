/** Layer shapes the benchmark runs: real models' MoE blocks, and scaled-down CPU versions. */
import type { MoEConfig } from '../layer/config';

export interface BenchPreset {
  name: string;
  /** What it stands for. */
  description: string;
  config: MoEConfig;
}

function preset(name: string, description: string, shape: { experts: number; topK: number; hidden: number; intermediate: number },
  routing: Partial<MoEConfig['routing']> = {}, sharedIntermediate = 0): BenchPreset {
  return {
    name,
    description,
    config: {
      family: 'custom',
      hiddenSize: shape.hidden,
      intermediateSize: shape.intermediate,
      numExperts: shape.experts,
      routing: { method: 'softmax_topk', topK: shape.topK, renormalize: true, numGroups: 1, topkGroups: 1, scalingFactor: 1, ...routing },
      activation: 'swiglu',
      activationAlpha: 1.702,
      activationLimit: 7,
      routerBias: false,
      expertBias: false,
      sharedExpert: sharedIntermediate > 0 ? { intermediateSize: sharedIntermediate, gated: false } : null,
    },
  };
}

const DEEPSEEK_ROUTING = { method: 'sigmoid_group_topk', numGroups: 8, topkGroups: 4, scalingFactor: 2.5 } as const;
/** The CPU presets divide hidden and intermediate sizes by this, keeping experts and top-k. */
const CPU_SCALE = 4;

export const FULL_PRESETS: readonly BenchPreset[] = [
  preset('mixtral-8x7b', 'Mixtral-8x7B', { experts: 8, topK: 2, hidden: 4096, intermediate: 14336 }),
  preset('qwen3-30b-a3b', 'Qwen3-30B-A3B', { experts: 128, topK: 8, hidden: 2048, intermediate: 768 }),
  preset('deepseek-v3', 'DeepSeek-V3', { experts: 256, topK: 8, hidden: 7168, intermediate: 2048 }, DEEPSEEK_ROUTING, 2048),
];

export const CPU_PRESETS: readonly BenchPreset[] = FULL_PRESETS.map(({ name, description, config }) => ({
  name: `${name}-mini`,
  description: `${description}, hidden and intermediate sizes / ${CPU_SCALE}`,
  config: {
    ...config,
    hiddenSize: config.hiddenSize / CPU_SCALE,
    intermediateSize: config.intermediateSize / CPU_SCALE,
    sharedExpert: config.sharedExpert ? { ...config.sharedExpert, intermediateSize: config.sharedExpert.intermediateSize / CPU_SCALE } : null,
  },
}));

export const ALL_PRESETS: readonly BenchPreset[] = [...FULL_PRESETS, ...CPU_PRESETS];

export const CPU_TOKENS: readonly number[] = [1, 16, 128];
export const GPU_TOKENS: readonly number[] = [1, 16, 128, 1024, 4096, 16384];

export function findPreset(name: string): BenchPreset | undefined {
  return ALL_PRESETS.find((candidate) => candidate.name === name);
}

/** Floating-point operations of one forward: router, routed experts (3 projections), shared expert. */
export function forwardFlops(config: MoEConfig, tokens: number): number {
  const { hiddenSize: H, intermediateSize: I, numExperts: E } = config;
  const shared = config.sharedExpert ? 2 * tokens * 3 * H * config.sharedExpert.intermediateSize : 0;
  return 2 * tokens * H * E + 2 * tokens * config.routing.topK * 3 * H * I + shared;
}

/** Expected bytes of expert weights a forward reads: every expert some token picks, once. */
export function activeWeightBytes(config: MoEConfig, tokens: number, bytesPerElement: number): number {
  const { hiddenSize: H, intermediateSize: I, numExperts: E } = config;
  const expectedActive = E * (1 - (1 - config.routing.topK / E) ** tokens);
  const shared = config.sharedExpert ? 3 * H * config.sharedExpert.intermediateSize : 0;
  return (expectedActive * 3 * H * I + shared) * bytesPerElement;
}
