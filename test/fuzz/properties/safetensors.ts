/**
 * Property: SafetensorsFile (dist/checkpoint/safetensors.js) on any file either opens it, and
 * then reads every tensor (and rows of it) exactly as the file holds it, or throws a MoekitError
 * (E_SAFETENSORS, E_NOT_FOUND; E_DTYPE, E_INVALID_ARGUMENT for reads it does not do). It opens
 * every well-formed file, refuses every malformed one (safetensors_reference.ts says which is
 * which), never throws another error and never hangs. writeSafetensors' files read back as written.
 *
 * Files are built here, not by moekit's writer: tensors of every dtype the format has, with
 * optional metadata, padding, data in or out of header order; then edited: header fields set to
 * junk, offsets shifted (overlaps, gaps, past the end), the length field changed, the JSON text
 * or the file's bytes cut, flipped or extended. Also: random bytes, and paths that are no
 * regular file (a FIFO, a folder, a symlink loop, /dev/zero, a missing file, junk for a path).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as fc from 'fast-check';

import type { MoekitApi, SafetensorsApi } from '../harness/moekit';
import { defineProperty } from '../harness/property';
import { errorText } from '../harness/protocol';
import { renderValue } from './render';
import { ELEMENT_BITS, READABLE_DTYPES, referenceParse, type ReferenceFile } from './safetensors_reference';
import { JSON_JUNK_VALUES, JUNK_VALUES, toJsonText } from './values';

// ---- Cases ----------------------------------------------------------------------------------

interface BuiltTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/** A change to the header before it is written. */
type HeaderEdit =
  /** A field of one tensor's entry set to a JSON value (or removed: value undefined). */
  | { kind: 'field'; tensor: number; field: 'dtype' | 'shape' | 'data_offsets' | 'extra'; value: unknown }
  /** The whole entry replaced by a JSON value. */
  | { kind: 'entry'; tensor: number; value: unknown }
  /** One tensor's offsets moved by `by` bytes: begin, end, or both (a gap or an overlap). */
  | { kind: 'offsets'; tensor: number; which: 'begin' | 'end' | 'both'; by: number }
  /** One tensor's offsets made another's (the two then overlap entirely). */
  | { kind: 'alias'; tensor: number; of: number };

/** A change to the bytes once written. */
type ByteEdit =
  | { kind: 'length-field'; value: bigint }
  | { kind: 'length-field-delta'; by: number }
  /** Positions are fractions of the header text or of the file, so they stay meaningful when shrunk. */
  | { kind: 'header-byte'; at: number; byte: number; op: 'insert' | 'replace' | 'delete' }
  | { kind: 'truncate'; keep: number }
  | { kind: 'append'; bytes: Uint8Array }
  | { kind: 'flip'; at: number; byte: number };

/** readRows arguments; tensor picks one of the file's tensors by index. */
interface RowsRead {
  tensor: number;
  first: unknown;
  count: unknown;
}

export interface FileCase {
  kind: 'file';
  tensors: BuiltTensor[];
  metadata?: unknown;
  /** Spaces before the JSON text, and after it (writers pad to 8 bytes). */
  leading: number;
  padding: number;
  /** Order of the tensors' bytes in the data section. */
  reversed: boolean;
  headerEdits: HeaderEdit[];
  byteEdits: ByteEdit[];
  reads: RowsRead[];
}

interface BytesCase {
  kind: 'bytes';
  bytes: Uint8Array;
  reads: RowsRead[];
}

type Special = 'fifo' | 'directory' | 'symlink-loop' | 'missing' | 'dev-zero' | 'symlink-to-valid' | 'nul-in-path' | 'not-a-path';

interface SpecialCase {
  kind: 'special';
  what: Special;
  /** not-a-path: what is passed instead of a path. */
  value?: unknown;
}

/** writeSafetensors then read back; names, dtypes and data may be junk. */
interface WrittenCase {
  kind: 'written';
  tensors: Array<{ name: string; dtype: unknown; shape: unknown; data: unknown }>;
}

export type SafetensorsCase = FileCase | BytesCase | SpecialCase | WrittenCase;

const NAMES = ['weight', 'model.layers.0.mlp.gate.weight', '', '__proto__', 'constructor', 'toString', '__metadata__', 'ü', '😀', 'a\u0000b', 'a"b\\'];
const tensorName = fc.oneof(fc.constantFrom(...NAMES), fc.string({ maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 4 }));
const shape = fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 });

/** A tensor of any format dtype, its data random bytes of exactly the size its shape needs. */
const builtTensor: fc.Arbitrary<BuiltTensor> = fc
  .record({ name: tensorName, dtype: fc.constantFrom(...Object.keys(ELEMENT_BITS)), shape })
  .chain(({ name, dtype, shape: dims }) => {
    const bits = dims.reduce((product, extent) => product * extent, 1) * ELEMENT_BITS[dtype]!;
    // Sub-byte dtypes (F4, F6) need a whole number of bytes: widen such a shape by 8.
    const fitted = bits % 8 === 0 ? dims : [...dims, 8];
    const bytes = (fitted.reduce((product, extent) => product * extent, 1) * ELEMENT_BITS[dtype]!) / 8;
    return fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((data) => ({ name, dtype, shape: fitted, data }));
  });

const jsonJunk = fc.constantFrom(...JSON_JUNK_VALUES);
const fraction = fc.double({ min: 0, max: 1, noNaN: true });
const tensorIndex = fc.nat(7);

const headerEdit: fc.Arbitrary<HeaderEdit> = fc.oneof(
  fc.record({ kind: fc.constant('field' as const), tensor: tensorIndex, field: fc.constantFrom('dtype' as const, 'shape' as const, 'data_offsets' as const, 'extra' as const), value: fc.oneof(jsonJunk, fc.constant(undefined), fc.constantFrom('F32', 'I64', 'F4', 'f32', 'F8_E4M3')) }),
  fc.record({ kind: fc.constant('entry' as const), tensor: tensorIndex, value: jsonJunk }),
  fc.record({ kind: fc.constant('offsets' as const), tensor: tensorIndex, which: fc.constantFrom('begin' as const, 'end' as const, 'both' as const), by: fc.oneof(fc.integer({ min: -8, max: 8 }), fc.constantFrom(2 ** 32, 2 ** 53, -(2 ** 53))) }),
  fc.record({ kind: fc.constant('alias' as const), tensor: tensorIndex, of: tensorIndex }),
);

const byteEdit: fc.Arbitrary<ByteEdit> = fc.oneof(
  fc.record({ kind: fc.constant('length-field' as const), value: fc.constantFrom(0n, 1n, 2n ** 32n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, BigInt(100 * 1024 * 1024 + 1)) }),
  fc.record({ kind: fc.constant('length-field-delta' as const), by: fc.integer({ min: -9, max: 9 }) }),
  fc.record({ kind: fc.constant('header-byte' as const), at: fraction, byte: fc.integer({ min: 0, max: 255 }), op: fc.constantFrom('insert' as const, 'replace' as const, 'delete' as const) }),
  fc.record({ kind: fc.constant('truncate' as const), keep: fraction }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('flip' as const), at: fraction, byte: fc.integer({ min: 0, max: 255 }) }),
);

/** Row numbers: mostly small integers (some out of range), now and then junk. */
const rowNumber = fc.oneof({ weight: 12, arbitrary: fc.integer({ min: -1, max: 5 }) }, { weight: 1, arbitrary: fc.constantFrom(...JUNK_VALUES) });
const rowsRead: fc.Arbitrary<RowsRead> = fc.record({ tensor: tensorIndex, first: rowNumber, count: rowNumber });

const reads = fc.array(rowsRead, { maxLength: 3 });

export const fileCase: fc.Arbitrary<FileCase> = fc.record({
  kind: fc.constant('file' as const),
  tensors: fc.array(builtTensor, { maxLength: 4 }),
  metadata: fc.option(fc.oneof(fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 2 }), jsonJunk), { nil: undefined }),
  leading: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }),
  padding: fc.integer({ min: 0, max: 8 }),
  reversed: fc.boolean(),
  // Half the files stay valid; the rest get one or two edits.
  headerEdits: fc.oneof({ weight: 3, arbitrary: fc.constant<HeaderEdit[]>([]) }, { weight: 2, arbitrary: fc.array(headerEdit, { minLength: 1, maxLength: 2 }) }),
  byteEdits: fc.oneof({ weight: 4, arbitrary: fc.constant<ByteEdit[]>([]) }, { weight: 1, arbitrary: fc.array(byteEdit, { minLength: 1, maxLength: 2 }) }),
  reads,
});

export const bytesCase: fc.Arbitrary<BytesCase> = fc.record({
  kind: fc.constant('bytes' as const),
  bytes: fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    // A plausible length field in front of random bytes.
    fc.tuple(fc.integer({ min: 0, max: 64 }), fc.uint8Array({ maxLength: 64 })).map(([length, rest]) => {
      const bytes = new Uint8Array(8 + rest.length);
      new DataView(bytes.buffer).setBigUint64(0, BigInt(length), true);
      bytes.set(rest, 8);
      return bytes;
    }),
  ),
  reads,
});

const specialCase: fc.Arbitrary<SpecialCase> = fc.oneof(
  fc.record({ kind: fc.constant('special' as const), what: fc.constantFrom<Special>('fifo', 'directory', 'symlink-loop', 'missing', 'dev-zero', 'symlink-to-valid', 'nul-in-path') }),
  fc.record({ kind: fc.constant('special' as const), what: fc.constant<Special>('not-a-path'), value: fc.constantFrom(...JUNK_VALUES) }),
);

const WRITABLE: Record<string, (length: number) => fc.Arbitrary<unknown>> = {
  F32: (length) => fc.float32Array({ minLength: length, maxLength: length }),
  F16: (length) => fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: length, maxLength: length }).map((bits) => Uint16Array.from(bits)),
  BF16: (length) => fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: length, maxLength: length }).map((bits) => Uint16Array.from(bits)),
  I32: (length) => fc.int32Array({ minLength: length, maxLength: length }),
};

export const writtenTensor = fc.record({ name: tensorName, dtype: fc.constantFrom('F32', 'F16', 'BF16', 'I32'), shape }).chain(({ name, dtype, shape: dims }) => {
  const length = dims.reduce((product, extent) => product * extent, 1);
  return fc.record({
    name: fc.constant(name),
    dtype: fc.oneof({ weight: 9, arbitrary: fc.constant<unknown>(dtype) }, { weight: 1, arbitrary: fc.constantFrom(...JUNK_VALUES) }),
    shape: fc.oneof({ weight: 9, arbitrary: fc.constant<unknown>(dims) }, { weight: 1, arbitrary: fc.constantFrom(...JUNK_VALUES) }),
    data: fc.oneof({ weight: 9, arbitrary: WRITABLE[dtype]!(length) }, { weight: 1, arbitrary: WRITABLE[dtype]!(length + 1) }, { weight: 1, arbitrary: fc.constantFrom(...JUNK_VALUES) }),
  });
});

const writtenCase: fc.Arbitrary<WrittenCase> = fc.record({ kind: fc.constant('written' as const), tensors: fc.array(writtenTensor, { maxLength: 3 }) });

const safetensorsCases: fc.Arbitrary<SafetensorsCase> = fc.oneof(
  { weight: 12, arbitrary: fileCase },
  { weight: 2, arbitrary: bytesCase },
  { weight: 1, arbitrary: specialCase },
  { weight: 2, arbitrary: writtenCase },
);

// ---- Building a file ------------------------------------------------------------------------

type HeaderEntry = Record<string, unknown>;

function applyHeaderEdit(entries: Array<[string, HeaderEntry | unknown]>, edit: HeaderEdit): void {
  if (entries.length === 0) return;
  const index = edit.tensor % entries.length;
  const [name, entry] = entries[index]!;
  const object = typeof entry === 'object' && entry !== null && !Array.isArray(entry) ? (entry as HeaderEntry) : undefined;
  switch (edit.kind) {
    case 'field': {
      if (!object) return;
      const { [edit.field]: _, ...rest } = object;
      entries[index] = [name, edit.value === undefined ? rest : { ...rest, [edit.field]: edit.value }];
      return;
    }
    case 'entry':
      entries[index] = [name, edit.value];
      return;
    case 'offsets': {
      const offsets = object?.data_offsets;
      if (!object || !Array.isArray(offsets) || offsets.length !== 2) return;
      const [begin, end] = offsets as [number, number];
      const moved = [edit.which === 'end' ? begin : begin + edit.by, edit.which === 'begin' ? end : end + edit.by];
      entries[index] = [name, { ...object, data_offsets: moved }];
      return;
    }
    case 'alias': {
      const other = entries[edit.of % entries.length]![1] as HeaderEntry | undefined;
      if (!object || typeof other !== 'object' || other === null) return;
      entries[index] = [name, { ...object, data_offsets: other.data_offsets }];
      return;
    }
  }
}

function headerText(testCase: FileCase): Buffer {
  // Offsets as a writer lays the data out: in header order, or reversed.
  const order = testCase.reversed ? [...testCase.tensors].reverse() : testCase.tensors;
  const offsets = new Map<BuiltTensor, [number, number]>();
  let at = 0;
  for (const tensor of order) {
    offsets.set(tensor, [at, at + tensor.data.length]);
    at += tensor.data.length;
  }
  const entries: Array<[string, unknown]> = testCase.tensors.map((tensor) => [tensor.name, { dtype: tensor.dtype, shape: tensor.shape, data_offsets: offsets.get(tensor) }]);
  for (const edit of testCase.headerEdits) applyHeaderEdit(entries, edit);
  if (testCase.metadata !== undefined) entries.unshift(['__metadata__', testCase.metadata]);
  // Written key by key: duplicate names stay duplicates, as a broken writer would leave them.
  const json = `{${entries.map(([name, value]) => `${JSON.stringify(name)}:${toJsonText(value)}`).join(',')}}`;
  return Buffer.from(`${' '.repeat(testCase.leading)}${json}${' '.repeat(testCase.padding)}`, 'utf8');
}

function editHeader(header: Buffer, edit: Extract<ByteEdit, { kind: 'header-byte' }>): Buffer {
  const at = Math.min(header.length, Math.floor(edit.at * header.length));
  const byte = Buffer.from([edit.byte]);
  switch (edit.op) {
    case 'insert': return Buffer.concat([header.subarray(0, at), byte, header.subarray(at)]);
    case 'replace': return Buffer.concat([header.subarray(0, at), byte, header.subarray(at + 1)]);
    case 'delete': return Buffer.concat([header.subarray(0, at), header.subarray(at + 1)]);
  }
}

function editFile(file: Buffer, edit: ByteEdit): Buffer {
  switch (edit.kind) {
    case 'length-field': {
      const copy = Buffer.from(file);
      if (copy.length >= 8) copy.writeBigUInt64LE(edit.value, 0);
      return copy;
    }
    case 'length-field-delta': {
      const copy = Buffer.from(file);
      if (copy.length >= 8) copy.writeBigUInt64LE(BigInt.asUintN(64, copy.readBigUInt64LE(0) + BigInt(edit.by)), 0);
      return copy;
    }
    case 'truncate':
      return file.subarray(0, Math.floor(edit.keep * file.length));
    case 'append':
      return Buffer.concat([file, edit.bytes]);
    case 'flip': {
      const copy = Buffer.from(file);
      if (copy.length > 0) copy[Math.min(copy.length - 1, Math.floor(edit.at * copy.length))] = edit.byte;
      return copy;
    }
    case 'header-byte':
      return file;
  }
}

export function fileBytes(testCase: FileCase): Buffer {
  let header = headerText(testCase);
  for (const edit of testCase.byteEdits) if (edit.kind === 'header-byte') header = editHeader(header, edit);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  const data = (testCase.reversed ? [...testCase.tensors].reverse() : testCase.tensors).map((tensor) => tensor.data);
  return testCase.byteEdits.reduce(editFile, Buffer.concat([length, header, ...data]));
}

// ---- Checking -------------------------------------------------------------------------------

class PropertyViolation extends Error {}

type SafetensorsFile = Awaited<ReturnType<SafetensorsApi['SafetensorsFile']['open']>>;

/** Awaits `action`; returns the MoekitError it failed with, or undefined when it succeeded. Any other error is a violation. */
async function moekitFailure(api: MoekitApi, what: string, codes: readonly string[], action: () => Promise<unknown>): Promise<MoekitApi['MoekitError']['prototype'] | undefined> {
  try {
    await action();
    return undefined;
  } catch (error) {
    if (!(error instanceof api.MoekitError)) throw new PropertyViolation(`${what} failed with an error that is not a MoekitError: ${errorText(error)}`);
    if (!codes.includes(error.code)) throw new PropertyViolation(`${what} failed with ${error.code} (expected ${codes.join(' or ')}): ${error.message}`);
    return error;
  }
}

export function bytesOf(view: ArrayBufferView): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

function sameShape(actual: readonly number[], expected: readonly number[]): boolean {
  return actual.length === expected.length && actual.every((extent, axis) => extent === expected[axis]);
}

/** Reads every tensor of an opened file, whole and by rows, against the bytes the reference says it holds. */
async function checkContents(api: MoekitApi, opened: SafetensorsFile, reference: ReferenceFile, file: Buffer, rowReads: readonly RowsRead[]): Promise<void> {
  const expectedNames = [...reference.entries.keys()].sort();
  const names = [...opened.names()].sort();
  if (names.join('\u0001') !== expectedNames.join('\u0001')) throw new PropertyViolation(`names() is ${JSON.stringify(names)}, expected ${JSON.stringify(expectedNames)}`);
  for (const [name, entry] of reference.entries) {
    const expected = file.subarray(reference.dataStart + entry.begin, reference.dataStart + entry.end);
    const info = opened.info(name);
    if (info.dtype !== entry.dtype || !sameShape(info.shape, entry.shape) || info.byteLength !== expected.length) {
      throw new PropertyViolation(`info(${JSON.stringify(name)}) is ${JSON.stringify(info)}, expected ${entry.dtype} ${JSON.stringify(entry.shape)} of ${expected.length} bytes`);
    }
    if (!READABLE_DTYPES.includes(entry.dtype)) {
      const failure = await moekitFailure(api, `read(${JSON.stringify(name)})`, ['E_DTYPE'], () => opened.read(name));
      if (!failure) throw new PropertyViolation(`read(${JSON.stringify(name)}) of a ${entry.dtype} tensor succeeded; moekit does not read ${entry.dtype}`);
      continue;
    }
    const tensor = await opened.read(name);
    if (!sameShape(tensor.shape, entry.shape) || !bytesOf(tensor.data).equals(expected)) {
      throw new PropertyViolation(`read(${JSON.stringify(name)}) returned other data than the file holds at [${entry.begin}, ${entry.end})`);
    }
  }
  await moekitFailure(api, 'read of a missing tensor', ['E_NOT_FOUND'], () => opened.read('\u0000no such tensor'));
  const all = [...reference.entries];
  for (const { tensor, first, count } of all.length === 0 ? [] : rowReads) {
    const [name, entry] = all[tensor % all.length]!;
    await checkRowsRead(api, opened, name, entry, file.subarray(reference.dataStart + entry.begin, reference.dataStart + entry.end), first, count);
  }
}

async function checkRowsRead(api: MoekitApi, opened: SafetensorsFile, name: string, entry: { dtype: string; shape: number[] }, expected: Buffer, first: unknown, count: unknown): Promise<void> {
  const what = `readRows(${JSON.stringify(name)}, ${renderValue(first)}, ${renderValue(count)})`;
  const rows = entry.shape[0];
  const readable = READABLE_DTYPES.includes(entry.dtype);
  const valid = readable && rows !== undefined && Number.isSafeInteger(first) && Number.isSafeInteger(count) && (first as number) >= 0 && (count as number) >= 0 && (first as number) + (count as number) <= rows;
  if (!valid) {
    const failure = await moekitFailure(api, what, ['E_INVALID_ARGUMENT', 'E_DTYPE'], () => opened.readRows(name, first as number, count as number));
    if (!failure) throw new PropertyViolation(`${what} of a ${entry.dtype} tensor of shape ${JSON.stringify(entry.shape)} succeeded`);
    return;
  }
  const rowBytes = rows === 0 ? 0 : expected.length / rows;
  const slice = expected.subarray((first as number) * rowBytes, ((first as number) + (count as number)) * rowBytes);
  const tensor = await opened.readRows(name, first as number, count as number);
  if (!bytesOf(tensor.data).equals(slice) || tensor.shape[0] !== count) throw new PropertyViolation(`${what} returned other data than the file holds`);
}

/** Opens `file` (a path, or junk for one) and checks the outcome against `reference` (undefined: it must fail). */
async function checkOpen(api: MoekitApi, safetensors: SafetensorsApi, file: unknown, bytes: Buffer | undefined, reference: ReferenceFile | undefined, reads: readonly RowsRead[]): Promise<void> {
  let opened: SafetensorsFile | undefined;
  // A value that is no path at all is a bad argument; anything else that fails is a bad file.
  const codes = typeof file === 'string' ? ['E_SAFETENSORS', 'E_NOT_FOUND'] : ['E_INVALID_ARGUMENT'];
  const failure = await moekitFailure(api, 'open', codes, async () => {
    opened = await safetensors.SafetensorsFile.open(file as string);
  });
  if (failure) {
    if (reference?.verdict.kind === 'valid') throw new PropertyViolation(`a well-formed file failed to open: ${failure.code} ${failure.message}`);
    return;
  }
  try {
    if (!reference || !bytes) throw new PropertyViolation(`opened ${renderValue(file)}, which is no safetensors file`);
    if (reference.verdict.kind === 'reject') throw new PropertyViolation(`a malformed file opened (${reference.verdict.why})`);
    await checkContents(api, opened!, reference, bytes, reads);
  } finally {
    await opened!.close();
  }
}

interface SpecialPaths {
  fifo?: string;
  directory: string;
  loop: string;
  validLink: string;
  validTarget: string;
}

function makeSpecialPaths(scratchDir: string): SpecialPaths {
  const directory = path.join(scratchDir, 'a-folder');
  fs.mkdirSync(directory);
  const loop = path.join(scratchDir, 'loop-a');
  fs.symlinkSync(path.join(scratchDir, 'loop-b'), loop);
  fs.symlinkSync(loop, path.join(scratchDir, 'loop-b'));
  const validTarget = path.join(scratchDir, 'link-target.safetensors');
  const validLink = path.join(scratchDir, 'link.safetensors');
  fs.symlinkSync(validTarget, validLink);
  const paths: SpecialPaths = { directory, loop, validLink, validTarget };
  try {
    // No writer ever opens it: an open() for reading waits for one forever, unless the reader checks first.
    execFileSync('mkfifo', [path.join(scratchDir, 'a-fifo')]);
    paths.fifo = path.join(scratchDir, 'a-fifo');
  } catch {
    // No mkfifo here: FIFO cases pass vacuously.
  }
  return paths;
}

const VALID_SAMPLE: FileCase = {
  kind: 'file',
  tensors: [{ name: 'w', dtype: 'F32', shape: [2], data: Uint8Array.from([0, 0, 128, 63, 0, 0, 0, 64]) }],
  leading: 0, padding: 0, reversed: false, headerEdits: [], byteEdits: [], reads: [],
};

async function checkSpecial(api: MoekitApi, safetensors: SafetensorsApi, testCase: SpecialCase, paths: SpecialPaths, scratchDir: string): Promise<void> {
  switch (testCase.what) {
    case 'fifo':
      return paths.fifo ? checkOpen(api, safetensors, paths.fifo, undefined, undefined, []) : undefined;
    case 'directory':
      return checkOpen(api, safetensors, paths.directory, undefined, undefined, []);
    case 'symlink-loop':
      return checkOpen(api, safetensors, paths.loop, undefined, undefined, []);
    case 'missing':
      return checkOpen(api, safetensors, path.join(scratchDir, 'no-such-file.safetensors'), undefined, undefined, []);
    case 'dev-zero':
      return checkOpen(api, safetensors, '/dev/zero', undefined, undefined, []);
    case 'nul-in-path':
      return checkOpen(api, safetensors, `${paths.validTarget}\u0000`, undefined, undefined, []);
    case 'not-a-path':
      return checkOpen(api, safetensors, testCase.value, undefined, undefined, []);
    case 'symlink-to-valid': {
      const bytes = fileBytes(VALID_SAMPLE);
      fs.writeFileSync(paths.validTarget, bytes);
      return checkOpen(api, safetensors, paths.validLink, bytes, referenceParse(bytes), []);
    }
  }
}

/** writeSafetensors either refuses the tensors with a MoekitError or writes a file that reads them back bit for bit. */
async function checkWritten(api: MoekitApi, safetensors: SafetensorsApi, testCase: WrittenCase, file: string): Promise<void> {
  fs.rmSync(file, { force: true });
  // Object.fromEntries: a tensor named "__proto__" is an own entry, as a caller's object literal with a computed key makes it.
  const tensors = Object.fromEntries(testCase.tensors.map(({ name, dtype, shape: dims, data }) => [name, { dtype, shape: dims, data }]));
  const failure = await moekitFailure(api, 'writeSafetensors', ['E_INVALID_ARGUMENT', 'E_NOT_FOUND'], () => safetensors.writeSafetensors(file, tensors as never));
  if (failure) return;
  const bytes = fs.readFileSync(file);
  const reference = referenceParse(bytes);
  if (reference.verdict.kind !== 'valid') throw new PropertyViolation(`writeSafetensors wrote a file that is not well-formed: ${reference.verdict.why}`);
  const opened = await safetensors.SafetensorsFile.open(file);
  try {
    for (const [name, tensor] of Object.entries(tensors)) {
      const read = await opened.read(name);
      if (!bytesOf(read.data).equals(bytesOf(tensor.data as ArrayBufferView))) throw new PropertyViolation(`tensor ${JSON.stringify(name)} read back other data than was written`);
    }
  } finally {
    await opened.close();
  }
}

function describeCase(testCase: SafetensorsCase): string {
  switch (testCase.kind) {
    case 'file': {
      const bytes = fileBytes(testCase);
      const head = bytes.subarray(0, 8).toString('hex');
      const text = JSON.stringify(bytes.subarray(8, 8 + 400).toString('latin1'));
      return `file of ${bytes.length} bytes, length field ${head} (LE), then ${text}${bytes.length > 408 ? '...' : ''}; rows reads ${renderValue(testCase.reads)}`;
    }
    case 'bytes':
      return `file of bytes ${Buffer.from(testCase.bytes).toString('hex')}; rows reads ${renderValue(testCase.reads)}`;
    case 'special':
      return `SafetensorsFile.open(<${testCase.what}>${testCase.what === 'not-a-path' ? ` = ${renderValue(testCase.value)}` : ''})`;
    case 'written':
      return `writeSafetensors(file, ${renderValue(Object.fromEntries(testCase.tensors.map(({ name, ...rest }) => [name, rest])))})`;
  }
}

export const safetensorsProperty = defineProperty<SafetensorsCase>(({ moekit, scratchDir }) => {
  const { api, safetensors } = moekit;
  const paths = makeSpecialPaths(scratchDir);
  const caseFile = path.join(scratchDir, 'case.safetensors');
  return {
    arbitrary: safetensorsCases,
    describe: describeCase,
    check: async (testCase) => {
      switch (testCase.kind) {
        case 'file':
        case 'bytes': {
          const bytes = testCase.kind === 'file' ? fileBytes(testCase) : Buffer.from(testCase.bytes);
          fs.writeFileSync(caseFile, bytes);
          return checkOpen(api, safetensors, caseFile, bytes, referenceParse(bytes), testCase.reads);
        }
        case 'special':
          return checkSpecial(api, safetensors, testCase, paths, scratchDir);
        case 'written':
          return checkWritten(api, safetensors, testCase, path.join(scratchDir, 'written.safetensors'));
      }
    },
  };
});
