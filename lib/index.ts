/**
 * moekit: Mixture-of-Experts inference kernels for Node.js.
 *
 *   const { MoELayer, Tensor } = require('moekit');
 *   const layer = await MoELayer.fromPretrained('path/to/checkpoint', { layer: 0 });
 *   const x = Tensor.fromArray(new Float32Array(4 * layer.config.hiddenSize), [4, layer.config.hiddenSize]);
 *   const { output } = layer.forward(x);
 *   console.log(await output.toArray());
 */
export { Tensor, type DevicePointerOptions, type RandomTensorOptions, type TensorData, type TensorOptions } from './tensor';
export type { DType, FloatDType, FloatHostArray, HalfDType, HostArray } from './dtype';
export { decodeFloat8, decodeHalf, encodeHalf } from './dtype';
export type { Device } from './device';
export { MoekitError, type MoekitErrorCode } from './errors';
export * from './ops/index';
export { FORWARD_STAGES, type ForwardOptions, type ForwardProfiler, type ForwardStage, type MoEForwardResult } from './layer/forward';
export {
  MoELayer,
  type AllToAllForwardOptions,
  type FromPretrainedOptions,
  type ParallelLayerOptions,
  type MoELayerOptions,
  type RandomLayerOptions,
} from './layer/moe_layer';
export type { ExchangeGroup } from './layer/wide_ep';
export type { HostQuantized, HostTensor, MoEConfig, MoEWeights, SharedExpertConfig } from './model/config';
export { isGated, MODEL_FAMILIES, type ActivationKind, type GateLayout, type ModelFamily, type RoutingMethod } from './vocabulary';
export type { LoadProgress } from './checkpoint/load';
export { runtimeInfo, type CudaDeviceReport, type CudaRuntime, type RuntimeInfo } from './runtime';
export { synchronize } from './sync';
export { CudaStream, currentStream, useStream } from './streams';
export { type AllToAllOptions } from './parallel/collective_args';
export { ProcessGroup, type ProcessGroupOptions } from './parallel/process_group';
export { DISPATCH_MODES, resolvePlan, shardForRank, type DispatchMode, type ParallelOptions, type ParallelPlan, type RankShard } from './parallel/plan';
export { autoPlan, type AutoPlan, type AutoPlanInput, type GpuLink } from './parallel/auto_plan';
export { autoParallel } from './parallel/group_plan';
export { loadImbalance, planPlacement, rankLoads, type ExpertPlacement, type PlacementOptions } from './parallel/placement';
export { CapturedForward, type CapturedOutputs } from './layer/captured_forward';
export { memoryInfo, type MemoryInfo } from './memory';
export {
  ForwardBatcher, type BatchedForwardOptions, type BatchedForwardResult, type BatchedLayer, type ForwardBatcherMetrics, type ForwardBatcherOptions,
} from './serve/forward_batcher';
export type { HistogramSnapshot } from './serve/histogram';
export { gatherLayerStats, LayerStats, type CountedLayer, type ForwardCounts, type LayerStatsSnapshot, type StatsGroup } from './serve/layer_stats';
export { PROMETHEUS_CONTENT_TYPE, toPrometheus, type PrometheusSources } from './serve/prometheus';
