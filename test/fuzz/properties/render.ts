/**
 * Any value as JavaScript source that rebuilds it, so a logged case is a reproducer one can paste
 * (with RENDER_PRELUDE's helpers). `custom` renders what only the caller knows (tensor specs).
 */
import { DEEP_NESTING } from './values';

/** The helpers rendered values may call. */
export const RENDER_PRELUDE = [
  'const circular = () => { const o = {}; o.self = o; return o; };',
  'const nested = (depth) => { let v = []; for (let i = 0; i < depth; i++) v = [v]; return v; };',
].join('\n');

export type CustomRender = (value: unknown, render: (inner: unknown) => string) => string | undefined;

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

function renderNumber(value: number): string {
  return Object.is(value, -0) ? '-0' : String(value);
}

function renderKey(key: string): string {
  // A literal `__proto__: v` would set the prototype; a computed key makes an own property, as the case has.
  if (key === '__proto__') return '["__proto__"]';
  return IDENTIFIER.test(key) ? key : JSON.stringify(key);
}

/** Nesting depth of a chain of single-element arrays, as nestedArray() makes. */
function chainDepth(value: unknown[]): number {
  let depth = 0;
  for (let inner: unknown = value; Array.isArray(inner) && inner.length <= 1; inner = inner[0]) {
    depth++;
    if (inner.length === 0) return depth - 1;
  }
  return -1;
}

/** JSON text put into a file as it is (values.ts RawJson): shown as the text, deep nesting summarised. */
function renderRawJson(text: unknown): string {
  if (typeof text !== 'string') return String(text);
  const depth = text.length - text.replace(/^\[+/, '').length;
  if (depth > 100) return `<JSON: ${depth} nested arrays>`;
  return `<JSON: ${text}>`;
}

export function renderValue(value: unknown, custom?: CustomRender, seen: Set<object> = new Set()): string {
  const inner = (item: unknown): string => renderValue(item, custom, seen);
  const special = custom?.(value, inner);
  if (special !== undefined) return special;
  switch (typeof value) {
    case 'undefined': return 'undefined';
    case 'number': return renderNumber(value);
    case 'bigint': return `${value}n`;
    case 'string': return JSON.stringify(value);
    case 'boolean': return String(value);
    case 'symbol': return `Symbol(${JSON.stringify(value.description ?? '')})`;
    case 'function': return value.toString();
    default: break;
  }
  if (value === null) return 'null';
  const object = value as object;
  if (Object.hasOwn(object, '$json')) return renderRawJson((object as { $json: unknown }).$json);
  const record = object as Record<string, unknown>;
  if (seen.has(object) || (Object.keys(record).length === 1 && record.self === object)) return 'circular()';
  if (ArrayBuffer.isView(object) && !(object instanceof DataView)) {
    const items = Array.from(object as unknown as ArrayLike<number | bigint>, (item) => (typeof item === 'bigint' ? `${item}n` : renderNumber(item)));
    return `new ${object.constructor.name}([${items.join(', ')}])`;
  }
  if (object instanceof ArrayBuffer) return `new ArrayBuffer(${object.byteLength})`;
  if (Array.isArray(object) && chainDepth(object) >= DEEP_NESTING / 10) return `nested(${chainDepth(object)})`;
  seen.add(object);
  try {
    if (Array.isArray(object)) return `[${object.map(inner).join(', ')}]`;
    const entries = Object.entries(object).map(([key, item]) => `${renderKey(key)}: ${inner(item)}`);
    return entries.length === 0 ? '{}' : `{ ${entries.join(', ')} }`;
  } finally {
    seen.delete(object);
  }
}
