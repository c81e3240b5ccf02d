/**
 * `npm run fuzz`: the long run. Splits MOEKIT_FUZZ_RUNS cases (default 10^6) over the properties,
 * in batches of MOEKIT_FUZZ_BATCH cases with a seed each, run as child processes MOEKIT_FUZZ_JOBS
 * at a time (default: one per core). A batch that fails (property, crash, hang) is reported with
 * its seed and replay command, and the run goes on with the next batch; a property that keeps
 * failing stops after MOEKIT_FUZZ_MAX_FAILURES (default 5) failed batches. At the end: cases run,
 * time and rate per property, and each distinct failure once. Exit code 1 when anything failed.
 *
 *   npm run fuzz                                        # everything, fresh seed
 *   npm run fuzz -- --property ops --runs 200000        # one property
 *   npm run fuzz -- --property ops --seed 12 --path 345 # replay a case (and shrink it)
 *   npm run fuzz -- --property ops --param device=cuda:0 --param otherDevice=cpu
 * Environment: MOEKIT_FUZZ_RUNS, MOEKIT_FUZZ_SEED, MOEKIT_FUZZ_JOBS, MOEKIT_FUZZ_BATCH,
 * MOEKIT_FUZZ_PROPERTIES (comma-separated), MOEKIT_FUZZ_DEVICE (the ops property's device),
 * MOEKIT_FUZZ_MAX_FAILURES, MOEKIT_FUZZ_DIST, MOEKIT_FUZZ_CASE_TIMEOUT_MS, MOEKIT_FUZZ_MEMORY_MB.
 */
import * as os from 'node:os';

import { baseSeed, batchSeed, LONG_RUN_BATCH, LONG_RUN_CASES, LONG_RUN_SHARES } from './harness/budget';
import { MOEKIT_PROPERTIES, PROPERTIES, type MoekitPropertyName } from './harness/registry';
import { casesRun, formatOutcome, runChildWithReplay, type ChildOutcome, type ChildRunOptions } from './harness/run_child';

interface LongRunOptions {
  properties: string[];
  totalRuns: number;
  seed: number;
  path?: string;
  jobs: number;
  batch: number;
  maxFailures: number;
  params: Record<string, string>;
}

function parseOptions(argv: readonly string[]): LongRunOptions {
  const flags = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (!flag.startsWith('--') || value === undefined) throw new Error(`usage: run_long [--property NAME[,NAME]] [--runs N] [--seed S] [--path P] [--jobs J] [--param NAME=VALUE]... (got ${argv.join(' ')})`);
    flags.set(flag.slice(2), [...(flags.get(flag.slice(2)) ?? []), value]);
  }
  const one = (flag: string, env: string, fallback: string): string => flags.get(flag)?.at(-1) ?? process.env[env] ?? fallback;
  const properties = one('property', 'MOEKIT_FUZZ_PROPERTIES', MOEKIT_PROPERTIES.join(',')).split(',').filter(Boolean);
  const unknown = properties.filter((name) => !(name in PROPERTIES));
  if (unknown.length > 0) throw new Error(`unknown properties ${unknown.join(', ')} (known: ${Object.keys(PROPERTIES).join(', ')})`);
  const params = Object.fromEntries((flags.get('param') ?? []).map((pair) => pair.split(/=(.*)/s).slice(0, 2) as [string, string]));
  const device = process.env.MOEKIT_FUZZ_DEVICE;
  if (device && params.device === undefined) Object.assign(params, { device, ...(device !== 'cpu' && { otherDevice: 'cpu' }) });
  const seedText = flags.get('seed')?.at(-1);
  const path = flags.get('path')?.at(-1);
  return {
    properties,
    totalRuns: Number(one('runs', 'MOEKIT_FUZZ_RUNS', String(LONG_RUN_CASES))),
    seed: seedText === undefined ? baseSeed() : Number(seedText),
    ...(path !== undefined && { path }),
    jobs: Number(one('jobs', 'MOEKIT_FUZZ_JOBS', String(os.availableParallelism()))),
    batch: Number(process.env.MOEKIT_FUZZ_BATCH ?? LONG_RUN_BATCH),
    maxFailures: Number(process.env.MOEKIT_FUZZ_MAX_FAILURES ?? 5),
    params,
  };
}

/** Child options shared by every batch; CUDA maps more address space than a memory limit allows. */
function childOptions(options: LongRunOptions, property: string): Omit<ChildRunOptions, 'runs' | 'seed'> {
  const onGpu = (options.params.device ?? 'cpu').startsWith('cuda');
  return { property, params: options.params, timeoutMs: 3_600_000, ...(onGpu && { memoryMb: 0 }) };
}

interface Batch {
  property: string;
  index: number;
  runs: number;
}

/** The batches, properties interleaved so that each makes progress from the start. */
function plan(options: LongRunOptions): Batch[] {
  const shares = options.properties.map((property) => LONG_RUN_SHARES[property as MoekitPropertyName] ?? 1);
  const total = shares.reduce((sum, share) => sum + share, 0);
  const perProperty = options.properties.map((property, at) => {
    const runs = Math.ceil((options.totalRuns * shares[at]!) / total);
    return Array.from({ length: Math.ceil(runs / options.batch) }, (_, index) => ({ property, index, runs: Math.min(options.batch, runs - index * options.batch) }));
  });
  const batches: Batch[] = [];
  for (let round = 0; perProperty.some((list) => round < list.length); round++) {
    for (const list of perProperty) if (round < list.length) batches.push(list[round]!);
  }
  return batches;
}

interface PropertyTally {
  cases: number;
  childSeconds: number;
  batches: number;
  failed: ChildOutcome[];
  skipped: number;
}

/** What makes two failures the same: how it failed, and the first line of why (numbers left out). */
function failureSignature(outcome: ChildOutcome): string {
  // For a crash or hang, the first call in the running case's text names the op.
  const call = /[A-Za-z][\w.]*(?=\()/.exec(outcome.lastCases.at(-1)?.text ?? '')?.[0] ?? '?';
  const why = outcome.summary?.error ?? `${outcome.signal ?? ''} in ${call}`;
  return `${outcome.options.property} ${outcome.verdict}: ${why.split('\n')[0]!.replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/gi, '#')}`;
}

async function runBatches(options: LongRunOptions): Promise<Map<string, PropertyTally>> {
  const tallies = new Map(options.properties.map((property) => [property, { cases: 0, childSeconds: 0, batches: 0, failed: [], skipped: 0 } as PropertyTally]));
  const queue = plan(options);
  const total = queue.length;
  let done = 0;
  const worker = async (): Promise<void> => {
    for (let batch = queue.shift(); batch; batch = queue.shift()) {
      const tally = tallies.get(batch.property)!;
      if (tally.failed.length >= options.maxFailures) {
        tally.skipped++;
        continue;
      }
      const seed = batchSeed(options.seed, batch.property, batch.index);
      const outcome = await runChildWithReplay({ ...childOptions(options, batch.property), runs: batch.runs, seed });
      tally.cases += casesRun(outcome);
      // Time in the property where the child reported it (not the child's start), else the child's whole life.
      tally.childSeconds += (outcome.summary?.elapsedMs ?? outcome.elapsedMs) / 1000;
      tally.batches++;
      done++;
      const headline = formatOutcome(outcome).split('\n')[0];
      console.log(`[${done}/${total}] ${headline}`);
      if (outcome.verdict !== 'passed') {
        tally.failed.push(outcome);
        console.log(formatOutcome(outcome));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.jobs) }, worker));
  return tallies;
}

function report(options: LongRunOptions, tallies: Map<string, PropertyTally>, wallSeconds: number): boolean {
  console.log(`\nfuzz long run, MOEKIT_FUZZ_SEED=${options.seed}, ${options.jobs} jobs, ${wallSeconds.toFixed(0)} s`);
  console.log('property      cases     child-s  cases/s  failed batches');
  let failed = false;
  for (const [property, tally] of tallies) {
    const rate = tally.childSeconds > 0 ? tally.cases / tally.childSeconds : 0;
    const skipped = tally.skipped > 0 ? ` (${tally.skipped} batches skipped after ${options.maxFailures} failures)` : '';
    console.log(`${property.padEnd(12)}${String(tally.cases).padStart(7)}  ${tally.childSeconds.toFixed(0).padStart(9)}  ${rate.toFixed(0).padStart(7)}  ${tally.failed.length}/${tally.batches}${skipped}`);
    failed ||= tally.failed.length > 0;
  }
  const distinct = new Map<string, ChildOutcome[]>();
  for (const tally of tallies.values()) for (const outcome of tally.failed) distinct.set(failureSignature(outcome), [...(distinct.get(failureSignature(outcome)) ?? []), outcome]);
  for (const [signature, outcomes] of distinct) {
    console.log(`\n${outcomes.length}x ${signature} (seeds ${outcomes.map((outcome) => outcome.options.seed).join(', ')})`);
    console.log(formatOutcome(outcomes[0]!));
  }
  return !failed;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  if (options.path !== undefined) {
    // Replay one case: only the first property named, from the given seed and path.
    const property = options.properties[0]!;
    const outcome = await runChildWithReplay({ ...childOptions(options, property), runs: 1, seed: options.seed, path: options.path });
    console.log(formatOutcome(outcome));
    process.exitCode = outcome.verdict === 'passed' ? 0 : 1;
    return;
  }
  const started = Date.now();
  const tallies = await runBatches(options);
  process.exitCode = report(options, tallies, (Date.now() - started) / 1000) ? 0 : 1;
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 2;
});
