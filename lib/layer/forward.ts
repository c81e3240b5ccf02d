/** What one forward of a layer is: its stages, the profiler told of them, its options and its outputs. */
import type { Tensor } from '../tensor';

/** The stages of a forward, in the order they are enqueued. */
export const FORWARD_STAGES = ['router', 'routing', 'permute', 'expert_up', 'expert_down', 'shared', 'combine', 'fused', 'all_reduce'] as const;

/**
 * router: the router projection; routing: top-k; permute: rows sorted by expert; expert_up: the
 * first grouped GEMM with its fused activation; expert_down: the second; shared: the shared
 * expert (at most sizes it runs beside the routed stages, on a second stream on a GPU, and its
 * time here is what it adds after them; MOEKIT_SIDE_STREAM=off keeps it in line); combine: the
 * weighted sum back in token order; fused: router to combine as one op, in place of those stages
 * (a decode step of a layer that allows it: MoELayer's forward); all_reduce: the group's sum.
 */
export type ForwardStage = (typeof FORWARD_STAGES)[number];

/**
 * Told as each stage of a forward has been enqueued (the work itself runs later, in order, on the
 * device). Stages a forward does not have are not reported: router when routerLogits are given,
 * shared without a shared expert, all_reduce without a group. The benchmark records a device
 * event at each mark (lib/bench/events.ts) to time the stages.
 */
export interface ForwardProfiler {
  mark(stage: ForwardStage): void;
}

export interface ForwardOptions {
  /** [T, E] precomputed router logits (float32); skips the router projection. */
  routerLogits?: Tensor;
  profiler?: ForwardProfiler;
}

/** The outputs of one forward. Dispose them (or `using`) when done. */
export interface MoEForwardResult {
  /** [T, H] in the layer's dtype. */
  output: Tensor;
  /** [T, K] int32 chosen experts, best first. */
  topkIds: Tensor;
  /** [T, K] float32 routing weights (after renormalization and scaling). */
  topkWeights: Tensor;
  /** [E] int32 tokens routed to each expert. */
  expertCounts: Tensor;
  dispose(): void;
  [Symbol.dispose](): void;
}
