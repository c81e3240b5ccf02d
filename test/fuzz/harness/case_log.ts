/**
 * The case log: a small file the child rewrites around every case with the last few cases it
 * started. When the child dies (a signal) or stops making progress (a hang), the parent reads it
 * to name the case that was running. Written with synchronous calls, so what was written before
 * a crash is in the file even though the process never got to flush anything.
 */
import * as fs from 'node:fs';

/** How many cases the log keeps: the one running, and the ones before it (a crash can come late). */
const KEPT_CASES = 3;

export interface LoggedCase {
  /** 0-based index of the check call in this child. */
  index: number;
  /** 'run' while fast-check generates cases; 'shrink' once a case failed and it looks for a smaller one. */
  phase: 'run' | 'shrink';
  /** The property's describe() of the case. */
  text: string;
  /** Date.now() when the case started. */
  startedAt: number;
  /** Date.now() when its check returned or threw; absent while it runs. */
  finishedAt?: number;
}

export interface CaseLogContents {
  cases: LoggedCase[];
}

export class CaseLog {
  readonly #fd: number;
  readonly #cases: LoggedCase[] = [];

  constructor(file: string) {
    this.#fd = fs.openSync(file, 'w');
  }

  started(entry: Omit<LoggedCase, 'startedAt'>): void {
    this.#cases.push({ ...entry, startedAt: Date.now() });
    if (this.#cases.length > KEPT_CASES) this.#cases.shift();
    this.#write();
  }

  finished(): void {
    const last = this.#cases[this.#cases.length - 1];
    if (last) last.finishedAt = Date.now();
    this.#write();
  }

  close(): void {
    fs.closeSync(this.#fd);
  }

  #write(): void {
    const text = Buffer.from(JSON.stringify({ cases: this.#cases } satisfies CaseLogContents));
    fs.writeSync(this.#fd, text, 0, text.length, 0);
    fs.ftruncateSync(this.#fd, text.length);
  }
}

/** The log as last written; empty when the child never wrote one (or died mid-write). */
export function readCaseLog(file: string): CaseLogContents {
  try {
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as CaseLogContents;
    return Array.isArray(parsed.cases) ? parsed : { cases: [] };
  } catch {
    return { cases: [] };
  }
}

/** The case that started and has not finished, if any. */
export function runningCase(log: CaseLogContents): LoggedCase | undefined {
  const last = log.cases[log.cases.length - 1];
  return last && last.finishedAt === undefined ? last : undefined;
}
