/**
 * The one error class moekit throws. `code` is stable and machine-readable; `message` names the
 * bad thing (file, tensor, option) in words a person can act on.
 */
export type MoekitErrorCode =
  /** An argument has the wrong type or value. */
  | 'E_INVALID_ARGUMENT'
  /** A tensor has the wrong shape. */
  | 'E_SHAPE'
  /** A tensor has the wrong dtype, or a dtype is unknown. */
  | 'E_DTYPE'
  /** A device string is malformed, absent on this machine, or tensors are on different devices. */
  | 'E_DEVICE'
  /** A tensor was used after dispose(). */
  | 'E_DISPOSED'
  /** A file or folder does not exist or cannot be read. */
  | 'E_NOT_FOUND'
  /** A safetensors file is malformed (header, dtype, offsets, sizes). */
  | 'E_SAFETENSORS'
  /** A checkpoint's config.json is malformed or lacks a field. */
  | 'E_CONFIG'
  /** A checkpoint lacks a weight, or a weight has the wrong shape. */
  | 'E_CHECKPOINT'
  /** The checkpoint's model_type, or its quantization, is not one moekit supports. */
  | 'E_UNSUPPORTED_MODEL'
  /** The device ran out of memory. */
  | 'E_OOM'
  /** Any other CUDA runtime failure. */
  | 'E_CUDA'
  /** NCCL is missing or a collective failed. */
  | 'E_NCCL'
  /** An internal failure in native code. */
  | 'E_NATIVE'
  /** A bounded queue (a ForwardBatcher's) has no room for the request. */
  | 'E_QUEUE_FULL'
  /** The object (a ForwardBatcher) was closed and takes no more work. */
  | 'E_CLOSED';

export class MoekitError extends Error {
  readonly code: MoekitErrorCode;

  constructor(code: MoekitErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MoekitError';
    this.code = code;
  }
}

/** Longest string shown whole in a message. */
const MAX_SHOWN_CHARACTERS = 60;
/** Longest array shown element by element in a message. */
const MAX_SHOWN_ELEMENTS = 8;

/**
 * How a value given by a caller reads in an error message: 5, NaN, "cpu", null, undefined, 3n,
 * Symbol(x), [1, -2], an array of 100 items, an object, a Float32Array. Never throws, whatever the
 * value (a symbol, a circular or deeply nested object, a getter that throws): building the message
 * must not fail where the value itself is what is wrong.
 */
export function describeValue(value: unknown): string {
  return describeAt(value, 0);
}

function describeAt(value: unknown, depth: number): string {
  switch (typeof value) {
    case 'number': return Object.is(value, -0) ? '-0' : String(value);
    case 'bigint': return `${value.toString()}n`;
    case 'boolean': return String(value);
    case 'undefined': return 'undefined';
    case 'symbol': return value.description === undefined ? 'Symbol()' : `Symbol(${describeAt(value.description, depth + 1)})`;
    case 'function': return 'a function';
    case 'string': {
      const shown = value.length > MAX_SHOWN_CHARACTERS ? `${value.slice(0, MAX_SHOWN_CHARACTERS)}…` : value;
      return JSON.stringify(shown);
    }
    default: break;
  }
  if (value === null) return 'null';
  if (Array.isArray(value)) {
    const primitive = value.length <= MAX_SHOWN_ELEMENTS && depth === 0 && value.every((item) => item === null || typeof item !== 'object');
    return primitive ? `[${value.map((item) => describeAt(item, depth + 1)).join(', ')}]` : `an array of ${value.length} items`;
  }
  try {
    const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === 'string' && name !== 'Object' && name !== '' ? `a ${name}` : 'an object';
  } catch {
    return 'an object';
  }
}

/** Throws E_INVALID_ARGUMENT with `message` unless `condition` holds. */
export function check(condition: boolean, message: string, code: MoekitErrorCode = 'E_INVALID_ARGUMENT'): asserts condition {
  if (!condition) throw new MoekitError(code, message);
}

/**
 * Native errors arrive as plain Errors whose `code` is one of ours (set by native/binding); this
 * turns them into MoekitError so callers see a single class.
 */
export function fromNativeError(error: unknown): MoekitError {
  if (error instanceof MoekitError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const rawCode = (error as { code?: unknown } | null)?.code;
  const code = typeof rawCode === 'string' && rawCode.startsWith('E_') ? (rawCode as MoekitErrorCode) : 'E_NATIVE';
  return new MoekitError(code, message, { cause: error });
}

/**
 * `run()`'s result; a MoekitError it throws is thrown again, same code, with `where: ` before its
 * message (a config error inside a named shape says which shape).
 */
export function withContext<T>(where: string, run: () => T): T {
  try {
    return run();
  } catch (error) {
    if (error instanceof MoekitError) throw new MoekitError(error.code, `${where}: ${error.message}`, { cause: error });
    throw error;
  }
}
