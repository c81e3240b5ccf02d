// Device-side timing on the CPU (the worker thread's timestamps) and the forward's stage marks.
import { describe, expect, it } from 'vitest';

import { elapsedTimes, recordEvent, StageTimer, timeOnDevice } from '../lib/bench/events';
import { FORWARD_STAGES, MoELayer, Tensor, linear, type ForwardStage } from '../lib/index';
import { swigluConfig } from './helpers/configs';

describe('events on the CPU', () => {
  it('time the work queued between them, in queue order', async () => {
    using weight = Tensor.random([512, 512], { seed: 1 });
    using x = Tensor.random([256, 512], { seed: 2 });
    const start = recordEvent('cpu');
    const afterNothing = recordEvent('cpu');
    linear(x, weight).dispose();
    linear(x, weight).dispose();
    const afterTwo = recordEvent('cpu');
    const [first, empty, busy] = await elapsedTimes([start, afterNothing, afterTwo]);
    expect(first).toBe(0);
    expect(empty).toBeGreaterThanOrEqual(0);
    // Two 256×512×512 products lie between the last two events and none between the first two.
    expect(busy).toBeGreaterThan(empty!);
  });

  it('are released once read: reading them again is E_DISPOSED', async () => {
    const events = [recordEvent('cpu'), recordEvent('cpu')];
    await elapsedTimes(events);
    await expect(elapsedTimes(events)).rejects.toMatchObject({ code: 'E_DISPOSED' });
  });

  it('need a device this build has', () => {
    expect(() => recordEvent('cuda:99')).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
  });

  it('timeOnDevice gives one time per timed run', async () => {
    using weight = Tensor.random([64, 64], { seed: 1 });
    using x = Tensor.random([64, 64], { seed: 2 });
    const times = await timeOnDevice('cpu', () => linear(x, weight).dispose(), { warmup: 2, runs: 3 });
    expect(times).toHaveLength(3);
    for (const ms of times) expect(ms).toBeGreaterThan(0);
  });

  it('timeOnDevice runs prepare before each call, warm-up included', async () => {
    const order: string[] = [];
    const times = await timeOnDevice('cpu', () => order.push('run'), { warmup: 1, runs: 2, prepare: (run) => order.push(`prepare ${run}`) });
    expect(times).toHaveLength(2);
    expect(order).toEqual(['prepare 0', 'run', 'prepare 1', 'run', 'prepare 2', 'run']);
  });
});

describe('MoELayer.forward marks its stages', () => {
  const config = swigluConfig({ hidden: 64, intermediate: 32, experts: 8, topK: 2 });

  function recordingProfiler(): { stages: ForwardStage[]; mark(stage: ForwardStage): void } {
    const stages: ForwardStage[] = [];
    return { stages, mark: (stage) => stages.push(stage) };
  }

  it('in order, skipping the stages a forward does not have', () => {
    using layer = MoELayer.random(config, { seed: 1 });
    using x = Tensor.random([5, 64], { seed: 2 });
    const profiler = recordingProfiler();
    layer.forward(x, { profiler }).dispose();
    expect(profiler.stages).toEqual(['router', 'routing', 'permute', 'expert_up', 'expert_down', 'combine']);

    // Given router logits, there is no router stage.
    const withLogits = recordingProfiler();
    using logits = layer.routerLogits(x);
    layer.forward(x, { routerLogits: logits, profiler: withLogits }).dispose();
    expect(withLogits.stages).toEqual(['routing', 'permute', 'expert_up', 'expert_down', 'combine']);
  });

  it('with a shared expert, between the expert GEMMs and the combine', () => {
    using layer = MoELayer.random({ ...config, sharedExpert: { intermediateSize: 32, gated: true } }, { seed: 1 });
    using x = Tensor.random([5, 64], { seed: 2 });
    const profiler = recordingProfiler();
    layer.forward(x, { profiler }).dispose();
    expect(profiler.stages).toEqual(['router', 'routing', 'permute', 'expert_up', 'expert_down', 'shared', 'combine']);
    // Every stage but all_reduce (which needs a process group) and fused (which stands for the
    // others at one token), in FORWARD_STAGES' order.
    expect(profiler.stages).toEqual(FORWARD_STAGES.filter((stage) => stage !== 'all_reduce' && stage !== 'fused'));
  });

  it('timed by a StageTimer: the stages add up to the forward, and the output is unchanged', async () => {
    using layer = MoELayer.random(config, { seed: 1 });
    using x = Tensor.random([16, 64], { seed: 2 });
    const timer = new StageTimer('cpu');
    using timed = layer.forward(x, { profiler: timer });
    const { totalMs, stages } = await timer.times();
    expect(Object.keys(stages)).toEqual(['router', 'routing', 'permute', 'expert_up', 'expert_down', 'combine']);
    const sum = Object.values(stages).reduce((total, ms) => total + ms, 0);
    expect(sum).toBeCloseTo(totalMs, 9);
    for (const ms of Object.values(stages)) expect(ms).toBeGreaterThanOrEqual(0);
    using plain = layer.forward(x);
    expect(Array.from(await timed.output.toArray())).toEqual(Array.from(await plain.output.toArray()));
  });
});
