export { activation, type ActivationOptions, type ActivationParameters } from './activation';
export { combine, type CombineOptions } from './combine';
export { groupedGemm, linear, type GemmInput, type GemmOptions, type GemmWeights, type GroupedGemmOptions } from './grouped_gemm';
export { permute, permuteMaps, type PermuteMaps, type PermuteMapsOptions, type PermuteOptions, type PermuteResult } from './permute';
export {
  EXPERT_QUANTIZATIONS, FP8_BLOCK_SIZE, Fp8Rows, QUANTIZATIONS, QuantizedWeights, quantizeWeights, WEIGHT_FORMATS, type ExpertQuantization, type GroupSize,
  type QuantizableFormat, type Quantization, type QuantizedParts, type QuantizeWeightsOptions, type WeightFormat,
} from './quantized';
export { route, type RoutingConfig, type RoutingOptions, type RoutingResult } from './routing';
export { addInt32 } from './add_int32';
