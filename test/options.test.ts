// The two checks every public entry point runs on an object argument (lib/options.ts): optional
// options accept undefined and null as "all defaults"; required ones name what is missing; a value
// that is not an object is E_INVALID_ARGUMENT, never a TypeError from deeper down.
import { describe, expect, it } from 'vitest';

import { describeValue } from '../lib/errors';
import { optionalOptions, requiredObject } from '../lib/options';
import { expectThrows } from './helpers/errors';

describe('optionalOptions', () => {
  it('takes undefined and null as no options, and an object as itself', () => {
    expect(optionalOptions(undefined, 'op: options')).toEqual({});
    expect(optionalOptions(null, 'op: options')).toEqual({});
    const given = { alpha: 1 };
    expect(optionalOptions(given, 'op: options')).toBe(given);
  });

  it.each<[string, unknown]>([['5', 5], ['"fast"', 'fast'], ['true', true], ['[1, 2]', [1, 2]], ['a function', () => 1], ['3n', 3n]])(
    'refuses %s as options: E_INVALID_ARGUMENT naming the argument and the value', (shown, value) => {
      expectThrows(() => optionalOptions(value as object, 'groupedGemm: options'), 'E_INVALID_ARGUMENT', new RegExp(`^groupedGemm: options must be an object, got ${shown.replace(/[()[\]]/g, '\\$&')}$`));
    },
  );
});

describe('requiredObject', () => {
  it('returns the object when every required field is present', () => {
    const options = { topK: 2, method: undefined };
    expect(requiredObject(options, 'route: options', ['topK'])).toBe(options);
  });

  it('names the missing argument, with the fields it needs', () => {
    expectThrows(() => requiredObject(undefined, 'route: options', ['topK' as never]), 'E_INVALID_ARGUMENT', /^route: options must be given \(with topK\), got undefined$/);
    expectThrows(() => requiredObject(null, 'MoELayer.fromWeights: weights'), 'E_INVALID_ARGUMENT', /^MoELayer\.fromWeights: weights must be given, got null$/);
    expectThrows(() => requiredObject('0' as never, 'MoELayer.fromPretrained: options', ['layer' as never]), 'E_INVALID_ARGUMENT',
      /^MoELayer\.fromPretrained: options must be an object \(with layer\), got "0"$/);
  });

  it('names a required field that is undefined or null', () => {
    expectThrows(() => requiredObject<{ topK?: number }>({}, 'route: options', ['topK']), 'E_INVALID_ARGUMENT', /^route: options\.topK is required$/);
    expectThrows(() => requiredObject<{ layer: number | null }>({ layer: null }, 'MoELayer.fromPretrained: options', ['layer']), 'E_INVALID_ARGUMENT',
      /^MoELayer\.fromPretrained: options\.layer is required$/);
  });
});

describe('describeValue', () => {
  it('says what a value of the wrong kind is, briefly', () => {
    expect([5, 'cpu', null, undefined, [1], new Float32Array(1e6), {}, new Map()].map(describeValue))
      .toEqual(['5', '"cpu"', 'null', 'undefined', '[1]', 'a Float32Array', 'an object', 'a Map']);
  });

  it('never throws, whatever the value', () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    let nested: unknown[] = [];
    for (let i = 0; i < 100_000; i++) nested = [nested];
    const hostile = new Proxy({}, { get: () => { throw new Error('no'); } });
    expect([NaN, -0, 3n, Symbol('x'), Symbol(), circular, nested, hostile, [1, [2]], 'x'.repeat(100), Array(9).fill(0)].map(describeValue))
      .toEqual(['NaN', '-0', '3n', 'Symbol("x")', 'Symbol()', 'an object', 'an array of 1 items', 'an object', 'an array of 2 items', `"${'x'.repeat(60)}…"`, 'an array of 9 items']);
  });
});
