/**
 * The file system as moekit touches it: only regular files are read or replaced, and every
 * failure is a MoekitError naming the path and the reason (the errno code), never a raw Node error.
 *
 * Why only regular files: opening a FIFO for reading blocks until a writer appears and reading a
 * device node such as /dev/zero never ends, so one misplaced shard would hang a load forever.
 * Opening with O_NONBLOCK returns at once whatever the path names (and changes nothing for a
 * regular file); fstat of the open descriptor then says what was opened, with no window in which
 * the path could be swapped, and anything but a regular file is refused before a byte is read.
 */
import * as fs from 'node:fs';

import { describeValue, MoekitError } from './errors';

const READ_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK;

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

/** E_NOT_FOUND for a failed file-system call: the path, what was attempted and the errno code. */
export function fileSystemError(file: string, action: string, error: unknown): MoekitError {
  if (error instanceof MoekitError) return error;
  return new MoekitError('E_NOT_FOUND', `${file}: cannot ${action} (${errnoCode(error) ?? String(error)})`, { cause: error });
}

/** A path given by a caller must be a string before it reaches fs (or a message). */
export function requirePath(file: unknown): asserts file is string {
  if (typeof file !== 'string') throw new MoekitError('E_INVALID_ARGUMENT', `a file path must be a string, got ${describeValue(file)}`);
}

/** What `stats` describes, for messages: "a FIFO", "a directory", … */
export function fileKind(stats: fs.Stats): string {
  if (stats.isFile()) return 'a regular file';
  if (stats.isDirectory()) return 'a directory';
  if (stats.isSymbolicLink()) return 'a symbolic link';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  return 'an unknown kind of file';
}

function notRegularFile(file: string, stats: fs.Stats): MoekitError {
  return new MoekitError('E_NOT_FOUND', `${file}: is ${fileKind(stats)}, not a regular file`);
}

function requireRegularFile(file: string, stats: fs.Stats): void {
  if (!stats.isFile()) throw notRegularFile(file, stats);
}

/** Why opening `file` failed: opening a socket fails (ENXIO) before fstat could say what it is. */
function openFailure(file: string, action: string, error: unknown): MoekitError {
  let stats: fs.Stats;
  try {
    stats = fs.statSync(file);
  } catch {
    return fileSystemError(file, action, error);
  }
  return stats.isFile() ? fileSystemError(file, action, error) : notRegularFile(file, stats);
}

/** An open regular file and its size. */
export interface OpenedFile {
  handle: fs.promises.FileHandle;
  size: number;
}

/** Opens a regular file for reading; anything else, or a failure, is E_NOT_FOUND naming the path. */
export async function openRegularFile(file: string): Promise<OpenedFile> {
  requirePath(file);
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, READ_FLAGS);
  } catch (error) {
    throw openFailure(file, 'open', error);
  }
  try {
    const stats = await handle.stat();
    requireRegularFile(file, stats);
    return { handle, size: stats.size };
  } catch (error) {
    await handle.close();
    throw fileSystemError(file, 'open', error);
  }
}

/** A regular file's contents as UTF-8 text; anything else, or a failure, is E_NOT_FOUND naming the path. */
export function readRegularTextFile(file: string): string {
  requirePath(file);
  let descriptor: number;
  try {
    descriptor = fs.openSync(file, READ_FLAGS);
  } catch (error) {
    throw openFailure(file, 'read', error);
  }
  try {
    requireRegularFile(file, fs.fstatSync(descriptor));
    return fs.readFileSync(descriptor, 'utf8');
  } catch (error) {
    throw fileSystemError(file, 'read', error);
  } finally {
    fs.closeSync(descriptor);
  }
}

/** Nothing at the path, or part of the path is not a folder: the path names nothing. */
function namesNothing(error: unknown): boolean {
  const code = errnoCode(error);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * What `file` is (following symbolic links), or undefined when nothing is there. Any other failure
 * (a loop of symbolic links, a folder that cannot be searched) is E_NOT_FOUND with its reason,
 * rather than being taken for "absent".
 */
export function statIfPresent(file: string): fs.Stats | undefined {
  requirePath(file);
  try {
    return fs.statSync(file);
  } catch (error) {
    if (namesNothing(error)) return undefined;
    throw fileSystemError(file, 'read', error);
  }
}

function refuseToWrite(file: string, what: string): MoekitError {
  return new MoekitError('E_INVALID_ARGUMENT', `${file}: is ${what}; moekit writes only to a regular file or a new path`);
}

/**
 * Where to write `file` so that only a regular file is ever replaced: `file` itself when nothing is
 * there or it is a regular file; the file a symbolic link leads to when that is a regular file (the
 * link stays and its target gets the new contents, as a shell's `>` writes through a link). A FIFO,
 * a device node, a directory, a socket, or a link to one of those or to nothing, is refused with
 * E_INVALID_ARGUMENT: an atomic writer renames a new file over its target, which would replace
 * /dev/null or a FIFO another program reads from with a regular file.
 */
export function regularWriteTarget(file: string): string {
  let stats: fs.Stats;
  try {
    stats = fs.lstatSync(file);
  } catch (error) {
    if (namesNothing(error)) return file;
    throw fileSystemError(file, 'write', error);
  }
  if (stats.isFile()) return file;
  if (!stats.isSymbolicLink()) throw refuseToWrite(file, fileKind(stats));
  let target: string;
  try {
    target = fs.realpathSync(file);
  } catch (error) {
    throw refuseToWrite(file, `a symbolic link that leads to no file (${errnoCode(error) ?? String(error)})`);
  }
  const targetStats = statIfPresent(target);
  if (targetStats?.isFile()) return target;
  throw refuseToWrite(file, `a symbolic link to ${targetStats ? fileKind(targetStats) : 'nothing'}`);
}
