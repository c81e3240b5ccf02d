/**
 * The parent side: runs one property in a child process and says what happened. A case that
 * kills the child (SIGSEGV, SIGABRT, an out-of-memory kill) or never finishes is a failure of the
 * property with the case named, not a dead test runner.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { readCaseLog, runningCase, type LoggedCase } from './case_log';
import { childScript, distDir, makeScratchDir } from './paths';
import type { ChildSpec, ChildSummary } from './protocol';

export interface ChildRunOptions {
  property: string;
  runs: number;
  seed: number;
  /** Replay from this fast-check path (with `seed`). */
  path?: string;
  params?: Record<string, string>;
  /** dist/ of the build under test (default: MOEKIT_FUZZ_DIST or this checkout's). */
  dist?: string;
  /** The whole child's limit. */
  timeoutMs: number;
  /** One case's limit: a case running longer is a hang (default MOEKIT_FUZZ_CASE_TIMEOUT_MS or 10 s). */
  caseTimeoutMs?: number;
  /**
   * The child's address-space limit in MiB (ulimit -v), so that a case asking for absurd sizes
   * meets E_OOM rather than the machine's OOM killer; 0 for none (CUDA needs none: it maps
   * far more address space than it uses). Default MOEKIT_FUZZ_MEMORY_MB or 4096.
   */
  memoryMb?: number;
}

export type ChildVerdict =
  | 'passed'
  /** The property failed for a case (fast-check shrank it). */
  | 'failed'
  /** The child died by a signal. */
  | 'crashed'
  /** One case ran past caseTimeoutMs. */
  | 'hung'
  /** The whole child ran past timeoutMs. */
  | 'timed-out'
  /** The child exited without a summary (an uncaught error, or a case whose promise never settled). */
  | 'no-summary';

export interface ChildOutcome {
  options: ChildRunOptions;
  verdict: ChildVerdict;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  summary?: ChildSummary;
  /** The last cases the child logged, the running one last. */
  lastCases: LoggedCase[];
  /** The end of what the child printed (stdout and stderr). */
  outputTail: string;
  elapsedMs: number;
  /** For a crash or a hang: the same seed replayed from the logged case alone. */
  replay?: { path: string; verdict: ChildVerdict; signal: NodeJS.Signals | null };
}

const WATCHDOG_INTERVAL_MS = 250;
const OUTPUT_TAIL_CHARS = 4000;

function envNumber(name: string, fallback: number): number {
  const value = process.env[name];
  return value === undefined || value === '' ? fallback : Number(value);
}

function childCommand(spec: ChildSpec, memoryMb: number): { command: string; args: string[] } {
  // Source maps: stacks name the TypeScript files, not their transpiled copies.
  const node = [process.execPath, '--enable-source-maps', childScript(), JSON.stringify(spec)];
  if (memoryMb <= 0) return { command: node[0]!, args: node.slice(1) };
  // exec: the shell becomes node, so the child's signal is the one we see.
  return { command: '/bin/sh', args: ['-c', `ulimit -v ${Math.round(memoryMb * 1024)} && exec "$@"`, 'sh', ...node] };
}

function readSummary(file: string): ChildSummary | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as ChildSummary;
  } catch {
    return undefined;
  }
}

export async function runChild(options: ChildRunOptions): Promise<ChildOutcome> {
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-fuzz-log-'));
  const scratchDir = makeScratchDir(options.property);
  const logFile = path.join(logDir, 'cases.json');
  const summaryFile = path.join(logDir, 'summary.json');
  const spec: ChildSpec = {
    property: options.property,
    runs: options.runs,
    seed: options.seed,
    ...(options.path !== undefined && { path: options.path }),
    params: options.params ?? {},
    logFile,
    dist: options.dist ?? distDir(),
    summaryFile,
    scratchDir,
  };
  const caseTimeoutMs = options.caseTimeoutMs ?? envNumber('MOEKIT_FUZZ_CASE_TIMEOUT_MS', 10_000);
  const memoryMb = options.memoryMb ?? envNumber('MOEKIT_FUZZ_MEMORY_MB', 4096);
  const { command, args } = childCommand(spec, memoryMb);
  const started = Date.now();
  // Without an address-space limit (a GPU run), moekit's own host-memory budget keeps a case's
  // CPU tensors to a size that is made and checked within a case's time.
  const env = memoryMb > 0 ? process.env : { ...process.env, MOEKIT_CPU_MEMORY_MB: String(envNumber('MOEKIT_FUZZ_HOST_TENSOR_MB', 1024)) };
  // stdout and stderr together: the end of what a dying child printed is the useful part.
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-OUTPUT_TAIL_CHARS);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);

  let stopped: 'hung' | 'timed-out' | undefined;
  const stop = (why: 'hung' | 'timed-out'): void => {
    stopped ??= why;
    child.kill('SIGKILL');
  };
  // The hang check reads the case log rather than trusting the child: a case can block the
  // child's only thread (a synchronous read of a FIFO), and then nothing inside it could tell.
  const watchdog = setInterval(() => {
    const running = runningCase(readCaseLog(logFile));
    if (running && Date.now() - running.startedAt > caseTimeoutMs) stop('hung');
  }, WATCHDOG_INTERVAL_MS);
  const deadline = setTimeout(() => stop('timed-out'), options.timeoutMs);

  const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.on('close', (code, killedBy) => resolve([code, killedBy]));
  });
  clearInterval(watchdog);
  clearTimeout(deadline);
  const lastCases = readCaseLog(logFile).cases;
  const summary = readSummary(summaryFile);
  for (const dir of [logDir, scratchDir]) fs.rmSync(dir, { recursive: true, force: true });

  const verdict: ChildVerdict =
    stopped ?? (signal !== null ? 'crashed' : summary === undefined ? 'no-summary' : summary.failed ? 'failed' : exitCode === 0 ? 'passed' : 'no-summary');
  return { options, verdict, exitCode, signal, ...(summary && { summary }), lastCases, outputTail: output, elapsedMs: Date.now() - started };
}

/** The case a crash or hang interrupted, if it was a generated one (not a shrinking attempt). */
function interruptedCase(outcome: ChildOutcome): LoggedCase | undefined {
  const last = outcome.lastCases[outcome.lastCases.length - 1];
  return last && last.finishedAt === undefined && last.phase === 'run' && outcome.options.path === undefined ? last : undefined;
}

/**
 * Runs a child; after a crash or a hang, replays the interrupted case alone in a fresh child, so
 * the report can say whether that case is enough or an earlier case set it up.
 */
export async function runChildWithReplay(options: ChildRunOptions): Promise<ChildOutcome> {
  const outcome = await runChild(options);
  const interrupted = interruptedCase(outcome);
  if ((outcome.verdict !== 'crashed' && outcome.verdict !== 'hung') || !interrupted) return outcome;
  const path = String(interrupted.index);
  const replay = await runChild({ ...options, path, runs: 1 });
  return { ...outcome, replay: { path, verdict: replay.verdict, signal: replay.signal } };
}

/** Cases the child got through, from its summary or, when it died, from its log. */
export function casesRun(outcome: ChildOutcome): number {
  if (outcome.summary) return outcome.summary.numRuns;
  const last = outcome.lastCases[outcome.lastCases.length - 1];
  return last ? last.index + (last.finishedAt === undefined ? 0 : 1) : 0;
}

/** The command that replays a case: the long-run driver with seed and path. */
export function replayCommand(options: ChildRunOptions, path: string): string {
  const dist = process.env.MOEKIT_FUZZ_DIST ? `MOEKIT_FUZZ_DIST=${process.env.MOEKIT_FUZZ_DIST} ` : '';
  const params = Object.entries(options.params ?? {}).map(([name, value]) => ` --param ${name}=${value}`).join('');
  return `${dist}npm run fuzz -- --property ${options.property} --seed ${options.seed} --path ${path}${params}`;
}

function indent(text: string, prefix = '    '): string {
  return text.split('\n').map((line) => prefix + line).join('\n');
}

function describeInterruption(outcome: ChildOutcome, headline: string): string[] {
  const lines = [headline];
  const [running, ...before] = [...outcome.lastCases].reverse();
  if (!running || running.finishedAt !== undefined) {
    lines.push('  no case was running (it died between cases)');
  } else {
    const where = running.phase === 'run' ? `replay: ${replayCommand(outcome.options, String(running.index))}` : 'while shrinking an earlier failure';
    lines.push(`  case #${running.index} was running (${where}):`, indent(running.text));
  }
  if (outcome.replay) {
    const { verdict, signal } = outcome.replay;
    const same = verdict === outcome.verdict;
    lines.push(`  that case alone, in a fresh process: ${verdict}${signal ? ` (${signal})` : ''}${same ? '' : ' - an earlier case may be to blame'}`);
  }
  for (const earlier of before) lines.push(`  before it, case #${earlier.index}:`, indent(earlier.text));
  return lines;
}

/** A report of what happened, for a failed assertion or the long run's output. */
export function formatOutcome(outcome: ChildOutcome): string {
  const { options, summary } = outcome;
  const title = `fuzz property ${options.property} (seed ${options.seed}${options.path ? `, path ${options.path}` : ''})`;
  const cases = casesRun(outcome);
  const lines: string[] = [];
  switch (outcome.verdict) {
    case 'passed':
      return `${title}: held for ${cases} cases in ${(outcome.elapsedMs / 1000).toFixed(1)} s`;
    case 'failed': {
      lines.push(`${title}: FAILED after ${cases} cases`);
      lines.push(`  smallest failing case (${summary?.numShrinks ?? 0} shrinks; replay: ${replayCommand(options, summary?.counterexamplePath ?? '?')}):`);
      lines.push(indent(summary?.counterexample ?? '?'), '  error:', indent(summary?.error ?? '?'));
      const first = summary?.firstFailure;
      if (first && first.text !== summary?.counterexample) lines.push(`  first failing case as generated (#${first.index}):`, indent(first.text));
      break;
    }
    case 'crashed':
      lines.push(...describeInterruption(outcome, `${title}: the child process DIED by ${outcome.signal} after ${cases} cases`));
      break;
    case 'hung':
      lines.push(...describeInterruption(outcome, `${title}: a case HUNG (ran past its time limit) after ${cases} cases`));
      break;
    case 'timed-out':
      lines.push(...describeInterruption(outcome, `${title}: the run TIMED OUT after ${options.timeoutMs} ms and ${cases} cases`));
      break;
    case 'no-summary':
      lines.push(...describeInterruption(outcome, `${title}: the child EXITED (code ${outcome.exitCode}) without a summary after ${cases} cases`));
      break;
  }
  if (outcome.outputTail.trim() !== '') lines.push('  child output (end):', indent(outcome.outputTail.trimEnd()));
  return lines.join('\n');
}
