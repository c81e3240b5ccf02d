/**
 * An independent reading of a safetensors file's bytes, to judge moekit's reader by. It says
 * whether the file is
 * - 'valid': well-formed by the format (as the reference Rust implementation checks it), so it
 *   must open and every tensor must read back exactly;
 * - 'reject': malformed in a way moekit must refuse (a bad header length, JSON, dtype, shape or
 *   offsets, tensors whose bytes overlap, sizes that do not match);
 * - 'lenient': off the format in ways a reader may tolerate (bytes between or after tensors,
 *   non-UTF-8 or non-string metadata, whitespace before the JSON): it may open, but then what it
 *   reads must be the bytes its header points at.
 * Entries are parsed as moekit parses them (JSON.parse of the UTF-8 text, last duplicate key
 * winning), so the expected bytes of an opened file are known in every case.
 */

/** Bits per element of every dtype the format defines. */
export const ELEMENT_BITS: Readonly<Record<string, number>> = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6,
  I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, F64: 64, I64: 64, U64: 64,
};

/** The dtypes moekit reads; the others must fail to read with E_DTYPE. */
export const READABLE_DTYPES: readonly string[] = ['F32', 'F16', 'BF16', 'I32', 'I64', 'F8_E4M3', 'U8'];

/** moekit refuses headers larger than this (as the Rust implementation does). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface ReferenceEntry {
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

export type Verdict = { kind: 'valid' } | { kind: 'lenient'; why: string } | { kind: 'reject'; why: string };

export interface ReferenceFile {
  verdict: Verdict;
  /** Tensors by name (metadata left out); empty unless the header parsed. */
  entries: Map<string, ReferenceEntry>;
  /** Where the data section starts in the file. */
  dataStart: number;
}

function isNonNegativeSafeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isStringMap(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.values(value).every((item) => typeof item === 'string');
}

/** One entry as the format defines it, or why it is not one. */
function parseEntry(raw: unknown, dataBytes: number): ReferenceEntry | string {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'entry is not an object';
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (typeof dtype !== 'string' || !Object.hasOwn(ELEMENT_BITS, dtype)) return 'unknown dtype';
  if (!Array.isArray(shape) || !shape.every(isNonNegativeSafeInteger)) return 'bad shape';
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeSafeInteger)) return 'bad data_offsets';
  const [begin, end] = offsets as [number, number];
  if (begin > end) return 'data_offsets end before they begin';
  if (end > dataBytes) return 'data_offsets past the data';
  const bits = shape.reduce((product: number, extent: number) => product * extent, 1) * ELEMENT_BITS[dtype]!;
  if (bits !== (end - begin) * 8) return 'size does not match shape and dtype';
  return { dtype, shape: [...shape] as number[], begin, end };
}

/** Overlapping tensors are malformed; gaps, or bytes after the last tensor, the format forbids but a reader may allow. */
function layoutVerdict(entries: Map<string, ReferenceEntry>, dataBytes: number): Verdict {
  const ranges = [...entries.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let coveredTo = 0;
  let gap: string | undefined;
  for (const { begin, end } of ranges) {
    // An empty tensor holds no bytes: it overlaps nothing wherever it points.
    if (begin < coveredTo && end > begin) return { kind: 'reject', why: `tensors overlap at byte ${begin}` };
    if (begin !== coveredTo) gap ??= `bytes [${coveredTo}, ${begin}) belong to no tensor`;
    coveredTo = Math.max(coveredTo, end);
  }
  if (coveredTo !== dataBytes) gap ??= `bytes [${coveredTo}, ${dataBytes}) after the last tensor`;
  return gap === undefined ? { kind: 'valid' } : { kind: 'lenient', why: gap };
}

export function referenceParse(bytes: Uint8Array): ReferenceFile {
  const none = (verdict: Verdict): ReferenceFile => ({ verdict, entries: new Map(), dataStart: 0 });
  if (bytes.length < 8) return none({ kind: 'reject', why: 'shorter than the 8-byte header length' });
  const length = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).readBigUInt64LE(0);
  if (length === 0n || length > BigInt(MAX_HEADER_BYTES) || length > BigInt(bytes.length - 8)) {
    return none({ kind: 'reject', why: `header length ${length} in a ${bytes.length}-byte file` });
  }
  const dataStart = 8 + Number(length);
  const headerBytes = bytes.subarray(8, dataStart);
  const text = Buffer.from(headerBytes).toString('utf8');
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch {
    return none({ kind: 'reject', why: 'header is not JSON' });
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return none({ kind: 'reject', why: 'header is not a JSON object' });

  const dataBytes = bytes.length - dataStart;
  const entries = new Map<string, ReferenceEntry>();
  let lenient: string | undefined;
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isStringMap(raw)) lenient ??= '__metadata__ is not a map of strings';
      continue;
    }
    const entry = parseEntry(raw, dataBytes);
    if (typeof entry === 'string') return { verdict: { kind: 'reject', why: `tensor ${JSON.stringify(name)}: ${entry}` }, entries: new Map(), dataStart };
    entries.set(name, entry);
  }
  const layout = layoutVerdict(entries, dataBytes);
  if (layout.kind === 'reject') return { verdict: layout, entries: new Map(), dataStart };
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    lenient ??= 'header is not valid UTF-8';
  }
  if (!text.startsWith('{')) lenient ??= 'header does not start with {';
  if (layout.kind === 'lenient') lenient ??= layout.why;
  return { verdict: lenient === undefined ? { kind: 'valid' } : { kind: 'lenient', why: lenient }, entries, dataStart };
}
