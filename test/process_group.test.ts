// ProcessGroup.init's arguments, checked before any rendezvous or NCCL call (joining a real group
// needs GPUs: test/gpu/multi).
import { describe, it } from 'vitest';

import { ProcessGroup } from '../lib/index';
import { expectRejects } from './helpers/errors';

describe('ProcessGroup.init arguments', () => {
  const env = { WORLD_SIZE: '2', RANK: '0' };

  it('refuses options that are not an object', async () => {
    await expectRejects(ProcessGroup.init(7 as never), 'E_INVALID_ARGUMENT', /^ProcessGroup\.init: options must be an object, got 7$/);
  });

  it('refuses a timeout that is not a positive number of milliseconds', async () => {
    await expectRejects(ProcessGroup.init({ env, timeoutMs: 'soon' as never }), 'E_INVALID_ARGUMENT', /^ProcessGroup\.init: timeoutMs must be a positive number of milliseconds, got "soon"$/);
    await expectRejects(ProcessGroup.init({ env, timeoutMs: 0 }), 'E_INVALID_ARGUMENT', /timeoutMs must be a positive number of milliseconds, got 0$/);
  });

  it('reads a bad launch environment as before, with options null', async () => {
    const saved = process.env.WORLD_SIZE;
    process.env.WORLD_SIZE = 'two';
    try {
      await expectRejects(ProcessGroup.init(null), 'E_INVALID_ARGUMENT', /^WORLD_SIZE must be a non-negative integer, got "two"$/);
    } finally {
      if (saved === undefined) delete process.env.WORLD_SIZE;
      else process.env.WORLD_SIZE = saved;
    }
  });
});
