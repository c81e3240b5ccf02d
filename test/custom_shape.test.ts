// Custom bench presets from `--shape E,K,H,I[,S]` (lib/bench/custom_shape.ts): the config each
// becomes, its name, --routing and --activation, every refusal with its code and message; and
// bench/torch_baseline.py reading the same text into the same layers under the same names (its
// command line, bench/baseline_shapes.py, runs without torch), which `--compare` pairs rows by.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

import { DEFAULT_SHAPE_SETTINGS, parseShapeActivation, parseShapeRouting, shapePreset, type ShapeSettings } from '../lib/bench/custom_shape';
import { FULL_PRESETS, type BenchPreset } from '../lib/bench/presets';
import { ROUTING_METHODS } from '../lib/vocabulary';
import { swigluConfig } from './helpers/configs';
import { expectThrows } from './helpers/errors';

const withRouting = (text: string): ShapeSettings => ({ ...DEFAULT_SHAPE_SETTINGS, routing: parseShapeRouting(text) });

describe('shapePreset', () => {
  it('makes E,K,H,I,S a preset named from its numbers: softmax top-k renormalized, SwiGLU, an ungated shared expert', () => {
    const preset = shapePreset('64,6,2048,1408,2816');
    expect(preset.name).toBe('shape-E64-K6-H2048-I1408-S2816');
    // swigluConfig: softmax top-k renormalized, unscaled, no group limit; SwiGLU; no biases.
    expect(preset.config).toEqual(swigluConfig({ experts: 64, topK: 6, hidden: 2048, intermediate: 1408 }, { sharedExpert: { intermediateSize: 2816, gated: false } }));
  });

  it('reads S absent or 0 as no shared expert, and blanks around the commas as nothing', () => {
    for (const text of ['8,2,64,32', '8, 2, 64, 32, 0']) {
      const preset = shapePreset(text);
      expect(preset.name).toBe('shape-E8-K2-H64-I32');
      expect(preset.config.sharedExpert).toBeNull();
    }
  });

  it('takes --routing and --activation from its settings', () => {
    const grouped = shapePreset('16,4,64,32', withRouting('sigmoid_group_topk,4,2'));
    expect(grouped.config.routing).toEqual({ method: 'sigmoid_group_topk', topK: 4, renormalize: true, numGroups: 4, topkGroups: 2, scalingFactor: 1 });
    const relu = shapePreset('8,2,64,32', { ...DEFAULT_SHAPE_SETTINGS, activation: parseShapeActivation('relu') });
    expect([relu.name, relu.config.activation]).toEqual(['shape-E8-K2-H64-I32', 'relu']);
  });

  it.each([
    ['8,2,64', /^--shape "8,2,64": expected E,K,H,I\[,S\] \(experts, top-k, hidden size, expert intermediate size, and the shared expert's\), got 3 fields$/],
    ['8,2,64,32,64,1', /^--shape "8,2,64,32,64,1": expected E,K,H,I\[,S\] .*, got 6 fields$/],
    ['', /^--shape "": expected E,K,H,I\[,S\] .*, got 1 field$/],
    ['8,2,x,32', /^--shape "8,2,x,32": H must be a positive integer, got "x"$/],
    ['8,0,64,32', /^--shape "8,0,64,32": K must be a positive integer, got "0"$/],
    ['0,2,64,32', /^--shape "0,2,64,32": E must be a positive integer, got "0"$/],
    ['8,2,64,-32', /^--shape "8,2,64,-32": I must be a positive integer, got "-32"$/],
    ['8,2,64,32,1.5', /^--shape "8,2,64,32,1.5": S must be an integer >= 0 \(0: no shared expert\), got "1.5"$/],
    ['8,2,64,,32', /^--shape "8,2,64,,32": I must be a positive integer, got ""$/],
    ['65537,2,64,32', /^--shape "65537,2,64,32": E \(65537\) is more than the 65536 experts moekit takes$/],
    ['8,2,131073,32', /^--shape "8,2,131073,32": H \(131073\) is more than 131072, the widest a shape may be \(four times the widest published expert\)$/],
    ['8,2,64,32,200000', /^--shape "8,2,64,32,200000": S \(200000\) is more than 131072/],
    ['4096,8,65536,65536', /^--shape "4096,8,65536,65536": its expert weights \(E·3·H·I \+ 3·H·S = 52776558133248 values\) are more than 68719476736 \(2\^36, six times DeepSeek-V3's layer\), the most a shape may have$/],
  ])('refuses %j as an invalid argument, naming it', (text, message) => {
    expectThrows(() => shapePreset(text), 'E_INVALID_ARGUMENT', message);
  });

  it('refuses a config moekit cannot run as a config error, naming the shape', () => {
    expectThrows(() => shapePreset('8,9,64,32'), 'E_CONFIG', /^--shape "8,9,64,32": MoE config: routing\.topK \(9\) is larger than numExperts \(8\)$/);
    expectThrows(() => shapePreset('12,2,64,32', withRouting('sigmoid_group_topk,8,4')), 'E_CONFIG',
      /^--shape "12,2,64,32": MoE config: routing\.numGroups \(8\) must divide numExperts \(12\)$/);
    expectThrows(() => shapePreset('16,8,64,32', withRouting('sigmoid_group_topk,8,2')), 'E_CONFIG',
      /^--shape "16,8,64,32": MoE config: routing\.topK \(8\) is larger than the 4 experts that routing\.topkGroups \(2\) of routing\.numGroups \(8\) leave eligible/);
    expectThrows(() => shapePreset('8,2,64,32,64', { ...DEFAULT_SHAPE_SETTINGS, activation: 'relu' }), 'E_CONFIG',
      /^--shape "8,2,64,32,64": MoE config: shared experts need a gated activation \(swiglu, geglu, gptoss_swiglu\), got relu$/);
  });
});

describe('parseShapeRouting and parseShapeActivation', () => {
  it('read a method alone as no group limit, and sigmoid_group_topk with its two counts', () => {
    expect(parseShapeRouting('topk_softmax')).toEqual({ method: 'topk_softmax', numGroups: 1, topkGroups: 1 });
    expect(parseShapeRouting('sigmoid_group_topk')).toEqual({ method: 'sigmoid_group_topk', numGroups: 1, topkGroups: 1 });
    expect(parseShapeRouting('sigmoid_group_topk,8,4')).toEqual({ method: 'sigmoid_group_topk', numGroups: 8, topkGroups: 4 });
    expect(parseShapeActivation('geglu')).toBe('geglu');
  });

  it.each([
    [() => parseShapeRouting('top1'), /^--routing must be one of softmax_topk, topk_softmax, sigmoid_group_topk, got "top1"$/],
    [() => parseShapeRouting('softmax_topk,8,4'), /^--routing "softmax_topk,8,4": only sigmoid_group_topk takes group counts \(,GROUPS,KEPT\)$/],
    [() => parseShapeRouting('sigmoid_group_topk,8'), /^--routing "sigmoid_group_topk,8": expected two numbers after the method \(sigmoid_group_topk,GROUPS,KEPT\), got 1$/],
    [() => parseShapeRouting('sigmoid_group_topk,8,0'), /^--routing "sigmoid_group_topk,8,0": KEPT must be a positive integer, got "0"$/],
    [() => parseShapeActivation('mish'), /^--activation must be one of swiglu, geglu, gptoss_swiglu, silu, gelu, relu, got "mish"$/],
  ])('refuse a bad value, naming the option (%#)', (parse, message) => {
    expectThrows(parse, 'E_INVALID_ARGUMENT', message);
  });
});

describe('bench/torch_baseline.py --shape', () => {
  const python = spawnSync('python3', ['--version']).status === 0;
  const benchDir = path.resolve(__dirname, '../bench');
  // Each layer as [name, E, K, H, I, S, routing method, groups, kept], from either side.
  const PRINT_LAYERS = 'import json, sys; from baseline_shapes import parse_args, ROUTING_METHODS;' +
    'print(json.dumps({"layers": [[name, *shape[:5], *shape.routing[:3]] for name, shape in parse_args(sys.argv[1:]).layers], "methods": ROUTING_METHODS}))';
  const baseline = (args: readonly string[]) => spawnSync('python3', ['-B', '-c', PRINT_LAYERS, ...args], { cwd: benchDir, encoding: 'utf8' });
  const baselineLayers = (args: readonly string[]) => {
    const result = baseline(args);
    expect(result.stderr).toBe('');
    return JSON.parse(result.stdout) as { layers: unknown[][]; methods: string[] };
  };
  const moekitLayer = ({ name, config }: BenchPreset) =>
    [name, config.numExperts, config.routing.topK, config.hiddenSize, config.intermediateSize, config.sharedExpert?.intermediateSize ?? 0,
      config.routing.method, config.routing.numGroups, config.routing.topkGroups];

  it.skipIf(!python)('names and builds each shape as moekit does, after the presets asked for', () => {
    const shapes = ['64,6,2048,1408,2816', '8,2,64,32', '16, 4, 64, 32, 0'];
    const { layers } = baselineLayers(['--presets', 'mixtral-8x7b', ...shapes.flatMap((shape) => ['--shape', shape]), '--routing', 'sigmoid_group_topk,4,2']);
    const settings = withRouting('sigmoid_group_topk,4,2');
    expect(layers).toEqual([moekitLayer(FULL_PRESETS[0]!), ...shapes.map((shape) => moekitLayer(shapePreset(shape, settings)))]);
  });

  it.skipIf(!python)('runs the full-size presets without --shape, as moekit bench does on a GPU, and knows the routing methods moekit does', () => {
    const { layers, methods } = baselineLayers([]);
    expect(layers).toEqual(FULL_PRESETS.map(moekitLayer));
    expect(methods).toEqual(ROUTING_METHODS);
    expect(baselineLayers(['--shape', '8,2,64,32']).layers.map(([name]) => name)).toEqual(['shape-E8-K2-H64-I32']);
  });

  it.skipIf(!python)('refuses what moekit refuses, naming it (exit 2, argparse)', () => {
    for (const [args, message] of [
      [['--shape', '8,2,64'], /argument --shape: '8,2,64': expected E,K,H,I\[,S\] .*, got 3 fields/],
      [['--shape', '8,9,64,32'], /argument --shape: '8,9,64,32': K \(9\) is larger than E \(8\)/],
      [['--shape', '8,2,64,32,-1'], /argument --shape: '8,2,64,32,-1': S must be an integer >= 0 \(0: no shared expert\), got '-1'/],
      [['--shape', '8,2,64,32', '--routing', 'top1'], /argument --routing: must be one of softmax_topk, topk_softmax, sigmoid_group_topk, got 'top1'/],
      [['--shape', '12,2,64,32', '--routing', 'sigmoid_group_topk,8,4'], /shape-E12-K2-H64-I32 with --routing sigmoid_group_topk,8,4: GROUPS \(8\) must divide E \(12\)/],
    ] as const) {
      const result = baseline(args);
      expect(result.status).toBe(2);
      expect(result.stderr).toMatch(message);
    }
  });
});
