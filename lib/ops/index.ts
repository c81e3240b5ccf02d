export { activation, isGated, type ActivationOptions, type ActivationParameters, type GateLayout } from './activation';
export { combine, type CombineOptions } from './combine';
export { groupedGemm, linear, type GemmOptions, type GroupedGemmOptions } from './grouped_gemm';
export { permute, type PermuteOptions, type PermuteResult } from './permute';
export { route, type RoutingOptions, type RoutingResult } from './routing';
