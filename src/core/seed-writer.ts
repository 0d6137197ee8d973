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
import { BlockPool, ioBlocks, directWritesIn, openDirectWriter, openSource, readFullyAt, refusesDirect, DIRECT_ALIGN, type SourceFile } from './copy-io.js';
import type { StreamHasher } from './hash-pool.js';

export { BlockPool } from './copy-io.js';
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
export const READ_AHEAD = 2;

/** Writes kept in flight at once with O_DIRECT: the device always has the next one queued. */
export const DIRECT_WRITES_IN_FLIGHT = 2;

/**
 * The blocks a copy cycles through: the reads ahead, the chunk being hashed and scanned, the chunk
 * held back for the scanner's verdict and the writes in flight (READ_AHEAD + 2 + DIRECT_WRITES_IN_FLIGHT = 6). They are the thread's
 * shared I/O blocks, shared by every copy: one file is read at a time, and the last chunks of the
 * file before it come back as its flush completes.
 */
export function copyPool(): BlockPool {
  return ioBlocks();
}

export interface ReadChunksOptions {
  chunkSize?: number;
  readAhead?: number;
  /**
   * Every chunk is a block of this pool, which the caller gives back (`pool.give`) once done with
   * it; reads wait for free blocks, so the pool bounds the memory. Without a pool each chunk is a
   * fresh buffer the caller may keep.
   */
  pool?: BlockPool;
  /** Read around the page cache (O_DIRECT, pool blocks only) where the filesystem allows. */
  direct?: boolean;
}

/**
 * Reads a file in large chunks with `readAhead` reads always in flight, so the caller's hashing,
 * scanning and writing overlap the next reads.
 */
export async function* readFileChunks(file: string, options: ReadChunksOptions | number = {}): AsyncGenerator<Buffer> {
  const { chunkSize = CHUNK_SIZE, readAhead = READ_AHEAD, pool, direct = false } = typeof options === 'number' ? { chunkSize: options } : options;
  if (pool && pool.blockSize !== chunkSize) throw new Error(`readFileChunks: pool blocks of ${pool.blockSize} bytes for chunks of ${chunkSize}`);
  const probe = direct && pool ? await pool.take() : undefined;
  let source: SourceFile;
  try {
    source = await openSource(file, direct, probe);
  } catch (error) {
    throw sourceReadError(error, file);
  } finally {
    if (probe) pool!.give(probe);
  }
  const queue: Promise<Buffer>[] = [];
  try {
    let next = 0;
    let ended = false;
    const readAt = async (at: number): Promise<Buffer> => {
      const buffer = pool ? await pool.take() : Buffer.allocUnsafeSlow(chunkSize);
      try {
        return buffer.subarray(0, await readFullyAt(source, buffer, at));
      } catch (error) {
        pool?.give(buffer);
        throw sourceReadError(error, file);
      }
    };
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
      if (chunk.length === 0) {
        pool?.give(chunk);
        return;
      }
      fill();
      yield chunk;
      if (ended && chunk.length < chunkSize) return;
    }
  } finally {
    // Reads still queued (the consumer stopped early, or the file ended) hand their blocks back.
    for (const pending of queue.splice(0)) {
      const chunk = await pending.catch(() => undefined);
      if (chunk) pool?.give(chunk);
    }
    await source.handle.close();
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
  /**
   * The pool `chunks` come from (readFileChunks with a pool): each chunk is given back once written
   * (or, in a dry run, hashed and scanned), and chunks of it may be written with O_DIRECT.
   */
  pool?: BlockPool;
  /** Bytes written so far (for progress). */
  onBytes?: (bytes: number) => void;
  /**
   * Called as the file's first `bytes` are on the device (written with O_DIRECT, no page cache in
   * between), with the temporary file's path: a read-back can follow the copy.
   */
  onDevice?: (partialPath: string, bytes: number) => void;
  /** Hash and scan only; nothing is written (used to check whether a file on the media is current). */
  dryRun?: boolean;
  /**
   * Computes the file's sha256 on another thread (HashPool.hasher) instead of this one, which then
   * only reads, scans and writes. A chunk's block is given back once it is hashed and written.
   */
  hasher?: StreamHasher;
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
 * One file being written on the media, with writes kept in flight so the device always has the
 * next one. Pool chunks at block-aligned offsets go through an O_DIRECT handle where the filesystem
 * does that well (see copy-io.ts): straight to the device, no copy into the page cache, no dirty
 * backlog. Everything else (a file's unaligned tail, small files, other filesystems) goes through
 * the ordinary handle, in slices, with writeback started every WRITEBACK_STEP bytes.
 */
class MediaFile {
  private readonly writes = new Set<Promise<void>>();
  private failure: unknown;
  private writeback: Promise<void> | undefined;
  private unflushed = 0;
  /** Writes in the order they were started, until every one before them is done too. */
  private readonly order: { end: number; done: boolean; direct: boolean }[] = [];
  /** Bytes from the start that direct writes put on the device (none written the ordinary way). */
  private onDevice = 0;

  private constructor(
    private readonly plain: FileHandle,
    private direct: FileHandle | undefined,
    private readonly pool: BlockPool | undefined,
    private readonly onDurable: ((bytes: number) => void) | undefined,
  ) {}

  static async create(file: string, pool: BlockPool | undefined, onDurable?: (bytes: number) => void): Promise<MediaFile> {
    const plain = await open(file, 'w', 0o644);
    try {
      const direct = pool && (await directWritesIn(path.dirname(file))) ? await openDirectWriter(file) : undefined;
      return new MediaFile(plain, direct, pool, onDurable);
    } catch (error) {
      await plain.close().catch(() => undefined);
      throw error;
    }
  }

  /**
   * Starts writing `chunk` at `at` once a slot is free; `done` runs when it is written or failed
   * (the chunk's buffer is free from then on). Throws the first write error seen so far.
   */
  async write(chunk: Buffer, at: number, done: () => void): Promise<void> {
    const direct = this.isDirect(chunk, at);
    // Direct writes overlap each other; an ordinary one waits for them (the tail after the blocks).
    const limit = direct ? DIRECT_WRITES_IN_FLIGHT : WRITES_IN_FLIGHT;
    while (this.failure === undefined && this.writes.size >= (direct ? limit : 1)) await Promise.race(this.writes);
    if (this.failure !== undefined) {
      done();
      throw this.failure;
    }
    const record = { end: at + chunk.length, done: false, direct };
    this.order.push(record);
    const pending: Promise<void> = (direct ? this.writeDirect(chunk, at) : this.writePlain(chunk, at).then(() => false)).then(
      (allDirect) => {
        this.writes.delete(pending);
        record.done = true;
        record.direct = allDirect;
        this.advance();
        done();
      },
      (error: unknown) => {
        this.writes.delete(pending);
        this.failure ??= error;
        done();
      },
    );
    this.writes.add(pending);
  }

  private isDirect(chunk: Buffer, at: number): boolean {
    return this.direct !== undefined && this.pool !== undefined && this.pool.owns(chunk) && at % DIRECT_ALIGN === 0 && chunk.length >= DIRECT_ALIGN;
  }

  /**
   * The bytes on the device from the file's start: a prefix of finished direct writes (an ordinary
   * write stops it: its bytes sit in the page cache until the flush). Reported to onDurable, so a
   * read-back can follow the copy.
   */
  private advance(): void {
    const before = this.onDevice;
    while (this.order[0]?.done && this.order[0].direct) this.onDevice = this.order.shift()!.end;
    if (this.onDevice > before) this.onDurable?.(this.onDevice);
  }

  /** Writes the chunk with O_DIRECT; true when all of it went that way. */
  private async writeDirect(chunk: Buffer, at: number): Promise<boolean> {
    const aligned = chunk.length - (chunk.length % DIRECT_ALIGN);
    let written = 0;
    try {
      while (written < aligned) {
        const { bytesWritten } = await this.direct!.write(chunk, written, aligned - written, at + written);
        written += bytesWritten;
        if (bytesWritten === 0 || written % DIRECT_ALIGN !== 0) break; // the rest goes the ordinary way
      }
    } catch (error) {
      // Refused after all (a filesystem that took the open): this file is written the ordinary way.
      if (!refusesDirect(error)) throw error;
      this.direct = undefined;
    }
    if (written === chunk.length) return true;
    await this.writePlain(chunk.subarray(written), at + written);
    return false;
  }

  private async writePlain(chunk: Buffer, at: number): Promise<void> {
    let written = 0;
    while (written < chunk.length) {
      const { bytesWritten } = await this.plain.write(chunk, written, Math.min(WRITE_SLICE, chunk.length - written), at + written);
      written += bytesWritten;
    }
    this.unflushed += chunk.length;
    this.kickWriteback();
  }

  /**
   * Ordinary writes land in the page cache: their writeback is started every WRITEBACK_STEP bytes
   * (fdatasync in the background), so the device works while the rest of the file is read instead
   * of waiting for the flush at the end.
   */
  private kickWriteback(): void {
    if (this.writeback || this.unflushed < WRITEBACK_STEP) return;
    this.unflushed = 0;
    this.writeback = this.plain.datasync().then(
      () => {
        this.writeback = undefined;
      },
      (error: unknown) => {
        this.writeback = undefined;
        this.failure ??= error;
      },
    );
  }

  /** Throws the first write error seen so far, without waiting for writes in flight. */
  throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /** Waits for every write (and a background flush) in flight; throws the first error. */
  async drain(): Promise<void> {
    while (this.writes.size > 0 || this.writeback) await Promise.all([...this.writes, this.writeback]);
    if (this.failure !== undefined) throw this.failure;
  }

  /** Makes the bytes durable (fdatasync covers what either handle wrote) and closes. */
  async flushAndClose(): Promise<void> {
    await this.drain();
    await this.plain.datasync();
    await this.close();
  }

  /** Waits for writes in flight (their errors no longer matter) and closes. */
  async abandon(): Promise<void> {
    await Promise.allSettled([...this.writes, this.writeback]);
    await this.close().catch(() => undefined);
  }

  private async close(): Promise<void> {
    const direct = this.direct;
    this.direct = undefined;
    await Promise.all([this.plain.close(), direct?.close()]);
  }
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
  const hasher = options.hasher;
  /** Chunks the hasher thread may still be reading: their blocks wait for it. */
  const hashing = new Map<Buffer, Promise<void>>();
  const give = (chunk: Buffer) => {
    const pool = options.pool;
    if (!pool) return;
    const pending = hashing.get(chunk);
    if (!pending) return pool.give(chunk);
    hashing.delete(chunk);
    void pending.then(
      () => pool.give(chunk),
      () => pool.give(chunk),
    );
  };
  let media: MediaFile | undefined;
  let size = 0;
  // Each chunk is written only after the next one was scanned: a secret across a chunk boundary
  // is seen before either half is written.
  let held: { chunk: Buffer; at: number } | undefined;
  const discard = async () => {
    if (held) give(held.chunk);
    held = undefined;
    if (!media) return;
    const open = media;
    media = undefined;
    await open.abandon();
    await unlink(partial).catch(() => undefined);
  };
  const write = async (item: { chunk: Buffer; at: number }) => {
    if (!media) {
      options.onBytes?.(item.chunk.length);
      give(item.chunk);
      return;
    }
    await media.write(item.chunk, item.at, () => {
      options.onBytes?.(item.chunk.length);
      give(item.chunk);
    });
  };
  try {
    if (!options.dryRun) {
      await mkdir(path.dirname(options.destination), { recursive: true });
      const onDevice = options.onDevice;
      media = await MediaFile.create(partial, options.pool, onDevice ? (bytes) => onDevice(partial, bytes) : undefined);
    }
    for await (const chunk of options.chunks) {
      try {
        if (options.signal?.aborted) throw new CancelledError('Build cancelled: no manifest was written; run the same build again to finish the seed.');
        if (hasher) {
          const hashed = hasher.update(chunk);
          // Its failure is the digest's (awaited below); the block comes back either way.
          hashed.catch(() => undefined);
          hashing.set(chunk, hashed);
        } else hash.update(chunk);
        gitSha1?.update(chunk);
        options.scanner?.update(chunk);
        if (options.scanner?.blocked?.()) throw new ScannerBlocked(options.displayPath);
      } catch (error) {
        give(chunk);
        throw error;
      }
      const previous = held;
      held = { chunk, at: size };
      size += chunk.length;
      if (previous) await write(previous);
    }
    // The writes still in flight are not waited for: the next file's reads start meanwhile, and
    // commit() waits for them (and reports their errors) before the flush.
    media?.throwIfFailed();
    const sha256 = hasher ? await hasher.digest() : hash.digest('hex');
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
    if (!media && held) {
      // A dry run has nothing to hold back for.
      await write(held);
      held = undefined;
    }
    return {
      size,
      sha256,
      discard,
      // The last chunk is written here, after the caller had the scanner's final verdict.
      commit: async () => {
        if (!media) return;
        try {
          if (held) {
            const last = held;
            held = undefined;
            await write(last);
          }
          await media.flushAndClose();
          media = undefined;
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
