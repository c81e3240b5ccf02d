/**
 * Property: decodeSafetensors (dist/checkpoint/safetensors.js), the parser of `moekit serve`'s
 * request bodies, on any bytes: the safetensors property's files (every format dtype, then
 * edited) and random bytes, as a Uint8Array or Buffer at any byte offset (so tensors fall
 * misaligned), with { view } or not. A well-formed image decodes to exactly the bytes its header
 * points at (safetensors_reference.ts judges which is which; a dtype moekit does not read is
 * E_DTYPE); a malformed one throws E_SAFETENSORS; junk for the bytes, the source name or the
 * options throws a MoekitError; nothing else is ever thrown, nothing hangs. encodeSafetensors
 * either refuses its tensors with E_INVALID_ARGUMENT or writes an image that decodes back to them.
 */
import * as fc from 'fast-check';

import type { MoekitApi, SafetensorsApi } from '../harness/moekit';
import { defineProperty } from '../harness/property';
import { errorText } from '../harness/protocol';
import { renderValue } from './render';
import { bytesCase, bytesOf, fileBytes, fileCase, writtenTensor, type FileCase } from './safetensors';
import { READABLE_DTYPES, referenceParse } from './safetensors_reference';
import { JUNK_VALUES } from './values';

interface Placement {
  /** Bytes before the image in its ArrayBuffer (0-7: alignments). */
  offset: number;
  buffer: boolean;
  /** Absent: no options; else the view option (junk included). */
  view?: unknown;
}

export type DecodeCase =
  | { kind: 'file'; file: FileCase; placement: Placement }
  | { kind: 'bytes'; bytes: Uint8Array; placement: Placement }
  /** decodeSafetensors(bytes, source, options) with junk in one place (bytes: a valid image's). */
  | { kind: 'junk'; at: 'bytes' | 'source' | 'options'; value: unknown }
  | { kind: 'roundtrip'; tensors: Array<{ name: string; dtype: unknown; shape: unknown; data: unknown }>; placement: Placement };

const placement: fc.Arbitrary<Placement> = fc.record({
  offset: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 7 }) }),
  buffer: fc.boolean(),
  view: fc.oneof({ weight: 4, arbitrary: fc.boolean() }, { weight: 1, arbitrary: fc.constantFrom(...JUNK_VALUES) }),
}, { requiredKeys: ['offset', 'buffer'] });

export const decodeCases: fc.Arbitrary<DecodeCase> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('file' as const), file: fileCase, placement }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('bytes' as const), bytes: bytesCase.map((testCase) => testCase.bytes), placement }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('junk' as const), at: fc.constantFrom('bytes' as const, 'source' as const, 'options' as const), value: fc.constantFrom(...JUNK_VALUES, 'abc', [1, 2, 3, 4, 5, 6, 7, 8, 9]) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('roundtrip' as const), tensors: fc.array(writtenTensor, { maxLength: 3 }), placement }) },
);

/** `image` copied into a fresh ArrayBuffer `offset` bytes in, as a Uint8Array or a Buffer. */
function placed(image: Uint8Array, where: Placement): Uint8Array {
  const backing = new ArrayBuffer(where.offset + image.length);
  const bytes = where.buffer ? Buffer.from(backing, where.offset, image.length) : new Uint8Array(backing, where.offset, image.length);
  bytes.set(image);
  return bytes;
}

function optionsOf(where: Placement): [] | [unknown] {
  return Object.hasOwn(where, 'view') ? [{ view: where.view }] : [];
}

class PropertyViolation extends Error {}

type Decoded = ReturnType<SafetensorsApi['decodeSafetensors']>;

/** Decodes; returns the result, or the MoekitError's code. Any other error is a violation. */
function decode(api: MoekitApi, safetensors: SafetensorsApi, args: unknown[]): Decoded | string {
  try {
    return (safetensors.decodeSafetensors as (...all: unknown[]) => Decoded)(...args);
  } catch (error) {
    if (!(error instanceof api.MoekitError)) throw new PropertyViolation(`decodeSafetensors threw an error that is not a MoekitError: ${errorText(error)}`);
    return error.code;
  }
}

function checkImage(api: MoekitApi, safetensors: SafetensorsApi, image: Uint8Array, where: Placement): void {
  const options = optionsOf(where);
  const result = decode(api, safetensors, [placed(image, where), 'request', ...options]);
  const viewOk = !Object.hasOwn(where, 'view') || where.view === undefined || typeof where.view === 'boolean';
  if (!viewOk) {
    if (result !== 'E_INVALID_ARGUMENT') throw new PropertyViolation(`options.view ${renderValue(where.view)} gave ${typeof result === 'string' ? result : 'a result'}, not E_INVALID_ARGUMENT`);
    return;
  }
  const reference = referenceParse(image);
  if (typeof result === 'string') {
    const unreadable = [...reference.entries.values()].some((entry) => !READABLE_DTYPES.includes(entry.dtype));
    if (result === 'E_DTYPE' && unreadable) return;
    if (result !== 'E_SAFETENSORS') throw new PropertyViolation(`decodeSafetensors failed with ${result}, expected E_SAFETENSORS${unreadable ? ' or E_DTYPE' : ''}`);
    if (reference.verdict.kind === 'valid') throw new PropertyViolation('a well-formed image failed to decode (E_SAFETENSORS)');
    return;
  }
  if (reference.verdict.kind === 'reject') throw new PropertyViolation(`a malformed image decoded (${reference.verdict.why})`);
  const names = [...result.keys()].sort();
  const expected = [...reference.entries.keys()].sort();
  if (names.join('\u0001') !== expected.join('\u0001')) throw new PropertyViolation(`decoded names ${JSON.stringify(names)}, expected ${JSON.stringify(expected)}`);
  for (const [name, entry] of reference.entries) {
    const tensor = result.get(name)!;
    const bytes = image.subarray(reference.dataStart + entry.begin, reference.dataStart + entry.end);
    if (tensor.dtype !== entry.dtype || JSON.stringify(tensor.shape) !== JSON.stringify(entry.shape) || !bytesOf(tensor.data).equals(bytesOf(bytes))) {
      throw new PropertyViolation(`tensor ${JSON.stringify(name)} decoded as ${tensor.dtype} ${JSON.stringify(tensor.shape)} with other bytes than the image holds`);
    }
  }
}

function checkRoundtrip(api: MoekitApi, safetensors: SafetensorsApi, testCase: Extract<DecodeCase, { kind: 'roundtrip' }>): void {
  const tensors = Object.fromEntries(testCase.tensors.map(({ name, ...rest }) => [name, rest]));
  let image: Uint8Array;
  try {
    image = safetensors.encodeSafetensors(tensors as never);
  } catch (error) {
    if (!(error instanceof api.MoekitError) || error.code !== 'E_INVALID_ARGUMENT') throw new PropertyViolation(`encodeSafetensors threw ${errorText(error)}, not E_INVALID_ARGUMENT`);
    return;
  }
  const reference = referenceParse(image);
  if (reference.verdict.kind !== 'valid') throw new PropertyViolation(`encodeSafetensors wrote an image that is not well-formed: ${reference.verdict.why}`);
  const result = decode(api, safetensors, [placed(image, testCase.placement), 'request', ...optionsOf(testCase.placement)]);
  const view = testCase.placement.view;
  if (Object.hasOwn(testCase.placement, 'view') && view !== undefined && typeof view !== 'boolean') return;
  if (typeof result === 'string') throw new PropertyViolation(`encodeSafetensors' image failed to decode: ${result}`);
  for (const [name, tensor] of Object.entries(tensors)) {
    const decoded = result.get(name);
    if (!decoded || decoded.dtype !== tensor.dtype || !bytesOf(decoded.data).equals(bytesOf(tensor.data as ArrayBufferView))) throw new PropertyViolation(`tensor ${JSON.stringify(name)} did not decode back as encoded`);
  }
}

function describe(testCase: DecodeCase): string {
  const where = (p: Placement): string => `at byte offset ${p.offset} as ${p.buffer ? 'Buffer' : 'Uint8Array'}${Object.hasOwn(p, 'view') ? `, options { view: ${renderValue(p.view)} }` : ''}`;
  switch (testCase.kind) {
    case 'file': return `decodeSafetensors(<hex ${fileBytes(testCase.file).toString('hex')}> ${where(testCase.placement)})`;
    case 'bytes': return `decodeSafetensors(<hex ${Buffer.from(testCase.bytes).toString('hex')}> ${where(testCase.placement)})`;
    case 'junk': return `decodeSafetensors with ${testCase.at} = ${renderValue(testCase.value)}`;
    case 'roundtrip': return `decodeSafetensors(encodeSafetensors(${renderValue(Object.fromEntries(testCase.tensors.map(({ name, ...rest }) => [name, rest])))}) ${where(testCase.placement)})`;
  }
}

const SAMPLE = { w: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } };

export const decodeSafetensorsProperty = defineProperty<DecodeCase>(({ moekit }) => {
  const { api, safetensors } = moekit;
  return {
    arbitrary: decodeCases,
    describe,
    check: async (testCase) => {
      switch (testCase.kind) {
        case 'file': return checkImage(api, safetensors, fileBytes(testCase.file), testCase.placement);
        case 'bytes': return checkImage(api, safetensors, testCase.bytes, testCase.placement);
        case 'roundtrip': return checkRoundtrip(api, safetensors, testCase);
        case 'junk': {
          const args: unknown[] = [safetensors.encodeSafetensors(SAMPLE as never), 'request', { view: false }];
          args[['bytes', 'source', 'options'].indexOf(testCase.at)] = testCase.value;
          const result = decode(api, safetensors, args);
          // A junk name for the source still names it; junk options are undefined/null (none) or refused.
          if (testCase.at === 'bytes' && typeof result !== 'string') throw new PropertyViolation(`decodeSafetensors decoded ${renderValue(testCase.value)}`);
          return;
        }
      }
    },
  };
});
