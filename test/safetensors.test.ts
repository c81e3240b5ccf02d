// The safetensors reader and writer: round trips for every written dtype, reading only the bytes
// asked for, and every malformed file (each fails when opened, with E_SAFETENSORS naming the file
// and, where one is to blame, the tensor). The writer is atomic: a failure leaves no file behind.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

import { decodeSafetensors, encodeSafetensors, SafetensorsFile, writeSafetensors, type TensorToWrite } from '../lib/checkpoint/safetensors';
import { encodeHalf } from '../lib/dtype';
import { MoekitError, type MoekitErrorCode } from '../lib/errors';
import { expectRejects, expectThrows } from './helpers/errors';

function scratchDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-safetensors-'));
}

/** A file laid out by hand: `header` (an object, or text taken as is) and `data`, as a broken writer might leave it. */
function writeRawFile(file: string, header: unknown, data: Uint8Array, headerLength?: bigint): void {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(headerLength ?? BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([prefix, json, data]));
}

async function openError(file: string): Promise<MoekitError> {
  const error: unknown = await SafetensorsFile.open(file).then(
    (opened) => opened.close(),
    (failure: unknown) => failure,
  );
  if (!(error instanceof MoekitError)) throw new Error(`expected a MoekitError opening ${file}, got ${String(error)}`);
  return error;
}

async function expectMoekitError(promise: Promise<unknown>, code: MoekitErrorCode, message: RegExp): Promise<void> {
  const error: unknown = await promise.then(() => undefined, (failure: unknown) => failure);
  expect(error).toBeInstanceOf(MoekitError);
  expect((error as MoekitError).code).toBe(code);
  expect((error as MoekitError).message).toMatch(message);
}

async function withFile<T>(file: string, use: (opened: SafetensorsFile) => Promise<T>): Promise<T> {
  const opened = await SafetensorsFile.open(file);
  try {
    return await use(opened);
  } finally {
    await opened.close();
  }
}

function headerLength(file: string): number {
  return Number(fs.readFileSync(file).readBigUInt64LE(0));
}

describe('writeSafetensors then SafetensorsFile', () => {
  const values = [1.5, -2.25, 0, 3.75, 1e-3, -65504];
  const cases: Array<[string, TensorToWrite]> = [
    ['F32', { dtype: 'F32', shape: [2, 3], data: Float32Array.from(values) }],
    ['F16', { dtype: 'F16', shape: [3, 2], data: encodeHalf(values, 'float16') }],
    ['BF16', { dtype: 'BF16', shape: [6], data: encodeHalf(values, 'bfloat16') }],
    ['I32', { dtype: 'I32', shape: [1, 2, 3], data: Int32Array.from([7, -8, 2 ** 31 - 1, -(2 ** 31), 0, 42]) }],
  ];

  it.each(cases)('round-trips %s: same dtype, shape and bits', async (_, tensor) => {
    const file = path.join(scratchDir(), 'x.safetensors');
    await writeSafetensors(file, { x: tensor });
    await withFile(file, async (opened) => {
      expect(opened.names()).toEqual(['x']);
      expect(opened.info('x')).toEqual({ dtype: tensor.dtype, shape: tensor.shape, byteLength: tensor.data.byteLength });
      const read = await opened.read('x');
      expect(read.dtype).toBe(tensor.dtype);
      expect(read.shape).toEqual(tensor.shape);
      expect(read.data).toEqual(tensor.data);
    });
  });

  it('pads the header with spaces so the data starts 8-byte aligned, counting bytes, not characters', async () => {
    const file = path.join(scratchDir(), 'x.safetensors');
    // Multi-byte UTF-8 in a name: the padding must count the header's bytes.
    await writeSafetensors(file, { 'größe': { dtype: 'F32', shape: [1], data: Float32Array.of(9) }, 'a': { dtype: 'BF16', shape: [3], data: Uint16Array.of(1, 2, 3) } });
    const length = headerLength(file);
    expect(length % 8).toBe(0);
    const header = fs.readFileSync(file).subarray(8, 8 + length).toString('utf8');
    expect(header).toMatch(/^\{.*\} *$/);
    await withFile(file, async (opened) => {
      expect((await opened.read('größe')).data).toEqual(Float32Array.of(9));
      expect((await opened.read('a')).data).toEqual(Uint16Array.of(1, 2, 3));
    });
  });

  it('writes an empty tensor and an empty file', async () => {
    const dir = scratchDir();
    await writeSafetensors(path.join(dir, 'empty-tensor.safetensors'), { none: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) } });
    await writeSafetensors(path.join(dir, 'no-tensors.safetensors'), {});
    await withFile(path.join(dir, 'empty-tensor.safetensors'), async (opened) => expect(await opened.read('none')).toEqual({ dtype: 'F32', shape: [0, 4], data: new Float32Array(0) }));
    await withFile(path.join(dir, 'no-tensors.safetensors'), async (opened) => expect(opened.names()).toEqual([]));
  });

  it('writes data_offsets that tile the data section exactly, in order, empty tensors included', async () => {
    const file = path.join(scratchDir(), 'x.safetensors');
    await writeSafetensors(file, {
      a: { dtype: 'F16', shape: [3], data: Uint16Array.of(1, 2, 3) },
      none: { dtype: 'F32', shape: [0], data: new Float32Array(0) },
      b: { dtype: 'I32', shape: [2], data: Int32Array.of(4, 5) },
    });
    const bytes = fs.readFileSync(file);
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength(file)).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
    expect(Object.values(header).map((entry) => entry.data_offsets)).toEqual([[0, 6], [6, 6], [6, 14]]);
    expect(bytes.length - 8 - headerLength(file)).toBe(14);
  });

  it('replaces an existing file', async () => {
    const file = path.join(scratchDir(), 'x.safetensors');
    await writeSafetensors(file, { old: { dtype: 'F32', shape: [1], data: Float32Array.of(1) } });
    await writeSafetensors(file, { new: { dtype: 'F32', shape: [1], data: Float32Array.of(2) } });
    await withFile(file, async (opened) => expect(opened.names()).toEqual(['new']));
  });
});

describe('SafetensorsFile reads only what is asked for', () => {
  async function twoTensorFile(): Promise<string> {
    const file = path.join(scratchDir(), 'two.safetensors');
    await writeSafetensors(file, {
      small: { dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) },
      big: { dtype: 'F32', shape: [4, 3], data: Float32Array.from({ length: 12 }, (_, i) => i) },
    });
    return file;
  }

  it('counts the header when opened and then exactly the bytes of each tensor read', async () => {
    const file = await twoTensorFile();
    const headerBytes = 8 + headerLength(file);
    await withFile(file, async (opened) => {
      expect(opened.bytesRead).toBe(headerBytes);
      await opened.read('small');
      expect(opened.bytesRead).toBe(headerBytes + 8);
    });
  });

  it('reads rows along the first axis: [1, 3) of a [4, 3] tensor', async () => {
    const file = await twoTensorFile();
    await withFile(file, async (opened) => {
      const before = opened.bytesRead;
      expect(await opened.readRows('big', 1, 2)).toEqual({ dtype: 'F32', shape: [2, 3], data: Float32Array.of(3, 4, 5, 6, 7, 8) });
      expect(opened.bytesRead - before).toBe(2 * 3 * 4);
      await expectMoekitError(opened.readRows('big', 3, 2), 'E_INVALID_ARGUMENT', /two\.safetensors: tensor big of shape \[4, 3\] has no rows \[3, 5\)/);
    });
  });

  it('says which tensor does not exist', async () => {
    const file = await twoTensorFile();
    await withFile(file, async (opened) => {
      expect(() => opened.info('absent')).toThrow(/two\.safetensors: no tensor named "absent"/);
      await expectMoekitError(opened.read('absent'), 'E_NOT_FOUND', /no tensor named "absent"/);
    });
  });

  it('reads I64, skips __metadata__, and lists but refuses dtypes moekit does not read', async () => {
    const file = path.join(scratchDir(), 'mixed.safetensors');
    const ids = BigInt64Array.of(-1n, 2n ** 40n);
    const wide = Float64Array.of(0.5);
    writeRawFile(file, {
      __metadata__: { format: 'pt' },
      ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] },
      wide: { dtype: 'F64', shape: [1], data_offsets: [16, 24] },
    }, Buffer.concat([new Uint8Array(ids.buffer), new Uint8Array(wide.buffer)]));
    await withFile(file, async (opened) => {
      expect(opened.names()).toEqual(['ids', 'wide']);
      expect(await opened.read('ids')).toEqual({ dtype: 'I64', shape: [2], data: ids });
      expect(opened.info('wide')).toEqual({ dtype: 'F64', shape: [1], byteLength: 8 });
      await expectMoekitError(opened.read('wide'), 'E_DTYPE', /mixed\.safetensors: tensor wide is F64, which moekit does not read/);
    });
  });

  it('accepts tensors listed out of offset order, and empty tensors sharing an offset with the next', async () => {
    const file = path.join(scratchDir(), 'tiled.safetensors');
    writeRawFile(file, {
      second: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
      empty: { dtype: 'F32', shape: [0, 3], data_offsets: [4, 4] },
      first: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      last: { dtype: 'I32', shape: [0], data_offsets: [8, 8] },
    }, new Uint8Array(Float32Array.of(1, 2).buffer));
    await withFile(file, async (opened) => {
      expect((await opened.read('first')).data).toEqual(Float32Array.of(1));
      expect((await opened.read('second')).data).toEqual(Float32Array.of(2));
      expect((await opened.read('empty')).shape).toEqual([0, 3]);
    });
  });

  it('opens files holding sub-byte dtypes (4 bits a value) it will not read', async () => {
    const file = path.join(scratchDir(), 'packed.safetensors');
    writeRawFile(file, { packed: { dtype: 'F4', shape: [2, 3], data_offsets: [0, 3] } }, new Uint8Array(3));
    await withFile(file, async (opened) => expect(opened.info('packed')).toEqual({ dtype: 'F4', shape: [2, 3], byteLength: 3 }));
  });
});

describe('SafetensorsFile rejects malformed files when opening them', () => {
  const tensorHeader = { w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };
  const data = new Uint8Array(16);

  interface BadFile {
    name: string;
    write(file: string): void;
    message: RegExp;
  }

  const badFiles: BadFile[] = [
    {
      name: 'a truncated file',
      write: (file) => {
        writeRawFile(file, tensorHeader, data);
        fs.truncateSync(file, fs.statSync(file).size - 4);
      },
      message: /tensor w: data_offsets \[0, 16\] run past the end of the data \(12 bytes; is the file truncated\?\)/,
    },
    { name: 'a file shorter than the length prefix', write: (file) => fs.writeFileSync(file, Buffer.alloc(5)), message: /file is 5 bytes, too short/ },
    { name: 'an absurd header length', write: (file) => writeRawFile(file, tensorHeader, data, 1n << 60n), message: /absurd header length 1152921504606846976/ },
    { name: 'a header length past the end of the file', write: (file) => writeRawFile(file, tensorHeader, data, 10_000n), message: /absurd header length 10000 \(file size \d+ bytes\)/ },
    { name: 'a zero header length', write: (file) => writeRawFile(file, tensorHeader, data, 0n), message: /absurd header length 0/ },
    { name: 'a header that is not JSON', write: (file) => writeRawFile(file, '{"w": {not json', data), message: /header is not valid JSON/ },
    { name: 'a header that is not an object', write: (file) => writeRawFile(file, '[1, 2]', data), message: /header is not a JSON object/ },
    {
      name: 'offsets past the end',
      write: (file) => writeRawFile(file, { w: { dtype: 'F32', shape: [2, 2], data_offsets: [16, 32] } }, data),
      message: /tensor w: data_offsets \[16, 32\] run past the end of the data \(16 bytes/,
    },
    {
      name: 'offsets that end before they begin',
      write: (file) => writeRawFile(file, { w: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, data),
      message: /tensor w: data_offsets \[8, 4\] end before they begin/,
    },
    {
      name: 'offsets that are not a pair',
      write: (file) => writeRawFile(file, { w: { dtype: 'F32', shape: [2, 2], data_offsets: [0] } }, data),
      message: /tensor w: data_offsets \[0\] is not a pair of non-negative integers/,
    },
    {
      name: 'an unknown dtype',
      write: (file) => writeRawFile(file, { w: { dtype: 'F31', shape: [2, 2], data_offsets: [0, 16] } }, data),
      message: /tensor w: unknown dtype "F31"/,
    },
    {
      // A name every JavaScript object answers to: the dtype table must not.
      name: 'a dtype named like an object property',
      write: (file) => writeRawFile(file, { w: { dtype: 'constructor', shape: [2, 2], data_offsets: [0, 16] } }, data),
      message: /tensor w: unknown dtype "constructor"/,
    },
    {
      name: 'a shape/size mismatch',
      write: (file) => writeRawFile(file, { w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 16] } }, data),
      message: /tensor w: shape \[2, 3\] of F32 needs 24 bytes but data_offsets hold 16/,
    },
    {
      name: 'a negative extent',
      write: (file) => writeRawFile(file, { w: { dtype: 'F32', shape: [-2, -2], data_offsets: [0, 16] } }, data),
      message: /tensor w: shape \[-2, -2\] is not a list of non-negative integers/,
    },
    {
      name: 'tensors whose data_offsets overlap',
      write: (file) => writeRawFile(file, {
        a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
        b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
      }, new Uint8Array(24)),
      message: /tensors a \[0, 16\] and b \[8, 24\] overlap/,
    },
    {
      name: 'two tensors on the same bytes',
      write: (file) => writeRawFile(file, {
        b: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] },
        a: { dtype: 'I32', shape: [4], data_offsets: [0, 16] },
      }, data),
      message: /tensors b \[0, 16\] and a \[0, 16\] overlap/,
    },
    {
      name: 'an empty tensor inside another',
      write: (file) => writeRawFile(file, {
        w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] },
        none: { dtype: 'F32', shape: [0], data_offsets: [8, 8] },
      }, data),
      message: /tensors w \[0, 16\] and none \[8, 8\] overlap/,
    },
    {
      name: 'a gap between tensors',
      write: (file) => writeRawFile(file, {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        b: { dtype: 'F32', shape: [2], data_offsets: [16, 24] },
      }, new Uint8Array(24)),
      message: /bytes \[8, 16\) of the data section belong to no tensor \(a gap before tensor b/,
    },
    {
      name: 'a data section that does not start at offset 0',
      write: (file) => writeRawFile(file, { w: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, data),
      message: /bytes \[0, 8\) of the data section belong to no tensor \(a gap before tensor w/,
    },
    {
      name: 'trailing bytes after the last tensor',
      write: (file) => writeRawFile(file, tensorHeader, new Uint8Array(20)),
      message: /the data section has 4 trailing bytes after the last tensor's end \(offset 16 of 20\)/,
    },
    {
      name: 'data but no tensors',
      write: (file) => writeRawFile(file, { __metadata__: { format: 'pt' } }, new Uint8Array(8)),
      message: /the data section has 8 trailing bytes after the last tensor's end \(offset 0 of 8\)/,
    },
    {
      name: 'an entry that is not an object',
      write: (file) => writeRawFile(file, { w: 'F32' }, data),
      message: /tensor w: header entry is not an object/,
    },
  ];

  it.each(badFiles)('$name → E_SAFETENSORS naming the file', async ({ write, message }) => {
    const file = path.join(scratchDir(), 'bad.safetensors');
    write(file);
    const error = await openError(file);
    expect(error.code).toBe('E_SAFETENSORS');
    expect(error.message).toMatch(/^\/\S*bad\.safetensors: /);
    expect(error.message).toMatch(message);
  });

  it('a missing file → E_NOT_FOUND naming it', async () => {
    const file = path.join(scratchDir(), 'absent.safetensors');
    await expectMoekitError(SafetensorsFile.open(file), 'E_NOT_FOUND', /absent\.safetensors: cannot open \(ENOENT\)/);
  });
});

describe('writeSafetensors fails without leaving a file behind', () => {
  it.each<[string, Record<string, TensorToWrite>, RegExp]>([
    ['too few elements', { w: { dtype: 'F32', shape: [2, 3], data: new Float32Array(5) } }, /tensor "w": has 5 elements but shape \[2, 3\] holds 6/],
    ['a negative extent', { w: { dtype: 'F32', shape: [-1], data: new Float32Array(0) } }, /tensor "w": shape \[-1\] is not a list of non-negative integers/],
    // What a JavaScript caller can pass despite the types.
    ['the wrong array for the dtype', { w: { dtype: 'BF16', shape: [2], data: new Float32Array(2) } as unknown as TensorToWrite }, /tensor "w": BF16 data must be a Uint16Array/],
    ['a dtype it does not write', { w: { dtype: 'F64', shape: [1], data: new Float32Array(1) } as unknown as TensorToWrite }, /tensor "w": dtype "F64" is not one of F32, F16, BF16, I32/],
    ['the reserved name __metadata__', { __metadata__: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }, /tensor "__metadata__": is not a usable tensor name/],
  ])('%s → E_INVALID_ARGUMENT', async (_, tensors, message) => {
    const dir = scratchDir();
    const file = path.join(dir, 'out.safetensors');
    await expectMoekitError(writeSafetensors(file, { fine: { dtype: 'F32', shape: [1], data: Float32Array.of(1) }, ...tensors }), 'E_INVALID_ARGUMENT', message);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('keeps the previous file whole when writing over it fails', async () => {
    const dir = scratchDir();
    const file = path.join(dir, 'out.safetensors');
    await writeSafetensors(file, { kept: { dtype: 'F32', shape: [1], data: Float32Array.of(1) } });
    await expect(writeSafetensors(file, { lost: { dtype: 'F32', shape: [2], data: new Float32Array(1) } })).rejects.toThrow(MoekitError);
    expect(fs.readdirSync(dir)).toEqual(['out.safetensors']);
    await withFile(file, async (opened) => expect((await opened.read('kept')).data).toEqual(Float32Array.of(1)));
  });

  it('removes its temporary file when the final rename fails', async () => {
    const dir = scratchDir();
    // A folder where the file should go: the data is written in full, then the rename fails.
    const target = path.join(dir, 'taken');
    fs.mkdirSync(path.join(target, 'inside'), { recursive: true });
    await expectMoekitError(writeSafetensors(target, { w: { dtype: 'F32', shape: [1], data: Float32Array.of(1) } }), 'E_NOT_FOUND', /taken: cannot write \(E\w+\)/);
    expect(fs.readdirSync(dir)).toEqual(['taken']);
  });

  it('names the file when its folder does not exist', async () => {
    const file = path.join(scratchDir(), 'no-such-folder', 'out.safetensors');
    await expectMoekitError(writeSafetensors(file, {}), 'E_NOT_FOUND', /no-such-folder\/out\.safetensors: cannot write \(ENOENT\)/);
  });
});

describe('the shared fixtures, written by real tools, satisfy every check', () => {
  const fixtureRoot = path.resolve(__dirname, '../../shared/fixtures');
  const files = fs.existsSync(fixtureRoot)
    ? fs.readdirSync(fixtureRoot, { recursive: true, encoding: 'utf8' }).filter((file) => /^hf-moe[^/]*\/.*\.safetensors$/.test(file)).sort()
    : [];

  it('finds the fixtures', () => {
    expect(files.length).toBeGreaterThanOrEqual(15);
  });

  it.each(files)('%s opens', async (file) => {
    await withFile(path.join(fixtureRoot, file), async (opened) => expect(opened.names().length).toBeGreaterThan(0));
  });
});

describe('encodeSafetensors and writeSafetensors refuse what is not an object of tensors', () => {
  it.each([null, undefined, 7, [], 'x'])('tensors = %s', async (tensors) => {
    expectThrows(() => encodeSafetensors(tensors as never), 'E_INVALID_ARGUMENT', /^safetensors: tensors must be an object of named tensors, got /);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-write-')), 'x.safetensors');
    await expectRejects(writeSafetensors(file, tensors as never), 'E_INVALID_ARGUMENT', /tensors must be an object of named tensors/);
    expect(fs.existsSync(file)).toBe(false);
  });

  it.each([null, 3, 'F32'])('a tensor = %s', (tensor) => {
    expectThrows(() => encodeSafetensors({ a: tensor as never }), 'E_INVALID_ARGUMENT', /^safetensors: tensor "a": must be \{ dtype, shape, data \}, got /);
  });
});

describe('decodeSafetensors', () => {
  const image = encodeSafetensors({ a: { dtype: 'F32', shape: [2], data: Float32Array.of(1.5, -2) }, b: { dtype: 'BF16', shape: [3], data: Uint16Array.of(1, 2, 3) } });

  it('copies the data out by default, and hands out views of the image with { view: true }', () => {
    const copied = decodeSafetensors(image, 'image');
    const viewed = decodeSafetensors(image, 'image', { view: true });
    for (const name of ['a', 'b']) {
      expect(viewed.get(name)).toEqual(copied.get(name));
      expect(copied.get(name)!.data.buffer).not.toBe(image.buffer);
      expect(viewed.get(name)!.data.buffer).toBe(image.buffer);
    }
  });

  it('copies a tensor whose data is not aligned for its array, even with { view: true }', () => {
    // The same image one byte into a larger buffer: F32 data at an odd address cannot be viewed.
    const shifted = new Uint8Array(image.length + 1).subarray(1);
    shifted.set(image);
    const tensor = decodeSafetensors(shifted, 'shifted', { view: true }).get('a')!;
    expect(tensor.data).toEqual(Float32Array.of(1.5, -2));
    expect(tensor.data.buffer).not.toBe(shifted.buffer);
  });

  it('refuses a view option that is not a boolean', () => {
    expect(() => decodeSafetensors(image, 'image', { view: 'yes' as never })).toThrow(/decodeSafetensors: options.view must be a boolean, got "yes"/);
  });
});
