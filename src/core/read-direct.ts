/**
 * Reading what is really on the device. Linux O_DIRECT bypasses the page cache, so a stick that
 * lost writes cannot pass on cached data. O_DIRECT needs page-aligned buffers, which Node's Buffer
 * does not promise; WebAssembly memory is page-aligned, so the read buffer lives there.
 * Where O_DIRECT is refused (tmpfs, some FUSE filesystems), the file's cached pages are dropped
 * first with `dd iflag=nocache count=0` (posix_fadvise DONTNEED) when possible.
 * On memory-backed filesystems (tmpfs, ramfs) the page cache is the storage: recent kernels accept
 * O_DIRECT there, but nothing is bypassed, so those reads are reported as cached.
 */
import { constants } from 'node:fs';
import { open, statfs, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { ioBlocks } from './copy-io.js';

// Node's types leave out the WebAssembly global; only Memory is needed here.
declare const WebAssembly: { Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer } };

export type CacheBypass = 'direct' | 'dropped' | 'cached';

export const DIRECT_CHUNK = 4 * 1024 * 1024;

export function alignedBuffer(size = DIRECT_CHUNK): Buffer {
  const memory = new WebAssembly.Memory({ initial: Math.ceil(size / 65536) });
  return Buffer.from(memory.buffer, 0, size);
}

async function dropCache(file: string): Promise<boolean> {
  // dd with count=0 and iflag=nocache only advises the kernel to drop the file's clean pages.
  // The subprocess library is loaded here, where it is needed: a hashing worker starts without it.
  const { run } = await import('../util/run.js');
  const result = await run('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none'], { cwd: path.dirname(file), timeout: 30_000, reject: false }).catch(() => undefined);
  return result?.exitCode === 0;
}

export interface OpenedForVerify {
  handle: FileHandle;
  bypass: CacheBypass;
}

/** statfs magic numbers of filesystems whose pages are the data itself. */
const MEMORY_FILESYSTEMS = new Set([0x01021994 /* tmpfs */, 0x858458f6 /* ramfs */]);

async function inMemoryFilesystem(file: string): Promise<boolean> {
  try {
    return MEMORY_FILESYSTEMS.has((await statfs(file)).type);
  } catch {
    return false;
  }
}

const openPlain = (file: string) => open(file, constants.O_RDONLY | constants.O_NOFOLLOW);

/** The fallback when O_DIRECT is refused: drop the file's clean cached pages, then read normally. */
async function openDropped(file: string): Promise<OpenedForVerify> {
  const dropped = await dropCache(file);
  return { handle: await openPlain(file), bypass: dropped ? 'dropped' : 'cached' };
}

/**
 * Opens a file for reading, bypassing the page cache where the platform allows. Never follows a
 * symlink (O_NOFOLLOW): a link fails with ELOOP.
 */
export async function openUncached(file: string, bypassCache: boolean): Promise<OpenedForVerify> {
  if (!bypassCache || process.platform !== 'linux' || !constants.O_DIRECT) return { handle: await openPlain(file), bypass: 'cached' };
  if (await inMemoryFilesystem(file)) return { handle: await openPlain(file), bypass: 'cached' };
  try {
    return { handle: await open(file, constants.O_RDONLY | constants.O_DIRECT | constants.O_NOFOLLOW), bypass: 'direct' };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EOPNOTSUPP') throw error;
  }
  return openDropped(file);
}

/** Chunk size and reads in flight for verify: a few reads queued keep a USB stick's queue busy. */
export const VERIFY_CHUNK = 2 * 1024 * 1024;
export const VERIFY_DEPTH = 4;

/**
 * Reads in flight behind a writer (readFollowing): the data was just written, so these only need
 * to keep up with the copy, and a read-back running beside another one's tail takes one block.
 */
export const FOLLOW_DEPTH = 2;

/**
 * The read ring: `depth` aligned chunks, cut from this thread's shared I/O blocks (the copy's blocks
 * in a build), so that reading file after file allocates nothing and a build's read-back reuses
 * the memory its copy used. Fresh per-file buffers were garbage outside the V8 heap that a verify
 * of many files held tens of MB of.
 */
async function takeRing(chunkSize: number, depth: number): Promise<{ slots: Buffer[]; release: () => void }> {
  const pool = ioBlocks();
  if (pool.blockSize % chunkSize !== 0) {
    const whole = alignedBuffer(chunkSize * depth);
    return { slots: Array.from({ length: depth }, (_, slot) => whole.subarray(slot * chunkSize, (slot + 1) * chunkSize)), release: () => undefined };
  }
  const perBlock = pool.blockSize / chunkSize;
  const blocks = await Promise.all(Array.from({ length: Math.ceil(depth / perBlock) }, () => pool.take()));
  const slots = blocks.flatMap((block) => Array.from({ length: perBlock }, (_, slot) => block.subarray(slot * chunkSize, (slot + 1) * chunkSize))).slice(0, depth);
  return { slots, release: () => blocks.forEach((block) => pool.give(block)) };
}

/**
 * Takes each chunk read; the chunk is only valid during the call, or, when the call returns a
 * promise, until that settles (a rejection fails the read).
 */
export type ChunkSink = (chunk: Buffer) => void | Promise<void>;

/**
 * Reads a whole file in large aligned chunks, calling `onChunk` for each in order (see ChunkSink).
 * `depth` reads are in flight while `onChunk` runs.
 */
export async function readThrough(
  file: string,
  bypassCache: boolean,
  onChunk: ChunkSink,
  chunkSize = VERIFY_CHUNK,
  depth = VERIFY_DEPTH,
  sizeHint?: number,
): Promise<{ size: number; bypass: CacheBypass }> {
  // A file known to be small reads through no more slots than it has chunks (a few read back
  // at once must not touch more blocks than they need); a wrong hint costs speed, not bytes.
  if (sizeHint !== undefined) depth = Math.max(1, Math.min(depth, Math.ceil(sizeHint / chunkSize)));
  const ring = await takeRing(chunkSize, depth);
  try {
    return await readRing(file, bypassCache, onChunk, chunkSize, depth, ring.slots);
  } finally {
    ring.release();
  }
}

/**
 * Opens `file` as verify reads it: O_DIRECT where the filesystem takes it, tried with a first read
 * into `probe` (some filesystems, FUSE or network, accept O_DIRECT at open and refuse it at the
 * first read); otherwise the cached pages are dropped and the file read normally.
 */
async function openForRead(file: string, bypassCache: boolean, probe: Buffer): Promise<OpenedForVerify> {
  let { handle, bypass } = await openUncached(file, bypassCache);
  if (bypass === 'direct') {
    const refused = await handle.read(probe, 0, 4096, 0).then(
      () => false,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'EINVAL' || error.code === 'EOPNOTSUPP') return true;
        throw error;
      },
    ).catch(async (error: unknown) => {
      await handle.close();
      throw error;
    });
    if (refused) {
      await handle.close();
      ({ handle, bypass } = await openDropped(file));
    }
  }
  return { handle, bypass };
}

async function readRing(file: string, bypassCache: boolean, onChunk: ChunkSink, chunkSize: number, depth: number, buffers: Buffer[]): Promise<{ size: number; bypass: CacheBypass }> {
  const { handle, bypass } = await openForRead(file, bypassCache, buffers[0]!.subarray(0, 4096));
  try {
    const { size: fileSize } = await handle.stat();
    const readAt = (slot: number, position: number) =>
      position >= fileSize ? Promise.resolve(0) : handle.read(buffers[slot]!, 0, chunkSize, position).then((result) => result.bytesRead);
    const pending: Promise<number>[] = buffers.map((_, slot) => readAt(slot, slot * chunkSize));
    // A read that fails while an earlier one is awaited must not surface as an unhandled rejection.
    for (const read of pending) read.catch(() => undefined);
    let position = 0;
    for (let index = 0; ; index += 1) {
      const slot = index % depth;
      const bytesRead = await pending[slot]!;
      if (bytesRead === 0) break;
      const used = onChunk(buffers[slot]!.subarray(0, bytesRead));
      position += bytesRead;
      // The file may have grown or shrunk since stat: a short read that is not at the end is
      // followed by reads of what remains, in order.
      if (bytesRead < chunkSize) {
        await used;
        for (let rest = 1; rest < depth; rest += 1) await pending[(slot + rest) % depth]!.catch(() => 0);
        position = await readRest(handle, buffers[slot]!, position, onChunk);
        break;
      }
      // A sink still using the chunk (another thread hashing it) gets its slot back before the
      // next read lands there; the other slots' reads go on meanwhile.
      const next = (index + depth) * chunkSize;
      pending[slot] = used ? used.then(() => readAt(slot, next)) : readAt(slot, next);
      pending[slot]!.catch(() => undefined);
    }
    return { size: position, bypass };
  } finally {
    // FileHandle.close waits for reads still in flight after an error: the ring is free after it.
    await handle.close();
  }
}

/** Reads from `position` to the end, one read at a time; returns the end. */
async function readRest(handle: FileHandle, buffer: Buffer, position: number, onChunk: ChunkSink): Promise<number> {
  for (;;) {
    const more = await handle.read(buffer, 0, buffer.length, position).then((result) => result.bytesRead);
    if (more === 0) return position;
    await onChunk(buffer.subarray(0, more));
    position += more;
  }
}

/**
 * A file still being written, read back behind its writer: `written` bytes from its start are on
 * the device already (written with O_DIRECT, so past any page cache), and `finalSize` is set once
 * the writer flushed it and renamed it into place. `path` is where to open it now.
 */
export interface FollowedFile {
  readonly path: string | undefined;
  readonly written: number;
  readonly finalSize: number | undefined;
  /** Set when the writer gave up on the file: the reader stops at its next chunk. */
  readonly aborted?: Error;
  /** Resolves when `written` or `finalSize` changes (or at once when final). */
  changed(): Promise<void>;
}

/**
 * Opens a followed file where it is now: under its temporary name while it is written, or, when
 * that name is gone (renamed into place meanwhile), under its final name once the writer says so.
 */
async function openFollowed(file: FollowedFile, bypassCache: boolean, probe: Buffer): Promise<OpenedForVerify> {
  const final = file.finalSize !== undefined;
  try {
    return await openForRead(file.path!, bypassCache, probe);
  } catch (error) {
    if (final || (error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  while (file.finalSize === undefined) await file.changed();
  return openForRead(file.path!, bypassCache, probe);
}

/**
 * readThrough of a file while it is written: each chunk is read (past the page cache, as verify
 * reads) as soon as the writer has it on the device, so reading back a large file overlaps its
 * copy instead of following it. Bytes the writer did not report on the device (an unaligned tail,
 * a file written through the page cache) are read only once the file is final (flushed, renamed).
 */
export async function readFollowing(
  file: FollowedFile,
  bypassCache: boolean,
  onChunk: (chunk: Buffer) => void,
  chunkSize = VERIFY_CHUNK,
  depth = FOLLOW_DEPTH,
): Promise<{ size: number; bypass: CacheBypass }> {
  while (file.path === undefined || (file.finalSize === undefined && file.written < chunkSize)) await file.changed();
  const ring = await takeRing(chunkSize, depth);
  try {
    const buffers = ring.slots;
    const { handle, bypass } = await openFollowed(file, bypassCache, buffers[0]!.subarray(0, 4096));
    try {
      const queue: { slot: number; read: Promise<number> }[] = [];
      let issued = 0;
      let slots = 0;
      let position = 0;
      for (;;) {
        if (file.aborted) throw file.aborted;
        // A read is issued once its whole chunk is on the device, or once the file is final.
        while (queue.length < depth && (file.finalSize === undefined ? file.written >= issued + chunkSize : issued < file.finalSize)) {
          const slot = slots % depth;
          slots += 1;
          const read = handle.read(buffers[slot]!, 0, chunkSize, issued).then((result) => result.bytesRead);
          read.catch(() => undefined);
          queue.push({ slot, read });
          issued += chunkSize;
        }
        const next = queue.shift();
        if (!next) {
          if (file.finalSize !== undefined) break;
          await file.changed();
          continue;
        }
        const bytesRead = await next.read;
        if (bytesRead > 0) onChunk(buffers[next.slot]!.subarray(0, bytesRead));
        position += bytesRead;
        if (bytesRead < chunkSize) {
          // The end (or a file that changed under us): once final, what remains is read in order.
          for (const rest of queue.splice(0)) await rest.read.catch(() => 0);
          while (file.finalSize === undefined) await file.changed();
          position = await readRest(handle, buffers[next.slot]!, position, onChunk);
          break;
        }
      }
      return { size: position, bypass };
    } finally {
      await handle.close();
    }
  } finally {
    ring.release();
  }
}
