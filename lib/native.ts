/**
 * The native addon's interface and its loader. Everything here is internal: the public API
 * (Tensor, ops, MoELayer) wraps it and checks arguments before any call reaches native code.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { fromNativeError, MoekitError } from './errors';

/** Device memory (host memory for device -1) owned by one Tensor. */
export interface NativeStorage {
  /** -1 for the CPU, N for cuda:N. */
  readonly device: number;
  readonly nbytes: number;
  /** The memory's address (0n once released). */
  readonly pointer: bigint;
  /** Frees the memory after all work already enqueued on its device (stream-ordered). Idempotent. */
  release(): void;
}

/** How a tensor is passed to an op: its storage, dtype code (DTYPE_CODES) and shape. */
export interface NativeTensor {
  storage: NativeStorage;
  dtype: number;
  shape: number[];
}

export interface CudaDeviceInfo {
  index: number;
  name: string;
  totalMemory: number;
  computeCapability: string;
  multiprocessors: number;
}

/** What the driver tells of the path from one GPU to another (native/cuda/cuda_device.h, PeerLink). */
export interface NativePeerLink {
  /** The two can map each other's memory (P2P). */
  access: boolean;
  /** Atomics work natively over the link. */
  nativeAtomics: boolean;
  /** The driver's relative rank of the link, 0 the best. */
  performanceRank: number;
}

/** The quantized operands of a GEMM (op_args.h, "Quantized weights and activations"); absent for dense weights. */
export interface NativeQuantizedGemm {
  inputScales?: NativeTensor;
  weightScales?: NativeTensor;
  weightFormat?: number;
  weightGroupSize?: number;
  outputScales?: NativeTensor;
}

/** Permute's maps and the experts it sorts among (op_args.h, PermuteArgs). */
export interface NativePermuteMaps {
  expertOffsets: NativeTensor;
  sourceToPermuted: NativeTensor;
  permutedToSource: NativeTensor;
  localExpertCount: number;
  firstExpert?: number;
  totalExperts?: number;
}

/** Op argument objects: keys match the C++ structs in native/core/op_args.h. */
export interface NativeOps {
  routing(device: number, args: {
    logits: NativeTensor; correctionBias?: NativeTensor; topkIds: NativeTensor; topkWeights: NativeTensor;
    expertCounts: NativeTensor; method: number; topK: number; renormalize: boolean; numGroups: number;
    topkGroups: number; scalingFactor: number;
  }): void;
  /** Without `permuted` only the maps are written, and `input` may be left out. */
  permute(device: number, args: NativePermuteMaps & {
    input?: NativeTensor; inputScales?: NativeTensor; topkIds: NativeTensor; permuted?: NativeTensor; permutedScales?: NativeTensor;
  }): void;
  groupedGemm(device: number, args: NativeQuantizedGemm & {
    input: NativeTensor; gatherRows?: NativeTensor; gatherDivisor?: number; weights: NativeTensor; bias?: NativeTensor;
    expertOffsets: NativeTensor; output: NativeTensor; activation?: number; layout?: number; alpha?: number; limit?: number;
    maxRowsPerExpert?: number;
  }): void;
  linear(device: number, args: NativeQuantizedGemm & { input: NativeTensor; weight: NativeTensor; bias?: NativeTensor; output: NativeTensor }): void;
  activation(device: number, args: {
    input: NativeTensor; output: NativeTensor; kind: number; layout: number; alpha: number; limit: number;
  }): void;
  combine(device: number, args: {
    expertOutput: NativeTensor; topkWeights: NativeTensor; sourceToPermuted: NativeTensor; shared?: NativeTensor;
    sharedGateLogits?: NativeTensor; output: NativeTensor;
  }): void;
  cast(device: number, args: { input: NativeTensor; output: NativeTensor }): void;
  fillRandom(device: number, args: { output: NativeTensor; seed: number; scale: number }): void;
  quantizeWeights(device: number, args: { input: NativeTensor; format: number; groupSize?: number; output: NativeTensor; scales: NativeTensor }): void;
  /** accumulator[i] += input[i], int32, wrapping. */
  addInt32(device: number, args: { input: NativeTensor; accumulator: NativeTensor }): void;
  /** Each pair's expert id to one of its replicas' slots (native/core/op_args.h, "Expert slots"). */
  expertSlots(device: number, args: { topkIds: NativeTensor; replicaOffsets: NativeTensor; replicaSlots: NativeTensor; slotIds: NativeTensor }): void;
  /** A layer's routed path in one op (native/core/op_args.h, "Fused MoE"). */
  fusedMoe(device: number, args: {
    input: NativeTensor; routerWeight: NativeTensor; routerBias?: NativeTensor; correctionBias?: NativeTensor;
    method: number; topK: number; renormalize: boolean; numGroups: number; topkGroups: number; scalingFactor: number;
    w13: NativeTensor; w13Bias?: NativeTensor; activation: number; layout: number; alpha: number; limit: number;
    w2: NativeTensor; w2Bias?: NativeTensor;
    topkIds: NativeTensor; topkWeights: NativeTensor; expertCounts: NativeTensor; output: NativeTensor;
  }): void;
}

/** A device's memory counts (native/core/device.h, MemoryInfo), in bytes. */
export interface NativeMemoryInfo {
  inUse: number;
  reserved: number;
  free: number;
  total: number;
}

/** A captured CUDA graph (see beginCapture). */
export interface NativeGraph {
  /** Enqueues one replay on the stream it was captured from. */
  launch(): void;
  /** Destroys the graph. Idempotent. */
  release(): void;
}

/** Whether a library loaded at run time (native/core/runtime_library) could be loaded. */
export interface RuntimeLibraryInfo {
  available: boolean;
  /** The library file loaded. */
  path: string;
  /** Why it is not available. */
  problem: string;
  /** The library's version code: NCCL's e.g. 22803 for 2.28.3, cuBLAS's 130100 for 13.1.0; 0 where it gives none (NVML). */
  version: number;
}

/** A version code as major.minor.patch (22803 → "2.28.3"). */
export function libraryVersionName(version: number): string {
  return `${Math.floor(version / 10000)}.${Math.floor(version / 100) % 100}.${version % 100}`;
}

/** NCCL: dlopen of libnccl.so.2, or the file or folder MOEKIT_NCCL_PATH names. */
export type NcclInfo = RuntimeLibraryInfo;
/** cuBLAS: dlopen of libcublas.so.13, then .12, or MOEKIT_CUBLAS_PATH. */
export type CublasInfo = RuntimeLibraryInfo;
/** NVML, the driver's management library: dlopen of libnvidia-ml.so.1, or MOEKIT_NVML_PATH. */
export type NvmlInfo = RuntimeLibraryInfo;

/** A GPU's state as NVML reports it (gpuReading). */
export interface GpuReading {
  smClockMHz: number;
  memoryClockMHz: number;
  /** Board power draw and the limit the driver enforces, watts. */
  powerW: number;
  powerLimitW: number;
  temperatureC: number;
  /** NVML's clock event reasons: bits saying why the clocks are held below their maximum. */
  clockEventReasons: number;
}

/** A point in a device's work order (recordEvent): a CUDA timing event, or on the CPU the host time the worker reached it. */
export interface NativeEvent {
  /** Frees the event now rather than at garbage collection. Idempotent. */
  release(): void;
}

/**
 * An NCCL communicator bound to one CUDA device. Each collective is enqueued on the device's
 * stream and returns at once; lib/parallel/collective_args.ts states what each one takes.
 */
export interface NativeCommunicator {
  /** In-place sum over the group. */
  allReduce(device: number, args: { tensor: NativeTensor }): void;
  /** output = the sum over the group of input's rank-th slice of output's size. */
  reduceScatter(device: number, args: { input: NativeTensor; output: NativeTensor }): void;
  /** output = every rank's input, in rank order. */
  allGather(device: number, args: { input: NativeTensor; output: NativeTensor }): void;
  /** In place: rank root's tensor on every rank. */
  broadcast(device: number, args: { tensor: NativeTensor; root: number }): void;
  send(device: number, args: { tensor: NativeTensor; peer: number }): void;
  recv(device: number, args: { tensor: NativeTensor; peer: number }): void;
  /** Row counts per rank: sendSplits[p] of input's rows go to rank p, recvSplits[p] of output's come from it. */
  allToAll(device: number, args: { input: NativeTensor; output: NativeTensor; sendSplits: number[]; recvSplits: number[] }): void;
  /** '' while healthy, else the failure NCCL met asynchronously (a peer died, a network error). */
  asyncError(): string;
  /** Stops pending collectives (unblocking stalled kernels) and frees the communicator. */
  abort(): void;
  destroy(): void;
}

export interface NativeAddon extends NativeOps {
  /** 'cuda' when the CUDA backend was compiled in (it may still find no GPU at run time). */
  readonly variant: 'cpu' | 'cuda';
  /** The native enums' codes under lib/'s names (native/binding/codes.cc); test/vocabulary.test.ts checks them. */
  readonly codes: {
    dtype: Record<string, number>;
    routingMethod: Record<string, number>;
    activation: Record<string, number>;
    gatedActivations: string[];
    gateLayout: Record<string, number>;
    weightFormat: Record<string, number>;
  };
  cudaDeviceCount(): number;
  cudaDeviceInfo(index: number): CudaDeviceInfo;
  /** The path from cuda:from to cuda:to; null in a CPU-only build. */
  gpuLink(from: number, to: number): NativePeerLink | null;
  /** What CUDA starting depends on (lib/runtime.ts diagnoses it); zeros and [] in a CPU-only build. */
  cudaRuntimeInfo(): { runtimeVersion: number; driverVersion: number; architectures: string[]; deviceCountError: string };
  /**
   * A storage over memory another library owns (never freed by moekit; release() only stops using
   * it). CUDA checks that the pointer is device memory of `device` (E_DEVICE otherwise).
   */
  wrapMemory(device: number, pointer: bigint, nbytes: number): NativeStorage;
  /** Allocates nbytes on a device; throws E_OOM when it cannot. */
  allocate(device: number, nbytes: number): NativeStorage;
  /** Copies host bytes into storage at byteOffset, ordered after work already enqueued. */
  upload(dst: NativeStorage, src: ArrayBufferView, byteOffset: number): void;
  /**
   * Copies storage's first dst.byteLength bytes into dst once earlier work is done. Rejects with
   * the failure of the op that computed those bytes (or of an op it read from), or of the device.
   */
  download(src: NativeStorage, dst: ArrayBufferView): Promise<void>;
  /** Copies nbytes between storages of any devices, ordered after the work enqueued on both. */
  copy(dst: NativeStorage, src: NativeStorage, nbytes: number): void;
  /**
   * Resolves once all work enqueued so far on the device is done; rejects only when the device
   * itself failed (an op's own failure poisons its outputs instead: see download).
   */
  synchronize(device: number): Promise<void>;
  /** The device's memory counts now (not ordered with its queued work). */
  memoryInfo(device: number): NativeMemoryInfo;
  ncclInfo(): NcclInfo;
  ncclUniqueId(): Uint8Array;
  /** Joins a group of worldSize ranks on CUDA device `device`; resolves once every rank has joined. */
  ncclInit(device: number, id: Uint8Array, worldSize: number, rank: number): Promise<NativeCommunicator>;
  /** A new non-blocking CUDA stream on the device (its handle). */
  createStream(device: number): bigint;
  destroyStream(device: number, stream: bigint): void;
  /** Moves the device's work onto `stream` (null: its own), ordered after earlier work. */
  setStream(device: number, stream: bigint | null): void;
  currentStream(device: number): bigint;
  /**
   * Side work (native/core/device.h): what is enqueued between begin and end may run beside what
   * follows (a CUDA device's second stream); join orders later work after it. Any device.
   */
  beginSideWork(device: number): void;
  endSideWork(device: number): void;
  joinSideWork(device: number): void;
  /** Starts recording the CUDA device's work into a graph instead of running it. */
  beginCapture(device: number): void;
  /** Stops recording and returns the graph (on failure the capture is abandoned and this throws). */
  endCapture(device: number): NativeGraph;
  /** An event at this point of the device's work order. */
  recordEvent(device: number): NativeEvent;
  /**
   * Milliseconds from events[0] to each event (the first is 0), once the device has run past them
   * all (settled off the JS thread, as synchronize is); rejects with a failure the device met.
   */
  elapsedTimes(events: NativeEvent[]): Promise<number[]>;
  cublasInfo(): CublasInfo;
  /** Enqueues c[m, n] = a[m, k] · b[n, k]ᵀ with cuBLAS (one float dtype; CUDA devices only). */
  cublasGemm(device: number, args: { a: NativeTensor; b: NativeTensor; c: NativeTensor }): void;
  nvmlInfo(): NvmlInfo;
  /** CUDA device `device`'s clocks and power now (NVML; throws where it is not available). */
  gpuReading(device: number): GpuReading;
}

export interface LoadedAddon {
  addon: NativeAddon;
  /** Which file was loaded: a prebuild, or a local cmake-js / node-gyp build. */
  path: string;
}

let loaded: LoadedAddon | undefined;

/** The package root: the nearest folder above this file with moekit's package.json. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest) && JSON.parse(fs.readFileSync(manifest, 'utf8')).name === 'moekit') return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new MoekitError('E_NATIVE', `cannot find moekit's package.json above ${__dirname}`);
    dir = parent;
  }
}

/** Loads the addon once (prebuilds/ first, then build/Release), as node-gyp-build resolves it. */
export function loadAddon(): LoadedAddon {
  if (loaded) return loaded;
  const root = packageRoot();
  // node-gyp-build has no types; its default export maps a package root to the loaded module.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeGypBuild = require('node-gyp-build') as { (dir: string): unknown; resolve(dir: string): string };
  let file: string;
  try {
    file = nodeGypBuild.resolve(root);
  } catch (error) {
    throw new MoekitError('E_NATIVE', `moekit's native addon is not built: run 'npm install' (or 'npm run build:native') in ${root}`, { cause: error });
  }
  let native: unknown;
  try {
    native = nodeGypBuild(root);
  } catch (error) {
    throw new MoekitError('E_NATIVE', `cannot load moekit's native addon ${path.relative(root, file)}: ${loadFailureAdvice(String((error as Error).message ?? error))}`, { cause: error });
  }
  loaded = { addon: translatingErrors(native as Record<string, unknown>, RESULTS_WITH_METHODS) as unknown as NativeAddon, path: file };
  return loaded;
}

/** The loader's message, first line only, with what to do for the failures that have a known cause. */
export function loadFailureAdvice(message: string): string {
  const first = message.split('\n')[0]!;
  if (/GLIBC(XX)?_[\d.]+' not found/.test(message)) {
    return `${first}: this build needs a newer C library than this system's; build from source instead (npm install --build-from-source)`;
  }
  if (/wrong ELF class|invalid ELF header|cannot open shared object file: No such file/.test(message)) {
    return `${first}: the addon file is for another platform or is damaged; reinstall (npm rebuild moekit)`;
  }
  return `${first}; rebuild it (npm rebuild moekit, or npm install --build-from-source)`;
}

export function addon(): NativeAddon {
  return loadAddon().addon;
}

/**
 * Calls whose result is an object with methods of its own (a graph, a communicator): those
 * methods are wrapped too. Other results (storage, events) go back into native calls unchanged,
 * which need the native objects themselves.
 */
const RESULTS_WITH_METHODS = new Set(['endCapture', 'ncclInit']);

/**
 * The one place native failures become MoekitError: a copy of `native` whose functions throw
 * (or reject with) MoekitError where the addon throws its plain coded Error. Its methods are found
 * on the object and its prototypes (a native class keeps them on the prototype); classes
 * (capitalized, like Storage) and plain values pass as they are.
 */
function translatingErrors(native: object, resultsWithMethods: ReadonlySet<string> = new Set()): Record<string, unknown> {
  const wrapped: Record<string, unknown> = {};
  for (const name of propertyNames(native)) {
    const value: unknown = (native as Record<string, unknown>)[name];
    if (typeof value !== 'function' || /^[A-Z]/.test(name)) {
      wrapped[name] = value;
      continue;
    }
    const wrapResult = resultsWithMethods.has(name) ? (result: unknown): unknown => translatingErrors(result as object) : (result: unknown): unknown => result;
    wrapped[name] = (...args: unknown[]): unknown => {
      let result: unknown;
      try {
        result = (value as (...args: unknown[]) => unknown).apply(native, args);
      } catch (error) {
        throw fromNativeError(error);
      }
      if (result instanceof Promise) {
        return result.then(wrapResult, (error: unknown) => {
          throw fromNativeError(error);
        });
      }
      return wrapResult(result);
    };
  }
  return wrapped;
}

/** Own and inherited property names, up to (not including) Object.prototype. */
function propertyNames(object: object): string[] {
  const names = new Set<string>();
  for (let level: object | null = object; level !== null && level !== Object.prototype; level = Object.getPrototypeOf(level) as object | null) {
    for (const name of Object.getOwnPropertyNames(level)) if (name !== 'constructor') names.add(name);
  }
  return [...names];
}
