// lib/vocabulary.ts and the other code tables against the enums native code compiles: the addon
// exports each enum's codes under lib/'s names (native/binding/codes.cc).
import { describe, expect, it } from 'vitest';

import { DTYPE_CODES } from '../lib/dtype';
import { addon } from '../lib/native';
import { WEIGHT_FORMAT_CODES } from '../lib/ops/quantized';
import { ACTIVATION_CODES, ACTIVATIONS, GATE_LAYOUT_CODES, GATED_ACTIVATIONS, isGated, ROUTING_METHOD_CODES, ROUTING_METHODS } from '../lib/vocabulary';

describe('code tables', () => {
  it('equal the addon\'s enums', () => {
    const { codes } = addon();
    expect(codes.dtype).toEqual(DTYPE_CODES);
    expect(codes.routingMethod).toEqual(ROUTING_METHOD_CODES);
    expect(codes.activation).toEqual(ACTIVATION_CODES);
    expect(codes.gatedActivations).toEqual(GATED_ACTIVATIONS);
    expect(codes.gateLayout).toEqual(GATE_LAYOUT_CODES);
    expect(codes.weightFormat).toEqual(WEIGHT_FORMAT_CODES);
  });

  it('list each word once, in code order', () => {
    expect(ROUTING_METHODS).toEqual(['softmax_topk', 'topk_softmax', 'sigmoid_group_topk']);
    expect(ACTIVATIONS).toEqual(['swiglu', 'geglu', 'gptoss_swiglu', 'silu', 'gelu', 'relu']);
    expect(ACTIVATIONS.map((kind) => ACTIVATION_CODES[kind])).toEqual([0, 1, 2, 3, 4, 5]);
    expect(ACTIVATIONS.filter(isGated)).toEqual(['swiglu', 'geglu', 'gptoss_swiglu']);
  });
});
