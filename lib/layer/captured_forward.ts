import { deviceIndex } from '../device';
import { MoekitError } from '../errors';
import { addon, type NativeGraph } from '../native';
import { Tensor } from '../tensor';
import type { MoEForwardResult } from './forward';

/** The outputs a captured forward writes on every replay. */
export interface CapturedOutputs {
  output: Tensor;
  topkIds: Tensor;
  topkWeights: Tensor;
  expertCounts: Tensor;
}

/**
 * A forward for a fixed token count recorded as a CUDA graph. `replay(x)` copies x into the static
 * `input` and relaunches the whole layer with one launch; results land in the same output tensors
 * each time (read them before the next replay).
 */
export class CapturedForward {
  readonly input: Tensor;
  readonly outputs: CapturedOutputs;
  #graph: NativeGraph | undefined;
  readonly #afterReplay: (() => void) | undefined;

  /** `afterReplay` runs after each launch: a sharded layer's group watches the replayed collectives. */
  constructor(input: Tensor, outputs: CapturedOutputs, graph: NativeGraph, afterReplay?: () => void) {
    this.input = input;
    this.outputs = outputs;
    this.#graph = graph;
    this.#afterReplay = afterReplay;
  }

  /** Enqueues one replay; with `x`, first copies it into `input`. Returns at once. */
  replay(x?: Tensor): CapturedOutputs {
    const graph = this.#graph;
    if (graph === undefined) throw new MoekitError('E_DISPOSED', 'CapturedForward was used after dispose()');
    if (x !== undefined) this.input.copyFrom(x);
    graph.launch();
    this.#afterReplay?.();
    return this.outputs;
  }

  dispose(): void {
    this.#graph?.release();
    this.#graph = undefined;
    this.input.dispose();
    for (const tensor of Object.values(this.outputs)) tensor.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Records `forward(input, outputs)` into a CUDA graph. The forward writes its results into the
 * persistent outputs (made here, outside the graph) and frees its temporaries inside the graph, so
 * every allocation the graph makes is also released by it and the graph can be replayed any
 * number of times; no copy of the results ends the replay.
 */
export function captureForward(input: Tensor, forward: (x: Tensor, into?: CapturedOutputs) => MoEForwardResult, afterReplay?: () => void): CapturedForward {
  if (!input.device.startsWith('cuda:')) {
    throw new MoekitError('E_DEVICE', `capture needs a CUDA device; this layer is on ${input.device}`);
  }
  const device = deviceIndex(input.device);
  const outputs: CapturedOutputs = {
    output: Tensor.empty([input.shape[0]!, input.shape[1]!], { dtype: input.dtype, device: input.device }),
    topkIds: Tensor.empty([0], { device: input.device }),
    topkWeights: Tensor.empty([0], { device: input.device }),
    expertCounts: Tensor.empty([0], { device: input.device }),
  };
  // A warm-up forward outside the capture gives the real output shapes (and warms the pool).
  {
    using warm = forward(input);
    for (const name of ['topkIds', 'topkWeights', 'expertCounts'] as const) {
      outputs[name].dispose();
      outputs[name] = Tensor.empty(warm[name].shape, { dtype: warm[name].dtype, device: input.device });
    }
  }
  let graph: NativeGraph;
  try {
    addon().beginCapture(device);
  } catch (error) {
    for (const tensor of Object.values(outputs)) tensor.dispose();
    throw error;
  }
  try {
    // The result holds `outputs` themselves: not disposed here.
    forward(input, outputs);
  } catch (error) {
    // End the capture whatever happened, so the device's stream is usable again.
    try {
      addon().endCapture(device).release();
    } catch {
      // The original failure is the one worth reporting.
    }
    for (const tensor of Object.values(outputs)) tensor.dispose();
    throw error;
  }
  try {
    graph = addon().endCapture(device);
  } catch (error) {
    for (const tensor of Object.values(outputs)) tensor.dispose();
    throw error;
  }
  return new CapturedForward(input, outputs, graph, afterReplay);
}
