/**
 * Property: addInt32, Tensor.fromDevicePointer / tensor.devicePointer and memoryInfo on the CPU.
 * - addInt32(accumulator, input): int32 tensors of one size (the same tensor twice too) add with
 *   two's-complement wrap-around; another dtype or size, a disposed tensor, junk: a MoekitError.
 * - fromDevicePointer over an owner tensor's memory (at an element-aligned offset, any dtype and a
 *   shape that fits): the view reads the owner's bytes, release runs once, after dispose(), never
 *   before; a pointer that is no bigint, 0, negative, past 2^64 or misaligned, a bad shape, dtype,
 *   device or release, and devicePointer of a disposed tensor: a MoekitError.
 * - memoryInfo('cpu'): non-negative integer counts; junk for the device: a MoekitError.
 * Cases never hand fromDevicePointer memory the case does not own (that cannot be checked).
 */
import * as fc from 'fast-check';

import type { MoekitApi } from '../harness/moekit';
import { defineProperty } from '../harness/property';
import { errorText } from '../harness/protocol';
import { INPUT_ERROR_CODES } from './ops';
import { renderValue } from './render';
import { DEVICE_STRINGS, junkValue } from './values';

type Tensor = MoekitApi['Tensor']['prototype'];

const DTYPE_BYTES: Readonly<Record<string, number>> = { float32: 4, float16: 2, bfloat16: 2, int32: 4, float8_e4m3: 1, uint8: 1 };
const DTYPE_NAMES = Object.keys(DTYPE_BYTES);

export type InteropCase =
  | { kind: 'addInt32'; acc: number[]; input: number[]; inputLength: number; accDType: string; inputDType: string; same: boolean; dispose?: 'acc' | 'input'; junk?: { at: 0 | 1; value: unknown } }
  | { kind: 'pointer'; ownerBytes: number; offset: number; dtype: unknown; shape: unknown; pointer?: unknown; device?: unknown; release?: unknown }
  | { kind: 'memoryInfo'; device?: unknown };

const INT32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const EDGE_INT32 = fc.oneof(INT32, fc.constantFrom(2 ** 31 - 1, -(2 ** 31), 0, 1, -1));

const addCase = fc.integer({ min: 0, max: 6 }).chain((length) => fc.record({
  kind: fc.constant('addInt32' as const),
  acc: fc.array(EDGE_INT32, { minLength: length, maxLength: length }),
  input: fc.array(EDGE_INT32, { minLength: length, maxLength: length }),
  inputLength: fc.oneof({ weight: 5, arbitrary: fc.constant(length) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 7 }) }),
  accDType: fc.oneof({ weight: 6, arbitrary: fc.constant('int32') }, { weight: 1, arbitrary: fc.constantFrom(...DTYPE_NAMES) }),
  inputDType: fc.oneof({ weight: 6, arbitrary: fc.constant('int32') }, { weight: 1, arbitrary: fc.constantFrom(...DTYPE_NAMES) }),
  same: fc.boolean(),
  dispose: fc.constantFrom('acc' as const, 'input' as const),
  junk: fc.record({ at: fc.constantFrom(0 as const, 1 as const), value: junkValue }),
}, { requiredKeys: ['kind', 'acc', 'input', 'inputLength', 'accDType', 'inputDType', 'same'] }));

const pointerBase = fc.record({
  kind: fc.constant('pointer' as const),
  ownerBytes: fc.integer({ min: 1, max: 64 }),
  offset: fc.integer({ min: 0, max: 64 }),
  dtype: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...DTYPE_NAMES) }, { weight: 1, arbitrary: junkValue }),
  shape: fc.oneof(
    { weight: 8, arbitrary: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }) },
    { weight: 1, arbitrary: fc.oneof(junkValue, fc.constantFrom([-1], [1.5], [2 ** 53], [2 ** 40, 2 ** 40])) },
  ),
});

/** Mostly a pointer into the owner with a release callback (or none); else one hostile field. */
const pointerExtras: fc.Arbitrary<{ pointer?: unknown; device?: unknown; release?: unknown }> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ release: 'callback' }) },
  { weight: 2, arbitrary: fc.constant({}) },
  { weight: 1, arbitrary: fc.oneof(junkValue, fc.constantFrom(0n, -8n, 2n ** 64n, 2n ** 64n - 8n, 2n ** 70n, 8)).map((pointer) => ({ pointer })) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(...DEVICE_STRINGS, 5, null).map((device) => ({ device })) },
  { weight: 1, arbitrary: junkValue.map((release) => ({ release })) },
);

const pointerCase = fc.tuple(pointerBase, pointerExtras).map(([base, extras]) => ({ ...base, ...extras }));

const memoryCase = fc.record({ kind: fc.constant('memoryInfo' as const), device: fc.oneof(fc.constantFrom(...DEVICE_STRINGS), junkValue) }, { requiredKeys: ['kind'] });

export const interopCases: fc.Arbitrary<InteropCase> = fc.oneof({ weight: 3, arbitrary: addCase }, { weight: 4, arbitrary: pointerCase }, { weight: 1, arbitrary: memoryCase });

class PropertyViolation extends Error {}

/** Runs `action`; true when it threw an input MoekitError, false when it returned. Anything else is a violation. */
function refused(api: MoekitApi, where: string, action: () => void): boolean {
  try {
    action();
    return false;
  } catch (error) {
    if (!(error instanceof api.MoekitError)) throw new PropertyViolation(`${where} threw an error that is not a MoekitError: ${errorText(error)}`);
    if (!INPUT_ERROR_CODES.has(error.code)) throw new PropertyViolation(`${where} threw ${error.code}, not a code for bad input: ${error.message}`);
    return true;
  }
}

function makeTensor(api: MoekitApi, values: number[], dtype: string): Tensor {
  if (dtype === 'int32') return api.Tensor.fromArray(Int32Array.from(values), [values.length]);
  if (dtype === 'uint8' || dtype === 'float8_e4m3') return api.Tensor.fromArray(Uint8Array.from(values), [values.length], { dtype: dtype as 'uint8' });
  return api.Tensor.fromArray(Float32Array.from(values), [values.length], { dtype: dtype as 'float32' });
}

async function checkAdd(api: MoekitApi, testCase: Extract<InteropCase, { kind: 'addInt32' }>, made: Tensor[]): Promise<void> {
  const acc = makeTensor(api, testCase.acc, testCase.accDType);
  made.push(acc);
  const inputValues = Array.from({ length: testCase.inputLength }, (_, i) => testCase.input[i] ?? i);
  const input = testCase.same ? acc : makeTensor(api, inputValues, testCase.inputDType);
  made.push(input);
  const before = Array.from((await acc.toArray()) as ArrayLike<number>);
  const addend = Array.from((await input.toArray()) as ArrayLike<number>);
  if (testCase.dispose) (testCase.dispose === 'acc' ? acc : input).dispose();
  const args: unknown[] = [acc, input];
  if (testCase.junk) args[testCase.junk.at] = testCase.junk.value;
  const valid = !testCase.junk && !testCase.dispose && acc.dtype === 'int32' && input.dtype === 'int32' && acc.numel === input.numel;
  const wasRefused = refused(api, 'addInt32', () => (api.addInt32 as (...all: unknown[]) => void)(...args));
  if (valid && wasRefused) throw new PropertyViolation('addInt32 refused two int32 tensors of one size');
  if (!valid && !wasRefused) throw new PropertyViolation('addInt32 accepted arguments it must refuse');
  const after = Array.from((await acc.toArray().catch(() => [])) as ArrayLike<number>);
  if (acc.disposed) return;
  const expected = before.map((value, i) => (valid ? (value + addend[i]!) | 0 : value));
  if (after.join() !== expected.join()) throw new PropertyViolation(`accumulator holds [${after.join(', ')}], expected [${expected.join(', ')}]`);
}

async function checkPointer(api: MoekitApi, testCase: Extract<InteropCase, { kind: 'pointer' }>, made: Tensor[]): Promise<void> {
  const ownerBytes = Uint8Array.from({ length: testCase.ownerBytes }, (_, i) => (i * 37 + 11) & 0xff);
  const owner = api.Tensor.fromArray(ownerBytes, [ownerBytes.length], { dtype: 'uint8' });
  made.push(owner);
  const base = owner.devicePointer;
  if (typeof base !== 'bigint' || base <= 0n) throw new PropertyViolation(`devicePointer is ${String(base)}`);
  const knownDType = typeof testCase.dtype === 'string' && Object.hasOwn(DTYPE_BYTES, testCase.dtype) ? testCase.dtype : undefined;
  const element = knownDType ? DTYPE_BYTES[knownDType]! : 1;
  const shapeOk = Array.isArray(testCase.shape) && testCase.shape.every((extent) => Number.isSafeInteger(extent) && extent >= 0);
  const count = shapeOk ? (testCase.shape as number[]).reduce((a, b) => a * b, 1) : 0;
  // Memory the case owns: the offset, rounded down to the element, and the shape fitting behind it.
  const offset = Math.min(testCase.offset, testCase.ownerBytes) - (Math.min(testCase.offset, testCase.ownerBytes) % element);
  const fits = shapeOk && offset + count * element <= testCase.ownerBytes;
  const pointer = Object.hasOwn(testCase, 'pointer') ? testCase.pointer : base + BigInt(offset);
  // Never hand over memory the case does not own: only pointers into the owner, or ones moekit must refuse before reading.
  const ownPointer = !Object.hasOwn(testCase, 'pointer');
  if (ownPointer && !fits) return;
  const wellFormed = typeof pointer === 'bigint' && pointer > 0n && pointer % BigInt(element) === 0n && pointer + BigInt(count * element) <= 2n ** 64n;
  // A well-formed address this case does not own (2^64 - 8): moekit cannot tell it from one it may use; never made.
  if (!ownPointer && wellFormed && knownDType && shapeOk) return;
  let released = 0;
  const counting = testCase.release === 'callback';
  const release = !Object.hasOwn(testCase, 'release') ? undefined : testCase.release === 'callback' ? () => { released++; } : testCase.release;
  const device = Object.hasOwn(testCase, 'device') ? testCase.device : 'cpu';
  const args: unknown[] = [pointer, testCase.shape, testCase.dtype, device, ...(Object.hasOwn(testCase, 'release') ? [{ release }] : [])];
  let view: Tensor | undefined;
  const wasRefused = refused(api, 'Tensor.fromDevicePointer', () => {
    view = (api.Tensor.fromDevicePointer as (...all: unknown[]) => Tensor)(...args);
  });
  const valid = ownPointer && knownDType !== undefined && device === 'cpu' && (release === undefined || typeof release === 'function');
  if (valid && wasRefused) throw new PropertyViolation('fromDevicePointer refused a pointer into a live tensor with a shape that fits');
  if (!valid && !wasRefused) throw new PropertyViolation('fromDevicePointer accepted arguments it must refuse');
  if (!view) return;
  made.push(view);
  if (view.byteLength !== count * element) throw new PropertyViolation(`the view's byteLength is ${view.byteLength}, expected ${count * element}`);
  if (knownDType === 'uint8' || knownDType === 'int32' || knownDType === 'float8_e4m3') {
    const values = (await view.toArray()) as Uint8Array | Int32Array;
    const bytes = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
    if (!bytes.equals(Buffer.from(ownerBytes.subarray(offset, offset + count * element)))) throw new PropertyViolation('the view reads other bytes than the owner holds there');
  }
  if ((released as number) !== 0) throw new PropertyViolation('release ran before dispose()');
  view.dispose();
  // It runs once the device's queued work is done (a synchronize on the thread pool): wait up to 2 s.
  for (let i = 0; i < 2000 && released === 0 && counting; i++) await new Promise((resolve) => setTimeout(resolve, i < 20 ? 0 : 1));
  if (counting && released !== 1) throw new PropertyViolation(`release ran ${released} times after dispose()`);
  view.dispose();
  if ((released as number) > 1) throw new PropertyViolation('release ran again on a second dispose()');
  owner.dispose();
  if (!refused(api, 'devicePointer of a disposed tensor', () => owner.devicePointer)) throw new PropertyViolation('devicePointer of a disposed tensor did not throw');
}

function checkMemory(api: MoekitApi, testCase: Extract<InteropCase, { kind: 'memoryInfo' }>): void {
  let info: ReturnType<MoekitApi['memoryInfo']> | undefined;
  const args = Object.hasOwn(testCase, 'device') ? [testCase.device] : [];
  const wasRefused = refused(api, 'memoryInfo', () => {
    info = (api.memoryInfo as (...all: unknown[]) => typeof info)(...args);
  });
  const valid = args.length === 0 || args[0] === 'cpu' || args[0] === undefined;
  if (valid && wasRefused) throw new PropertyViolation('memoryInfo refused the CPU');
  if (!info) return;
  for (const [key, value] of Object.entries(info)) {
    if (key === 'device') continue;
    if (!Number.isSafeInteger(value) || (value as number) < 0) throw new PropertyViolation(`memoryInfo().${key} is ${String(value)}`);
  }
}

export const interopProperty = defineProperty<InteropCase>(({ moekit }) => ({
  arbitrary: interopCases,
  describe: (testCase) => renderValue(testCase),
  check: async (testCase) => {
    const made: Tensor[] = [];
    try {
      if (testCase.kind === 'addInt32') await checkAdd(moekit.api, testCase, made);
      else if (testCase.kind === 'pointer') await checkPointer(moekit.api, testCase, made);
      else checkMemory(moekit.api, testCase);
    } finally {
      for (const tensor of made) tensor.dispose();
    }
  },
}));
