/**
 * Device-side timing. An event marks a point in a device's work order: on a CUDA device it is a
 * CUDA event recorded on the device's stream; on the CPU, the host time at which the worker thread
 * reached it. The time between events is read once the device has run past them, off the JS
 * thread, so waiting never blocks the event loop.
 */
import { deviceIndex, type Device } from '../device';
import type { ForwardProfiler, ForwardStage } from '../layer/forward';
import { addon, type NativeEvent } from '../native';

/** An event at this point of `device`'s work order (after everything enqueued so far). */
export function recordEvent(device: Device): NativeEvent {
  return addon().recordEvent(deviceIndex(device));
}

/**
 * Milliseconds from events[0] to each of `events` (the first is 0), once their device has run
 * past them all. The events are released afterwards.
 */
export async function elapsedTimes(events: readonly NativeEvent[]): Promise<number[]> {
  try {
    return await addon().elapsedTimes([...events]);
  } finally {
    for (const event of events) event.release();
  }
}

/** The timing of one profiled forward: its total and each stage's share, in milliseconds. */
export interface StageTimes {
  totalMs: number;
  /** Only the stages the forward reported. */
  stages: Partial<Record<ForwardStage, number>>;
}

/**
 * A ForwardProfiler that records an event when it is made and at each mark; `times()` then
 * gives each stage as the time from the previous mark to its own.
 */
export class StageTimer implements ForwardProfiler {
  readonly #device: Device;
  readonly #events: NativeEvent[];
  readonly #stages: ForwardStage[] = [];

  constructor(device: Device) {
    this.#device = device;
    this.#events = [recordEvent(device)];
  }

  mark(stage: ForwardStage): void {
    this.#events.push(recordEvent(this.#device));
    this.#stages.push(stage);
  }

  async times(): Promise<StageTimes> {
    const since = await elapsedTimes(this.#events);
    const stages: Partial<Record<ForwardStage, number>> = {};
    this.#stages.forEach((stage, index) => {
      stages[stage] = since[index + 1]! - since[index]!;
    });
    return { totalMs: since[since.length - 1]!, stages };
  }
}

/**
 * Milliseconds each of `runs` calls of `enqueue` takes on the device (after `warmup` untimed
 * ones), each awaited before the next. `prepare(run)`, if given, is enqueued before each call
 * and left out of its time (a copy of the run's input, say).
 */
export async function timeOnDevice(
  device: Device,
  enqueue: () => void,
  options: { warmup: number; runs: number; prepare?: (run: number) => void },
): Promise<number[]> {
  const times: number[] = [];
  for (let run = 0; run < options.warmup + options.runs; run++) {
    options.prepare?.(run);
    const start = recordEvent(device);
    try {
      enqueue();
    } catch (error) {
      start.release();
      throw error;
    }
    const [, milliseconds] = await elapsedTimes([start, recordEvent(device)]);
    if (run >= options.warmup) times.push(milliseconds!);
  }
  return times;
}
