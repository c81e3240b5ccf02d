// `moekit serve` (lib/cli/serve_command.ts, lib/serve/http_server.ts) run as a user runs it, on the
// mixtral fixture on the CPU: hundreds of concurrent requests of random sizes in safetensors and
// JSON, each checked bit for bit against a direct forward; /metrics counting them; every kind of
// bad request answered with a 4xx naming the problem; memory that stays put; SIGTERM → exit 0.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { decodeSafetensors, encodeSafetensors, type TensorToWrite } from '../lib/checkpoint/safetensors';
import { decodeHalf, encodeHalf } from '../lib/dtype';
import { MoELayer } from '../lib/index';
import { fixtureDir } from './helpers/fixtures';
import { hostForward } from './helpers/forwards';

const MAIN = path.resolve(__dirname, '../dist/cli/main.js');
const MAX_BODY_BYTES = 1 << 16;
// Batches of at most 15 tokens: on the CPU every GEMM then takes the path a lone forward takes, so
// the answers are bit-identical to direct forwards (lib/serve/forward_batcher.ts).
const MAX_BATCH_TOKENS = 15;
const CONCURRENT_REQUESTS = 300;
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

interface Reply {
  status: number;
  type: string;
  body: Buffer;
}

let server: ChildProcess;
let port = 0;
let layer: MoELayer;
let hidden = 0;

function request(method: string, route: string, body?: Buffer | string, contentType = 'application/octet-stream'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const outgoing = http.request({ host: '127.0.0.1', port, method, path: route, agent, headers: body === undefined ? {} : { 'content-type': contentType } }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode!, type: String(response.headers['content-type']), body: Buffer.concat(chunks) }));
      response.on('error', reject);
    });
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

function startServer(): Promise<number> {
  server = spawn(process.execPath, [MAIN, 'serve', fixtureDir('mixtral'), '--layer', '0', '--port', '0', '--max-batch-tokens', String(MAX_BATCH_TOKENS),
    '--max-delay-ms', '3', '--max-body-bytes', String(MAX_BODY_BYTES)], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    server.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    server.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout);
      if (match) resolve(Number(match[1]));
    });
    server.once('exit', (code) => reject(new Error(`moekit serve exited with ${code} before listening: ${stderr}`)));
  });
}

/** The server's resident memory in bytes (Linux). */
function residentBytes(): number {
  const status = fs.readFileSync(`/proc/${server.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** A deterministic generator, so a failure reproduces. */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

type Format = 'F32' | 'BF16' | 'json';

/** One request of `tokens` random rows in `format`; resolves with what the server and a direct forward say. */
async function forwardBoth(tokens: number, format: Format, random: () => number) {
  let rows: Float32Array = Float32Array.from({ length: tokens * hidden }, () => random() * 4 - 2);
  let reply: Reply;
  if (format === 'json') {
    const input = Array.from({ length: tokens }, (_, token) => Array.from(rows.subarray(token * hidden, (token + 1) * hidden)));
    reply = await request('POST', '/v1/forward', JSON.stringify({ input }), 'application/json');
  } else if (format === 'BF16') {
    const bits = encodeHalf(rows, 'bfloat16');
    rows = decodeHalf(bits, 'bfloat16');
    reply = await request('POST', '/v1/forward', encodeSafetensors({ input: { dtype: 'BF16', shape: [tokens, hidden], data: bits } }));
  } else {
    reply = await request('POST', '/v1/forward', encodeSafetensors({ input: { dtype: 'F32', shape: [tokens, hidden], data: rows } }));
  }
  return { reply, expected: await hostForward(layer, rows) };
}

function checkAnswer({ reply, expected }: Awaited<ReturnType<typeof forwardBoth>>, format: Format, tokens: number): void {
  expect(reply.status, reply.body.toString().slice(0, 200)).toBe(200);
  if (format === 'json') {
    const answer = JSON.parse(reply.body.toString()) as { output: number[][]; topk_ids: number[][]; topk_weights: number[][] };
    expect(answer.output.length).toBe(tokens);
    expect(Float32Array.from(answer.output.flat())).toEqual(expected.output);
    expect(Int32Array.from(answer.topk_ids.flat())).toEqual(expected.topkIds);
    expect(Float32Array.from(answer.topk_weights.flat())).toEqual(expected.topkWeights);
    return;
  }
  const tensors = decodeSafetensors(reply.body, 'reply');
  const output = tensors.get('output')!;
  expect(output.dtype).toBe(format);
  expect(output.shape).toEqual([tokens, hidden]);
  const expectedOutput = format === 'BF16' ? encodeHalf(expected.output, 'bfloat16') : expected.output;
  expect(output.data).toEqual(expectedOutput);
  expect(tensors.get('topk_ids')!.data).toEqual(expected.topkIds);
  expect(tensors.get('topk_weights')!.data).toEqual(expected.topkWeights);
}

async function metrics(): Promise<Map<string, number>> {
  const reply = await request('GET', '/metrics');
  expect(reply.status).toBe(200);
  expect(reply.type).toMatch(/^text\/plain; version=0\.0\.4/);
  const values = new Map<string, number>();
  for (const line of reply.body.toString().split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

/** Sends `count` requests at once, of 1 to 8 tokens in the three formats; returns the tokens sent. */
async function concurrentRound(count: number, seed: number): Promise<number> {
  const random = generator(seed);
  const formats: Format[] = ['F32', 'BF16', 'json'];
  const plan = Array.from({ length: count }, (_, index) => ({ tokens: 1 + Math.floor(random() * 8), format: formats[index % 3]! }));
  const results = await Promise.all(plan.map(({ tokens, format }) => forwardBoth(tokens, format, random)));
  results.forEach((result, index) => checkAnswer(result, plan[index]!.format, plan[index]!.tokens));
  return plan.reduce((sum, { tokens }) => sum + tokens, 0);
}

describe('moekit serve on the mixtral fixture (CPU)', () => {
  beforeAll(async () => {
    layer = await MoELayer.fromPretrained(fixtureDir('mixtral'), { layer: 0 });
    hidden = layer.config.hiddenSize;
    port = await startServer();
  });

  afterAll(() => {
    if (server.exitCode === null) server.kill('SIGKILL');
    agent.destroy();
    layer.dispose();
  });

  it('answers hundreds of concurrent requests of random sizes bit for bit as direct forwards, and counts them on /metrics', async () => {
    expect((await request('GET', '/healthz')).status).toBe(200);
    const warmTokens = await concurrentRound(60, 1);
    const rssAfterWarmUp = residentBytes();
    const tokens = await concurrentRound(CONCURRENT_REQUESTS, 2);
    const values = await metrics();
    expect(values.get('moekit_batcher_requests_total{outcome="ok"}')).toBe(60 + CONCURRENT_REQUESTS);
    expect(values.get('moekit_batcher_tokens_total')).toBe(warmTokens + tokens);
    expect(values.get('moekit_layer_tokens_total')).toBe(warmTokens + tokens);
    expect(values.get('moekit_http_responses_total{code="200"}')).toBeGreaterThanOrEqual(61 + CONCURRENT_REQUESTS);
    // Merged: fewer forwards than requests, none above the limit.
    const batches = values.get('moekit_batcher_batches_total')!;
    expect(batches).toBeLessThan(60 + CONCURRENT_REQUESTS);
    expect(values.get('moekit_layer_forwards_total')).toBe(batches);
    expect(values.get(`moekit_batcher_batch_tokens_bucket{le="16"}`)).toBe(batches);
    const pairs = Array.from({ length: layer.config.numExperts }, (_, expert) => values.get(`moekit_layer_expert_pairs_total{expert="${expert}"}`)!);
    expect(pairs.reduce((a, b) => a + b, 0)).toBe((warmTokens + tokens) * layer.config.routing.topK);
    expect(values.get('moekit_layer_load_imbalance')).toBeGreaterThanOrEqual(1);
    expect(values.get('moekit_memory_in_use_bytes{device="cpu"}')).toBeGreaterThan(0);
    // The answers are let go: the server's memory stays near where the warm-up left it.
    expect(residentBytes() - rssAfterWarmUp).toBeLessThan(96 * 1024 * 1024);
  });

  it('answers each kind of bad request with a 4xx naming the problem, and stays up', async () => {
    const wrongWidth = (dtype: 'F32') => encodeSafetensors({ input: { dtype, shape: [2, hidden + 1], data: new Float32Array(2 * (hidden + 1)) } });
    const cases: [string, Promise<Reply>, number, string, RegExp][] = [
      ['wrong hidden size (safetensors)', request('POST', '/v1/forward', wrongWidth('F32')), 400, 'E_SHAPE', /hidden size is 64/],
      ['wrong hidden size (JSON)', request('POST', '/v1/forward', '{"input": [[1, 2, 3]]}', 'application/json'), 400, 'E_SHAPE', /hidden size is 64/],
      ['bad dtype', request('POST', '/v1/forward', encodeSafetensors({ input: { dtype: 'I32', shape: [1, hidden], data: new Int32Array(hidden) } } as Record<string, TensorToWrite>)),
        400, 'E_DTYPE', /input is I32; it must be F32, F16 or BF16/],
      ['a number that is not one', request('POST', '/v1/forward', JSON.stringify({ input: [[...new Array(hidden - 1).fill(0), 'x']] }), 'application/json'), 400, 'E_DTYPE', /input\[0\]\[63\] must be a number/],
      ['body too large', request('POST', '/v1/forward', Buffer.alloc(MAX_BODY_BYTES + 1)), 413, 'E_BODY_TOO_LARGE', /larger than the server's limit of 65536 bytes/],
      ['malformed safetensors', request('POST', '/v1/forward', Buffer.from('\x10\0\0\0\0\0\0\0{"input": nope} ')), 400, 'E_SAFETENSORS', /request body: header is not valid JSON/],
      ['truncated safetensors', request('POST', '/v1/forward', encodeSafetensors({ input: { dtype: 'F32', shape: [1, hidden], data: new Float32Array(hidden) } }).subarray(0, 100)),
        400, 'E_SAFETENSORS', /run past the end of the data/],
      ['no input tensor', request('POST', '/v1/forward', encodeSafetensors({ x: { dtype: 'F32', shape: [1, hidden], data: new Float32Array(hidden) } })), 400, 'E_INVALID_ARGUMENT', /no tensor named input \(it has: x\)/],
      ['malformed JSON', request('POST', '/v1/forward', '{"input": [[1,', 'application/json'), 400, 'E_INVALID_ARGUMENT', /not valid JSON/],
      ['JSON without input', request('POST', '/v1/forward', '{"rows": []}', 'application/json'), 400, 'E_INVALID_ARGUMENT', /must be \{"input": \[\[...\], ...\]\}/],
      ['no tokens', request('POST', '/v1/forward', encodeSafetensors({ input: { dtype: 'F32', shape: [0, hidden], data: new Float32Array(0) } })), 400, 'E_SHAPE', /no tokens/],
      ['wrong method', request('GET', '/v1/forward'), 405, 'E_METHOD', /takes POST, not GET/],
      ['unknown route', request('GET', '/v2/anything'), 404, 'E_NOT_FOUND', /no route \/v2\/anything/],
    ];
    for (const [what, reply, status, code, message] of cases) {
      const answer = await reply;
      expect(answer.status, what).toBe(status);
      const error = JSON.parse(answer.body.toString()) as { error: string; code: string };
      expect(error.code, what).toBe(code);
      expect(error.error, what).toMatch(message);
    }
    expect((await request('GET', '/healthz')).status).toBe(200);
    const values = await metrics();
    expect(values.get('moekit_http_responses_total{code="400"}')).toBe(10);
    expect(values.get('moekit_http_responses_total{code="413"}')).toBe(1);
    // Still answering forwards.
    await concurrentRound(6, 3);
  });

  it('on SIGTERM answers what was sent, then exits 0', async () => {
    const random = generator(4);
    const inFlight = Array.from({ length: 20 }, (_, index) => forwardBoth(1 + (index % 4), 'F32', random));
    // Let the requests reach the server before the signal.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));
    server.kill('SIGTERM');
    const results = await Promise.all(inFlight);
    results.forEach((result, index) => checkAnswer(result, 'F32', 1 + (index % 4)));
    expect(await exited).toBe(0);
  });
});

describe('moekit serve usage', () => {
  const usage = (args: string[]) => spawnSync(process.execPath, [MAIN, 'serve', ...args], { encoding: 'utf8', timeout: 30_000 });

  it.each([
    [['--preset', 'nope'], /unknown --preset "nope" \(presets: mixtral-8x7b,/],
    [['--preset', 'mixtral-8x7b-mini', '--layer', '0'], /--layer goes with a checkpoint, not with --preset/],
    [[fixtureDir('mixtral')], /missing required option --layer/],
    [[fixtureDir('mixtral'), '--layer', '0', '--max-delay-ms', 'soon'], /--max-delay-ms must be a number >= 0, got "soon"/],
    [[fixtureDir('mixtral'), '--layer', '0', '--port', '70000'], /--port must be at most 65535, got 70000/],
  ])('refuses %j with exit code 2', (args, message) => {
    const result = usage(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(message);
  });
});
