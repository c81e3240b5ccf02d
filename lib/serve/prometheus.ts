/**
 * Prometheus' text exposition format (version 0.0.4) for what a moekit service watches: the
 * batcher's queue, batch sizes and latencies, the layer's forwards, tokens and load per expert,
 * and each device's memory. A service serves the string on its own /metrics.
 */
import type { MemoryInfo } from '../memory';
import type { ForwardBatcherMetrics } from './forward_batcher';
import type { HistogramSnapshot } from './histogram';
import type { LayerStatsSnapshot } from './layer_stats';

export interface PrometheusSources {
  /** ForwardBatcher.metrics(). */
  batcher?: ForwardBatcherMetrics;
  /** LayerStats.read(): totals as counters, the window's load imbalance as a gauge. */
  layer?: LayerStatsSnapshot;
  /** HTTP responses sent, by status code (a server's own count, e.g. lib/serve/http_server.ts's). */
  httpResponses?: ReadonlyMap<number, number>;
  /** memoryInfo() of each device to report. */
  memory?: readonly MemoryInfo[];
  /** Labels put on every sample, e.g. { rank: '0' } under TP/EP. */
  labels?: Readonly<Record<string, string>>;
}

/** The exposition's content type, for the response header. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = Readonly<Record<string, string>>;

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function sample(name: string, labels: Labels, value: number): string {
  const pairs = Object.entries(labels).map(([key, text]) => `${key}="${escapeLabel(text)}"`);
  return `${name}${pairs.length > 0 ? `{${pairs.join(',')}}` : ''} ${formatValue(value)}`;
}

/** Collects metric families, each with its HELP and TYPE lines before its samples. */
class Exposition {
  readonly #lines: string[] = [];
  readonly #labels: Labels;

  constructor(labels: Labels) {
    this.#labels = labels;
  }

  family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string, samples: readonly [Labels, number][]): void {
    this.#lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) this.#lines.push(sample(name, { ...this.#labels, ...labels }, value));
  }

  histogram(name: string, help: string, histogram: HistogramSnapshot): void {
    this.#lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    histogram.bounds.forEach((bound, index) => {
      this.#lines.push(sample(`${name}_bucket`, { ...this.#labels, le: formatValue(bound) }, histogram.cumulative[index]!));
    });
    this.#lines.push(
      sample(`${name}_bucket`, { ...this.#labels, le: '+Inf' }, histogram.count),
      sample(`${name}_sum`, this.#labels, histogram.sum),
      sample(`${name}_count`, this.#labels, histogram.count),
    );
  }

  text(): string {
    return this.#lines.length === 0 ? '' : `${this.#lines.join('\n')}\n`;
  }
}

/** Renders the given sources; a source left out adds nothing. */
export function toPrometheus(sources: PrometheusSources): string {
  const out = new Exposition(sources.labels ?? {});
  const { batcher, layer, memory, httpResponses } = sources;
  if (httpResponses) {
    out.family('moekit_http_responses_total', 'counter', 'HTTP responses by status code.',
      [...httpResponses].sort(([a], [b]) => a - b).map(([status, count]): [Labels, number] => [{ code: String(status) }, count]));
  }
  if (batcher) {
    out.family('moekit_batcher_queued_requests', 'gauge', 'Requests waiting for a forward.', [[{}, batcher.queuedRequests]]);
    out.family('moekit_batcher_queued_tokens', 'gauge', 'Tokens waiting for a forward.', [[{}, batcher.queuedTokens]]);
    out.family('moekit_batcher_requests_total', 'counter', 'Requests by outcome: ok (answered), failed (their forward failed), rejected (queue full, closed, or not whole rows).', [
      [{ outcome: 'ok' }, batcher.completedRequests],
      [{ outcome: 'failed' }, batcher.failedRequests],
      [{ outcome: 'rejected' }, batcher.rejectedRequests],
    ]);
    out.family('moekit_batcher_tokens_total', 'counter', 'Tokens of answered requests.', [[{}, batcher.completedTokens]]);
    out.family('moekit_batcher_batches_total', 'counter', 'Merged forwards run.', [[{}, batcher.batches]]);
    out.family('moekit_batcher_graph_replays_total', 'counter', 'Merged forwards run as a CUDA graph replay.', [[{}, batcher.graphReplays]]);
    out.histogram('moekit_batcher_batch_tokens', 'Tokens per merged forward.', batcher.batchTokens);
    out.histogram('moekit_batcher_request_seconds', 'Seconds from a request to its answer.', batcher.requestSeconds);
    out.histogram('moekit_batcher_forward_seconds', 'Seconds from launching a merged forward to its results on the host.', batcher.forwardSeconds);
  }
  if (layer) {
    const { total, window } = layer;
    out.family('moekit_layer_forwards_total', 'counter', 'Layer forwards.', [[{}, total.forwards]]);
    out.family('moekit_layer_tokens_total', 'counter', 'Tokens through the layer.', [[{}, total.tokens]]);
    out.family('moekit_layer_expert_pairs_total', 'counter', 'Routed (token, expert) pairs per expert.',
      total.expertPairs.map((pairs, expert): [Labels, number] => [{ expert: String(expert) }, pairs]));
    if (window.loadImbalance !== null) {
      out.family('moekit_layer_load_imbalance', 'gauge', 'Most routed pairs of an expert over the mean, since the previous scrape (1 is balanced).', [[{}, window.loadImbalance]]);
    }
  }
  if (memory && memory.length > 0) {
    const perDevice = (pick: (info: MemoryInfo) => number) => memory.map((info): [Labels, number] => [{ device: info.device }, pick(info)]);
    out.family('moekit_memory_in_use_bytes', 'gauge', 'Bytes moekit has handed out to tensors and scratch.', perDevice((info) => info.inUseBytes));
    out.family('moekit_memory_reserved_bytes', 'gauge', "Bytes moekit holds (the CUDA pool's reservation).", perDevice((info) => info.reservedBytes));
    out.family('moekit_memory_free_bytes', 'gauge', "The device's free memory.", perDevice((info) => info.freeBytes));
    out.family('moekit_memory_total_bytes', 'gauge', "The device's memory.", perDevice((info) => info.totalBytes));
  }
  return out.text();
}
