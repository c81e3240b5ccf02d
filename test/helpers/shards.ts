/** Sharded layers summed back: what TP/EP ranks' partial outputs add up to, computed in one process. */
import type { HostTensor, MoEConfig, MoEWeights, ParallelLayerOptions, Tensor } from '../../lib/index';
import { MoELayer } from '../../lib/index';
import { resolvePlan, shardForRank } from '../../lib/parallel/plan';

/** The TP × EP factorizations of 2 and 4 GPUs the tests cover. */
export const SHARD_PLANS: ReadonlyArray<readonly [number, number]> = [[2, 1], [1, 2], [2, 2]];

/**
 * The sum over every rank of a moeTp × moeEp plan of that rank's layer output on `x` (float64),
 * each rank's layer built from the full `weights` with `options` and its shard. `planConfig` is the
 * config the plan is resolved for (a quantized layer's config says its quantization).
 */
export async function sumOfShards(config: MoEConfig, weights: MoEWeights<HostTensor>, options: ParallelLayerOptions, planConfig: MoEConfig,
  tp: number, ep: number, x: Tensor): Promise<Float64Array> {
  const plan = resolvePlan(tp * ep, { moeTpSize: tp, moeEpSize: ep }, planConfig);
  let sum: Float64Array | undefined;
  for (let rank = 0; rank < tp * ep; rank++) {
    using layer = MoELayer.fromWeights(config, weights, { ...options, shard: shardForRank(plan, planConfig, rank) });
    using result = layer.forward(x);
    const output = await result.output.toFloat32Array();
    sum ??= new Float64Array(output.length);
    output.forEach((value, i) => (sum![i]! += value));
  }
  return sum!;
}
