import { deviceIndex, parseDevice, type Device } from './device';
import { addon } from './native';

/**
 * Resolves once all work queued so far on `device` has finished. Rejects only when the device
 * itself failed; an op that failed while it ran poisons its output tensors instead, whose
 * toArray() rejects with its error.
 */
export async function synchronize(device: Device): Promise<void> {
  await addon().synchronize(deviceIndex(parseDevice(device)));
}
