/** What the parent tells a fuzz child (one JSON argument) and what the child answers (a summary file). */

export interface ChildSpec {
  /** A name in the registry (harness/registry.ts). */
  property: string;
  /** How many cases to generate. */
  runs: number;
  seed: number;
  /** fast-check's replay path (with `seed`): start from that case instead of generating `runs`. */
  path?: string;
  /** name=value settings for the property (e.g. device=cuda:0). */
  params: Record<string, string>;
  /** The case log file (harness/case_log.ts). */
  logFile: string;
  /** The dist/ folder of the moekit build under test. */
  dist: string;
  /** Where the child writes its summary (JSON) before it exits. */
  summaryFile: string;
  /** A scratch folder for the property; the parent removes it, also after a crash. */
  scratchDir: string;
}

export interface FirstFailure {
  index: number;
  text: string;
  error: string;
}

export interface ChildSummary {
  property: string;
  seed: number;
  /** Cases fast-check generated and ran (shrinking attempts not counted). */
  numRuns: number;
  /** Check calls made: the generated cases plus, after a failure, the shrinking attempts. */
  checks: number;
  elapsedMs: number;
  failed: boolean;
  /** The smallest failing case found (describe()), its replay path, and why it failed. */
  counterexample?: string;
  counterexamplePath?: string;
  error?: string;
  numShrinks?: number;
  /** The first failing case as generated, before shrinking. */
  firstFailure?: FirstFailure;
}

/** Longest case description kept (in the log and the summary): a case is a reproducer, not a data dump. */
export const MAX_DESCRIPTION_CHARS = 3000;

export function clip(text: string, limit = MAX_DESCRIPTION_CHARS): string {
  return text.length <= limit ? text : `${text.slice(0, limit)}... (${text.length} characters in all)`;
}

/** An error as one readable text: class, code and message, and the top of its stack. */
export function errorText(error: unknown): string {
  if (!(error instanceof Error)) return `non-Error thrown: ${String(error)}`;
  const code = (error as { code?: unknown }).code;
  const head = `${error.name}${typeof code === 'string' ? ` [${code}]` : ''}: ${error.message}`;
  // Frames from after the message only: a message may itself hold another error's text and frames.
  const stack = error.stack ?? '';
  const afterMessage = stack.includes(error.message) ? stack.slice(stack.indexOf(error.message) + error.message.length) : stack;
  const frames = afterMessage.split('\n').filter((line) => line.trimStart().startsWith('at ')).slice(0, 4);
  return [head, ...frames].join('\n');
}
