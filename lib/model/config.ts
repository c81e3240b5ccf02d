import type { FloatDType } from '../dtype';
import type { ExpertQuantization, GroupSize, QuantizedParts } from '../ops/quantized';
import type { RoutingConfig } from '../ops/routing';
import type { ActivationKind, ModelFamily } from '../vocabulary';

export interface SharedExpertConfig {
  intermediateSize: number;
  /** Qwen2-MoE scales the shared expert by sigmoid(x · shared_expert_gateᵀ); DeepSeek-V3 does not. */
  gated: boolean;
}

/** Everything that defines an MoE block's computation, independent of where its weights live. */
export interface MoEConfig {
  family: ModelFamily | 'custom';
  hiddenSize: number;
  /** Per-expert intermediate size I. */
  intermediateSize: number;
  numExperts: number;
  routing: RoutingConfig;
  activation: ActivationKind;
  /** gptoss_swiglu: sigmoid slope (1.702) and clamp limit (7). */
  activationAlpha: number;
  activationLimit: number;
  /** The router projection has a bias (gpt-oss). */
  routerBias: boolean;
  /** Experts have biases on both projections (gpt-oss). */
  expertBias: boolean;
  sharedExpert: SharedExpertConfig | null;
  /**
   * What the experts' weights (routed and shared) are quantized to; routers stay unquantized.
   * Absent or null: dense. 'fp8': FP8 e4m3 with 128×128 block scales, computed W8A8; 'int8',
   * 'int4': weight-only integers in groups along K; 'mxfp4': gpt-oss's published 4-bit experts,
   * weight-only (lib/ops/quantized.ts).
   */
  quantization?: ExpertQuantization | null;
  /**
   * int8 / int4: K values per scale, a positive multiple of 32 or 'channel' (absent: int8
   * 'channel', int4 128). Only with those quantizations.
   */
  quantizationGroupSize?: GroupSize | null;
}

/** A tensor's data on the host, in the dtype it was stored in. */
export interface HostTensor {
  dtype: FloatDType | 'float8_e4m3' | 'uint8';
  shape: number[];
  /** float32 values, the raw 16-bit patterns of float16/bfloat16, or the bytes of float8_e4m3 and uint8 (packed formats). */
  data: Float32Array | Uint16Array | Uint8Array;
}

/** Quantized weights held on the host: their data and scales (lib/ops/quantized.ts, QuantizedParts). */
export type HostQuantized = QuantizedParts<HostTensor>;

/**
 * An MoE block's weights in moekit's canonical layout (PyTorch Linear: out_features × in_features).
 * Gated experts stack gate rows then up rows in w13 (`[E, 2I, H]`, halves layout); non-gated ones
 * have `[E, I, H]`. The expert matrices (w13, w2 and the shared expert's) are T, or Q when the
 * layer is quantized (config.quantization): their values and scales.
 */
export interface MoEWeights<T = HostTensor, Q extends QuantizedParts<T> = QuantizedParts<T>> {
  /** [E, H] */
  router: T;
  /** [E] (config.routerBias) */
  routerBias?: T;
  /** [E] DeepSeek-V3's e_score_correction_bias, used for expert choice only. */
  correctionBias?: T;
  /** [E, 2I, H] gated, [E, I, H] otherwise. */
  w13: T | Q;
  /** [E, 2I] or [E, I] (config.expertBias) */
  w13Bias?: T;
  /** [E, H, I] */
  w2: T | Q;
  /** [E, H] (config.expertBias) */
  w2Bias?: T;
  /** config.sharedExpert: w13 [2Is, H], w2 [H, Is], gate [1, H] when gated. */
  shared?: { w13: T | Q; w2: T | Q; gate?: T };
}

/** Whether an expert matrix is quantized (values and scales) rather than dense. */
export function isQuantized<T, Q extends QuantizedParts<T>>(matrix: T | Q): matrix is Q {
  return typeof matrix === 'object' && matrix !== null && 'format' in matrix;
}
