/**
 * A fuzz child: `node build-fuzz/harness/child.js '<ChildSpec JSON>'`. Runs one property for the
 * given number of cases and seed, logging each case before it runs, and prints one summary line.
 * Whatever a case does to this process (a signal, a hang) the parent sees and reports.
 */
import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';

import * as fc from 'fast-check';

import { CaseLog } from './case_log';
import { loadBuild } from './moekit';
import type { FuzzProperty } from './property';
import { clip, errorText, type ChildSpec, type ChildSummary, type FirstFailure } from './protocol';
import { PROPERTIES } from './registry';

function describeSafely(property: FuzzProperty<unknown>, testCase: unknown): string {
  try {
    return clip(property.describe(testCase));
  } catch (error) {
    return clip(`(describe() threw ${errorText(error)}) ${fc.stringify(testCase)}`);
  }
}

async function runProperty(spec: ChildSpec, property: FuzzProperty<unknown>, log: CaseLog): Promise<ChildSummary> {
  let checks = 0;
  let firstFailure: FirstFailure | undefined;
  const started = performance.now();
  const checkOne = async (testCase: unknown): Promise<void> => {
    const index = checks++;
    const text = describeSafely(property, testCase);
    log.started({ index, phase: firstFailure ? 'shrink' : 'run', text });
    try {
      await property.check(testCase);
    } catch (error) {
      firstFailure ??= { index, text, error: errorText(error) };
      throw error;
    } finally {
      log.finished();
    }
  };
  const details = await fc.check(fc.asyncProperty(property.arbitrary, checkOne), {
    seed: spec.seed,
    numRuns: spec.runs,
    ...(spec.path !== undefined && { path: spec.path }),
  });
  const summary: ChildSummary = {
    property: spec.property,
    seed: spec.seed,
    numRuns: details.numRuns,
    checks,
    elapsedMs: performance.now() - started,
    failed: details.failed,
  };
  if (details.failed) {
    const counterexample = details.counterexample?.[0];
    Object.assign(summary, {
      counterexample: counterexample === undefined ? undefined : describeSafely(property, counterexample),
      counterexamplePath: details.counterexamplePath ?? undefined,
      error: errorText(details.errorInstance),
      numShrinks: details.numShrinks,
      firstFailure,
    });
  }
  return summary;
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '') as ChildSpec;
  const factory = PROPERTIES[spec.property];
  if (!factory) throw new Error(`no fuzz property named ${spec.property} (known: ${Object.keys(PROPERTIES).join(', ')})`);
  const log = new CaseLog(spec.logFile);
  try {
    const property = await factory({ moekit: loadBuild(spec.dist), params: spec.params, scratchDir: spec.scratchDir });
    const summary = await runProperty(spec, property, log);
    await property.dispose?.();
    fs.writeFileSync(spec.summaryFile, JSON.stringify(summary));
    process.exitCode = summary.failed ? 1 : 0;
  } finally {
    log.close();
  }
}

main().then(
  // Exit now: a case may have left something pending forever (an open() on a FIFO with no
  // writer, say) that would otherwise keep the process alive after its summary.
  () => process.exit(),
  (error: unknown) => {
    process.stderr.write(`fuzz child failed: ${errorText(error)}\n`);
    process.exit(2);
  },
);
