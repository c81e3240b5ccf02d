/** `moekit serve`: one layer's MoE block behind HTTP, requests merged by a ForwardBatcher. */
import type { AddressInfo } from 'node:net';

import { ALL_PRESETS, findPreset, type BenchPreset } from '../bench/presets';
import { MoELayer } from '../layer/moe_layer';
import { ForwardBatcher } from '../serve/forward_batcher';
import { createForwardServer, DEFAULT_MAX_BODY_BYTES, shutdownForwardServer } from '../serve/http_server';
import { LayerStats } from '../serve/layer_stats';
import {
  type CommandLine, deviceOption, dtypeOption, expectPositionals, groupSizeOption, integerOption, parseCommandLine, quantizeOption, requireOption, UsageError,
} from './args';

const SERVE_USAGE = `usage: moekit serve <checkpoint-dir> --layer N | --preset NAME  [--device cpu|cuda:N] [--dtype float32|bfloat16|float16]
                   [--quantize fp8|int8|int4] [--group-size N|channel] [--port 8000] [--host 127.0.0.1]
                   [--max-batch-tokens 64] [--max-delay-ms 2] [--max-queued-tokens N] [--max-body-bytes B]

Serves decoder layer N's MoE block of a Hugging Face checkpoint (or, with --preset, a layer of
random weights in a real model's shape, as 'moekit bench' runs) over HTTP:
  POST /v1/forward  a safetensors body with input [T, H] (F32, F16 or BF16), answered with output
                    (the input's dtype), topk_ids (I32) and topk_weights (F32); or a JSON body
                    {"input": [[...], ...]} (Content-Type: application/json), answered in JSON
  GET  /metrics     Prometheus text: queue, batch sizes, latencies, layer load, memory
  GET  /healthz     200 while serving
Concurrent requests are merged into one forward of up to --max-batch-tokens tokens, waiting at most
--max-delay-ms for company (--max-batch-tokens 1: every request runs alone). Bad requests get a
4xx with a JSON error. SIGTERM or SIGINT stops accepting, answers what is queued, and exits 0.

  --device, --dtype, --quantize, --group-size   as for 'moekit run'
  --preset             instead of a checkpoint: ${ALL_PRESETS.map((preset) => preset.name).join(', ')}
  --port               TCP port (default 8000; 0 picks a free one, printed at start)
  --host               address to listen on (default 127.0.0.1)
  --max-queued-tokens  tokens waiting before requests get 503 (default 16 x --max-batch-tokens)
  --max-body-bytes     largest request body (default ${DEFAULT_MAX_BODY_BYTES})`;

const SERVE_OPTION_NAMES = [
  'layer', 'preset', 'device', 'dtype', 'quantize', 'group-size', 'port', 'host', 'max-batch-tokens', 'max-delay-ms', 'max-queued-tokens', 'max-body-bytes',
] as const;

/** At most one line per this many milliseconds. */
const LOG_INTERVAL_MS = 60_000;
const MAX_PORT = 65535;

function delayOption(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const delay = Number(value);
  if (value.trim() === '' || !Number.isFinite(delay) || delay < 0) throw new UsageError(`--max-delay-ms must be a number >= 0, got ${JSON.stringify(value)}`);
  return delay;
}

/** What is served: a checkpoint's layer, or random weights in a preset's shape. */
type LayerSource = { preset: BenchPreset } | { checkpoint: string; layer: number };

function serveOptions({ options, positionals }: CommandLine<(typeof SERVE_OPTION_NAMES)[number]>) {
  const presetName = options.preset;
  const preset = presetName === undefined ? undefined : findPreset(presetName);
  if (presetName !== undefined && preset === undefined) throw new UsageError(`unknown --preset ${JSON.stringify(presetName)} (presets: ${ALL_PRESETS.map((known) => known.name).join(', ')})`);
  if (preset && options.layer !== undefined) throw new UsageError('--layer goes with a checkpoint, not with --preset');
  expectPositionals(positionals, preset ? [] : ['<checkpoint-dir>']);
  const source: LayerSource = preset ? { preset } : { checkpoint: positionals[0]!, layer: integerOption(requireOption(options.layer, 'layer'), 'layer', 0) };
  const quantize = quantizeOption(options.quantize);
  const optionalInteger = (name: (typeof SERVE_OPTION_NAMES)[number], min: number): number | undefined => {
    const value = options[name];
    return value === undefined ? undefined : integerOption(value, name, min);
  };
  const port = optionalInteger('port', 0) ?? 8000;
  if (port > MAX_PORT) throw new UsageError(`--port must be at most ${MAX_PORT}, got ${port}`);
  return {
    source,
    device: deviceOption(options.device, 'cpu'),
    dtype: dtypeOption(options.dtype, 'float32'),
    quantize,
    groupSize: groupSizeOption(options['group-size'], quantize),
    port,
    host: options.host ?? '127.0.0.1',
    maxBatchTokens: optionalInteger('max-batch-tokens', 1),
    maxDelayMs: delayOption(options['max-delay-ms']),
    maxQueuedTokens: optionalInteger('max-queued-tokens', 1),
    maxBodyBytes: optionalInteger('max-body-bytes', 1) ?? DEFAULT_MAX_BODY_BYTES,
  };
}

/** Every LOG_INTERVAL_MS, one line of what happened since the previous one (nothing when idle). */
function startActivityLog(batcher: ForwardBatcher): NodeJS.Timeout {
  let previous = batcher.metrics();
  const timer = setInterval(() => {
    const now = batcher.metrics();
    const answered = now.completedRequests - previous.completedRequests;
    const failed = now.failedRequests - previous.failedRequests;
    const rejected = now.rejectedRequests - previous.rejectedRequests;
    const batches = now.batches - previous.batches;
    if (answered + failed + rejected > 0) {
      const tokens = now.completedTokens - previous.completedTokens;
      console.log(`moekit serve: last minute ${answered} answered (${tokens} tokens in ${batches} forwards), ${failed} failed, ${rejected} rejected; queue ${now.queuedRequests}`);
    }
    previous = now;
  }, LOG_INTERVAL_MS);
  timer.unref();
  return timer;
}

export async function serveCommand(args: readonly string[]): Promise<void> {
  const commandLine = parseCommandLine(args, SERVE_OPTION_NAMES);
  if (commandLine.help) {
    console.log(SERVE_USAGE);
    return;
  }
  const serve = serveOptions(commandLine);
  const { source } = serve;
  const settings = { device: serve.device, dtype: serve.dtype, quantize: serve.quantize, groupSize: serve.groupSize };
  const layer = 'preset' in source ? MoELayer.random(source.preset.config, settings) : await MoELayer.fromPretrained(source.checkpoint, { layer: source.layer, ...settings });
  const serving = 'preset' in source ? `random ${source.preset.name} layer` : `layer ${source.layer} of ${source.checkpoint}`;
  const stats = new LayerStats(layer);
  const batcher = new ForwardBatcher(layer, { maxBatchTokens: serve.maxBatchTokens, maxDelayMs: serve.maxDelayMs, maxQueuedTokens: serve.maxQueuedTokens, stats });
  const server = createForwardServer({ batcher, stats, maxBodyBytes: serve.maxBodyBytes });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(serve.port, serve.host, () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  console.log(`moekit serve: ${serving} on ${layer.device} (${layer.dtype}), listening on http://${address.includes(':') ? `[${address}]` : address}:${port}`);
  const log = startActivityLog(batcher);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  clearInterval(log);
  await shutdownForwardServer(server, batcher);
  stats.dispose();
  layer.dispose();
}
