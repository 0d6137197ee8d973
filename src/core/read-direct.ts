/**
 * Reading what is really on the device. Linux O_DIRECT bypasses the page cache, so a stick that
 * lost writes cannot pass on cached data. O_DIRECT needs page-aligned buffers, which Node's Buffer
 * does not promise; WebAssembly memory is page-aligned, so the read buffer lives there.
 * Where O_DIRECT is refused (tmpfs, some FUSE filesystems), the file's cached pages are dropped
 * first with `dd iflag=nocache count=0` (posix_fadvise DONTNEED) when possible.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { execFile } from 'node:child_process';

// Node's types leave out the WebAssembly global; only Memory is needed here.
declare const WebAssembly: { Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer } };

export type CacheBypass = 'direct' | 'dropped' | 'cached';

export const DIRECT_CHUNK = 4 * 1024 * 1024;

export function alignedBuffer(size = DIRECT_CHUNK): Buffer {
  const memory = new WebAssembly.Memory({ initial: Math.ceil(size / 65536) });
  return Buffer.from(memory.buffer, 0, size);
}

function dropCache(file: string): Promise<boolean> {
  // dd with count=0 and iflag=nocache only advises the kernel to drop the file's clean pages.
  return new Promise((resolve) => {
    execFile('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none'], { timeout: 30_000 }, (error) => resolve(!error));
  });
}

export interface OpenedForVerify {
  handle: FileHandle;
  bypass: CacheBypass;
}

/** Opens a file for reading, bypassing the page cache where the platform allows. */
export async function openUncached(file: string, bypassCache: boolean): Promise<OpenedForVerify> {
  if (bypassCache && process.platform === 'linux' && constants.O_DIRECT) {
    try {
      return { handle: await open(file, constants.O_RDONLY | constants.O_DIRECT | constants.O_NOFOLLOW), bypass: 'direct' };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EINVAL' && code !== 'EOPNOTSUPP') throw error;
    }
    const dropped = await dropCache(file);
    return { handle: await open(file, constants.O_RDONLY | constants.O_NOFOLLOW), bypass: dropped ? 'dropped' : 'cached' };
  }
  return { handle: await open(file, constants.O_RDONLY | constants.O_NOFOLLOW), bypass: 'cached' };
}

/** Chunk size and reads in flight for verify: a few reads queued keep a USB stick's queue busy. */
export const VERIFY_CHUNK = 2 * 1024 * 1024;
export const VERIFY_DEPTH = 4;

/**
 * Reads a whole file in large aligned chunks, calling `onChunk` for each in order; the chunk is
 * only valid during the call. `depth` reads are in flight while `onChunk` runs.
 */
export async function readThrough(
  file: string,
  bypassCache: boolean,
  onChunk: (chunk: Buffer) => void,
  chunkSize = VERIFY_CHUNK,
  depth = VERIFY_DEPTH,
): Promise<{ size: number; bypass: CacheBypass }> {
  const { handle, bypass } = await openUncached(file, bypassCache);
  try {
    const { size: fileSize } = await handle.stat();
    const buffers = Array.from({ length: depth }, () => alignedBuffer(chunkSize));
    const readAt = (slot: number, position: number) =>
      position >= fileSize ? Promise.resolve(0) : handle.read(buffers[slot]!, 0, chunkSize, position).then((result) => result.bytesRead);
    const pending: Promise<number>[] = buffers.map((_, slot) => readAt(slot, slot * chunkSize));
    let position = 0;
    for (let index = 0; ; index += 1) {
      const slot = index % depth;
      const bytesRead = await pending[slot]!;
      if (bytesRead === 0) break;
      onChunk(buffers[slot]!.subarray(0, bytesRead));
      position += bytesRead;
      // The file may have grown or shrunk since stat: a short read that is not at the end is
      // followed by reads of what remains, in order.
      if (bytesRead < chunkSize) {
        for (let rest = 1; rest < depth; rest += 1) await pending[(slot + rest) % depth];
        for (;;) {
          const more = await handle.read(buffers[slot]!, 0, chunkSize, position).then((result) => result.bytesRead);
          if (more === 0) break;
          onChunk(buffers[slot]!.subarray(0, more));
          position += more;
        }
        break;
      }
      pending[slot] = readAt(slot, (index + depth) * chunkSize);
    }
    return { size: position, bypass };
  } finally {
    await handle.close();
  }
}
