/**
 * Merges concurrent forwards into one. A service receives many small requests at once; run one by
 * one, each decode-sized forward streams every active expert's weights, so merging them is the
 * largest gain it can have. Requests wait in a bounded queue; a batch takes them in arrival order
 * up to maxBatchTokens (a request larger than that runs alone), either once the queue holds that
 * many tokens or maxDelayMs after the oldest arrived, and each caller gets its own rows back.
 *
 * Results equal a lone forward of the same rows bit for bit wherever the layer's forward is
 * row-independent: routing, permute, activation and combine work row by row, and each GEMM sums a
 * row's products in an order that depends only on the kernel chosen. The CPU backend picks its
 * kernel per expert by row count (native/cpu/grouped_gemm.cc: fewer than 16 rows take the dot path,
 * more the panel path, which sums in another order), so on the CPU the bits match while a batch
 * keeps every GEMM on the path its requests take alone: batches of at most 15 tokens always do.
 * Larger batches agree to float32 rounding.
 *
 * Rows stay in their dtype from caller to layer and back: float16/bfloat16 rows travel as their
 * bits (Uint16Array), merged with TypedArray.set and handed back as subarrays of the batch's
 * results. A batch whose requests all share one dtype is uploaded in it and the device converts to
 * and from the layer's dtype; in a batch of mixed dtypes the rows not in the layer's dtype are
 * converted on the host. Either way the values equal a lone forward of
 * Tensor.fromArray(rows, { dtype: layer.dtype }): both conversions round to nearest even.
 *
 * Up to pipelineDepth batches are in flight: the next batch is merged, uploaded and launched
 * while the previous one runs and its results download. Work on a device runs in order, so this
 * changes no result.
 */
import type { Device } from '../device';
import { allocateHostArray, convertFloatArray, type FloatDType, type FloatHostArray, type HalfDType } from '../dtype';
import { describeValue, fromNativeError, MoekitError } from '../errors';
import type { CapturedForward, CapturedOutputs } from '../layer/captured_forward';
import type { MoEForwardResult } from '../layer/forward';
import { requireInteger } from '../ops/validate';
import { optionalOptions } from '../options';
import { Tensor } from '../tensor';
import { exponentialBounds, Histogram, type HistogramSnapshot } from './histogram';
import type { LayerStats } from './layer_stats';

/** What the batcher needs of a layer (MoELayer has all of it). */
export interface BatchedLayer {
  readonly config: { readonly hiddenSize: number };
  readonly device: Device;
  readonly dtype: FloatDType;
  forward(x: Tensor): MoEForwardResult;
  /** Records a forward of `tokens` tokens as a CUDA graph (MoELayer.capture); used on CUDA devices only. */
  capture?(tokens: number): CapturedForward;
}

export interface ForwardBatcherOptions {
  /** Most tokens merged into one forward (a larger request runs alone). Default 64. */
  maxBatchTokens?: number;
  /** Longest a request waits for others to join its batch, in milliseconds. Default 2. */
  maxDelayMs?: number;
  /** Most tokens waiting (not yet in a running forward); past it forward() rejects with E_QUEUE_FULL. Default 16 × maxBatchTokens. */
  maxQueuedTokens?: number;
  /** Counts every forward the batcher runs. */
  stats?: LayerStats;
  /**
   * On a CUDA device, record a CUDA graph for a batch size once it has been run `graphAfter` times
   * and replay it from then on (one launch for the whole layer). 0 turns graphs off. Default 8.
   * Ignored on the CPU and for layers without capture().
   */
  graphAfter?: number;
  /** The most graphs kept (each holds its own input, outputs and pool memory). Default 8. */
  maxGraphs?: number;
  /**
   * The most batches in flight at once: with 2, the next batch is merged, uploaded and launched
   * while the previous one's forward runs and its results download. 1 runs one at a time. Default 1
   * (depth 2 is correct on the CPU, not yet measured on a GPU).
   */
  pipelineDepth?: number;
}

/** What forward() takes beside the rows. */
export interface BatchedForwardOptions {
  /**
   * The rows' dtype, which is also the output's: 'float32' (the default) for a Float32Array,
   * 'float16' or 'bfloat16' for a Uint16Array of their bits.
   */
  dtype?: FloatDType;
}

/** One caller's rows of a merged forward, read back to the host. */
export interface BatchedForwardResult<Output extends FloatHostArray = Float32Array> {
  tokens: number;
  /** The dtype of `output`: the request's. */
  dtype: FloatDType;
  /**
   * [tokens, H] in the request's dtype: float32 values (a float32 request's are the layer dtype's
   * values, exactly), or float16/bfloat16 bits.
   */
  output: Output;
  /** [tokens, K] chosen experts, best first. */
  topkIds: Int32Array;
  /** [tokens, K] routing weights. */
  topkWeights: Float32Array;
}

export interface ForwardBatcherMetrics {
  /** Requests and tokens waiting for a forward. */
  queuedRequests: number;
  queuedTokens: number;
  /** Requests answered, failed (their forward failed), and refused (queue full, closed, bad input). */
  completedRequests: number;
  failedRequests: number;
  rejectedRequests: number;
  /** Tokens of the answered requests. */
  completedTokens: number;
  /** Forwards run, and how many of them replayed a CUDA graph. */
  batches: number;
  graphReplays: number;
  /** Tokens per forward. */
  batchTokens: HistogramSnapshot;
  /** Seconds from forward() to its answer, answered requests only. */
  requestSeconds: HistogramSnapshot;
  /** Seconds a batch took from launch to results on the host. */
  forwardSeconds: HistogramSnapshot;
}

interface Pending {
  rows: FloatHostArray;
  dtype: FloatDType;
  tokens: number;
  arrived: number;
  resolve(result: BatchedForwardResult<FloatHostArray>): void;
  reject(error: unknown): void;
}

/** A batch's results on the host, the output in the batch's dtype. */
interface MergedResults {
  dtype: FloatDType;
  output: FloatHostArray;
  topkIds: Int32Array;
  topkWeights: Float32Array;
}

const DEFAULT_MAX_BATCH_TOKENS = 64;
const DEFAULT_MAX_DELAY_MS = 2;
const DEFAULT_QUEUE_BATCHES = 16;
const DEFAULT_GRAPH_AFTER = 8;
const DEFAULT_MAX_GRAPHS = 8;
// One batch at a time by default: overlapping batches with CUDA-graph capture has not yet run on a
// GPU (bench/NOTES.md, serve-v1), so depth 2 is for callers who measure it.
const DEFAULT_PIPELINE_DEPTH = 1;
/** 0.1 ms … ~26 s, doubling. */
const LATENCY_BOUNDS = exponentialBounds(1e-4, 2, 19);

/** options[name], an integer >= min, or `fallback` when left out. */
function integerOption(value: unknown, name: string, fallback: number, min = 1): number {
  return value === undefined ? fallback : requireInteger(value, 'ForwardBatcher', `options.${name}`, min);
}

/** The rows' dtype: options.dtype checked against the array that holds them. */
function rowsDType(rows: unknown, options: BatchedForwardOptions | null | undefined): FloatDType {
  const { dtype } = optionalOptions(options, 'ForwardBatcher.forward: options');
  if (rows instanceof Float32Array) {
    if (dtype !== undefined && dtype !== 'float32') {
      throw new MoekitError('E_DTYPE', `ForwardBatcher.forward: a Float32Array holds float32 rows, but options.dtype is ${describeValue(dtype)}; send float16/bfloat16 rows as a Uint16Array of their bits`);
    }
    return 'float32';
  }
  if (rows instanceof Uint16Array) {
    if (dtype !== 'float16' && dtype !== 'bfloat16') {
      throw new MoekitError('E_DTYPE', `ForwardBatcher.forward: a Uint16Array holds float16 or bfloat16 bits: options.dtype must say which, got ${describeValue(dtype)}`);
    }
    return dtype;
  }
  throw new MoekitError('E_INVALID_ARGUMENT', `ForwardBatcher.forward: rows must be a Float32Array (float32) or a Uint16Array (float16/bfloat16 bits), got ${describeValue(rows)}`);
}

/**
 * The dtype a batch travels in: the one all its requests share (the device converts to and from
 * the layer's dtype), or the layer's when they differ (the others are converted on the host).
 */
function batchDType(batch: readonly Pending[], layerDType: FloatDType): FloatDType {
  const first = batch[0]!.dtype;
  return batch.every((request) => request.dtype === first) ? first : layerDType;
}

/** The batch's rows, in order, as one [tokens, H] array of `dtype`: a request's own array when it is alone. */
function mergeRows(batch: readonly Pending[], dtype: FloatDType): FloatHostArray {
  const only = batch.length === 1 ? batch[0]! : undefined;
  if (only !== undefined && only.dtype === dtype) return only.rows;
  const merged = allocateHostArray(dtype, batch.reduce((sum, request) => sum + request.rows.length, 0));
  let offset = 0;
  for (const request of batch) {
    merged.set(convertFloatArray(request.rows, request.dtype, dtype), offset);
    offset += request.rows.length;
  }
  return merged;
}

/** `rows` (host values of `dtype`) as a [tokens, hidden] tensor on the layer's device, in its dtype. */
function uploadRows(layer: BatchedLayer, rows: FloatHostArray, dtype: FloatDType): Tensor {
  const shape = [rows.length / layer.config.hiddenSize, layer.config.hiddenSize];
  const staged = Tensor.fromArray(rows, shape, { dtype, device: layer.device });
  if (dtype === layer.dtype) return staged;
  try {
    return staged.to(layer.device, layer.dtype);
  } finally {
    staged.dispose();
  }
}

export class ForwardBatcher {
  readonly layer: BatchedLayer;
  readonly maxBatchTokens: number;
  readonly maxDelayMs: number;
  readonly maxQueuedTokens: number;
  readonly stats: LayerStats | undefined;
  readonly pipelineDepth: number;
  readonly #graphAfter: number;
  readonly #maxGraphs: number;
  readonly #queue: Pending[] = [];
  #queuedTokens = 0;
  /** Batches started and not yet answered, and the latest of them. */
  readonly #inFlight = new Set<Promise<void>>();
  #latest: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #graphs = new Map<number, CapturedForward>();
  /** Batch sizes run so far, for choosing which to capture. */
  readonly #sizeCounts = new Map<number, number>();
  readonly #counters = { completedRequests: 0, failedRequests: 0, rejectedRequests: 0, completedTokens: 0, batches: 0, graphReplays: 0 };
  readonly #batchTokens: Histogram;
  readonly #requestSeconds = new Histogram(LATENCY_BOUNDS);
  readonly #forwardSeconds = new Histogram(LATENCY_BOUNDS);

  constructor(layer: BatchedLayer, options?: ForwardBatcherOptions | null) {
    if (typeof layer !== 'object' || layer === null || typeof layer.forward !== 'function') {
      throw new MoekitError('E_INVALID_ARGUMENT', `ForwardBatcher: layer must be a MoELayer, got ${describeValue(layer)}`);
    }
    const given = optionalOptions(options, 'ForwardBatcher: options');
    this.layer = layer;
    this.maxBatchTokens = integerOption(given.maxBatchTokens, 'maxBatchTokens', DEFAULT_MAX_BATCH_TOKENS);
    const delay = given.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    if (typeof delay !== 'number' || !(delay >= 0) || !Number.isFinite(delay)) {
      throw new MoekitError('E_INVALID_ARGUMENT', `ForwardBatcher: options.maxDelayMs must be a finite number >= 0, got ${describeValue(delay)}`);
    }
    this.maxDelayMs = delay;
    this.maxQueuedTokens = integerOption(given.maxQueuedTokens, 'maxQueuedTokens', DEFAULT_QUEUE_BATCHES * this.maxBatchTokens);
    this.stats = given.stats;
    this.#graphAfter = integerOption(given.graphAfter, 'graphAfter', DEFAULT_GRAPH_AFTER, 0);
    this.#maxGraphs = integerOption(given.maxGraphs, 'maxGraphs', DEFAULT_MAX_GRAPHS, 0);
    this.pipelineDepth = integerOption(given.pipelineDepth, 'pipelineDepth', DEFAULT_PIPELINE_DEPTH);
    this.#batchTokens = new Histogram(exponentialBounds(1, 2, Math.max(1, Math.ceil(Math.log2(this.maxBatchTokens)) + 1)));
  }

  /**
   * Runs the layer on `rows` ([T, H] row-major, T ≥ 1) as part of a merged forward and resolves
   * with this request's rows of the results, the output in the rows' dtype: float32 in a
   * Float32Array, or float16/bfloat16 bits in a Uint16Array with `{ dtype }` naming which. Rows
   * in the layer's dtype are neither converted nor copied on the way in, nor the output on the
   * way out (it is a view of the batch's results). Rejects with E_INVALID_ARGUMENT or E_DTYPE for
   * rows of another kind or a dtype that does not match them, E_SHAPE for rows that are not whole
   * rows of the hidden size, E_QUEUE_FULL when the queue has no room for them, E_CLOSED after
   * close(), and with the forward's error when the forward they ran in failed.
   */
  forward(rows: Float32Array, options?: BatchedForwardOptions & { dtype?: 'float32' } | null): Promise<BatchedForwardResult<Float32Array>>;
  forward(rows: Uint16Array, options: BatchedForwardOptions & { dtype: HalfDType }): Promise<BatchedForwardResult<Uint16Array>>;
  forward(rows: FloatHostArray, options?: BatchedForwardOptions | null): Promise<BatchedForwardResult<FloatHostArray>>;
  forward(rows: FloatHostArray, options?: BatchedForwardOptions | null): Promise<BatchedForwardResult<FloatHostArray>> {
    try {
      const dtype = rowsDType(rows, options);
      const tokens = this.#admit(rows);
      return new Promise<BatchedForwardResult<FloatHostArray>>((resolve, reject) => {
        this.#queue.push({ rows, dtype, tokens, arrived: performance.now(), resolve, reject });
        this.#queuedTokens += tokens;
        this.#schedule();
      });
    } catch (error) {
      this.#counters.rejectedRequests += 1;
      return Promise.reject(error);
    }
  }

  /** Counters, queue depth and histograms, for monitoring (toPrometheus renders them). */
  metrics(): ForwardBatcherMetrics {
    return {
      queuedRequests: this.#queue.length,
      queuedTokens: this.#queuedTokens,
      ...this.#counters,
      batchTokens: this.#batchTokens.snapshot(),
      requestSeconds: this.#requestSeconds.snapshot(),
      forwardSeconds: this.#forwardSeconds.snapshot(),
    };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Stops taking requests (forward() rejects with E_CLOSED from now on). With `drain` (the
   * default) the queued requests still run; without, they reject with E_CLOSED. Resolves once the
   * last forward has finished and the captured graphs are freed. The layer stays the caller's.
   */
  async close(options?: { drain?: boolean } | null): Promise<void> {
    const { drain = true } = optionalOptions(options, 'ForwardBatcher.close: options');
    this.#closed = true;
    if (!drain) {
      const dropped = this.#queue.splice(0);
      this.#queuedTokens = 0;
      for (const request of dropped) {
        this.#counters.rejectedRequests += 1;
        request.reject(new MoekitError('E_CLOSED', 'ForwardBatcher was closed before this request ran'));
      }
    }
    this.#schedule();
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
    for (const graph of this.#graphs.values()) graph.dispose();
    this.#graphs.clear();
  }

  #admit(rows: FloatHostArray): number {
    if (this.#closed) throw new MoekitError('E_CLOSED', 'ForwardBatcher.forward: the batcher is closed');
    const hidden = this.layer.config.hiddenSize;
    if (rows.length === 0 || rows.length % hidden !== 0) {
      throw new MoekitError('E_SHAPE', `ForwardBatcher.forward: rows must hold whole rows of the hidden size ${hidden} (at least one), got ${rows.length} values`);
    }
    const tokens = rows.length / hidden;
    if (tokens > this.maxQueuedTokens) {
      throw new MoekitError('E_QUEUE_FULL', `ForwardBatcher.forward: a request of ${tokens} tokens can never fit the queue of maxQueuedTokens ${this.maxQueuedTokens}`);
    }
    if (this.#queuedTokens + tokens > this.maxQueuedTokens) {
      throw new MoekitError('E_QUEUE_FULL',
        `ForwardBatcher.forward: the queue holds ${this.#queuedTokens} of maxQueuedTokens ${this.maxQueuedTokens} tokens, no room for ${tokens} more; retry later`);
    }
    return tokens;
  }

  /** Starts a batch now, or arms the timer for the oldest request's deadline, while a pipeline slot is free. */
  #schedule(): void {
    if (this.#inFlight.size >= this.pipelineDepth || this.#queue.length === 0) return;
    const waited = performance.now() - this.#queue[0]!.arrived;
    if (this.#closed || this.#queuedTokens >= this.maxBatchTokens || waited >= this.maxDelayMs) {
      this.#start();
    } else {
      this.#timer ??= setTimeout(() => {
        this.#timer = undefined;
        this.#schedule();
      }, this.maxDelayMs - waited);
    }
  }

  #start(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#takeBatch();
    const running: Promise<void> = this.#run(batch, this.#latest).finally(() => {
      this.#inFlight.delete(running);
      this.#schedule();
    });
    this.#inFlight.add(running);
    this.#latest = running;
    // The rest of the queue may fill the next slot at once, or need its timer.
    this.#schedule();
  }

  /** The oldest requests, in order, up to maxBatchTokens (at least one). */
  #takeBatch(): Pending[] {
    let tokens = 0;
    let count = 0;
    for (const request of this.#queue) {
      if (count > 0 && tokens + request.tokens > this.maxBatchTokens) break;
      tokens += request.tokens;
      count += 1;
    }
    this.#queuedTokens -= tokens;
    return this.#queue.splice(0, count);
  }

  /** Runs one batch and answers its requests; `previous` is the batch started before it. */
  async #run(batch: Pending[], previous: Promise<void> | undefined): Promise<void> {
    const tokens = batch.reduce((sum, request) => sum + request.tokens, 0);
    // A capture records the device's stream: the batch before must be done, none of its work still queued there.
    if (previous !== undefined && this.#captureDue(tokens)) await previous;
    const started = performance.now();
    let results: MergedResults;
    try {
      results = await this.#forwardMerged(batch, tokens);
    } catch (error) {
      this.#counters.failedRequests += batch.length;
      const failure = fromNativeError(error);
      for (const request of batch) request.reject(failure);
      return;
    }
    const finished = performance.now();
    this.#forwardSeconds.observe((finished - started) / 1000);
    this.#batchTokens.observe(tokens);
    this.#counters.batches += 1;
    const hidden = this.layer.config.hiddenSize;
    const topK = results.topkIds.length / tokens;
    let first = 0;
    for (const request of batch) {
      const last = first + request.tokens;
      request.resolve({
        tokens: request.tokens,
        dtype: request.dtype,
        output: convertFloatArray(results.output.subarray(first * hidden, last * hidden), results.dtype, request.dtype),
        topkIds: results.topkIds.subarray(first * topK, last * topK),
        topkWeights: results.topkWeights.subarray(first * topK, last * topK),
      });
      this.#counters.completedRequests += 1;
      this.#counters.completedTokens += request.tokens;
      this.#requestSeconds.observe((finished - request.arrived) / 1000);
      first = last;
    }
  }

  /** One forward of the batch's `tokens` rows, read back to the host in the batch's dtype. */
  async #forwardMerged(batch: Pending[], tokens: number): Promise<MergedResults> {
    const { layer } = this;
    const dtype = batchDType(batch, layer.dtype);
    using x = uploadRows(layer, mergeRows(batch, dtype), dtype);
    const graph = this.#graphFor(tokens);
    let eager: MoEForwardResult | undefined;
    let outputs: CapturedOutputs;
    if (graph) {
      outputs = graph.replay(x);
      this.#counters.graphReplays += 1;
    } else {
      eager = layer.forward(x);
      outputs = eager;
    }
    try {
      this.stats?.record(outputs.expertCounts, tokens);
      using converted = dtype === layer.dtype ? undefined : outputs.output.to(layer.device, dtype);
      // Queued now, before any later replay of the same graph can overwrite its outputs.
      const [output, topkIds, topkWeights] = await Promise.all([
        (converted ?? outputs.output).toArray() as Promise<FloatHostArray>,
        outputs.topkIds.toArray() as Promise<Int32Array>,
        outputs.topkWeights.toArray() as Promise<Float32Array>,
      ]);
      return { dtype, output, topkIds, topkWeights };
    } finally {
      eager?.dispose();
    }
  }

  /** Whether a batch of `tokens` tokens run now would be captured as a graph (#graphFor's rule). */
  #captureDue(tokens: number): boolean {
    const { layer } = this;
    if (this.#graphAfter === 0 || layer.device === 'cpu' || typeof layer.capture !== 'function' || this.#graphs.has(tokens)) return false;
    return (this.#sizeCounts.get(tokens) ?? 0) + 1 >= this.#graphAfter && this.#graphs.size < this.#maxGraphs;
  }

  /**
   * The graph for batches of `tokens` tokens: one recorded before, or one recorded now if this
   * size has become common (graphAfter runs) and there is room; undefined off CUDA or when the
   * layer cannot capture. A failed capture turns graphs off for that size (the forward still runs).
   */
  #graphFor(tokens: number): CapturedForward | undefined {
    const { layer } = this;
    if (this.#graphAfter === 0 || layer.device === 'cpu' || typeof layer.capture !== 'function') return undefined;
    const known = this.#graphs.get(tokens);
    if (known) return known;
    const due = this.#captureDue(tokens);
    this.#sizeCounts.set(tokens, (this.#sizeCounts.get(tokens) ?? 0) + 1);
    if (!due) return undefined;
    try {
      const graph = layer.capture(tokens);
      this.#graphs.set(tokens, graph);
      return graph;
    } catch {
      this.#sizeCounts.set(tokens, Number.NEGATIVE_INFINITY);
      return undefined;
    }
  }
}
