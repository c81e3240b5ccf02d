/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header mapping tensor
 * names to {dtype, shape, data_offsets}, then the data section. The reader validates the whole
 * header when a file is opened and afterwards reads only the bytes of the tensors asked for, so
 * loading one layer of a sharded checkpoint touches nothing else.
 *
 * Typed arrays are viewed in the machine's byte order; every platform moekit builds for is
 * little-endian, as the format is.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { describeValue, MoekitError } from '../errors';
import { fileSystemError, openRegularFile } from '../files';
import { optionalOptions } from '../options';

/** Bits per element of every dtype the format defines (some pack several elements per byte). */
const ELEMENT_BITS = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6,
  I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, F64: 64, I64: 64, U64: 64,
} as const;

/** A dtype a safetensors header may declare. */
export type SafetensorsDType = keyof typeof ELEMENT_BITS;
/** The dtypes moekit reads; a file may hold others, and reading one of those tensors fails. */
export type ReadableDType = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'F8_E4M3' | 'U8';

const READABLE_DTYPES: readonly SafetensorsDType[] = ['F32', 'F16', 'BF16', 'I32', 'I64', 'F8_E4M3', 'U8'];

/** A header larger than this is not a real checkpoint's (real ones are a few MB at most). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
const HEADER_LENGTH_BYTES = 8;
/** Node reads at most 2 GiB per call; larger tensors are read in pieces of this size. */
const MAX_READ_BYTES = 1024 * 1024 * 1024;

export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  byteLength: number;
}

/**
 * F32 → Float32Array, F16/BF16 → their raw 16-bit patterns, I32 → Int32Array, I64 → BigInt64Array,
 * F8_E4M3 → its 8-bit patterns and U8 → its bytes, in a Uint8Array.
 */
export type SafetensorsTensor =
  | { dtype: 'F32'; shape: number[]; data: Float32Array }
  | { dtype: 'F16' | 'BF16'; shape: number[]; data: Uint16Array }
  | { dtype: 'I32'; shape: number[]; data: Int32Array }
  | { dtype: 'I64'; shape: number[]; data: BigInt64Array }
  | { dtype: 'F8_E4M3' | 'U8'; shape: number[]; data: Uint8Array };

/** Where a tensor's bytes lie within the data section: [begin, end). */
interface HeaderEntry {
  dtype: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

function malformed(file: string, message: string): never {
  throw new MoekitError('E_SAFETENSORS', `${file}: ${message}`);
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((total, extent) => total * extent, 1);
}

function isDTypeName(value: unknown): value is SafetensorsDType {
  return typeof value === 'string' && Object.hasOwn(ELEMENT_BITS, value);
}

function isShape(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((extent) => Number.isSafeInteger(extent) && extent >= 0);
}

function isOffsetPair(value: unknown): value is [number, number] {
  return Array.isArray(value) && value.length === 2 && value.every((offset) => Number.isSafeInteger(offset) && offset >= 0);
}

/** Checks one header entry against the format and against the data section's size. */
function parseEntry(file: string, name: string, raw: unknown, dataBytes: number): HeaderEntry {
  const where = `tensor ${name}`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) malformed(file, `${where}: header entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (!isDTypeName(dtype)) malformed(file, `${where}: unknown dtype ${describeValue(dtype)}`);
  if (!isShape(shape)) malformed(file, `${where}: shape ${describeValue(shape)} is not a list of non-negative integers`);
  if (!isOffsetPair(offsets)) malformed(file, `${where}: data_offsets ${describeValue(offsets)} is not a pair of non-negative integers`);
  const [begin, end] = offsets;
  if (begin > end) malformed(file, `${where}: data_offsets [${begin}, ${end}] end before they begin`);
  if (end > dataBytes) {
    malformed(file, `${where}: data_offsets [${begin}, ${end}] run past the end of the data (${dataBytes} bytes; is the file truncated?)`);
  }
  const bits = elementCount(shape) * ELEMENT_BITS[dtype];
  if (bits !== (end - begin) * 8) {
    malformed(file, `${where}: shape [${shape.join(', ')}] of ${dtype} needs ${bits / 8} bytes but data_offsets hold ${end - begin}`);
  }
  return { dtype, shape, begin, end };
}

/**
 * The format requires the tensors to tile the data section: sorted by offset, they run from 0 to
 * its end with no overlap (two tensors sharing bytes, so that writing one changes the other) and
 * no gap or trailing bytes (data that no tensor owns). The reference implementation refuses all
 * three; so does moekit, so that a file it reads is one every other reader reads the same way.
 */
function checkTiling(file: string, entries: ReadonlyMap<string, HeaderEntry>, dataBytes: number): void {
  const range = (name: string, { begin, end }: HeaderEntry): string => `${name} [${begin}, ${end}]`;
  // Empty tensors sort before a tensor at the same offset, which they do not overlap.
  const sorted = [...entries].sort(([, a], [, b]) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: [string, HeaderEntry] | undefined;
  for (const [name, entry] of sorted) {
    if (entry.begin < covered && previous) {
      malformed(file, `tensors ${range(...previous)} and ${range(name, entry)} overlap (data_offsets must not share bytes)`);
    }
    if (entry.begin > covered) {
      malformed(file, `bytes [${covered}, ${entry.begin}) of the data section belong to no tensor (a gap before tensor ${name}; data_offsets must be contiguous)`);
    }
    covered = entry.end;
    previous = [name, entry];
  }
  if (covered !== dataBytes) {
    malformed(file, `the data section has ${dataBytes - covered} trailing bytes after the last tensor's end (offset ${covered} of ${dataBytes})`);
  }
}

function parseHeader(file: string, json: string, dataBytes: number): Map<string, HeaderEntry> {
  let header: unknown;
  try {
    header = JSON.parse(json);
  } catch {
    malformed(file, 'header is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) malformed(file, 'header is not a JSON object');
  const entries = new Map<string, HeaderEntry>();
  for (const [name, raw] of Object.entries(header)) {
    // Free-form string metadata (format version, framework), nothing moekit needs.
    if (name === '__metadata__') continue;
    entries.set(name, parseEntry(file, name, raw, dataBytes));
  }
  checkTiling(file, entries, dataBytes);
  return entries;
}

/**
 * Reads `target.length` bytes of `file` from `position` (in pieces, as Node caps one read); returns
 * how many there were. A failed read (EIO, say) is E_NOT_FOUND naming the file.
 */
async function readFully(file: string, handle: fs.promises.FileHandle, target: Uint8Array, position: number): Promise<number> {
  let done = 0;
  try {
    while (done < target.length) {
      const { bytesRead } = await handle.read(target, done, Math.min(target.length - done, MAX_READ_BYTES), position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
  } catch (error) {
    throw fileSystemError(file, 'read', error);
  }
  return done;
}

/** Reads and checks the 8-byte header length against the format's and moekit's bounds. */
async function readHeaderLength(file: string, handle: fs.promises.FileHandle, fileBytes: number): Promise<number> {
  const prefix = Buffer.alloc(HEADER_LENGTH_BYTES);
  if ((await readFully(file, handle, prefix, 0)) < HEADER_LENGTH_BYTES) {
    malformed(file, `file is ${fileBytes} bytes, too short for a safetensors header`);
  }
  const length = prefix.readBigUInt64LE(0);
  if (length === 0n || length > BigInt(Math.min(MAX_HEADER_BYTES, fileBytes - HEADER_LENGTH_BYTES))) {
    malformed(file, `absurd header length ${length} (file size ${fileBytes} bytes)`);
  }
  return Number(length);
}

/** Bytes per element of the typed array each readable dtype is handed out in. */
const ARRAY_ELEMENT_BYTES: Readonly<Record<ReadableDType, number>> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, F8_E4M3: 1, U8: 1 };

/** A typed array over `bytes`' memory (no copy); its byteOffset must be a multiple of the element size. */
function typedView(dtype: ReadableDType, shape: number[], bytes: Uint8Array): SafetensorsTensor {
  const { buffer, byteOffset } = bytes;
  const length = bytes.length / ARRAY_ELEMENT_BYTES[dtype];
  switch (dtype) {
    case 'F32': return { dtype, shape, data: new Float32Array(buffer, byteOffset, length) };
    case 'F16':
    case 'BF16': return { dtype, shape, data: new Uint16Array(buffer, byteOffset, length) };
    case 'I32': return { dtype, shape, data: new Int32Array(buffer, byteOffset, length) };
    case 'I64': return { dtype, shape, data: new BigInt64Array(buffer, byteOffset, length) };
    case 'F8_E4M3':
    case 'U8': return { dtype, shape, data: new Uint8Array(buffer, byteOffset, length) };
  }
}

/** An open safetensors file whose header has been checked. Close it when done. */
export class SafetensorsFile {
  readonly path: string;
  readonly #handle: fs.promises.FileHandle;
  readonly #entries: Map<string, HeaderEntry>;
  readonly #dataStart: number;
  #bytesRead: number;

  private constructor(file: string, handle: fs.promises.FileHandle, entries: Map<string, HeaderEntry>, dataStart: number) {
    this.path = file;
    this.#handle = handle;
    this.#entries = entries;
    this.#dataStart = dataStart;
    this.#bytesRead = dataStart;
  }

  /**
   * Opens a file and validates its header. Throws E_NOT_FOUND naming the file when it cannot be
   * read or is not a regular file (a FIFO or a device would never end), E_SAFETENSORS when it is
   * malformed.
   */
  static async open(file: string): Promise<SafetensorsFile> {
    const { handle, size } = await openRegularFile(file);
    try {
      const headerLength = await readHeaderLength(file, handle, size);
      const json = Buffer.alloc(headerLength);
      await readFully(file, handle, json, HEADER_LENGTH_BYTES);
      const dataStart = HEADER_LENGTH_BYTES + headerLength;
      const entries = parseHeader(file, json.toString('utf8'), size - dataStart);
      return new SafetensorsFile(file, handle, entries, dataStart);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /** Bytes read from disk so far, header included. */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  names(): string[] {
    return [...this.#entries.keys()];
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  info(name: string): TensorInfo {
    const { dtype, shape, begin, end } = this.#entry(name);
    return { dtype, shape: [...shape], byteLength: end - begin };
  }

  /** Reads one tensor's bytes, and only those. */
  async read(name: string): Promise<SafetensorsTensor> {
    const entry = this.#entry(name);
    return this.#readRange(name, this.#readableDType(name, entry), entry.begin, entry.shape);
  }

  /** Reads rows [first, first + count) along the first axis, e.g. some experts of a fused [E, …] tensor. */
  async readRows(name: string, first: number, count: number): Promise<SafetensorsTensor> {
    const entry = this.#entry(name);
    const dtype = this.#readableDType(name, entry);
    const [rows, ...rowShape] = entry.shape;
    if (rows === undefined || !Number.isSafeInteger(first) || !Number.isSafeInteger(count) || first < 0 || count < 0 || first + count > rows) {
      const wanted = Number.isSafeInteger(first) && Number.isSafeInteger(count) ? `[${first}, ${first + count})` : `from ${describeValue(first)}, count ${describeValue(count)}`;
      throw new MoekitError('E_INVALID_ARGUMENT', `${this.path}: tensor ${name} of shape [${entry.shape.join(', ')}] has no rows ${wanted}`);
    }
    const rowBytes = (elementCount(rowShape) * ELEMENT_BITS[dtype]) / 8;
    return this.#readRange(name, dtype, entry.begin + first * rowBytes, [count, ...rowShape]);
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }

  #entry(name: string): HeaderEntry {
    const entry = this.#entries.get(name);
    if (!entry) throw new MoekitError('E_NOT_FOUND', `${this.path}: no tensor named ${describeValue(name)}`);
    return entry;
  }

  #readableDType(name: string, entry: HeaderEntry): ReadableDType {
    const { dtype } = entry;
    if (!(READABLE_DTYPES as readonly string[]).includes(dtype)) {
      throw new MoekitError('E_DTYPE', `${this.path}: tensor ${name} is ${dtype}, which moekit does not read (it reads ${READABLE_DTYPES.join(', ')})`);
    }
    return dtype as ReadableDType;
  }

  /** Reads the elements of `shape` starting at byte `begin` of the data section. */
  async #readRange(name: string, dtype: ReadableDType, begin: number, shape: number[]): Promise<SafetensorsTensor> {
    const byteLength = (elementCount(shape) * ELEMENT_BITS[dtype]) / 8;
    const bytes = new ArrayBuffer(byteLength);
    const bytesRead = await readFully(this.path, this.#handle, new Uint8Array(bytes), this.#dataStart + begin);
    this.#bytesRead += bytesRead;
    // The header was checked against the file's size at open; a shorter read means it shrank since.
    if (bytesRead !== byteLength) malformed(this.path, `tensor ${name}: file ended after ${bytesRead} of ${byteLength} bytes`);
    return typedView(dtype, shape, new Uint8Array(bytes));
  }
}

export interface DecodeSafetensorsOptions {
  /**
   * Hand out views of the image rather than copies wherever a tensor's data is aligned for its
   * typed array (as writers that pad the header to 8 bytes make all of them): no copying, but the
   * image must then be kept, unchanged, while the tensors are used. Default false.
   */
  view?: boolean;
}

/**
 * Every tensor of a safetensors image held in memory (a request body, say), checked as open()
 * checks a file; `source` names the image in errors. A tensor of a dtype moekit does not read is
 * E_DTYPE. The data are copied out, so the image can be let go, unless `view` says otherwise.
 */
export function decodeSafetensors(bytes: Uint8Array, source: string, options?: DecodeSafetensorsOptions | null): Map<string, SafetensorsTensor> {
  if (!(bytes instanceof Uint8Array)) throw new MoekitError('E_INVALID_ARGUMENT', `decodeSafetensors: bytes must be a Uint8Array (or Buffer), got ${describeValue(bytes)}`);
  if (typeof source !== 'string') throw new MoekitError('E_INVALID_ARGUMENT', `decodeSafetensors: source must be a string naming the image, got ${describeValue(source)}`);
  const { view = false } = optionalOptions(options, 'decodeSafetensors: options');
  if (typeof view !== 'boolean') throw new MoekitError('E_INVALID_ARGUMENT', `decodeSafetensors: options.view must be a boolean, got ${describeValue(view)}`);
  if (bytes.length < HEADER_LENGTH_BYTES) malformed(source, `${bytes.length} bytes is too short for a safetensors header`);
  const length = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).readBigUInt64LE(0);
  if (length === 0n || length > BigInt(Math.min(MAX_HEADER_BYTES, bytes.length - HEADER_LENGTH_BYTES))) {
    malformed(source, `absurd header length ${length} (${bytes.length} bytes in all)`);
  }
  const dataStart = HEADER_LENGTH_BYTES + Number(length);
  const json = Buffer.from(bytes.buffer, bytes.byteOffset + HEADER_LENGTH_BYTES, Number(length)).toString('utf8');
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, { dtype, shape, begin, end }] of parseHeader(source, json, bytes.length - dataStart)) {
    if (!(READABLE_DTYPES as readonly string[]).includes(dtype)) {
      throw new MoekitError('E_DTYPE', `${source}: tensor ${name} is ${dtype}, which moekit does not read (it reads ${READABLE_DTYPES.join(', ')})`);
    }
    const data = bytes.subarray(dataStart + begin, dataStart + end);
    const aligned = data.byteOffset % ARRAY_ELEMENT_BYTES[dtype as ReadableDType] === 0;
    // Else a copy (a Buffer's slice() would be a view of memory it may share with others).
    tensors.set(name, typedView(dtype as ReadableDType, [...shape], view && aligned ? data : new Uint8Array(data)));
  }
  return tensors;
}

/** The bytes of a safetensors file holding `tensors`: what writeSafetensors writes, in memory. */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>): Buffer {
  checkTensorsToWrite('safetensors', tensors);
  return Buffer.concat([...fileChunks(encodeHeader(tensors), tensors)]);
}

/**
 * What to write: F32 as Float32Array, F16/BF16 as their raw 16-bit patterns, I32 as Int32Array,
 * F8_E4M3 patterns and U8 bytes as Uint8Array.
 */
export type TensorToWrite =
  | { dtype: 'F32'; shape: number[]; data: Float32Array }
  | { dtype: 'F16' | 'BF16'; shape: number[]; data: Uint16Array }
  | { dtype: 'I32'; shape: number[]; data: Int32Array }
  | { dtype: 'F8_E4M3' | 'U8'; shape: number[]; data: Uint8Array };

export type WritableDType = TensorToWrite['dtype'];

const WRITE_ARRAYS: Readonly<Record<WritableDType, Float32ArrayConstructor | Uint16ArrayConstructor | Int32ArrayConstructor | Uint8ArrayConstructor>> = {
  F32: Float32Array, F16: Uint16Array, BF16: Uint16Array, I32: Int32Array, F8_E4M3: Uint8Array, U8: Uint8Array,
};

/** The types say all this to TypeScript callers; JavaScript callers learn it here, before any file is touched. */
/** Checks what a caller asks to write: an object of tensors, each one well-formed. */
function checkTensorsToWrite(file: string, tensors: unknown): void {
  if (typeof tensors !== 'object' || tensors === null || Array.isArray(tensors)) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${file}: tensors must be an object of named tensors, got ${describeValue(tensors)}`);
  }
  for (const [name, tensor] of Object.entries(tensors)) checkTensorToWrite(file, name, tensor);
}

function checkTensorToWrite(file: string, name: string, tensor: unknown): void {
  const invalid = (message: string): never => {
    throw new MoekitError('E_INVALID_ARGUMENT', `${file}: tensor ${describeValue(name)}: ${message}`);
  };
  if (typeof tensor !== 'object' || tensor === null) invalid(`must be { dtype, shape, data }, got ${describeValue(tensor)}`);
  const { dtype, shape, data } = tensor as TensorToWrite;
  if (name === '' || name === '__metadata__') invalid('is not a usable tensor name');
  if (typeof dtype !== 'string' || !Object.hasOwn(WRITE_ARRAYS, dtype)) invalid(`dtype ${describeValue(dtype)} is not one of ${Object.keys(WRITE_ARRAYS).join(', ')}`);
  if (!isShape(shape)) invalid(`shape ${describeValue(shape)} is not a list of non-negative integers`);
  const arrayType = WRITE_ARRAYS[dtype];
  if (!(data instanceof arrayType)) invalid(`${dtype} data must be a ${arrayType.name}`);
  if (data.length !== elementCount(shape)) invalid(`has ${data.length} elements but shape [${shape.join(', ')}] holds ${elementCount(shape)}`);
}

/** The 8-byte length and the JSON header, padded with spaces so the data starts 8-byte aligned. */
function encodeHeader(tensors: Record<string, TensorToWrite>): Buffer {
  // A Map, so that no tensor name (not even "__proto__") is taken for an object property.
  const header = new Map<string, unknown>();
  let offset = 0;
  for (const [name, { dtype, shape, data }] of Object.entries(tensors)) {
    header.set(name, { dtype, shape, data_offsets: [offset, offset + data.byteLength] });
    offset += data.byteLength;
  }
  const json = Buffer.from(JSON.stringify(Object.fromEntries(header)), 'utf8');
  const padded = Buffer.alloc(HEADER_LENGTH_BYTES + Math.ceil(json.length / 8) * 8, ' ');
  padded.writeBigUInt64LE(BigInt(padded.length - HEADER_LENGTH_BYTES), 0);
  json.copy(padded, HEADER_LENGTH_BYTES);
  return padded;
}

function* fileChunks(header: Buffer, tensors: Record<string, TensorToWrite>): Generator<Uint8Array> {
  yield header;
  for (const { data } of Object.values(tensors)) yield new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Writes a safetensors file atomically: into a temporary file beside it (same file system, so the
 * rename is atomic), flushed and renamed over the target only once complete. A failure at any
 * point leaves neither a partial target nor the temporary file behind. The rename replaces
 * whatever `file` names, so callers given a path by a user check it first (lib/files.ts,
 * regularWriteTarget, as `moekit run --output` does).
 */
export async function writeSafetensors(file: string, tensors: Record<string, TensorToWrite>): Promise<void> {
  checkTensorsToWrite(file, tensors);
  const header = encodeHeader(tensors);
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await fs.promises.open(temporary, 'wx');
    try {
      await fs.promises.writeFile(handle, fileChunks(header, tensors));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(temporary, file);
  } catch (error) {
    await fs.promises.rm(temporary, { force: true });
    throw fileSystemError(file, 'write', error);
  }
}
