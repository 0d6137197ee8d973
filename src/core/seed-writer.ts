/**
 * Writing payload files onto the seed: every source byte is read once, hashed (and leak-scanned)
 * and written in the same pass. Files appear under a temporary name and are renamed only once
 * complete and flushed, so an interrupted build never leaves a file that looks complete.
 */
import { createHash, type Hash } from 'node:crypto';
import { open, rename, unlink, mkdir, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { PARTIAL_SUFFIX } from './manifest.js';
import { CancelledError, UsageError } from '../errors.js';
import type { ContentScanner } from './types.js';

/** Reads of this size keep sha256 near its peak speed and syscalls few. */
export const CHUNK_SIZE = 4 * 1024 * 1024;

/** Files up to this size are read, hashed and scanned in memory before a byte reaches the media. */
export const PRESCAN_LIMIT = 16 * 1024 * 1024;

export type ExpectedDigest = { algorithm: 'sha256' | 'git-sha1'; hex: string };

/**
 * Reads a file in large chunks with one read always in flight, so the caller's hashing overlaps
 * the next read. Each yielded buffer is fresh (the caller may still be writing the previous one).
 */
export async function* readFileChunks(file: string, chunkSize = CHUNK_SIZE): AsyncGenerator<Buffer> {
  const handle = await open(file, 'r');
  try {
    let position = 0;
    const readAt = async (at: number): Promise<Buffer> => {
      const buffer = Buffer.allocUnsafeSlow(chunkSize);
      let filled = 0;
      while (filled < chunkSize) {
        const { bytesRead } = await handle.read(buffer, filled, chunkSize - filled, at + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      return buffer.subarray(0, filled);
    };
    let pending = readAt(position);
    for (;;) {
      const chunk = await pending;
      if (chunk.length === 0) return;
      position += chunk.length;
      pending = chunk.length < chunkSize ? Promise.resolve(Buffer.alloc(0)) : readAt(position);
      yield chunk;
    }
  } finally {
    await handle.close();
  }
}

/** Coalesces a stream of small chunks (gzip emits 16 KiB) into chunks of at least `minimum` bytes. */
export async function* coalesce(source: AsyncIterable<Buffer | Uint8Array>, minimum = 1024 * 1024): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let size = 0;
  for await (const piece of source) {
    const buffer = Buffer.isBuffer(piece) ? piece : Buffer.from(piece);
    parts.push(buffer);
    size += buffer.length;
    if (size >= minimum) {
      yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
      parts = [];
      size = 0;
    }
  }
  if (size > 0) yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
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

class DigestCheck {
  private readonly hash: Hash;
  constructor(
    readonly expected: ExpectedDigest,
    size: number | undefined,
  ) {
    if (expected.algorithm === 'git-sha1') {
      if (size === undefined) throw new Error('git-sha1 digest needs the expected size');
      this.hash = createHash('sha1').update(`blob ${size}\0`);
    } else {
      this.hash = createHash('sha256');
    }
  }
  update(chunk: Buffer): void {
    this.hash.update(chunk);
  }
  matches(sha256: string): boolean {
    const actual = this.expected.algorithm === 'sha256' ? sha256 : this.hash.digest('hex');
    return actual === this.expected.hex.toLowerCase();
  }
}

/**
 * Hashes, scans and writes one file. Writes go to a temporary name next to the destination
 * and are flushed (fdatasync) before the rename. On any error the temporary file is removed.
 */
export async function writeSeedFile(options: WriteSeedFileOptions): Promise<DigestResult> {
  const hash = createHash('sha256');
  const digestCheck = options.expected ? new DigestCheck(options.expected, options.expectedSize) : undefined;
  const partial = partialPathFor(options.destination);
  let handle: FileHandle | undefined;
  let size = 0;
  let pendingWrite: Promise<void> = Promise.resolve();
  try {
    if (!options.dryRun) {
      await mkdir(path.dirname(options.destination), { recursive: true });
      handle = await open(partial, 'w', 0o644);
    }
    for await (const chunk of options.chunks) {
      if (options.signal?.aborted) throw new CancelledError('Build cancelled; the partial file was removed.');
      hash.update(chunk);
      digestCheck?.update(chunk);
      options.scanner?.update(chunk);
      const at = size;
      size += chunk.length;
      if (handle) {
        // One write in flight: it overlaps the hashing of the next chunk and the read after it.
        await pendingWrite;
        const target = handle;
        pendingWrite = writeFully(target, chunk, at).then(() => options.onBytes?.(chunk.length));
      } else {
        options.onBytes?.(chunk.length);
      }
    }
    await pendingWrite;
    const sha256 = hash.digest('hex');
    if (options.expectedSize !== undefined && size !== options.expectedSize) {
      throw new UsageError(`${options.displayPath} changed while being copied: expected ${options.expectedSize} bytes, read ${size}. Rerun the build.`);
    }
    if (digestCheck && !digestCheck.matches(sha256)) {
      throw new UsageError(
        `${options.displayPath}: the bytes do not match the digest the Hugging Face cache names them by; the cached blob is corrupt. Delete it and download the model again.`,
        [`expected ${digestCheck.expected.algorithm} ${digestCheck.expected.hex}`],
      );
    }
    if (handle) {
      await handle.datasync();
      await handle.close();
      handle = undefined;
      await rename(partial, options.destination);
    }
    return { size, sha256 };
  } catch (error) {
    await pendingWrite.catch(() => undefined);
    if (handle) {
      await handle.close().catch(() => undefined);
      await unlink(partial).catch(() => undefined);
    }
    throw error;
  }
}

async function writeFully(handle: FileHandle, chunk: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, written, chunk.length - written, position + written);
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
  const handle = await open(partial, 'w', 0o644);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(partial, destination);
  await syncDirectory(path.dirname(destination));
}

export async function removeQuietly(file: string): Promise<void> {
  await unlink(file).catch(() => undefined);
}
