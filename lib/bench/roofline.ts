/**
 * What a forward must cost at least: its arithmetic at the GPU's dense matmul rate, or its expert
 * weights at the GPU's copy bandwidth, whichever takes longer. The same model as
 * bench/torch_baseline.py's, so the two compare.
 */
import type { FloatDType } from '../dtype';
import type { MoEConfig } from '../model/config';
import { expertWeightBytes, projections } from '../model/weight_bytes';
import type { ClockSummary } from './telemetry';

/** The two rates the floor divides by, measured in the same run on the same device (ceilings.ts). */
export interface Ceilings {
  /** Dense matrix multiply, TFLOP/s. */
  matmulTflops: number;
  /** What was timed for it, in words (cuBLAS, or moekit's own linear when cuBLAS is missing). */
  matmulSource: string;
  /**
   * The GPU's clocks while the matmul ran (lib/bench/telemetry.ts): short bursts, so usually higher
   * than under a long forward. Absent where NVML cannot read the device.
   */
  matmulClocks?: ClockSummary;
  /** Device-to-device copy, GB/s counting bytes read and written. */
  copyGBps: number;
  copySource: string;
}

/** A forward's floor in milliseconds and its two terms. */
export interface Floor {
  ms: number;
  /** FLOPs ÷ the matmul ceiling. */
  computeMs: number;
  /** Expected active-expert weight bytes ÷ the copy ceiling. */
  weightsMs: number;
}

/**
 * Floating-point operations of one forward of `tokens` tokens: each token's K routed experts
 * (their H×I projections, 2 FLOPs per multiply-add), the shared expert if any, and the router.
 */
export function forwardFlops(config: MoEConfig, tokens: number): number {
  const { hiddenSize: H, intermediateSize: I, numExperts: E } = config;
  const routed = 2 * tokens * config.routing.topK * projections(config) * H * I;
  const shared = config.sharedExpert === null ? 0 : 2 * tokens * projections(config) * H * config.sharedExpert.intermediateSize;
  const router = 2 * tokens * H * E;
  return routed + shared + router;
}

/** Experts some token picks, in expectation under uniform routing: E·(1 − (1 − K/E)^T). */
export function expectedTouchedExperts(config: MoEConfig, tokens: number): number {
  const { numExperts: E } = config;
  return E * (1 - (1 - config.routing.topK / E) ** tokens);
}

/**
 * Expected bytes of expert weights one forward reads: each touched expert's H×I matrices once,
 * plus the shared expert's.
 */
export function activeWeightBytes(config: MoEConfig, tokens: number, dtype: FloatDType): number {
  const { hiddenSize: H, intermediateSize: I } = config;
  const shared = config.sharedExpert === null ? 0 : projections(config) * H * config.sharedExpert.intermediateSize;
  return (expectedTouchedExperts(config, tokens) * projections(config) * H * I + shared) * expertWeightBytes(config, dtype);
}

export function forwardFloor(config: MoEConfig, tokens: number, dtype: FloatDType, ceilings: Ceilings): Floor {
  const computeMs = (forwardFlops(config, tokens) / (ceilings.matmulTflops * 1e12)) * 1e3;
  const weightsMs = (activeWeightBytes(config, tokens, dtype) / (ceilings.copyGBps * 1e9)) * 1e3;
  return { ms: Math.max(computeMs, weightsMs), computeMs, weightsMs };
}
