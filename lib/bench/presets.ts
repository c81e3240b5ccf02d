/** Layer shapes the benchmark runs: real models' MoE blocks, and scaled-down versions for the CPU. */
import type { RoutingConfig } from '../ops/routing';
import type { MoEConfig } from '../model/config';

export interface BenchPreset {
  name: string;
  /** What the shapes stand for, in words. */
  description: string;
  config: MoEConfig;
}

/** A preset's shape; the rest of its config is Mixtral's unless given (softmax top-k, renormalized; SwiGLU). */
export interface PresetShape {
  family: MoEConfig['family'];
  experts: number;
  topK: number;
  hidden: number;
  intermediate: number;
  routing?: Partial<RoutingConfig>;
  /** The shared expert's intermediate size; absent when the model has none. */
  sharedIntermediate?: number;
  /** Anything else of the config (gpt-oss's activation, biases and MXFP4 experts). */
  config?: Partial<MoEConfig>;
}

export function preset(name: string, description: string, shape: PresetShape): BenchPreset {
  return {
    name,
    description,
    config: {
      family: shape.family,
      hiddenSize: shape.hidden,
      intermediateSize: shape.intermediate,
      numExperts: shape.experts,
      routing: { method: 'softmax_topk', topK: shape.topK, renormalize: true, numGroups: 1, topkGroups: 1, scalingFactor: 1, ...shape.routing },
      activation: 'swiglu',
      activationAlpha: 1.702,
      activationLimit: 7,
      routerBias: false,
      expertBias: false,
      sharedExpert: shape.sharedIntermediate === undefined ? null : { intermediateSize: shape.sharedIntermediate, gated: false },
      ...shape.config,
    },
  };
}

const MIXTRAL_8X7B = preset('mixtral-8x7b', 'Mixtral-8x7B', { family: 'mixtral', experts: 8, topK: 2, hidden: 4096, intermediate: 14336 });

const QWEN3_30B_A3B = preset('qwen3-30b-a3b', 'Qwen3-30B-A3B', { family: 'qwen3_moe', experts: 128, topK: 8, hidden: 2048, intermediate: 768 });

const DEEPSEEK_V3 = preset('deepseek-v3', 'DeepSeek-V3', {
  family: 'deepseek_v3',
  experts: 256,
  topK: 8,
  hidden: 7168,
  intermediate: 2048,
  routing: { method: 'sigmoid_group_topk', numGroups: 8, topkGroups: 4, scalingFactor: 2.5 },
  sharedIntermediate: 2048,
});

/** gpt-oss-20b's MoE block as published: MXFP4 experts (random 4-bit weights here), clamped SwiGLU, biases. */
const GPT_OSS_20B = preset('gpt-oss-20b', 'gpt-oss-20b (MXFP4 experts)', {
  family: 'gpt_oss',
  experts: 32,
  topK: 4,
  hidden: 2880,
  intermediate: 2880,
  routing: { method: 'topk_softmax', renormalize: false },
  config: { activation: 'gptoss_swiglu', routerBias: true, expertBias: true, quantization: 'mxfp4' },
});

/** The same experts and top-k with hidden and intermediate sizes divided by `divisor`. */
function scaledDown(full: BenchPreset, divisor: number): BenchPreset {
  const { config } = full;
  const shared = config.sharedExpert;
  return {
    name: `${full.name}-mini`,
    description: `${full.description}, hidden and intermediate sizes / ${divisor}`,
    config: {
      ...config,
      hiddenSize: config.hiddenSize / divisor,
      intermediateSize: config.intermediateSize / divisor,
      sharedExpert: shared === null ? null : { ...shared, intermediateSize: shared.intermediateSize / divisor },
    },
  };
}

export const FULL_PRESETS: readonly BenchPreset[] = [MIXTRAL_8X7B, QWEN3_30B_A3B, DEEPSEEK_V3];

/**
 * The CPU's defaults. The divisors keep each layer's float32 weights under 1.5 GB (DeepSeek-V3's
 * 256 experts force the largest cut) and all three at 1, 16 and 128 tokens within about a
 * minute on two cores.
 */
export const MINI_PRESETS: readonly BenchPreset[] = [scaledDown(MIXTRAL_8X7B, 2), scaledDown(QWEN3_30B_A3B, 2), scaledDown(DEEPSEEK_V3, 8)];

/**
 * Mixtral-8x7B's hidden size, routing and experts with an intermediate size of 4: rows and
 * results as large as the real layer's, a forward that costs little. For measuring what
 * serving costs on the host (`moekit serve`, bench/serve_load.js) on a machine without the GPU.
 */
const MIXTRAL_8X7B_HOST = preset('mixtral-8x7b-host', 'Mixtral-8x7B hidden size, intermediate 4 (host-side serving cost)', {
  family: 'mixtral', experts: 8, topK: 2, hidden: 4096, intermediate: 4,
});

/**
 * Presets run only when named (--preset): gpt-oss-20b's experts are MXFP4 as published, and
 * mixtral-8x7b-host measures the host, not the layer.
 */
export const NAMED_PRESETS: readonly BenchPreset[] = [GPT_OSS_20B, MIXTRAL_8X7B_HOST];

export const ALL_PRESETS: readonly BenchPreset[] = [...FULL_PRESETS, ...MINI_PRESETS, ...NAMED_PRESETS];

export function findPreset(name: string): BenchPreset | undefined {
  return ALL_PRESETS.find((candidate) => candidate.name === name);
}
