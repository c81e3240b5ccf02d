import { deviceIndex, parseDevice, type Device } from './device';
import { fromNativeError } from './errors';
import { addon } from './native';

/** Resolves once all work queued so far on `device` has finished (rejects with a failure it met). */
export async function synchronize(device: Device): Promise<void> {
  try {
    await addon().synchronize(deviceIndex(parseDevice(device)));
  } catch (error) {
    throw fromNativeError(error);
  }
}
