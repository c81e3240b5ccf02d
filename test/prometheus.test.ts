// toPrometheus (lib/serve/prometheus.ts): Prometheus' text format for the batcher, the layer's
// statistics and device memory.
import { describe, expect, it } from 'vitest';

import { ForwardBatcher, LayerStats, memoryInfo, MoELayer, toPrometheus } from '../lib/index';
import { Histogram } from '../lib/serve/histogram';
import { swigluConfig } from './helpers/configs';

/** The samples of an exposition, by name with labels, e.g. 'moekit_batcher_requests_total{outcome="ok"}'. */
function samples(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

describe('toPrometheus', () => {
  it('renders the batcher, the layer statistics and memory with HELP and TYPE lines', async () => {
    const config = swigluConfig({ hidden: 16, intermediate: 24, experts: 4, topK: 2 });
    using layer = MoELayer.random(config, { seed: 1 });
    using stats = new LayerStats(layer);
    const batcher = new ForwardBatcher(layer, { maxBatchTokens: 8, maxDelayMs: 5, stats });
    await Promise.all([1, 2, 3].map((tokens) => batcher.forward(new Float32Array(tokens * 16).fill(0.5))));
    await batcher.close();
    const text = toPrometheus({ batcher: batcher.metrics(), layer: await stats.read(), memory: [memoryInfo('cpu')], labels: { rank: '0' } });
    const values = samples(text);
    expect(values.get('moekit_batcher_requests_total{rank="0",outcome="ok"}')).toBe(3);
    expect(values.get('moekit_batcher_tokens_total{rank="0"}')).toBe(6);
    expect(values.get('moekit_batcher_queued_requests{rank="0"}')).toBe(0);
    expect(values.get('moekit_batcher_batch_tokens_count{rank="0"}')).toBe(1);
    expect(values.get('moekit_batcher_batch_tokens_bucket{rank="0",le="4"}')).toBe(0);
    expect(values.get('moekit_batcher_batch_tokens_bucket{rank="0",le="8"}')).toBe(1);
    expect(values.get('moekit_layer_forwards_total{rank="0"}')).toBe(1);
    expect(values.get('moekit_layer_tokens_total{rank="0"}')).toBe(6);
    const pairs = [0, 1, 2, 3].map((expert) => values.get(`moekit_layer_expert_pairs_total{rank="0",expert="${expert}"}`)!);
    expect(pairs.reduce((a, b) => a + b, 0)).toBe(12);
    expect(values.get('moekit_layer_load_imbalance{rank="0"}')).toBeCloseTo(Math.max(...pairs) / 3, 10);
    expect(values.get('moekit_memory_total_bytes{rank="0",device="cpu"}')).toBeGreaterThan(0);
    expect(text).toContain('# TYPE moekit_batcher_request_seconds histogram\n');
    expect(text).toContain('# TYPE moekit_layer_expert_pairs_total counter\n');
    expect(text.endsWith('\n')).toBe(true);
  });

  it('renders nothing for sources left out, and escapes label values', () => {
    expect(toPrometheus({})).toBe('');
    const text = toPrometheus({ httpResponses: new Map([[404, 2], [200, 5]]), labels: { model: 'a"b\\c' } });
    expect(text.split('\n').filter((line) => !line.startsWith('#') && line !== '')).toEqual([
      'moekit_http_responses_total{model="a\\"b\\\\c",code="200"} 5',
      'moekit_http_responses_total{model="a\\"b\\\\c",code="404"} 2',
    ]);
  });
});

describe('Histogram', () => {
  it('counts observations at or below each bound, cumulatively', () => {
    const histogram = new Histogram([1, 2, 4]);
    for (const value of [0.5, 1, 1.5, 3, 10]) histogram.observe(value);
    expect(histogram.snapshot()).toEqual({ bounds: [1, 2, 4], cumulative: [2, 3, 4], count: 5, sum: 16 });
  });
});
