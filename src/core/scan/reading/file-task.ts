/**
 * One walked file, read and scanned: the unit of work `scanPaths` runs on the main thread and in its
 * worker threads alike. Small files are read synchronously into the thread's reused buffer; most are
 * ruled quiet there, the rest take the scanner's fast path (no copy, no promise); large ones stream.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { CancelledError } from '../../../errors.js';
import { unscannedFinding } from './unscanned.js';
import { OPEN_FLAGS, SMALL_READ } from './read-ahead-shared.js';
import { blockDeviceSizeSync } from '../formats/byte-source.js';
import type { WalkProgress } from './container-walker.js';
import { FileScanner, FULL_SCAN_LIMIT, isQuietText, type FileResult, type Problem, type ScanEnvironment } from '../file-scanner.js';

/** What a thread needs to know about one file of the walk (plain data: it crosses to workers). */
export interface FileTask {
  full: string;
  /** Reported path: relative to the scanned root (a file given directly: its basename). */
  reported: string;
  /** False when no `.sops.yaml` can govern the file: its content fingerprint is not needed. */
  sopsGoverned: boolean;
}

/** A file's result plus the bytes read, or the problem that kept it from being read. */
export interface TaskOutcome {
  result: FileResult;
  bytes: number;
}

/** The result of most files: nothing found, nothing to remember. Shared, never mutated. */
export const NOTHING: FileResult = Object.freeze({ findings: [], problems: [], sopsConfigs: [], files: 1 }) as FileResult;

/** True when a result carries nothing `scanPaths` needs beyond "one clean file". */
export function isNothing(result: FileResult): boolean {
  return result.files === 1 && result.findings.length === 0 && result.problems.length === 0 && result.sopsConfigs.length === 0 && result.unencrypted === undefined && result.gitAttributes === undefined;
}

let readBuffer: Buffer | undefined;

/**
 * What `readSmall` got: `content` (a view of the thread's reused buffer when `borrowed`, valid until
 * the next read) or, for a file over FULL_SCAN_LIMIT, only its size.
 */
interface SmallRead {
  content?: Buffer;
  borrowed: boolean;
  size: number;
}

/**
 * Reads a small file synchronously: for trees of thousands of small files, the thread-pool round
 * trips of async reads cost more than the reads. Opened with O_NOFOLLOW and O_NONBLOCK, so a file
 * swapped for a symlink or a FIFO after the walk is neither followed nor waited on. Most files are
 * read whole by one `read` into a reused buffer: a short read of a regular file is its end, so the
 * file is not stat'ed. Only a read that fills the buffer (a larger file, or a device) or returns
 * nothing (an empty file, or a FIFO) asks fstat what the file is.
 */
function readSmall(file: string): SmallRead {
  const fd = openSync(file, OPEN_FLAGS);
  try {
    readBuffer ??= Buffer.allocUnsafe(SMALL_READ);
    const first = readSync(fd, readBuffer, 0, SMALL_READ, 0);
    if (first > 0 && first < SMALL_READ) return { content: readBuffer.subarray(0, first), borrowed: true, size: first };
    const stats = fstatSync(fd);
    // A stick or one partition (`scan /dev/sdX`): streamed whole like a large file, its size from sysfs.
    if (stats.isBlockDevice()) return { borrowed: false, size: blockDeviceSizeSync(stats.rdev) ?? FULL_SCAN_LIMIT + 1 };
    if (!stats.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EINVAL' });
    if (stats.size > FULL_SCAN_LIMIT) return { borrowed: false, size: stats.size };
    if (first === 0 && stats.size === 0) return { content: readBuffer.subarray(0, 0), borrowed: true, size: 0 };
    const content = Buffer.allocUnsafe(stats.size);
    let filled = readBuffer.copy(content, 0, 0, Math.min(first, stats.size));
    while (filled < stats.size) {
      const read = readSync(fd, content, filled, stats.size - filled, filled);
      if (read === 0) break;
      filled += read;
    }
    return { content: filled === stats.size ? content : content.subarray(0, filled), borrowed: false, size: stats.size };
  } finally {
    closeSync(fd);
  }
}

/** Progress inside one large file (see container-walker's WalkProgress). */
export type InsideProgress = (progress: WalkProgress) => void;

async function streamLarge(task: FileTask, size: number, environment: ScanEnvironment, signal?: AbortSignal, onInside?: InsideProgress): Promise<TaskOutcome> {
  // Loaded on first use: a tree of small files never needs the walker or the archive readers.
  const { scanLargeFileOnThread } = await import('./walk-thread.js');
  const result = await scanLargeFileOnThread(environment, { path: task.reported, size, sopsGoverned: task.sopsGoverned }, task.full, size, signal, onInside);
  return { result, bytes: size };
}

/** The `unscanned` finding (and problem) for a file that could not be read: the gate cannot vouch for it. */
export function unreadableFile(reported: string, error: unknown): FileResult {
  const message = `cannot read: ${(error as Error).message}`;
  const problem: Problem = { path: reported, message };
  return {
    findings: [unscannedFinding({ path: reported }, 'read-error', `${message}; its content could not be checked`)],
    problems: [problem],
    sopsConfigs: [],
    files: 0,
  };
}

/**
 * Reads and scans one file. Synchronous (a plain outcome) for small files that are not containers,
 * a promise otherwise. Read errors become an `unscanned` (read-error) result; only cancellation throws.
 */
export function runTask(task: FileTask, environment: ScanEnvironment, signal?: AbortSignal, onInside?: InsideProgress): TaskOutcome | Promise<TaskOutcome> {
  let small: SmallRead;
  try {
    small = readSmall(task.full);
  } catch (error) {
    return { result: unreadableFile(task.reported, error), bytes: 0 };
  }
  const content = small.content;
  if (content && isQuietText(content, 0, content.length, task.reported, task.sopsGoverned, environment)) return { result: NOTHING, bytes: content.length };
  return scanRead(task, small, environment, signal, onInside);
}

/**
 * Scans a whole small file that another thread read into `content` (shared memory the caller reuses
 * as soon as this returns: the bytes are copied if a container must be unpacked later). The caller
 * has already found it is not quiet (`isQuietText`, where it lies).
 */
export function scanReadAhead(task: FileTask, content: Buffer, environment: ScanEnvironment, signal?: AbortSignal): TaskOutcome | Promise<TaskOutcome> {
  return scanRead(task, { content, borrowed: true, size: content.length }, environment, signal);
}

function scanRead(task: FileTask, small: SmallRead, environment: ScanEnvironment, signal?: AbortSignal, onInside?: InsideProgress): TaskOutcome | Promise<TaskOutcome> {
  let outcome: FileResult | Promise<FileResult> | undefined;
  try {
    if (small.content) {
      const scanner = new FileScanner(environment, { path: task.reported, size: small.size, sopsGoverned: task.sopsGoverned }, signal);
      outcome = small.borrowed ? scanner.scanBorrowed(small.content) : scanner.scanOwned(small.content);
    }
  } catch (error) {
    return { result: unreadableFile(task.reported, error), bytes: 0 };
  }
  const bytes = small.content?.length ?? 0;
  if (outcome && !(outcome instanceof Promise)) return { result: outcome, bytes };
  const pending = outcome ? outcome.then((result) => ({ result, bytes })) : streamLarge(task, small.size, environment, signal, onInside);
  return pending.catch((error: unknown) => {
    if (error instanceof CancelledError) throw error;
    return { result: unreadableFile(task.reported, error), bytes: 0 };
  });
}
