// The fuzz properties can fail: their oracles tell in-range from out-of-range indices and
// well-formed from malformed files, and each property rejects a moekit that misbehaves the way
// the issue names (outputs of a bad call that resolve, errors of another class, garbage data, a
// device broken by a case). Misbehaviour is simulated by wrapping this checkout's build; the
// same hand-written cases pass against the build itself.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { loadBuild, type MoekitApi, type MoekitBuild } from './harness/moekit';
import type { FuzzProperty, PropertyFactory } from './harness/property';
import { configProperty, editedConfigText, type ConfigCase } from './properties/config';
import { opsProperty } from './properties/ops';
import type { Fp8RowsSpec, OpCase, QuantizedSpec, TensorSpec } from './properties/ops_cases';
import { decodeE4m3, encodeE4m3, outOfRangeReason } from './properties/ops_oracle';
import { fileBytes, safetensorsProperty, type FileCase, type SafetensorsCase } from './properties/safetensors';
import { referenceParse } from './properties/safetensors_reference';
import { DEEP_JSON, toJsonText } from './properties/values';

const build = loadBuild();
const { api } = build;
type Tensor = MoekitApi['Tensor']['prototype'];

const scratchDirs: string[] = [];
afterAll(() => {
  for (const dir of scratchDirs) fs.rmSync(dir, { recursive: true, force: true });
});

async function propertyOf<Case>(factory: PropertyFactory, moekit: MoekitBuild = build, params: Record<string, string> = {}): Promise<FuzzProperty<Case>> {
  const scratchDir = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-fuzz-test-'));
  scratchDirs.push(scratchDir);
  return (await factory({ moekit, params, scratchDir })) as FuzzProperty<Case>;
}

/** This checkout's build with some of its API replaced. */
function withApi(replacements: Partial<Record<keyof MoekitApi, unknown>>): MoekitBuild {
  return { ...build, api: { ...api, ...replacements } as MoekitApi };
}

function tensor(dtype: 'float32' | 'int32', shape: number[], values?: number[]): TensorSpec {
  return { $tensor: { dtype, shape, ...(values ? { values } : { seed: 1 }) } };
}

function fp8Weights(shape: number[], seed = 1): QuantizedSpec {
  return { $quantized: { format: 'fp8_block128', from: { $tensor: { dtype: 'float32', shape, seed } } } };
}

function fp8Rows(rows: number, width: number, scales: number[] = [1 / 448, 0.01]): Fp8RowsSpec {
  return {
    $fp8rows: {
      data: { $tensor: { dtype: 'float8_e4m3', shape: [rows, width], seed: 3 } },
      scales: { $tensor: { dtype: 'float32', shape: [rows, Math.ceil(width / 128)], values: scales } },
    },
  };
}

function combineCase(sourceToPermuted: number[]): OpCase {
  return { op: 'combine', args: [tensor('float32', [2, 3]), tensor('float32', [2, 1]), tensor('int32', [2, 1], sourceToPermuted)] };
}

describe('ops oracle', () => {
  it('tells out-of-range indices from in-range ones', () => {
    const permute = (ids: number[], experts: number): OpCase => ({ op: 'permute', args: [tensor('float32', [2, 4]), tensor('int32', [2, 1], ids), experts] });
    expect(outOfRangeReason(permute([0, 1], 2))).toBeUndefined();
    expect(outOfRangeReason(permute([0, 2], 2))).toMatch(/expert 2, outside \[0, 2\)/);
    expect(outOfRangeReason(permute([-1, 0], 2))).toMatch(/expert -1/);
    // -1 is a dropped pair for combine, any other negative or a row past the end is not.
    expect(outOfRangeReason(combineCase([-1, 1]))).toBeUndefined();
    expect(outOfRangeReason(combineCase([-2, 1]))).toMatch(/row -2/);
    expect(outOfRangeReason(combineCase([0, 2]))).toMatch(/row 2, outside \[-1, 2\)/);
    const gemm = (offsets: number[]): OpCase => ({ op: 'groupedGemm', args: [tensor('float32', [3, 2]), tensor('float32', [2, 4, 2]), tensor('int32', [3], offsets)] });
    expect(outOfRangeReason(gemm([0, 1, 3]))).toBeUndefined();
    expect(outOfRangeReason(gemm([1, 1, 2]))).toBeUndefined();
    expect(outOfRangeReason(gemm([0, 2, 1]))).toMatch(/decrease/);
    expect(outOfRangeReason(gemm([-1, 0, 3]))).toMatch(/expertOffsets\[0\] is -1/);
    expect(outOfRangeReason(gemm([0, 1, 4]))).toMatch(/past the 3 input rows/);
    // Values repeat to fill the tensor, and wrap as int32 does.
    expect(outOfRangeReason(permute([1], 2))).toBeUndefined();
    expect(outOfRangeReason(permute([2 ** 32], 2))).toBeUndefined();
    // FP8 input rows count as the input's rows.
    const fp8Gemm = (offsets: number[]): OpCase => ({ op: 'groupedGemm', args: [fp8Rows(3, 2), fp8Weights([2, 4, 2]), tensor('int32', [3], offsets)] });
    expect(outOfRangeReason(fp8Gemm([0, 1, 3]))).toBeUndefined();
    expect(outOfRangeReason(fp8Gemm([0, 1, 4]))).toMatch(/past the 3 input rows/);
  });

  it('converts to float8_e4m3 as documented: nearest even, saturating at ±448, NaN kept', () => {
    expect([1, 1.0625, 1.1875, 232, 447, 448, 464, 1e9, Infinity, -Infinity].map((value) => decodeE4m3(encodeE4m3(value)))).toEqual([1, 1, 1.25, 224, 448, 448, 448, 448, 448, -448]);
    // Subnormals: steps of 2^-9; a tie at 2^-10 rounds to 0 (even), at 3 · 2^-10 to 2^-8.
    expect([2 ** -10, 3 * 2 ** -10, 2 ** -9, -(2 ** -11)].map((value) => decodeE4m3(encodeE4m3(value)))).toEqual([0, 2 ** -8, 2 ** -9, -0]);
    expect(decodeE4m3(encodeE4m3(NaN))).toBeNaN();
    expect([0x7e, 0xfe, 0x08, 0x01, 0x80].map(decodeE4m3)).toEqual([448, -448, 2 ** -6, 2 ** -9, -0]);
  });
});

describe('ops property', () => {
  const validCases: Array<[string, OpCase]> = [
    ['linear with bias', { op: 'linear', args: [tensor('float32', [2, 3]), tensor('float32', [4, 3]), { bias: tensor('float32', [4]) }] }],
    ['route, DeepSeek style', { op: 'route', args: [tensor('float32', [3, 4]), { topK: 2, method: 'sigmoid_group_topk', numGroups: 2, topkGroups: 1, renormalize: true, scalingFactor: 2.5 }] }],
    ['permute with local experts', { op: 'permute', args: [tensor('float32', [3, 2]), tensor('int32', [3, 2], [0, 3, 1, 2, 3, 0]), 4, { localExperts: { first: 1, count: 2 } }] }],
    ['combine with a dropped pair', combineCase([-1, 1])],
    ['fromArray to float16', { op: 'Tensor.fromArray', args: [Float32Array.from([1, -2.5, 65504, 1e-8]), [2, 2], { dtype: 'float16' }] }],
    ['to bfloat16', { op: 'tensor.to', args: [tensor('float32', [5]), 'cpu', 'bfloat16'] }],
    ['random', { op: 'Tensor.random', args: [[3, 2], { seed: 4, scale: 0.5 }] }],
    ['the pipeline', { op: 'pipeline', args: [tensor('float32', [2, 3]), tensor('int32', [2, 2], [1, 0, 0, 1]), 2, tensor('float32', [2, 4, 3]), tensor('float32', [2, 3, 2]), tensor('float32', [2, 2])] }],
    ['quantizeWeights, partial blocks', { op: 'quantizeWeights', args: [{ $tensor: { dtype: 'bfloat16', shape: [2, 130, 129], seed: 2 } }, 'fp8_block128'] }],
    ['QuantizedWeights from parts', { op: 'QuantizedWeights', args: [{ format: 'fp8_block128', data: { $tensor: { dtype: 'float8_e4m3', shape: [129, 3], values: [0x38, 0x7e, 0xb8] } }, scales: tensor('float32', [2, 1], [0.5, 2]) }] }],
    ['Fp8Rows from parts', { op: 'Fp8Rows', args: [fp8Rows(2, 200).$fp8rows] }],
    ['groupedGemm, FP8 rows in and out', { op: 'groupedGemm', args: [fp8Rows(3, 130), fp8Weights([2, 129, 130]), tensor('int32', [3], [0, 1, 3]), { outDtype: 'float8_e4m3', bias: { $tensor: { dtype: 'bfloat16', shape: [2, 129], seed: 4 } } }] }],
    ['groupedGemm, float rows, FP8 out after swiglu', { op: 'groupedGemm', args: [tensor('float32', [3, 5]), fp8Weights([2, 258, 5]), tensor('int32', [3], [1, 2, 3]), { outDtype: 'float8_e4m3', activation: { kind: 'swiglu' } }] }],
    ['linear, float16 rows, FP8 weights', { op: 'linear', args: [{ $tensor: { dtype: 'float16', shape: [2, 300], seed: 5 } }, fp8Weights([7, 300]), { bias: tensor('float32', [7], [0.5, -1, 0, 2]), outDtype: 'float16' }] }],
    ['permute quantizing rows', { op: 'permute', args: [tensor('float32', [3, 130]), tensor('int32', [3, 2], [0, 2, 1, 2, 3, 0]), 4, { quantize: 'fp8', localExperts: { first: 0, count: 3 } }] }],
    ['permute quantizing NaN and zero rows', { op: 'permute', args: [tensor('float32', [2, 3], [NaN, 0, 0, NaN, 1, 0]), tensor('int32', [2, 1], [0, 0]), 1, { quantize: 'fp8' }] }],
    ['the FP8 pipeline', { op: 'pipelineFp8', args: [tensor('float32', [2, 129]), tensor('int32', [2, 2], [1, 0, 0, 1]), 2, fp8Weights([2, 130, 129]), fp8Weights([2, 129, 65]), tensor('float32', [2, 2])] }],
    ['fromArray of float8_e4m3 bits', { op: 'Tensor.fromArray', args: [Uint8Array.from([0, 0x7f, 0x80, 0xfe]), [2, 2], { dtype: 'float8_e4m3' }] }],
    ['to float8_e4m3', { op: 'tensor.to', args: [tensor('float32', [6], [1.0625, 464, -1e9, NaN, 2 ** -10, 0.3]), 'cpu', 'float8_e4m3'] }],
  ];

  it.each(validCases)('holds for a valid call: %s', async (_, call) => {
    const property = await propertyOf<OpCase>(opsProperty);
    await expect(property.check(call)).resolves.toBeUndefined();
  });

  it('holds for calls moekit refuses at once with a MoekitError', async () => {
    const property = await propertyOf<OpCase>(opsProperty);
    await property.check({ op: 'linear', args: [tensor('float32', [2, 3]), tensor('float32', [4, 2])] });
    await property.check({ op: 'Tensor.empty', args: [[-1]] });
  });

  it('fails when an op with out-of-range indices resolves', async () => {
    // A combine that ignores its index input: it resolves whatever the indices say.
    const ignoresIndices = (expertOutput: Tensor, topkWeights: Tensor): Tensor => {
      const [tokens = 0] = topkWeights.shape;
      const hidden = expertOutput.shape[1] ?? 0;
      return api.Tensor.fromArray(new Float32Array(tokens * hidden), [tokens, hidden]);
    };
    const property = await propertyOf<OpCase>(opsProperty, withApi({ combine: ignoresIndices }));
    await expect(property.check(combineCase([0, 1]))).resolves.toBeUndefined();
    await expect(property.check(combineCase([0, 2]))).rejects.toThrow(/output\(s\) output resolved.*poisoned/);
  });

  it('fails when an op throws something other than a MoekitError', async () => {
    const property = await propertyOf<OpCase>(opsProperty, withApi({ route: () => { throw new TypeError('options is null'); } }));
    await expect(property.check({ op: 'route', args: [tensor('float32', [1, 2]), null] })).rejects.toThrow(/not a MoekitError: TypeError: options is null/);
  });

  it('fails when an output rejects with something other than a MoekitError', async () => {
    const rejecting = (): Tensor => Object.assign(api.Tensor.empty([1]), { toArray: () => Promise.reject(new RangeError('Array buffer allocation failed')) });
    const property = await propertyOf<OpCase>(opsProperty, withApi({ linear: rejecting }));
    await expect(property.check(validCases[0]![1])).rejects.toThrow(/output output rejected with an error that is not a MoekitError: RangeError/);
  });

  it('fails when the device computes wrong after a case', async () => {
    const wrong = (input: Tensor): Tensor => api.Tensor.fromArray(new Float32Array((input.shape[0] ?? 0) * 2).fill(7), [input.shape[0] ?? 0, 2]);
    const property = await propertyOf<OpCase>(opsProperty, withApi({ linear: wrong }));
    await expect(property.check({ op: 'Tensor.empty', args: [[2]] })).rejects.toThrow(/cpu is not usable after the case/);
  });

  it('fails when FP8 weights are not what the block rule makes', async () => {
    // quantizeWeights with its scales doubled: q · scale no longer gives the weights back.
    const doubled = (weights: Tensor, format: 'fp8_block128'): InstanceType<MoekitApi['QuantizedWeights']> => {
      const made = api.quantizeWeights(weights, format);
      const scales = api.Tensor.fromArray(new Float32Array(made.scales.numel).fill(1), [...made.scales.shape]);
      made.scales.dispose();
      return new api.QuantizedWeights({ format, data: made.data, scales });
    };
    const property = await propertyOf<OpCase>(opsProperty, withApi({ quantizeWeights: doubled }));
    await expect(property.check(validCases.find(([name]) => name.startsWith('quantizeWeights'))![1])).rejects.toThrow(/quantizeWeights: block \(0, 0, 0\): scale is 1, expected amax \/ 448/);
  });

  it('fails when an FP8 GEMM computes other values', async () => {
    // A linear that drops its bias.
    const noBias = (input: Tensor, weight: Tensor, options?: object): unknown => api.linear(input, weight, { ...options, bias: undefined } as never);
    const property = await propertyOf<OpCase>(opsProperty, withApi({ linear: noBias }));
    await expect(property.check(validCases.find(([name]) => name.startsWith('linear, float16'))![1])).rejects.toThrow(/linear: output\[0, 0\] is .*float math on the W8A8 rows and dequantized weights/);
  });

  it('fails when FP8 output rows of a call with out-of-range offsets resolve', async () => {
    // A groupedGemm whose FP8 output keeps clean scales beside its poisoned data.
    const cleanScales = (...args: Parameters<MoekitApi['groupedGemm']>): unknown => {
      const output = api.groupedGemm(...args);
      if (!(output instanceof api.Fp8Rows)) return output;
      const scales = api.Tensor.fromArray(new Float32Array(output.scales.numel), [...output.scales.shape]);
      output.scales.dispose();
      return new api.Fp8Rows({ data: output.data, scales });
    };
    const property = await propertyOf<OpCase>(opsProperty, withApi({ groupedGemm: cleanScales }));
    const call = validCases.find(([name]) => name === 'groupedGemm, FP8 rows in and out')![1];
    const badOffsets = { ...call, args: [call.args[0], call.args[1], tensor('int32', [3], [0, 4, 3]), call.args[3]] };
    await expect(property.check(badOffsets)).rejects.toThrow(/output\(s\) output.scales resolved.*poisoned/);
  });

  it('fails when a valid call resolves with garbage', async () => {
    // A permute whose offsets say nothing was routed.
    const noOffsets = (...args: Parameters<MoekitApi['permute']>): ReturnType<MoekitApi['permute']> => {
      const result = api.permute(...args);
      const [length = 0] = result.expertOffsets.shape;
      result.expertOffsets.dispose();
      return { ...result, expertOffsets: api.Tensor.fromArray(new Int32Array(length), [length]) };
    };
    const property = await propertyOf<OpCase>(opsProperty, withApi({ permute: noOffsets }));
    await expect(property.check(validCases[2]![1])).rejects.toThrow(/expertOffsets: value 1 is 0, expected 1/);
  });
});

function fileCase(tensors: FileCase['tensors'], headerEdits: FileCase['headerEdits'] = []): FileCase {
  return { kind: 'file', tensors, leading: 0, padding: 4, reversed: false, headerEdits, byteEdits: [], reads: [{ tensor: 0, first: 1, count: 1 }] };
}

const twoTensors: FileCase['tensors'] = [
  { name: 'a', dtype: 'F32', shape: [2, 1], data: Uint8Array.from([0, 0, 128, 63, 0, 0, 0, 64]) },
  { name: 'b', dtype: 'I64', shape: [1], data: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]) },
];

describe('safetensors reference', () => {
  it('judges files as the format does', () => {
    expect(referenceParse(fileBytes(fileCase(twoTensors))).verdict).toEqual({ kind: 'valid' });
    expect(referenceParse(fileBytes(fileCase(twoTensors, [{ kind: 'alias', tensor: 1, of: 0 }]))).verdict).toMatchObject({ kind: 'reject', why: expect.stringMatching(/overlap/) });
    expect(referenceParse(fileBytes({ ...fileCase(twoTensors), byteEdits: [{ kind: 'append', bytes: Uint8Array.from([1]) }] })).verdict).toMatchObject({ kind: 'lenient' });
    expect(referenceParse(fileBytes({ ...fileCase(twoTensors), byteEdits: [{ kind: 'truncate', keep: 0.9 }] })).verdict).toMatchObject({ kind: 'reject' });
    expect(referenceParse(fileBytes({ ...fileCase(twoTensors), byteEdits: [{ kind: 'length-field', value: 2n ** 63n }] })).verdict).toMatchObject({ kind: 'reject' });
    expect(referenceParse(fileBytes(fileCase(twoTensors, [{ kind: 'field', tensor: 0, field: 'dtype', value: DEEP_JSON }]))).verdict).toMatchObject({ kind: 'reject' });
    expect(referenceParse(Uint8Array.from([1, 2, 3])).verdict).toMatchObject({ kind: 'reject' });
  });
});

describe('safetensors property', () => {
  it('holds for a well-formed file', async () => {
    const property = await propertyOf<SafetensorsCase>(safetensorsProperty);
    await expect(property.check(fileCase(twoTensors))).resolves.toBeUndefined();
  });

  /** The build with SafetensorsFile.open wrapped by `wrap`. */
  function withOpen(wrap: (open: MoekitBuild['safetensors']['SafetensorsFile']['open']) => (file: string) => Promise<unknown>): MoekitBuild {
    const { SafetensorsFile } = build.safetensors;
    const open = wrap(SafetensorsFile.open.bind(SafetensorsFile));
    return { ...build, safetensors: { ...build.safetensors, SafetensorsFile: { open } as unknown as typeof SafetensorsFile } };
  }

  it('fails when a tensor reads back other bytes than the file holds', async () => {
    const corrupting = withOpen((open) => async (file) => {
      const opened = await open(file);
      // Methods bound to the real object: it keeps its state in private fields.
      return new Proxy(opened, {
        get(target, key) {
          const value = Reflect.get(target, key, target) as unknown;
          if (key !== 'read') return typeof value === 'function' ? value.bind(target) : value;
          return async (name: string) => {
            const tensor = await target.read(name);
            const bytes = new Uint8Array(tensor.data.buffer);
            bytes[0] = bytes[0]! ^ 1;
            return tensor;
          };
        },
      });
    });
    const property = await propertyOf<SafetensorsCase>(safetensorsProperty, corrupting);
    await expect(property.check(fileCase(twoTensors))).rejects.toThrow(/returned other data than the file holds/);
  });

  it('fails when a malformed file opens', async () => {
    // A reader that opens any file as the well-formed one.
    const good = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-fuzz-test-')), 'good.safetensors');
    scratchDirs.push(path.dirname(good));
    fs.writeFileSync(good, fileBytes(fileCase(twoTensors)));
    const property = await propertyOf<SafetensorsCase>(safetensorsProperty, withOpen((open) => () => open(good)));
    await expect(property.check(fileCase(twoTensors, [{ kind: 'offsets', tensor: 1, which: 'both', by: -4 }]))).rejects.toThrow(/a malformed file opened \(tensors overlap/);
  });

  it('fails when open throws something other than a MoekitError', async () => {
    const property = await propertyOf<SafetensorsCase>(safetensorsProperty, withOpen(() => () => Promise.reject(new RangeError('Maximum call stack size exceeded'))));
    await expect(property.check(fileCase(twoTensors))).rejects.toThrow(/open failed with an error that is not a MoekitError: RangeError/);
  });
});

describe('config property', () => {
  const unedited: ConfigCase = { family: 'mixtral', config: { kind: 'edited', edits: [] }, layer: 0, dtype: undefined };

  it('writes edited configs field by field', () => {
    const text = editedConfigText({ a: 1, b: 2 }, [{ field: 'a', remove: true }, { field: '__proto__', value: DEEP_JSON }, { field: 'b', value: [3] }]);
    expect(text.startsWith('{"__proto__":[[[')).toBe(true);
    expect(text.endsWith(']]],"b":[3]}')).toBe(true);
    expect(toJsonText({ x: { $json: '1e400' } })).toBe('{"x":1e400}');
  });

  it('holds for a fixture as it is, loading it and running a forward', async () => {
    const property = await propertyOf<ConfigCase>(configProperty);
    await expect(property.check(unedited)).resolves.toBeUndefined();
    await expect(property.check({ ...unedited, config: { kind: 'edited', edits: [{ field: 'hidden_size', value: '64' }] } })).resolves.toBeUndefined();
  });

  it('fails when loading throws something other than a MoekitError', async () => {
    const MoELayer = { fromPretrained: () => Promise.reject(new TypeError("Cannot read properties of null (reading 'dtype')")) };
    const property = await propertyOf<ConfigCase>(configProperty, withApi({ MoELayer }));
    await expect(property.check(unedited)).rejects.toThrow(/MoELayer.fromPretrained failed with an error that is not a MoekitError: TypeError/);
  });

  it('fails when a loaded layer computes non-finite output', async () => {
    const MoELayer = {
      fromPretrained: async (...args: Parameters<MoekitApi['MoELayer']['fromPretrained']>) => {
        const layer = await api.MoELayer.fromPretrained(...args);
        const forward = layer.forward.bind(layer);
        return Object.assign(layer, {
          forward: (x: Tensor) => {
            const result = forward(x);
            result.output.dispose();
            return { ...result, output: api.Tensor.fromArray(new Float32Array(x.numel).fill(NaN), [...x.shape]) };
          },
        });
      },
    };
    const property = await propertyOf<ConfigCase>(configProperty, withApi({ MoELayer }));
    await expect(property.check(unedited)).rejects.toThrow(/forward gave output\[0\] = NaN/);
  });
});
