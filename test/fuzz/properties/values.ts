/**
 * Values the properties feed where moekit expects something else: the inputs a JavaScript caller
 * (or a broken config.json) can hand over. Shared, so every property tries the same awkward ones.
 */
import * as fc from 'fast-check';

/** An object that contains itself: JSON.stringify throws on it. */
export function circularObject(): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  object.self = object;
  return object;
}

/** Arrays nested `depth` deep: JSON.parse takes them, but a recursive walk (JSON.stringify, String) overflows the stack. */
export function nestedArray(depth: number): unknown[] {
  let value: unknown[] = [];
  for (let level = 0; level < depth; level++) value = [value];
  return value;
}

export const DEEP_NESTING = 100_000;

const CIRCULAR = circularObject();
const DEEP = nestedArray(DEEP_NESTING);

/** Numbers at the edges: non-finite, negative zero, fractions, beyond int32 and beyond 2^53. */
export const EDGE_NUMBERS: readonly number[] = [
  NaN, Infinity, -Infinity, -0, 0, -1, 0.5, 1.5, 1e6, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), 1e308, 5e-324,
];

/**
 * Anything but what was asked for: the edge numbers, strings that look like numbers or dtypes or
 * name Object.prototype's members, booleans, arrays, array-likes, bigint, symbol, a cycle, deep
 * nesting, typed arrays of other kinds, a function.
 */
export const JUNK_VALUES: readonly unknown[] = [
  undefined, null, ...EDGE_NUMBERS,
  '', '1', '1e3', 'NaN', 'Infinity', 'cpu', 'float32', 'toString', '__proto__', 'constructor', 'hasOwnProperty',
  true, false, [], [1, 2], {}, { length: 2 }, 10n, Symbol('junk'), CIRCULAR, DEEP,
  new Float64Array(2), new Uint8Array(2), new BigInt64Array(2), new ArrayBuffer(8), () => 1,
];

/** Junk for op arguments: JUNK_VALUES and the names of the narrow dtypes and FP8 formats, which only some places take. */
export const junkValue: fc.Arbitrary<unknown> = fc.constantFrom(...JUNK_VALUES, 'float8_e4m3', 'uint8', 'fp8', 'fp8_block128');

/**
 * JSON text put into a file as it is: for what JSON.stringify cannot write (nesting too deep for
 * it) or writes one way only.
 */
export interface RawJson {
  readonly $json: string;
}

export function isRawJson(value: unknown): value is RawJson {
  return typeof value === 'object' && value !== null && Object.hasOwn(value, '$json');
}

/** `value` as JSON text: RawJson as it is, objects key by key (so a "__proto__" key is written like any other). */
export function toJsonText(value: unknown): string {
  if (isRawJson(value)) return value.$json;
  if (Array.isArray(value)) return `[${value.map(toJsonText).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    return `{${Object.entries(value).map(([key, item]) => `${JSON.stringify(key)}:${toJsonText(item)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Arrays nested DEEP_NESTING deep, as JSON text. */
export const DEEP_JSON: RawJson = { $json: `${'['.repeat(DEEP_NESTING)}${']'.repeat(DEEP_NESTING)}` };

/** Values a JSON file can hold (config.json, a safetensors header) where something else belongs. */
export const JSON_JUNK_VALUES: readonly unknown[] = [
  null, 0, -0, -1, 0.5, 1.5, 1e6, 2 ** 31 - 1, 2 ** 31, 2 ** 53, -(2 ** 53), 1e308, -1e308, 5e-324,
  { $json: '1e400' }, { $json: '-1e400' }, { $json: '1E2' }, { $json: '100000000000000000000000' },
  '', '1', '64', '-1', '1e3', 'NaN', 'Infinity', '-Infinity', 'null', 'true', '__proto__', 'constructor', 'toString',
  true, false, [], [1, 2], [64], {}, { a: [1, { b: null }] }, { length: 2 }, DEEP_JSON,
];

/** Device strings, well-formed and not. */
export const DEVICE_STRINGS: readonly string[] = [
  'cpu', 'cuda', 'cuda:0', 'cuda:1', 'cuda:999', 'cuda:1000', 'cuda:-1', 'cuda:01', 'cuda:1.5', 'cuda:', 'cuda:0 ', 'CPU', 'gpu', '',
];

/**
 * Float values that break naive arithmetic: zeros, non-finite, beyond float16's range, subnormal;
 * and float8_e4m3's edges: its largest value, a tie past it (saturates), ties at its subnormals.
 */
export const SPECIAL_FLOATS: readonly number[] = [0, -0, 1, -1, 0.5, NaN, Infinity, -Infinity, 65504, 70000, 1e-8, 3e38, -3e38, 1e-45, 448, -464, 2 ** -10, 3 * 2 ** -10];
