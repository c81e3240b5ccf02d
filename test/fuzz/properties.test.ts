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
import type { OpCase, TensorSpec } from './properties/ops_cases';
import { outOfRangeReason } from './properties/ops_oracle';
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
