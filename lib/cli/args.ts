/** Command-line parsing shared by the commands: strict options, usage errors that exit 2. */
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { parseDevice, type Device } from '../device';
import { parseFloatDType, type FloatDType } from '../dtype';
import { MoekitError } from '../errors';

/** A mistake in how the command was called (exit code 2), as opposed to bad input (exit code 1). */
export class UsageError extends Error {
  override name = 'UsageError';
}

export type Options = ParseArgsConfig['options'];

export interface CommandLine {
  /** String options by name (only string options are declared), plus `help`. */
  values: Record<string, string | undefined> & { help?: boolean };
  positionals: string[];
}

/** Parses `args` against string-valued options (and --help); unknown options are usage errors. */
export function parseCommandLine(args: string[], options: Options): CommandLine {
  try {
    const parsed = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    return { values: parsed.values as CommandLine['values'], positionals: parsed.positionals };
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
}

export function requireOption(value: string | undefined, name: string): string {
  if (value === undefined || value === '') throw new UsageError(`missing required option --${name}`);
  return value;
}

export function integerOption(value: string, name: string, min: number): number {
  const parsed = Number(value);
  if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(parsed) || parsed < min) {
    throw new UsageError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return parsed;
}

export function integerListOption(value: string, name: string): number[] {
  return value.split(',').map((part) => integerOption(part.trim(), name, 1));
}

/** Options naming a device or dtype are usage errors when malformed. */
export function deviceOption(value: string | undefined, fallback: Device): Device {
  if (value === undefined) return fallback;
  try {
    return parseDevice(value, '--device');
  } catch (error) {
    throw new UsageError((error as MoekitError).message);
  }
}

export function dtypeOption(value: string | undefined, fallback: FloatDType): FloatDType {
  if (value === undefined) return fallback;
  try {
    return parseFloatDType(value, '--dtype');
  } catch (error) {
    throw new UsageError((error as MoekitError).message);
  }
}
