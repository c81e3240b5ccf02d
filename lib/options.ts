/**
 * Object arguments as JavaScript callers pass them. TypeScript's types keep a typed caller from
 * passing `null`, a number or a string where an options object goes; a JavaScript caller learns it
 * here, as a MoekitError naming the argument, rather than as a TypeError from deep inside an op.
 * The public entry points that take an object (options, weights, plans) go through these two.
 */
import { describeValue, MoekitError } from './errors';

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * An options argument that may be left out: `undefined` and `null` both mean "all defaults" (an
 * empty object); anything else must be an object. `where` names it, e.g. 'groupedGemm: options'.
 */
export function optionalOptions<T extends object>(value: T | null | undefined, where: string): Partial<T> {
  if (value === undefined || value === null) return {};
  if (!isObject(value)) throw new MoekitError('E_INVALID_ARGUMENT', `${where} must be an object, got ${describeValue(value)}`);
  return value;
}

/**
 * An object argument that must be given, with `fields` that must be present (neither undefined nor
 * null): route's options and their topK, fromPretrained's options and their layer, a layer's weights.
 */
export function requiredObject<T extends object>(value: T | null | undefined, where: string, fields: readonly (keyof T & string)[] = []): T {
  const needs = fields.length === 0 ? '' : ` (with ${fields.join(', ')})`;
  if (value === undefined || value === null) throw new MoekitError('E_INVALID_ARGUMENT', `${where} must be given${needs}, got ${describeValue(value)}`);
  if (!isObject(value)) throw new MoekitError('E_INVALID_ARGUMENT', `${where} must be an object${needs}, got ${describeValue(value)}`);
  for (const field of fields) {
    const present = (value as Record<string, unknown>)[field];
    if (present === undefined || present === null) throw new MoekitError('E_INVALID_ARGUMENT', `${where}.${field} is required`);
  }
  return value;
}
