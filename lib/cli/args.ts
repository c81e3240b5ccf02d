/**
 * Command-line parsing shared by the commands. Every mistake in how a command was called becomes a
 * UsageError (exit code 2), kept apart from bad input such as a broken checkpoint (exit code 1).
 */
import { parseArgs } from 'node:util';

import { parseDevice, type Device } from '../device';
import { parseFloatDType, type FloatDType } from '../dtype';
import { MoekitError } from '../errors';
import { isQuantization, QUANTIZATION_FORMATS, QUANTIZATIONS, requireGroupSize, type GroupSize, type Quantization } from '../ops/quantized';

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface CommandLine<Name extends string, Flag extends string = never, Repeatable extends string = never> {
  /** The string options given, by name (without the leading --). */
  options: Partial<Record<Name, string>>;
  /** The repeatable options given, by name, each with its values in the order given. */
  repeated: Partial<Record<Repeatable, string[]>>;
  /** The flags given (options without a value). */
  flags: ReadonlySet<Flag>;
  positionals: string[];
  help: boolean;
}

/**
 * Parses `args` strictly: each name in `optionNames` is a `--name value` option, each in
 * `flagNames` a `--name` flag, each in `repeatableNames` a `--name value` option that may be given
 * more than once, `--help`/`-h` is recognized everywhere, and anything else is a usage error.
 */
export function parseCommandLine<Name extends string, Flag extends string = never, Repeatable extends string = never>(
  args: readonly string[],
  optionNames: readonly Name[],
  flagNames: readonly Flag[] = [],
  repeatableNames: readonly Repeatable[] = [],
): CommandLine<Name, Flag, Repeatable> {
  const stringOptions = Object.fromEntries(optionNames.map((name) => [name, { type: 'string' as const }]));
  const flagOptions = Object.fromEntries(flagNames.map((name) => [name, { type: 'boolean' as const }]));
  const repeatableOptions = Object.fromEntries(repeatableNames.map((name) => [name, { type: 'string' as const, multiple: true }]));
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      options: { ...stringOptions, ...flagOptions, ...repeatableOptions, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    if (isParseArgsError(error)) throw new UsageError(withoutPositionalHint(error.message));
    throw error;
  }
  const { help, ...values } = parsed.values as Record<string, string | string[] | boolean | undefined>;
  const flags = new Set(flagNames.filter((name) => values[name] === true));
  for (const name of flagNames) delete values[name];
  const repeated: Partial<Record<Repeatable, string[]>> = {};
  for (const name of repeatableNames) {
    if (values[name] !== undefined) repeated[name] = values[name] as string[];
    delete values[name];
  }
  // parseArgs types the values of options built at run time loosely; what remains are strings.
  return { options: values as Partial<Record<Name, string>>, repeated, flags, positionals: parsed.positionals, help: help === true };
}

function isParseArgsError(error: unknown): error is Error {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}

// Node appends advice about '--' to unknown-option errors; one line naming the option reads better.
function withoutPositionalHint(message: string): string {
  return message.replace(/\. To specify a positional argument.*$/s, '');
}

export function requireOption(value: string | undefined, name: string): string {
  if (value === undefined || value === '') throw new UsageError(`missing required option --${name}`);
  return value;
}

/** Checks the positional arguments against `names`, what the usage line calls them. */
export function expectPositionals(positionals: readonly string[], names: readonly string[]): void {
  if (positionals.length > names.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[names.length])}`);
  if (positionals.length < names.length) throw new UsageError(`missing argument ${names[positionals.length]}`);
}

export function integerOption(value: string, name: string, min: number): number {
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed) || parsed < min) {
    throw new UsageError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return parsed;
}

/** "1,16,128" → [1, 16, 128] (each at least `min`). */
export function integerListOption(value: string, name: string, min: number): number[] {
  return listOption(value).map((part) => integerOption(part, name, min));
}

/** "a,b" → ["a", "b"], ignoring blanks around commas. */
export function listOption(value: string): string[] {
  return value.split(',').map((part) => part.trim());
}

export function deviceOption(value: string | undefined, fallback: Device): Device {
  return value === undefined ? fallback : asUsageError(() => parseDevice(value, '--device'));
}

export function dtypeOption(value: string | undefined, fallback: FloatDType): FloatDType {
  return value === undefined ? fallback : asUsageError(() => parseFloatDType(value, '--dtype'));
}

/** --quantize: a quantization moekit knows, or undefined when not given. */
export function quantizeOption(value: string | undefined): Quantization | undefined {
  if (value === undefined) return undefined;
  if (!isQuantization(value)) throw new UsageError(`--quantize must be one of ${QUANTIZATIONS.join(', ')}, got ${JSON.stringify(value)}`);
  return value;
}

/** --group-size: a number or 'channel', only with --quantize int8 or int4; undefined when not given. */
export function groupSizeOption(value: string | undefined, quantize: Quantization | undefined): GroupSize | undefined {
  if (value === undefined) return undefined;
  if (quantize !== 'int8' && quantize !== 'int4') throw new UsageError('--group-size goes with --quantize int8 or int4');
  const given = value === 'channel' ? value : /^\d+$/.test(value) ? Number(value) : value;
  return asUsageError(() => requireGroupSize(given, QUANTIZATION_FORMATS[quantize], '--group-size', { name: 'the group size' }));
}

// The library's parsers throw MoekitError; for a command-line option that is a usage mistake.
export function asUsageError<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof MoekitError) throw new UsageError(error.message);
    throw error;
  }
}
