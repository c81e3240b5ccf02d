import { deviceIndex } from '../device';
import { parseFloatDType, type FloatDType } from '../dtype';
import { addon } from '../native';
import { optionalOptions } from '../options';
import { Tensor } from '../tensor';
import { requireDType, requireFloat, requireOutput, requireSameDevice, requireShape, requireTensor, withOutputs } from './validate';

export interface CombineOptions {
  /** [T, H] added to every token's output: the shared expert's output. */
  shared?: Tensor;
  /** [T, 1] float32: scales `shared` by sigmoid(logit) per token (Qwen2-MoE's shared_expert_gate). */
  sharedGateLogits?: Tensor;
  /** Output dtype, default the expert output's. */
  outDtype?: FloatDType;
}

/**
 * Unpermute: output[t] = Σ_j topkWeights[t, j] · expertOutput[sourceToPermuted[t, j]]
 * (+ sharedScale[t] · shared[t]). Summation order is fixed, so results are deterministic.
 */
export function combine(expertOutput: Tensor, topkWeights: Tensor, sourceToPermuted: Tensor, options?: CombineOptions | null): Tensor {
  const call = combineCall(expertOutput, topkWeights, sourceToPermuted, options);
  const { tokens, hidden, dtype, device } = call;
  return withOutputs(() => ({ output: Tensor.empty([tokens, hidden], { dtype, device }) }), (out) => call.fill(out.output)).output;
}

/**
 * combine() into `into`, a tensor the caller made for exactly this result (a captured forward's
 * persistent output, lib/layer/captured_forward.ts), so a graph writes it without a copy. Not
 * public: its one caller makes the output itself, so it never overlaps the inputs.
 */
export function combineInto(expertOutput: Tensor, topkWeights: Tensor, sourceToPermuted: Tensor, options: CombineOptions | null | undefined, into: Tensor): void {
  const call = combineCall(expertOutput, topkWeights, sourceToPermuted, options);
  const { tokens, hidden, dtype, device } = call;
  requireOutput(into, 'combine', 'into', [tokens, hidden], dtype, device);
  call.fill(into);
}

/** combine()'s checked arguments, and the native call that fills an output with them. */
function combineCall(expertOutput: Tensor, topkWeights: Tensor, sourceToPermuted: Tensor, options: CombineOptions | null | undefined) {
  const op = 'combine';
  const given = optionalOptions(options, `${op}: options`);
  requireTensor(expertOutput, op, 'expertOutput');
  requireTensor(topkWeights, op, 'topkWeights');
  requireTensor(sourceToPermuted, op, 'sourceToPermuted');
  requireFloat(expertOutput, op, 'expertOutput');
  requireDType(topkWeights, op, 'topkWeights', ['float32']);
  requireDType(sourceToPermuted, op, 'sourceToPermuted', ['int32']);
  const [tokens, slots] = requireShape(topkWeights, op, 'topkWeights', [null, null]) as [number, number];
  requireShape(sourceToPermuted, op, 'sourceToPermuted', [tokens, slots]);
  const [, hidden] = requireShape(expertOutput, op, 'expertOutput', [tokens * slots, null]) as [number, number];
  const { shared, sharedGateLogits } = given;
  if (shared !== undefined) {
    requireTensor(shared, op, 'shared');
    requireFloat(shared, op, 'shared');
    requireShape(shared, op, 'shared', [tokens, hidden]);
  }
  if (sharedGateLogits !== undefined) {
    requireTensor(sharedGateLogits, op, 'sharedGateLogits');
    requireDType(sharedGateLogits, op, 'sharedGateLogits', ['float32']);
    requireShape(sharedGateLogits, op, 'sharedGateLogits', [tokens, 1]);
    if (shared === undefined) requireTensor(shared, op, 'shared (needed by sharedGateLogits)');
  }
  const device = requireSameDevice(op, { expertOutput, topkWeights, sourceToPermuted, shared, sharedGateLogits });
  const dtype = parseFloatDType(given.outDtype ?? expertOutput.dtype, `${op}: outDtype`);
  const fill = (output: Tensor): void =>
    addon().combine(deviceIndex(device), {
      expertOutput: expertOutput.toNative(),
      topkWeights: topkWeights.toNative(),
      sourceToPermuted: sourceToPermuted.toNative(),
      shared: shared?.toNative(),
      sharedGateLogits: sharedGateLogits?.toNative(),
      output: output.toNative(),
    });
  return { tokens, hidden, dtype, device, fill };
}
