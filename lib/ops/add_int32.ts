import { deviceIndex } from '../device';
import { MoekitError } from '../errors';
import { addon } from '../native';
import { Tensor } from '../tensor';
import { requireDType, requireSameDevice, requireTensor } from './validate';

/**
 * accumulator += input, elementwise on their device, for int32 tensors of the same size (the sum
 * wraps in two's complement). Queued like every op: nothing waits for the device, so a caller can
 * total routing's expertCounts over many forwards and read the sum once (lib/serve/layer_stats.ts).
 */
export function addInt32(accumulator: Tensor, input: Tensor): void {
  const op = 'addInt32';
  requireTensor(accumulator, op, 'accumulator');
  requireTensor(input, op, 'input');
  requireDType(accumulator, op, 'accumulator', ['int32']);
  requireDType(input, op, 'input', ['int32']);
  if (accumulator.numel !== input.numel) {
    throw new MoekitError('E_SHAPE', `${op}: input has ${input.numel} elements but accumulator has ${accumulator.numel}`);
  }
  const device = requireSameDevice(op, { accumulator, input });
  addon().addInt32(deviceIndex(device), { input: input.toNative(), accumulator: accumulator.toNative() });
}
