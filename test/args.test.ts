// The command-line parser every command shares (lib/cli/args.ts).
import { describe, expect, it } from 'vitest';

import { parseCommandLine, UsageError } from '../lib/cli/args';

describe('parseCommandLine', () => {
  it('keeps a repeatable option\'s values in the order given, apart from the single-valued ones', () => {
    const parsed = parseCommandLine(['--shape', '8,2,64,32', '--tokens', '1', '--shape', '16,4,64,32,64', '--quiet'], ['tokens'], ['quiet'], ['shape']);
    expect(parsed.repeated).toEqual({ shape: ['8,2,64,32', '16,4,64,32,64'] });
    expect(parsed.options).toEqual({ tokens: '1' });
    expect([...parsed.flags]).toEqual(['quiet']);
  });

  it('leaves a repeatable option that was not given out', () => {
    expect(parseCommandLine(['--tokens', '1'], ['tokens'], [], ['shape']).repeated).toEqual({});
  });

  it('refuses a repeatable option without its value as a usage error', () => {
    expect(() => parseCommandLine(['--shape'], [], [], ['shape'])).toThrow(UsageError);
    expect(() => parseCommandLine(['--shape'], [], [], ['shape'])).toThrow(/Option '--shape <value>' argument missing/);
  });
});
