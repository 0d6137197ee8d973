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

/**
 * Reads a whole file in large aligned chunks, calling `onChunk` for each; the chunk is only valid
 * during the call. Two buffers alternate so the next read is in flight while `onChunk` runs.
 */
export async function readThrough(file: string, bypassCache: boolean, onChunk: (chunk: Buffer) => void): Promise<{ size: number; bypass: CacheBypass }> {
  const { handle, bypass } = await openUncached(file, bypassCache);
  const buffers = [alignedBuffer(), alignedBuffer()];
  try {
    let position = 0;
    let index = 0;
    const readInto = (buffer: Buffer, at: number) => handle.read(buffer, 0, buffer.length, at);
    let pending = readInto(buffers[0]!, 0);
    for (;;) {
      const { bytesRead, buffer } = await pending;
      if (bytesRead === 0) break;
      position += bytesRead;
      index ^= 1;
      // A short read ends the file for O_DIRECT (the tail is not a whole block); a zero read does otherwise.
      pending = bytesRead < buffer.length && bypass === 'direct' ? Promise.resolve({ bytesRead: 0, buffer }) : readInto(buffers[index]!, position);
      onChunk(buffer.subarray(0, bytesRead));
    }
    return { size: position, bypass };
  } finally {
    await handle.close();
  }
}
