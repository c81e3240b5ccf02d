/** Assertions on the MoekitErrors the public API throws: the class, the code and the message. */
import { expect } from 'vitest';

import { MoekitError, type MoekitErrorCode } from '../../lib/errors';

function expectError(error: unknown, code: MoekitErrorCode, message: RegExp): void {
  expect(error).toBeInstanceOf(MoekitError);
  expect((error as MoekitError).code).toBe(code);
  expect((error as MoekitError).message).toMatch(message);
}

/** `call()` throws a MoekitError with `code` and a message matching `message`. */
export function expectThrows(call: () => unknown, code: MoekitErrorCode, message: RegExp): void {
  let error: unknown;
  try {
    call();
  } catch (thrown) {
    error = thrown;
  }
  if (error === undefined) throw new Error(`expected a MoekitError ${code}, but nothing was thrown`);
  expectError(error, code, message);
}

/** `promise` rejects with a MoekitError with `code` and a message matching `message`. */
export async function expectRejects(promise: Promise<unknown>, code: MoekitErrorCode, message: RegExp): Promise<void> {
  const error: unknown = await promise.then(() => undefined, (failure: unknown) => failure);
  if (error === undefined) throw new Error(`expected a rejection with MoekitError ${code}, but the promise resolved`);
  expectError(error, code, message);
}
