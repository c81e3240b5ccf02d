/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header mapping tensor
 * names to {dtype, shape, data_offsets}, then the raw bytes. The reader validates the whole header
 * before reading anything else, and reads only the bytes of the tensors asked for.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { MoekitError } from '../errors';

/** Dtypes moekit reads. Others in a header are tolerated until someone asks for that tensor. */
export type SafetensorsDType = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64';

const DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1, U16: 2, U32: 4, U64: 8,
};
const READABLE_DTYPES: readonly string[] = ['F32', 'F16', 'BF16', 'I32', 'I64'];

/** A header larger than this is not a real checkpoint's (real ones are a few MB at most). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
const HEADER_LENGTH_BYTES = 8;

export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte range within the data section. */
  begin: number;
  end: number;
}

/** F32 → Float32Array, F16/BF16 → raw bits in Uint16Array, I32 → Int32Array, I64 → BigInt64Array. */
export type SafetensorsData = Float32Array | Uint16Array | Int32Array | BigInt64Array;

export interface SafetensorsTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: SafetensorsData;
}

function fail(file: string, message: string): never {
  throw new MoekitError('E_SAFETENSORS', `${file}: ${message}`);
}

function product(shape: readonly number[]): number {
  return shape.reduce((total, extent) => total * extent, 1);
}

function parseEntry(file: string, name: string, raw: unknown, dataBytes: number): TensorInfo {
  if (typeof raw !== 'object' || raw === null) fail(file, `tensor ${name}: header entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) fail(file, `tensor ${name}: unknown dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || !shape.every((extent) => Number.isSafeInteger(extent) && extent >= 0)) {
    fail(file, `tensor ${name}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((offset) => Number.isSafeInteger(offset) && offset >= 0)) {
    fail(file, `tensor ${name}: data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end || end > dataBytes) {
    fail(file, `tensor ${name}: data_offsets [${begin}, ${end}] run past the end of the data (${dataBytes} bytes; is the file truncated?)`);
  }
  const expected = product(shape as number[]) * DTYPE_BYTES[dtype]!;
  if (end - begin !== expected) {
    fail(file, `tensor ${name}: shape [${(shape as number[]).join(', ')}] of ${dtype} needs ${expected} bytes but data_offsets hold ${end - begin}`);
  }
  return { dtype: dtype as SafetensorsDType, shape: shape as number[], begin, end };
}

/** An open safetensors file. Close it when done. */
export class SafetensorsFile {
  readonly path: string;
  /** Bytes read from disk so far, header included. */
  bytesRead = 0;
  readonly #handle: fs.promises.FileHandle;
  readonly #tensors: Map<string, TensorInfo>;
  readonly #dataStart: number;

  private constructor(file: string, handle: fs.promises.FileHandle, tensors: Map<string, TensorInfo>, dataStart: number, headerBytes: number) {
    this.path = file;
    this.#handle = handle;
    this.#tensors = tensors;
    this.#dataStart = dataStart;
    this.bytesRead = headerBytes;
  }

  /** Opens and validates a file's header. Throws E_NOT_FOUND or E_SAFETENSORS naming the file. */
  static async open(file: string): Promise<SafetensorsFile> {
    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(file, 'r');
    } catch (error) {
      throw new MoekitError('E_NOT_FOUND', `${file}: cannot open (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { cause: error });
    }
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) fail(file, 'not a file');
      const { size } = stats;
      if (size < HEADER_LENGTH_BYTES) fail(file, `file is ${size} bytes, too short for a safetensors header`);
      const lengthBytes = Buffer.alloc(HEADER_LENGTH_BYTES);
      await handle.read(lengthBytes, 0, HEADER_LENGTH_BYTES, 0);
      const headerLength = lengthBytes.readBigUInt64LE(0);
      if (headerLength === 0n || headerLength > BigInt(Math.min(MAX_HEADER_BYTES, size - HEADER_LENGTH_BYTES))) {
        fail(file, `absurd header length ${headerLength} (file size ${size} bytes)`);
      }
      const headerBytes = Number(headerLength);
      const headerBuffer = Buffer.alloc(headerBytes);
      await handle.read(headerBuffer, 0, headerBytes, HEADER_LENGTH_BYTES);
      let header: unknown;
      try {
        header = JSON.parse(headerBuffer.toString('utf8'));
      } catch {
        fail(file, 'header is not valid JSON');
      }
      if (typeof header !== 'object' || header === null || Array.isArray(header)) fail(file, 'header is not a JSON object');
      const dataStart = HEADER_LENGTH_BYTES + headerBytes;
      const tensors = new Map<string, TensorInfo>();
      for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
        if (name === '__metadata__') continue;
        tensors.set(name, parseEntry(file, name, entry, size - dataStart));
      }
      return new SafetensorsFile(file, handle, tensors, dataStart, dataStart);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  names(): string[] {
    return [...this.#tensors.keys()];
  }

  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.#tensors.get(name);
    if (!info) throw new MoekitError('E_CHECKPOINT', `${this.path}: no tensor named ${name}`);
    return info;
  }

  /** Reads one tensor's bytes (and only those). */
  async read(name: string): Promise<SafetensorsTensor> {
    const info = this.info(name);
    if (!READABLE_DTYPES.includes(info.dtype)) {
      throw new MoekitError('E_SAFETENSORS', `${this.path}: tensor ${name} has dtype ${info.dtype}, which moekit does not read (${READABLE_DTYPES.join(', ')})`);
    }
    const length = info.end - info.begin;
    const bytes = new ArrayBuffer(length);
    const { bytesRead } = await this.#handle.read(new Uint8Array(bytes), 0, length, this.#dataStart + info.begin);
    this.bytesRead += bytesRead;
    if (bytesRead !== length) fail(this.path, `tensor ${name}: file ended after ${bytesRead} of ${length} bytes`);
    return { dtype: info.dtype, shape: [...info.shape], data: typedView(info.dtype, bytes) };
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }
}

function typedView(dtype: SafetensorsDType, bytes: ArrayBuffer): SafetensorsData {
  switch (dtype) {
    case 'F32': return new Float32Array(bytes);
    case 'F16':
    case 'BF16': return new Uint16Array(bytes);
    case 'I32': return new Int32Array(bytes);
    case 'I64': return new BigInt64Array(bytes);
  }
}

export interface TensorToWrite {
  dtype: 'F32' | 'F16' | 'BF16' | 'I32';
  shape: number[];
  data: Float32Array | Uint16Array | Int32Array;
}

/**
 * Writes a safetensors file atomically: into a temporary file beside it, renamed over the target
 * only once complete, so a failure never leaves a partial file behind.
 */
export async function writeSafetensors(file: string, tensors: Record<string, TensorToWrite>): Promise<void> {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, tensor] of Object.entries(tensors)) {
    const bytes = tensor.data.byteLength;
    const expected = product(tensor.shape) * DTYPE_BYTES[tensor.dtype]!;
    if (bytes !== expected) {
      throw new MoekitError('E_INVALID_ARGUMENT', `${file}: tensor ${name} has ${bytes} bytes of data but shape [${tensor.shape.join(', ')}] of ${tensor.dtype} needs ${expected}`);
    }
    header[name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  // The data section starts 8-byte aligned: pad the JSON with spaces.
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const length = Buffer.alloc(HEADER_LENGTH_BYTES);
  length.writeBigUInt64LE(BigInt(headerBytes.length));
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    const handle = await fs.promises.open(temporary, 'w');
    try {
      await handle.write(length);
      await handle.write(headerBytes);
      for (const tensor of Object.values(tensors)) {
        await handle.write(new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength));
      }
    } finally {
      await handle.close();
    }
    await fs.promises.rename(temporary, file);
  } catch (error) {
    await fs.promises.rm(temporary, { force: true });
    if (error instanceof MoekitError) throw error;
    throw new MoekitError('E_NOT_FOUND', `${file}: cannot write (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { cause: error });
  }
}
