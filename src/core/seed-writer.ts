/**
 * Writing payload files onto the seed: every source byte is read once, hashed (and leak-scanned)
 * and written in the same pass. Files appear under a temporary name and are renamed only once
 * complete and flushed, so an interrupted build never leaves a file that looks complete.
 */
import { createHash } from 'node:crypto';
import { open, rename, unlink, mkdir, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { PARTIAL_SUFFIX } from './manifest.js';
import { CancelledError, isSeedError, UsageError, VerificationError } from '../errors.js';
import { readFully } from '../util/read-fully.js';
import { createExpectedDigestHasher } from './hf-cache.js';
import type { ContentScanner } from './types.js';

/** Reads of this size keep sha256 near its peak speed and syscalls few. */
export const CHUNK_SIZE = 4 * 1024 * 1024;

/** Writes kept in flight at once (each a chunk): they overlap the hashing and scanning of the next. */
export const WRITES_IN_FLIGHT = 1;

/**
 * A chunk is written in slices of this size. Measured on a loop-mounted ext4 (2 cores, Linux 6.18):
 * 4 MiB writes copied 1 GiB in ~10 s, 512 KiB writes in ~4 s, `cp` (128 KiB writes) in ~3-4 s; huge
 * writes hold the inode lock through long dirty-page throttling pauses.
 */
export const WRITE_SLICE = 512 * 1024;

/** A large file's writeback is started every this many bytes, so the device never sits idle. */
export const WRITEBACK_STEP = Number(process.env.DUBNIUM_WRITEBACK_STEP ?? 256 * 1024 * 1024);

/** Files up to this size are read, hashed and scanned in memory before a byte reaches the media. */
export const PRESCAN_LIMIT = 16 * 1024 * 1024;

export type { ExpectedDigest } from './hf-cache.js';
import type { ExpectedDigest } from './hf-cache.js';

/** Reads kept in flight ahead of the consumer: the source disk stays busy while a chunk is hashed. */
export const READ_AHEAD = 3;

/**
 * Reads a file in large chunks with `READ_AHEAD` reads always in flight, so the caller's hashing,
 * scanning and writing overlap the next reads. Each yielded buffer is fresh (the caller may still
 * be writing an earlier one). Memory: at most `READ_AHEAD` chunks are buffered here.
 */
export async function* readFileChunks(file: string, chunkSize = CHUNK_SIZE, readAhead = READ_AHEAD): AsyncGenerator<Buffer> {
  const handle = await open(file, 'r').catch((error: unknown) => {
    throw sourceReadError(error, file);
  });
  try {
    let next = 0;
    let ended = false;
    const readAt = async (at: number): Promise<Buffer> => {
      const buffer = Buffer.allocUnsafeSlow(chunkSize);
      try {
        return buffer.subarray(0, await readFully(handle, buffer, at));
      } catch (error) {
        throw sourceReadError(error, file);
      }
    };
    const queue: Promise<Buffer>[] = [];
    const fill = () => {
      while (!ended && queue.length < readAhead) {
        const pending = readAt(next);
        // A read ahead may fail while the consumer stops early (a write error): never unhandled.
        pending.catch(() => undefined);
        queue.push(pending);
        next += chunkSize;
      }
    };
    fill();
    while (queue.length > 0) {
      const chunk = await queue.shift()!;
      // A short read is the end of the file; reads queued behind it return nothing.
      if (chunk.length < chunkSize) ended = true;
      if (chunk.length === 0) return;
      fill();
      yield chunk;
      if (ended && chunk.length < chunkSize) return;
    }
  } finally {
    await handle.close();
  }
}

/** errno codes of a stick that failed, or went away, under a write or flush. */
const MEDIA_FAILURE = new Set(['EIO', 'EROFS', 'ENODEV', 'ENXIO', 'ESHUTDOWN', 'ENOTCONN', 'EUCLEAN', 'EBADMSG']);

function errnoOf(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * A read of an input file (a model shard, the source archive, the installer image) failed: the
 * operator's own disk, exit 2. Typed errors pass through unchanged.
 */
export function sourceReadError(error: unknown, file: string): unknown {
  if (isSeedError(error) || !errnoOf(error)) return error;
  const code = errnoOf(error)!;
  return new UsageError(
    `Could not read ${file}: ${code === 'EIO' ? 'the disk holding it reported an I/O error (EIO)' : (error as Error).message}. Check that disk (or copy the file again from elsewhere), then run the same build again.`,
    [],
    { cause: error },
  );
}

/**
 * A write, flush or rename on the seed media failed. No space: exit 2 (free space, or a larger
 * stick). A failing or vanished stick (EIO, read-only after an error, device gone): exit 3. Other
 * errors and typed errors pass through unchanged. `displayPath` is the file relative to the seed.
 */
export function mediaWriteError(error: unknown, displayPath?: string): unknown {
  if (isSeedError(error)) return error;
  const code = errnoOf(error);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new UsageError(
      `No space left on the seed${displayPath ? ` while writing ${displayPath}` : ''}: something else filled it after the free-space check. Free space on it (or use a larger stick), then run the same build again; finished files are kept.`,
      [],
      { cause: error },
    );
  }
  if (code && MEDIA_FAILURE.has(code)) {
    const what = code === 'EROFS' ? 'the seed filesystem turned read-only after an I/O error' : code === 'EIO' ? 'the stick reported an I/O error (EIO)' : `the stick is gone (${code})`;
    return new VerificationError(
      `Could not write ${displayPath ? `${displayPath} ` : ''}to the seed: ${what}. The seed is incomplete (no manifest); replug the stick, or use another one, and run the same build again.`,
      [],
      { cause: error },
    );
  }
  return error;
}

export function partialPathFor(finalPath: string): string {
  return path.join(path.dirname(finalPath), `.${path.basename(finalPath)}${PARTIAL_SUFFIX}`);
}

export interface DigestResult {
  size: number;
  sha256: string;
}

export interface WriteSeedFileOptions {
  /** Absolute destination path on the seed. */
  destination: string;
  /** Path shown in messages (relative to the seed root). */
  displayPath: string;
  chunks: AsyncIterable<Buffer>;
  /** When known, the size the file must have; also needed for git-sha1 digests. */
  expectedSize?: number;
  /** Digest the source promises (Hugging Face blob name); checked in the same pass. */
  expected?: ExpectedDigest;
  /** Leak scanner fed every chunk before it is written. */
  scanner?: ContentScanner;
  /** Bytes written so far (for progress). */
  onBytes?: (bytes: number) => void;
  /** Hash and scan only; nothing is written (used to check whether a file on the media is current). */
  dryRun?: boolean;
  signal?: AbortSignal;
}

/** Thrown when the scanner flags the bytes fed so far; nothing of the flagged chunk was written. */
export class ScannerBlocked extends Error {
  constructor(readonly displayPath: string) {
    super(`the leak gate stopped writing ${displayPath}`);
  }
}

/** A file whose bytes are written but not yet flushed and renamed into place. */
export interface WrittenFile extends DigestResult {
  /** Flushes (fdatasync), closes and renames to the final name. */
  commit(): Promise<void>;
  /** Closes and removes the temporary file (a leak was found after the last byte). */
  discard(): Promise<void>;
}

/**
 * Hashes, scans and writes one file under a temporary name. The caller commits it (flush, then
 * rename) once the scanner's verdict is in; the flush may run while the next file is copied, so
 * a file's flush overlaps the next file's reads. On any error the temporary file is removed.
 */
export async function writeSeedFile(options: WriteSeedFileOptions): Promise<WrittenFile> {
  const hash = createHash('sha256');
  // A blob named by its sha256 is checked against the main hash; git-sha1 needs a hash of its own.
  const gitSha1 = options.expected?.algorithm === 'git-sha1' ? createExpectedDigestHasher(options.expected, options.expectedSize ?? -1) : undefined;
  const partial = partialPathFor(options.destination);
  let handle: FileHandle | undefined;
  let size = 0;
  let pendingWrite: Promise<void> = Promise.resolve();
  const discard = async () => {
    await pendingWrite.catch(() => undefined);
    if (!handle) return;
    const open = handle;
    handle = undefined;
    await open.close().catch(() => undefined);
    await unlink(partial).catch(() => undefined);
  };
  try {
    if (!options.dryRun) {
      await mkdir(path.dirname(options.destination), { recursive: true });
      handle = await open(partial, 'w', 0o644);
    }
    // Each chunk is written only after the next one was scanned: a secret across a chunk boundary
    // is seen before either half is written.
    let held: { chunk: Buffer; at: number } | undefined;
    // Up to WRITES_IN_FLIGHT writes overlap the hashing and scanning of the next chunks.
    const writes = new Set<Promise<void>>();
    let writeFailure: unknown;
    // Writeback starts early (fdatasync every WRITEBACK_STEP bytes, in the background): the device
    // works while the rest of the file is read, instead of waiting for the flush at the end.
    let writeback: Promise<void> | undefined;
    let unflushed = 0;
    const kickWriteback = () => {
      if (writeback || !handle || unflushed < WRITEBACK_STEP) return;
      unflushed = 0;
      const target = handle;
      writeback = target.datasync().then(
        () => {
          writeback = undefined;
        },
        (error: unknown) => {
          writeback = undefined;
          writeFailure ??= error;
        },
      );
    };
    const drainWrites = async () => {
      await Promise.all([...writes]);
      await writeback;
      if (writeFailure) throw writeFailure;
    };
    const write = async (item: { chunk: Buffer; at: number }) => {
      if (!handle) {
        options.onBytes?.(item.chunk.length);
        return;
      }
      if (writeFailure) throw writeFailure;
      while (writes.size >= WRITES_IN_FLIGHT) await Promise.race(writes);
      if (writeFailure) throw writeFailure;
      const target = handle;
      const pending: Promise<void> = writeFully(target, item.chunk, item.at).then(
        () => {
          writes.delete(pending);
          unflushed += item.chunk.length;
          options.onBytes?.(item.chunk.length);
          kickWriteback();
        },
        (error: unknown) => {
          writes.delete(pending);
          writeFailure ??= error;
        },
      );
      writes.add(pending);
      pendingWrite = drainWrites().catch(() => undefined);
    };
    for await (const chunk of options.chunks) {
      if (options.signal?.aborted) throw new CancelledError('Build cancelled: no manifest was written; run the same build again to finish the seed.');
      hash.update(chunk);
      gitSha1?.update(chunk);
      options.scanner?.update(chunk);
      if (options.scanner?.blocked?.()) throw new ScannerBlocked(options.displayPath);
      if (held) await write(held);
      held = { chunk, at: size };
      size += chunk.length;
    }
    await drainWrites();
    const sha256 = hash.digest('hex');
    if (options.expectedSize !== undefined && size !== options.expectedSize) {
      throw new UsageError(`${options.displayPath} changed while being copied: expected ${options.expectedSize} bytes, read ${size}. Rerun the build.`);
    }
    const expected = options.expected;
    if (expected && !(expected.algorithm === 'sha256' ? sha256 === expected.hex.toLowerCase() : gitSha1!.check().ok)) {
      throw new UsageError(
        `${options.displayPath}: the bytes do not match the digest the Hugging Face cache names them by; the cached blob is corrupt. Delete it and download the model again.`,
        [`expected ${expected.algorithm} ${expected.hex}`],
      );
    }
    return {
      size,
      sha256,
      discard,
      // The last chunk is written here, after the caller had the scanner's final verdict.
      commit: async () => {
        if (!handle) return;
        try {
          if (held) {
            const last = held;
            held = undefined;
            await write(last);
          }
          await drainWrites();
          await handle.datasync();
          await handle.close();
          handle = undefined;
          await rename(partial, options.destination);
        } catch (error) {
          await discard();
          throw mediaWriteError(error, options.displayPath);
        }
      },
    };
  } catch (error) {
    await discard();
    throw mediaWriteError(error, options.displayPath);
  }
}

async function writeFully(handle: FileHandle, chunk: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, written, Math.min(WRITE_SLICE, chunk.length - written), position + written);
    written += bytesWritten;
  }
}

/** Flushes a folder's entries (renames) to the device. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes a small text file atomically: temp name, fsync, rename, fsync of the folder. */
export async function writeAtomic(destination: string, content: string | Buffer): Promise<void> {
  const partial = partialPathFor(destination);
  let renamed = false;
  try {
    const handle = await open(partial, 'w', 0o644);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(partial, destination);
    renamed = true;
    await syncDirectory(path.dirname(destination));
  } catch (error) {
    // A manifest whose folder entry could not be flushed must not stay: it would vouch for a seed
    // on a stick that is failing.
    await unlink(renamed ? destination : partial).catch(() => undefined);
    throw mediaWriteError(error, path.basename(destination));
  }
}

export async function removeQuietly(file: string): Promise<void> {
  await unlink(file).catch(() => undefined);
}
