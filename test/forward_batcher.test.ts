// ForwardBatcher (lib/serve/forward_batcher.ts): concurrent forwards merged, split back per
// caller in order and bit-identical to lone forwards; the bounded queue; a failing forward failing
// only its own requests; close() draining or refusing; float16/bfloat16 rows kept as bits from
// caller to layer and back, mixed dtypes in one batch; batches pipelined.
import { describe, expect, it } from 'vitest';

import { encodeHalf, ForwardBatcher, MoELayer, Tensor, type BatchedLayer, type FloatDType, type MoEForwardResult } from '../lib/index';
import { expectRejects } from './helpers/errors';
import { hostForward } from './helpers/forwards';
import { swigluConfig } from './helpers/configs';

const HIDDEN = 32;
const config = swigluConfig({ hidden: HIDDEN, intermediate: 48, experts: 8, topK: 2 });

/** Rows of `tokens` tokens with values no other call gives (seeded by `seed`). */
function rowsOf(tokens: number, seed: number): Float32Array {
  return Float32Array.from({ length: tokens * HIDDEN }, (_, index) => Math.sin(seed * 1000 + index * 0.37));
}

/** Rows as `dtype` holds them on the host: float32 values, or float16/bfloat16 bits. */
function rowsIn(dtype: FloatDType, tokens: number, seed: number): Float32Array | Uint16Array {
  const rows = rowsOf(tokens, seed);
  return dtype === 'float32' ? rows : encodeHalf(rows, dtype);
}

/** A layer that counts its forwards and fails the ones `fails` picks (by call number, from 1). */
function instrumented(layer: MoELayer, fails: (call: number) => boolean = () => false): BatchedLayer & { calls: number[]; dtypes: string[] } {
  const calls: number[] = [];
  const dtypes: string[] = [];
  return {
    config: layer.config,
    device: layer.device,
    dtype: layer.dtype,
    calls,
    dtypes,
    forward(x: Tensor): MoEForwardResult {
      calls.push(x.shape[0]!);
      dtypes.push(x.dtype);
      if (fails(calls.length)) throw new Error(`forward ${calls.length} failed on purpose`);
      return layer.forward(x);
    },
  };
}

describe('ForwardBatcher', () => {
  it('merges concurrent requests and answers each caller with its own rows, bit for bit', async () => {
    using layer = MoELayer.random(config, { seed: 3 });
    const counted = instrumented(layer);
    // At most 15 tokens per forward: on the CPU every GEMM then takes the path it takes alone.
    const batcher = new ForwardBatcher(counted, { maxBatchTokens: 15, maxDelayMs: 20 });
    const sizes = [1, 3, 2, 5, 1, 4, 7, 2, 1, 6, 3, 1];
    const requests = sizes.map((tokens, index) => rowsOf(tokens, index));
    const answers = await Promise.all(requests.map((rows) => batcher.forward(rows)));
    expect(counted.calls.length).toBeLessThan(sizes.length);
    expect(counted.calls.every((tokens) => tokens <= 15)).toBe(true);
    expect(counted.calls.reduce((a, b) => a + b, 0)).toBe(sizes.reduce((a, b) => a + b, 0));
    for (const [index, rows] of requests.entries()) {
      const lone = await hostForward(layer, rows);
      expect(answers[index]!.tokens).toBe(sizes[index]);
      expect(answers[index]!.output).toEqual(lone.output);
      expect(answers[index]!.topkIds).toEqual(lone.topkIds);
      expect(answers[index]!.topkWeights).toEqual(lone.topkWeights);
    }
    const metrics = batcher.metrics();
    expect(metrics).toMatchObject({ completedRequests: sizes.length, completedTokens: sizes.reduce((a, b) => a + b, 0), batches: counted.calls.length, queuedRequests: 0, failedRequests: 0 });
    expect(metrics.batchTokens.count).toBe(counted.calls.length);
    expect(metrics.requestSeconds.count).toBe(sizes.length);
    await batcher.close();
  });

  it('takes requests in arrival order up to maxBatchTokens, and runs a larger request alone', async () => {
    using layer = MoELayer.random(config, { seed: 4 });
    const counted = instrumented(layer);
    const batcher = new ForwardBatcher(counted, { maxBatchTokens: 6, maxDelayMs: 50 });
    const sizes = [2, 3, 2, 9, 1];
    await Promise.all(sizes.map((tokens, index) => batcher.forward(rowsOf(tokens, index))));
    // [2, 3] fill 5 of 6 (2 more would pass 6), [2] then meets the 9-token request, which goes alone; [1] last.
    expect(counted.calls).toEqual([5, 2, 9, 1]);
    await batcher.close();
  });

  it('answers a lone request after maxDelayMs', async () => {
    using layer = MoELayer.random(config, { seed: 5 });
    const batcher = new ForwardBatcher(layer, { maxBatchTokens: 64, maxDelayMs: 30 });
    const started = performance.now();
    const answer = await batcher.forward(rowsOf(1, 1));
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    expect(answer.output).toEqual((await hostForward(layer, rowsOf(1, 1))).output);
    await batcher.close();
  });

  it('agrees with lone forwards to float32 rounding when batches are large', async () => {
    using layer = MoELayer.random(config, { seed: 6 });
    const batcher = new ForwardBatcher(layer, { maxBatchTokens: 64, maxDelayMs: 20 });
    const requests = Array.from({ length: 10 }, (_, index) => rowsOf(1 + (index % 5), 100 + index));
    const answers = await Promise.all(requests.map((rows) => batcher.forward(rows)));
    for (const [index, rows] of requests.entries()) {
      const lone = await hostForward(layer, rows);
      answers[index]!.output.forEach((value, at) => expect(Math.abs(value - lone.output[at]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(lone.output[at]!))));
    }
    await batcher.close();
  });

  it('refuses requests past maxQueuedTokens with E_QUEUE_FULL, and rows that are not whole rows with E_SHAPE', async () => {
    using layer = MoELayer.random(config, { seed: 7 });
    const batcher = new ForwardBatcher(layer, { maxBatchTokens: 4, maxDelayMs: 10_000, maxQueuedTokens: 3 });
    const waiting = [batcher.forward(rowsOf(2, 1)), batcher.forward(rowsOf(1, 2))];
    await expectRejects(batcher.forward(rowsOf(1, 3)), 'E_QUEUE_FULL', /holds 3 of maxQueuedTokens 3 tokens, no room for 1 more/);
    await expectRejects(batcher.forward(rowsOf(4, 4)), 'E_QUEUE_FULL', /request of 4 tokens can never fit the queue of maxQueuedTokens 3/);
    await expectRejects(batcher.forward(new Float32Array(HIDDEN + 1)), 'E_SHAPE', /whole rows of the hidden size 32/);
    await expectRejects(batcher.forward(new Float32Array(0)), 'E_SHAPE', /at least one/);
    expect(batcher.metrics()).toMatchObject({ queuedRequests: 2, queuedTokens: 3, rejectedRequests: 4 });
    // close() drains: the queued requests still run, without waiting for maxDelayMs.
    await batcher.close();
    expect((await Promise.all(waiting)).map((answer) => answer.tokens)).toEqual([2, 1]);
  });

  it('rejects only the requests of a forward that fails', async () => {
    using layer = MoELayer.random(config, { seed: 8 });
    const counted = instrumented(layer, (call) => call === 2);
    const batcher = new ForwardBatcher(counted, { maxBatchTokens: 3, maxDelayMs: 20 });
    const outcomes = await Promise.allSettled([1, 2, 3, 1, 2].map((tokens, index) => batcher.forward(rowsOf(tokens, index))));
    // Forwards: [1, 2], [3] (fails), [1, 2].
    expect(counted.calls).toEqual([3, 3, 3]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(String((outcomes[2] as PromiseRejectedResult).reason)).toMatch(/forward 2 failed on purpose/);
    expect(batcher.metrics()).toMatchObject({ completedRequests: 4, failedRequests: 1, batches: 2 });
    // The batcher goes on after a failure.
    expect((await batcher.forward(rowsOf(1, 9))).tokens).toBe(1);
    await batcher.close();
  });

  it('close({ drain: false }) rejects what is queued; after close() every request is refused', async () => {
    using layer = MoELayer.random(config, { seed: 9 });
    const batcher = new ForwardBatcher(layer, { maxBatchTokens: 8, maxDelayMs: 10_000 });
    const queued = batcher.forward(rowsOf(2, 1));
    await batcher.close({ drain: false });
    await expectRejects(queued, 'E_CLOSED', /closed before this request ran/);
    await expectRejects(batcher.forward(rowsOf(1, 2)), 'E_CLOSED', /the batcher is closed/);
    expect(batcher.closed).toBe(true);
  });

  it('keeps bfloat16 rows as bits end to end: bit-identical to lone forwards, answers as views of one batch', async () => {
    using layer = MoELayer.random(config, { seed: 11, dtype: 'bfloat16' });
    const counted = instrumented(layer);
    const batcher = new ForwardBatcher(counted, { maxBatchTokens: 15, maxDelayMs: 20 });
    const sizes = [2, 1, 4, 3];
    const requests = sizes.map((tokens, index) => rowsIn('bfloat16', tokens, 20 + index) as Uint16Array);
    const answers = await Promise.all(requests.map((rows) => batcher.forward(rows, { dtype: 'bfloat16' })));
    expect(counted.calls).toEqual([10]);
    expect(counted.dtypes).toEqual(['bfloat16']);
    for (const [index, rows] of requests.entries()) {
      const answer = answers[index]!;
      const lone = await hostForward(layer, rows, 'bfloat16');
      expect(answer.dtype).toBe('bfloat16');
      expect(answer.output).toBeInstanceOf(Uint16Array);
      expect(answer.output).toEqual(lone.output);
      expect(answer.topkIds).toEqual(lone.topkIds);
      expect(answer.topkWeights).toEqual(lone.topkWeights);
    }
    // No per-request conversion or copy: every answer is a view of the batch's one download.
    expect(new Set(answers.map((answer) => answer.output.buffer)).size).toBe(1);
    await batcher.close();
  });

  it('answers each request of a mixed-dtype batch in its own dtype, as a lone forward of it would', async () => {
    using layer = MoELayer.random(config, { seed: 12, dtype: 'bfloat16' });
    const batcher = new ForwardBatcher(layer, { maxBatchTokens: 15, maxDelayMs: 20 });
    const dtypes: FloatDType[] = ['float32', 'bfloat16', 'float16', 'float32', 'bfloat16'];
    const requests = dtypes.map((dtype, index) => rowsIn(dtype, 1 + (index % 3), 30 + index));
    const answers = await Promise.all(requests.map((rows, index) => batcher.forward(rows, { dtype: dtypes[index]! })));
    expect(batcher.metrics().batches).toBe(1);
    for (const [index, rows] of requests.entries()) {
      const lone = await hostForward(layer, rows, dtypes[index]!);
      expect(answers[index]!.dtype).toBe(dtypes[index]);
      expect(answers[index]!.output).toBeInstanceOf(dtypes[index] === 'float32' ? Float32Array : Uint16Array);
      expect(answers[index]!.output).toEqual(lone.output);
      expect(answers[index]!.topkIds).toEqual(lone.topkIds);
    }
    await batcher.close();
  });

  it('sends a batch whose requests share a dtype other than the layer\'s in that dtype, the device converting both ways', async () => {
    using layer = MoELayer.random(config, { seed: 13, dtype: 'bfloat16' });
    const counted = instrumented(layer);
    const batcher = new ForwardBatcher(counted, { maxBatchTokens: 15, maxDelayMs: 20 });
    const requests = [3, 1, 2].map((tokens, index) => rowsOf(tokens, 40 + index));
    const answers = await Promise.all(requests.map((rows) => batcher.forward(rows)));
    expect(counted.dtypes).toEqual(['bfloat16']);
    for (const [index, rows] of requests.entries()) {
      expect(answers[index]!.dtype).toBe('float32');
      expect(answers[index]!.output).toEqual((await hostForward(layer, rows, 'float32')).output);
    }
    await batcher.close();
  });

  it('refuses rows whose array and dtype disagree, naming both', async () => {
    using layer = MoELayer.random(config, { seed: 14 });
    const batcher = new ForwardBatcher(layer, { maxBatchTokens: 4, maxDelayMs: 1 });
    const bits = new Uint16Array(HIDDEN);
    await expectRejects(batcher.forward(bits as never), 'E_DTYPE', /a Uint16Array holds float16 or bfloat16 bits: options.dtype must say which, got undefined/);
    await expectRejects(batcher.forward(bits, { dtype: 'float32' as never }), 'E_DTYPE', /options.dtype must say which, got "float32"/);
    await expectRejects(batcher.forward(rowsOf(1, 1), { dtype: 'bfloat16' as never }), 'E_DTYPE', /a Float32Array holds float32 rows, but options.dtype is "bfloat16"/);
    await expectRejects(batcher.forward(new Int32Array(HIDDEN) as never), 'E_INVALID_ARGUMENT', /rows must be a Float32Array \(float32\) or a Uint16Array/);
    await expectRejects(batcher.forward(rowsOf(1, 1), 'bfloat16' as never), 'E_INVALID_ARGUMENT', /options must be an object/);
    expect(batcher.metrics().rejectedRequests).toBe(5);
    await batcher.close();
  });

  it('launches the next batch while the previous one is in flight, up to pipelineDepth', async () => {
    using layer = MoELayer.random(config, { seed: 15 });
    for (const pipelineDepth of [1, 2]) {
      let answered = 0;
      const answeredAtLaunch: number[] = [];
      const watched: BatchedLayer = { ...instrumented(layer), forward: (x) => (answeredAtLaunch.push(answered), layer.forward(x)) };
      const batcher = new ForwardBatcher(watched, { maxBatchTokens: 2, maxDelayMs: 10_000, pipelineDepth });
      await Promise.all([1, 2, 3].map((seed) => batcher.forward(rowsOf(2, seed)).then(() => (answered += 1))));
      // Depth 1: each batch after the one before was answered. Depth 2: the first two launched at once.
      expect(answeredAtLaunch).toEqual(pipelineDepth === 1 ? [0, 1, 2] : [0, 0, 1]);
      await batcher.close();
    }
  });

  it('checks its options', () => {
    using layer = MoELayer.random(config, { seed: 10 });
    expect(() => new ForwardBatcher(layer, { pipelineDepth: 0 })).toThrow(/pipelineDepth must be an integer >= 1, got 0/);
    expect(() => new ForwardBatcher(layer, { maxBatchTokens: 0 })).toThrow(/maxBatchTokens must be an integer >= 1, got 0/);
    expect(() => new ForwardBatcher(layer, { maxDelayMs: -1 })).toThrow(/maxDelayMs must be a finite number >= 0, got -1/);
    expect(() => new ForwardBatcher(null as unknown as MoELayer)).toThrow(/layer must be a MoELayer, got null/);
  });
});
