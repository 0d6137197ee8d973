/** Reading a whole range of a file: one `read` may return less than asked before the end. */
import type { FileHandle } from 'node:fs/promises';

/**
 * Fills `buffer` from `position` of the open file, reading again after short reads; returns the
 * bytes read (fewer than `buffer.length` only at the end of the file). With `alignment` (an O_DIRECT
 * handle), a short read that ends off that grid stops the loop: only the end of the file does that,
 * and an unaligned read after it would be refused.
 */
export async function readFully(handle: FileHandle, buffer: Buffer, position: number, alignment?: number): Promise<number> {
  let filled = 0;
  while (filled < buffer.length) {
    const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
    if (alignment !== undefined && filled % alignment !== 0) break;
  }
  return filled;
}
