/**
 * What a fuzz property module provides to the harness. A property is one fast-check property
 * over plain-data cases: the harness generates cases, logs each one (describe) before running it
 * (check), and reports the first that fails, the process dying, or a case that never finishes.
 */
import type * as fc from 'fast-check';

import type { MoekitBuild } from './moekit';

export interface FuzzProperty<Case> {
  /** Generates cases: plain data (no live tensors or files), so a case can be printed and replayed. */
  arbitrary: fc.Arbitrary<Case>;
  /**
   * One line naming the case, written to the case log before it runs, so a crash or a hang names
   * it. For ops it is a JavaScript reproducer.
   */
  describe(testCase: Case): string;
  /** Resolves when the property holds for the case; throws (any error) saying why it does not. */
  check(testCase: Case): Promise<void>;
  /** Frees what the property set up (scratch files). */
  dispose?(): Promise<void> | void;
}

export interface PropertyContext {
  moekit: MoekitBuild;
  /** name=value settings given to the child (e.g. device=cuda:0 for the ops property). */
  params: Readonly<Record<string, string>>;
  /** A scratch folder of this process's own, removed afterwards. */
  scratchDir: string;
}

export type PropertyFactory = (context: PropertyContext) => FuzzProperty<unknown> | Promise<FuzzProperty<unknown>>;

/**
 * Lets a property module declare its case type while the registry holds them all alike: the
 * harness only ever passes a property the cases its own arbitrary made.
 */
export function defineProperty<Case>(factory: (context: PropertyContext) => FuzzProperty<Case> | Promise<FuzzProperty<Case>>): PropertyFactory {
  return factory as PropertyFactory;
}
