import { allocateHostArray, decodeFloat8, decodeHalf, DTYPE_BYTES, DTYPE_CODES, FLOAT32_MAX, isConvertibleDType, isFloatDType, parseDType, type DType, type HostArray } from './dtype';
import { deviceIndex, parseDevice, type Device } from './device';
import { describeValue, MoekitError } from './errors';
import { optionalOptions } from './options';
import { requireUsableDevice } from './runtime';
import { addon, type NativeStorage, type NativeTensor } from './native';

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
}

/** Tensor.fromDevicePointer's options. */
export interface DevicePointerOptions {
  /**
   * Called once, after dispose(), when the work moekit enqueued on the memory has finished: the
   * owner may free or reuse it then. A tensor that is garbage-collected undisposed never calls it.
   */
  release?: () => void;
}

/** The largest address a pointer can hold (64 bits). */
const MAX_POINTER = 2n ** 64n - 1n;

export interface RandomTensorOptions extends TensorOptions {
  /** Values are uniform in [-scale, scale). Default 1. */
  scale?: number;
  /** Same seed, same values on every device (up to dtype rounding). Default 0. */
  seed?: number;
}

/**
 * Host data a tensor can be created from. float16/bfloat16 data is raw bits in a Uint16Array;
 * float8_e4m3 bits and uint8 bytes come in a Uint8Array.
 */
export type TensorData = Float32Array | Int32Array | Uint16Array | Uint8Array | readonly number[];

// Node before 20.4 lacks Symbol.dispose; define it as later versions do so `using` works there.
if ((Symbol as unknown as { dispose?: symbol }).dispose === undefined) {
  Object.defineProperty(Symbol, 'dispose', { value: Symbol.for('nodejs.dispose') });
}

function checkShape(shape: readonly number[]): number[] {
  if (!Array.isArray(shape)) throw new MoekitError('E_SHAPE', `shape must be an array of non-negative integers, got ${describeValue(shape)}`);
  for (const extent of shape) {
    if (!Number.isSafeInteger(extent) || extent < 0) {
      throw new MoekitError('E_SHAPE', `shape must be an array of non-negative integers, got ${describeValue(shape)}`);
    }
  }
  return [...shape];
}

export function shapeNumel(shape: readonly number[]): number {
  return shape.reduce((product, extent) => product * extent, 1);
}

function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * A dense, row-major n-dimensional array on the CPU or a CUDA device.
 *
 * Work on a tensor is queued on its device and runs in order; methods return at once and
 * `await tensor.toArray()` waits for the data. A tensor owns its memory: `dispose()` (or `using`)
 * frees it after queued work that reads it has finished; a finalizer does the same for tensors
 * that are garbage-collected undisposed. Using a disposed tensor throws E_DISPOSED.
 */
export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly device: Device;
  #storage: NativeStorage | undefined;
  /** fromDevicePointer's release callback, until it has been called. */
  #releaseBorrowed: (() => void) | undefined;

  private constructor(storage: NativeStorage, dtype: DType, shape: readonly number[], device: Device, releaseBorrowed?: () => void) {
    this.#storage = storage;
    this.#releaseBorrowed = releaseBorrowed;
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.device = device;
  }

  /** An uninitialized tensor (its contents are whatever the memory held). */
  static empty(shape: readonly number[], options?: TensorOptions | null): Tensor {
    const { dtype: dtypeName, device: deviceName } = optionalOptions(options, 'Tensor.empty: options');
    const dims = checkShape(shape);
    const dtype = parseDType(dtypeName ?? 'float32');
    const device = parseDevice(deviceName ?? 'cpu');
    requireUsableDevice(device);
    const nbytes = shapeNumel(dims) * DTYPE_BYTES[dtype];
    return new Tensor(addon().allocate(deviceIndex(device), nbytes), dtype, dims, device);
  }

  /**
   * A tensor over memory another library or runtime owns, with no copy: `pointer` is the address of
   * `shape`'s elements of `dtype`, row-major and dense, on `device` (device memory of cuda:N, or host
   * memory for 'cpu'). moekit's work on it is ordered on the device's current stream (see
   * useStream to share a stream with the owner). The memory must stay valid until `release` is
   * called (after dispose()); moekit never frees it.
   */
  static fromDevicePointer(pointer: bigint, shape: readonly number[], dtype: DType, device: Device, options?: DevicePointerOptions | null): Tensor {
    const op = 'Tensor.fromDevicePointer';
    if (typeof pointer !== 'bigint') throw new MoekitError('E_INVALID_ARGUMENT', `${op}: pointer must be a bigint address, got ${describeValue(pointer)}`);
    if (pointer <= 0n || pointer > MAX_POINTER) {
      throw new MoekitError('E_INVALID_ARGUMENT', `${op}: pointer must be a non-null 64-bit address, got ${describeValue(pointer)}`);
    }
    const dims = checkShape(shape);
    const parsedDType = parseDType(dtype);
    const target = parseDevice(device);
    requireUsableDevice(target);
    const { release } = optionalOptions(options, `${op}: options`);
    if (release !== undefined && typeof release !== 'function') {
      throw new MoekitError('E_INVALID_ARGUMENT', `${op}: release must be a function, got ${describeValue(release)}`);
    }
    const elementBytes = DTYPE_BYTES[parsedDType];
    if (pointer % BigInt(elementBytes) !== 0n) {
      throw new MoekitError('E_INVALID_ARGUMENT', `${op}: pointer 0x${pointer.toString(16)} is not aligned to ${parsedDType}'s ${elementBytes} bytes`);
    }
    const nbytes = shapeNumel(dims) * elementBytes;
    if (pointer + BigInt(nbytes) - 1n > MAX_POINTER) throw new MoekitError('E_INVALID_ARGUMENT', `${op}: ${nbytes} bytes from 0x${pointer.toString(16)} pass the end of the address space`);
    return new Tensor(addon().wrapMemory(deviceIndex(target), pointer, nbytes), parsedDType, dims, target, release ?? (() => {}));
  }

  /**
   * A tensor holding `data` with the given shape. Float32Array and number[] data may target any
   * float dtype (converted on the device); Int32Array is int32; Uint16Array is the raw bits of
   * float16 or bfloat16 and needs that dtype named.
   */
  static fromArray(data: TensorData, shape: readonly number[], given?: TensorOptions | null): Tensor {
    const options = optionalOptions(given, 'Tensor.fromArray: options');
    const dims = checkShape(shape);
    const host = hostSource(data, options.dtype);
    const dtype = parseDType(options.dtype ?? host.dtype);
    if (host.values.length !== shapeNumel(dims)) {
      throw new MoekitError('E_SHAPE', `data has ${host.values.length} elements but shape ${formatShape(dims)} needs ${shapeNumel(dims)}`);
    }
    const device = parseDevice(options.device ?? 'cpu');
    const staged = Tensor.empty(dims, { dtype: host.dtype, device });
    try {
      addon().upload(staged.#native(), host.values, 0);
    } catch (error) {
      staged.dispose();
      throw error;
    }
    if (host.dtype === dtype) return staged;
    try {
      return staged.to(device, dtype);
    } finally {
      staged.dispose();
    }
  }

  /** A tensor of uniform random values in [-scale, scale), generated on its device. */
  static random(shape: readonly number[], given?: RandomTensorOptions | null): Tensor {
    const options = optionalOptions(given, 'Tensor.random: options');
    const dtype = parseDType(options.dtype ?? 'float32');
    if (!isFloatDType(dtype)) throw new MoekitError('E_DTYPE', `Tensor.random makes float32, float16 or bfloat16 tensors, not ${dtype}`);
    const seed = options.seed ?? 0;
    const scale = options.scale ?? 1;
    if (!Number.isSafeInteger(seed) || seed < 0) throw new MoekitError('E_INVALID_ARGUMENT', `seed must be a non-negative integer, got ${describeValue(seed)}`);
    if (typeof scale !== 'number' || !(Math.abs(scale) <= FLOAT32_MAX)) {
      throw new MoekitError('E_INVALID_ARGUMENT', `scale must be a finite number within float32's range, got ${describeValue(scale)}`);
    }
    const tensor = Tensor.empty(shape, { ...options, dtype });
    tensor.#enqueue(() => addon().fillRandom(deviceIndex(tensor.device), { output: tensor.toNative(), seed, scale }));
    return tensor;
  }

  get numel(): number {
    return shapeNumel(this.shape);
  }

  get nbytes(): number {
    return this.numel * DTYPE_BYTES[this.dtype];
  }

  /** The size of the tensor's memory in bytes (numel × the dtype's size), as fromDevicePointer takes it. */
  get byteLength(): number {
    return this.nbytes;
  }

  /**
   * The address of the tensor's memory (device memory on cuda:N, host memory on the CPU), for
   * another library to read or write on the same stream. Valid until dispose(); E_DISPOSED after.
   */
  get devicePointer(): bigint {
    return this.#native().pointer;
  }

  get disposed(): boolean {
    return this.#storage === undefined;
  }

  /**
   * A new tensor with this one's values on `device` (default: the same) in `dtype` (default: the
   * same). Float dtypes convert to each other; int32 stays int32. The original is unchanged.
   */
  to(device: Device = this.device, dtype: DType = this.dtype): Tensor {
    const target = parseDevice(device);
    const targetDType = parseDType(dtype);
    if (targetDType !== this.dtype && !(isConvertibleDType(this.dtype) && isConvertibleDType(targetDType))) {
      throw new MoekitError('E_DTYPE', `cannot convert ${this.dtype} to ${targetDType}: only float dtypes (float8_e4m3 included) convert`);
    }
    // Convert on the source device, then move: conversion first keeps the bytes that travel small
    // when narrowing, and either order gives identical values.
    const converted = targetDType === this.dtype ? this : this.#castOnDevice(targetDType);
    if (target === this.device && converted !== this) return converted;
    try {
      const moved = Tensor.empty(this.shape, { dtype: targetDType, device: target });
      moved.#enqueue(() => addon().copy(moved.#native(), converted.#native(), moved.nbytes));
      return moved;
    } finally {
      if (converted !== this) converted.dispose();
    }
  }

  /**
   * Overwrites this tensor's values with `source`'s (same shape and dtype, any device), ordered
   * after work already queued on both.
   */
  copyFrom(source: Tensor): void {
    if (!(source instanceof Tensor)) throw new MoekitError('E_INVALID_ARGUMENT', 'copyFrom: source must be a Tensor');
    if (source.dtype !== this.dtype || source.shape.join(',') !== this.shape.join(',')) {
      throw new MoekitError('E_SHAPE', `copyFrom: source is ${source.toString()} but this is ${this.toString()}`);
    }
    const [target, from] = [this.#native(), source.#native()];
    addon().copy(target, from, this.nbytes);
  }

  /**
   * The values, once queued work on this tensor's device has finished: Float32Array (float32),
   * Int32Array (int32), Uint16Array bit patterns (float16/bfloat16; see toFloat32Array), or
   * Uint8Array (float8_e4m3 bit patterns, uint8 bytes).
   * Rejects with the op's MoekitError when the op that computed these values failed while it ran
   * (an index out of range, say), or computed them from a tensor whose op failed: such a tensor
   * is poisoned, and no other tensor is affected.
   */
  async toArray(): Promise<HostArray> {
    const host = allocateHostArray(this.dtype, this.numel);
    const storage = this.#native();
    await addon().download(storage, host);
    return host;
  }

  /** The values as float32, whatever the float dtype. */
  async toFloat32Array(): Promise<Float32Array> {
    if (!isConvertibleDType(this.dtype)) throw new MoekitError('E_DTYPE', `toFloat32Array needs a float tensor, this one is ${this.dtype}`);
    const values = await this.toArray();
    if (this.dtype === 'float32') return values as Float32Array;
    if (this.dtype === 'float8_e4m3') return decodeFloat8(values as Uint8Array);
    return decodeHalf(values as Uint16Array, this.dtype as 'float16' | 'bfloat16');
  }

  /** Frees the memory once queued work using it has finished. Safe to call twice. */
  dispose(): void {
    const storage = this.#storage;
    this.#storage = undefined;
    storage?.release();
    const releaseBorrowed = this.#releaseBorrowed;
    this.#releaseBorrowed = undefined;
    // Borrowed memory goes back to its owner once the work already enqueued on it is done, whether
    // or not that work succeeded.
    if (storage !== undefined && releaseBorrowed !== undefined) {
      addon().synchronize(deviceIndex(this.device)).catch(() => {}).finally(releaseBorrowed);
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `Tensor(${formatShape(this.shape)}, ${this.dtype}, ${this.device}${this.disposed ? ', disposed' : ''})`;
  }

  /**
   * The descriptor native ops take. Internal to moekit: ops call it after validating arguments.
   * @internal
   */
  toNative(): NativeTensor {
    return { storage: this.#native(), dtype: DTYPE_CODES[this.dtype], shape: [...this.shape] };
  }

  #native(): NativeStorage {
    if (this.#storage === undefined) throw new MoekitError('E_DISPOSED', `${this.toString()} was used after dispose()`);
    return this.#storage;
  }

  #castOnDevice(dtype: DType): Tensor {
    const output = Tensor.empty(this.shape, { dtype, device: this.device });
    output.#enqueue(() => addon().cast(deviceIndex(this.device), { input: this.toNative(), output: output.toNative() }));
    return output;
  }

  // Runs a native call that fills this freshly made tensor; on failure the tensor is freed.
  #enqueue(call: () => void): void {
    try {
      call();
    } catch (error) {
      this.dispose();
      throw error;
    }
  }
}

interface HostSource {
  dtype: DType;
  values: Float32Array | Int32Array | Uint16Array | Uint8Array;
}

function hostSource(data: TensorData, requested: DType | undefined): HostSource {
  if (data instanceof Float32Array) return { dtype: 'float32', values: data };
  if (data instanceof Int32Array) return { dtype: 'int32', values: data };
  if (data instanceof Uint16Array) {
    if (requested !== 'float16' && requested !== 'bfloat16') {
      throw new MoekitError('E_DTYPE', 'Uint16Array data holds float16 or bfloat16 bits: pass { dtype: "float16" } or { dtype: "bfloat16" }');
    }
    return { dtype: requested, values: data };
  }
  if (data instanceof Uint8Array) {
    if (requested !== 'float8_e4m3' && requested !== 'uint8') {
      throw new MoekitError('E_DTYPE', 'Uint8Array data holds float8_e4m3 bits or raw bytes: pass { dtype: "float8_e4m3" } or { dtype: "uint8" }');
    }
    return { dtype: requested, values: data };
  }
  if (Array.isArray(data)) {
    // Checked first: converting anything else would call its valueOf/toString (and a nested array
    // recurses without bound).
    const bad = data.findIndex((value) => typeof value !== 'number');
    if (bad >= 0) throw new MoekitError('E_INVALID_ARGUMENT', `tensor data must hold numbers, got ${describeValue(data[bad])} at index ${bad}`);
    if (requested === 'int32') return { dtype: 'int32', values: Int32Array.from(data) };
    if (requested === 'uint8') {
      const outside = data.findIndex((value) => !Number.isInteger(value) || value < 0 || value > 255);
      if (outside >= 0) throw new MoekitError('E_INVALID_ARGUMENT', `uint8 data must hold integers in [0, 255], got ${describeValue(data[outside])} at index ${outside}`);
      return { dtype: 'uint8', values: Uint8Array.from(data) };
    }
    return { dtype: 'float32', values: Float32Array.from(data) };
  }
  throw new MoekitError('E_INVALID_ARGUMENT', 'tensor data must be a Float32Array, Int32Array, Uint16Array, Uint8Array or number[]');
}
