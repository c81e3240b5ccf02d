// Side work (native/core/device.h, lib/streams.ts runBeside): the order of its steps is checked
// on every device, and a failing piece of side work leaves the device ready for the next.
import { describe, expect, it } from 'vitest';

import { Tensor } from '../lib/index';
import { addon } from '../lib/native';
import { runBeside } from '../lib/streams';
import { expectThrows } from './helpers/errors';

const CPU = -1;

describe('side work on the CPU', () => {
  it('takes its steps in order: begin, end, join', () => {
    const native = addon();
    expectThrows(() => native.endSideWork(CPU), 'E_DEVICE', /endSideWork: no side work has begun/);
    native.joinSideWork(CPU);  // nothing to join: does nothing
    native.beginSideWork(CPU);
    expectThrows(() => native.beginSideWork(CPU), 'E_DEVICE', /side work has begun already and is not joined yet/);
    expectThrows(() => native.joinSideWork(CPU), 'E_DEVICE', /joinSideWork: the side work has not ended/);
    native.endSideWork(CPU);
    expectThrows(() => native.beginSideWork(CPU), 'E_DEVICE', /side work has begun already and is not joined yet/);
    native.joinSideWork(CPU);
    native.beginSideWork(CPU);
    native.endSideWork(CPU);
    native.joinSideWork(CPU);
  });

  it('runBeside returns what the work made once joined, and joins twice as once', async () => {
    using x = Tensor.fromArray(new Float32Array([1, 2, 3]), [3]);
    const side = runBeside('cpu', () => x.to('cpu', 'bfloat16'));
    // The device's own work goes on meanwhile.
    using y = x.to('cpu', 'float16');
    using made = side.join();
    expect(side.join()).toBe(made);
    using madeAsFloat = made.to('cpu', 'float32');
    using yAsFloat = y.to('cpu', 'float32');
    expect(Array.from(await madeAsFloat.toArray())).toEqual([1, 2, 3]);
    expect(Array.from(await yAsFloat.toArray())).toEqual([1, 2, 3]);
  });

  it('a failing piece of side work is joined before its error is thrown', () => {
    expect(() => runBeside('cpu', () => {
      throw new Error('shared expert failed');
    })).toThrow(/shared expert failed/);
    const side = runBeside('cpu', () => 7);
    expect(side.join()).toBe(7);
  });
});
