import { deviceIndex } from '../device';
import { addon } from '../native';
import { Tensor } from '../tensor';
import { permuteCall, type PermuteOptions, type PermuteResult } from './permute';
import type { Fp8Rows } from './quantized';
import { emptyRoutingResult, requireRoutingResult, routingCall, type RoutingOptions, type RoutingResult } from './routing';
import { withOutputs } from './validate';

export interface RouteAndPermuteResult {
  routed: RoutingResult;
  sorted: PermuteResult<Tensor | Fp8Rows>;
}

/**
 * route(logits) then permute(input) of the ids it chose, as one op: the same results, which the CUDA
 * backend computes in one kernel for a decode step (native/cuda/permute.cu, routePermute), a
 * graph node fewer. Not public: the layer's forward calls it where nothing comes between the two
 * (no expert slots, no profiler). `into`: tensors for the routing results, as routeInto takes them.
 */
export function routeAndPermute(logits: Tensor, routingOptions: RoutingOptions, input: Tensor | Fp8Rows, numExperts: number,
  permuteOptions?: PermuteOptions | null, into?: RoutingResult): RouteAndPermuteResult {
  const routing = routingCall(logits, routingOptions);
  if (into) requireRoutingResult(routing, into);
  const routed = into ?? withOutputs(() => ({ ...emptyRoutingResult(routing) }), () => {});
  try {
    const permuting = permuteCall(input, routed.topkIds, numExperts, permuteOptions);
    const sorted = withOutputs(permuting.outputs, (out) =>
      addon().routePermute(deviceIndex(routing.device), { ...routing.nativeArgs(routed), ...permuting.nativeArgs(out) }));
    return { routed, sorted: permuting.result(sorted) };
  } catch (error) {
    // The caller's tensors (into) stay the caller's.
    if (!into) for (const tensor of Object.values(routed)) tensor.dispose();
    throw error;
  }
}
