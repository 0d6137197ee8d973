/**
 * ByteSources: random access to a file or block device (pread on one descriptor), to a region of
 * another source (an ISO extent, a partition) and to several regions read as one (a multi-extent ISO
 * file, a FAT cluster chain). None of them copies bytes ahead of a read, so an image of any size is
 * read with memory bounded by the largest single read.
 */
import { readFileSync } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { FormatError, type ByteSource } from './types.js';

/** A ByteSource over an open file descriptor; `close()` releases it. */
export interface FileSource extends ByteSource {
  readonly path: string;
  close(): Promise<void>;
}

/** The largest single read a stream asks for: big enough for throughput, small enough to keep memory flat. */
export const READ_PIECE = 1024 * 1024;

/**
 * Opens `path` (a regular file or a block device) for random access. The size comes from fstat, or for
 * a block device (whose st_size is 0) from sysfs, or else from probing for its last readable byte.
 */
export async function fileSource(path: string): Promise<FileSource> {
  const handle = await open(path, 'r');
  try {
    const stat = await handle.stat();
    const size = stat.isBlockDevice() ? await blockDeviceSize(handle, stat.rdev) : stat.size;
    return new HandleSource(path, handle, size);
  } catch (error) {
    await handle.close();
    throw error;
  }
}

class HandleSource implements FileSource {
  constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly size: number,
  ) {}

  async read(position: number, length: number): Promise<Buffer> {
    const wanted = clampLength(this.size, position, length);
    const buffer = Buffer.allocUnsafe(wanted);
    let filled = 0;
    while (filled < wanted) {
      const { bytesRead } = await this.handle.read(buffer, filled, wanted - filled, position + filled);
      // The file shrank under us: hand back what is there (callers check lengths and report truncation).
      if (bytesRead === 0) return buffer.subarray(0, filled);
      filled += bytesRead;
    }
    return buffer;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/**
 * The size in bytes of the block device `rdev` (a stat's rdev) from sysfs, synchronously (for a walk
 * that stats synchronously); undefined without sysfs.
 */
export function blockDeviceSizeSync(rdev: number): number | undefined {
  const { major, minor } = deviceNumbers(rdev);
  try {
    const sectors = Number(readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8').trim());
    return Number.isSafeInteger(sectors) && sectors >= 0 ? sectors * 512 : undefined;
  } catch {
    return undefined;
  }
}

function deviceNumbers(rdev: number): { major: number; minor: number } {
  // Linux encodes dev_t as major in bits 8-19 (plus 32-43), minor in bits 0-7 and 20-31.
  return { major: ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff), minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00) };
}

async function blockDeviceSize(handle: FileHandle, rdev: number): Promise<number> {
  // Linux encodes dev_t as major in bits 8-19 (plus 32-43), minor in bits 0-7 and 20-31.
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
  try {
    const sectors = Number((await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim());
    if (Number.isSafeInteger(sectors) && sectors >= 0) return sectors * 512;
  } catch {
    // No sysfs (a container without /sys): probe below.
  }
  return probeEnd(handle);
}

/** The size of a device by exponential then binary search for the last byte a pread returns. */
async function probeEnd(handle: FileHandle): Promise<number> {
  const one = Buffer.alloc(1);
  const readable = async (position: number) => (await handle.read(one, 0, 1, position)).bytesRead === 1;
  if (!(await readable(0))) return 0;
  let low = 0; // readable
  let high = 1;
  while (await readable(high)) {
    low = high;
    high *= 2;
  }
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (await readable(middle)) low = middle;
    else high = middle;
  }
  return low + 1;
}

function clampLength(size: number, position: number, length: number): number {
  if (!Number.isSafeInteger(position) || position < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`bad read: ${length} bytes at ${position}`);
  }
  return Math.max(0, Math.min(length, size - position));
}

/** The bytes of `buffer` as a ByteSource (small things and tests). */
export function bufferSource(buffer: Buffer): ByteSource {
  return {
    size: buffer.length,
    read: async (position, length) => buffer.subarray(position, position + clampLength(buffer.length, position, length)),
  };
}

/**
 * `length` bytes of `source` from `offset`, addressed from 0. A region that runs past the end of its
 * source is a truncated container: FormatError('truncated'), thrown here so every format reports it alike.
 */
export function sliceSource(source: ByteSource, offset: number, length: number): ByteSource {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new FormatError('corrupt', `bad region: ${length} bytes at ${offset}`);
  }
  if (offset + length > source.size) {
    throw new FormatError('truncated', `region of ${length} bytes at offset ${offset} runs past the end (${source.size} bytes)`);
  }
  if (offset === 0 && length === source.size) return source;
  return {
    size: length,
    read: (position, wanted) => source.read(offset + position, clampLength(length, position, wanted)),
  };
}

/** `size` zero bytes: a hole in a sparse file, or what a filesystem defines as zeros. */
export function zeroSource(size: number): ByteSource {
  return { size, read: async (position, length) => Buffer.alloc(clampLength(size, position, length)) };
}

/** Several sources read one after the other as one (extents of a multi-extent file, clusters of a chain). */
export function concatSource(parts: readonly ByteSource[]): ByteSource {
  const nonEmpty = parts.filter((part) => part.size > 0);
  if (nonEmpty.length === 1) return nonEmpty[0]!;
  return spanSource(
    nonEmpty.map((part) => part.size),
    (index, position, length) => nonEmpty[index]!.read(position, length),
  );
}

/**
 * Parts one after another as one source: part `i` is `sizes[i]` bytes, read by `readPart(i,
 * position in it, length)` (concatSource's parts; free-space.ts's regions of an image, kept in typed
 * arrays since a fragmented volume has millions). A part shorter than it claims ends the whole there.
 */
export function spanSource(sizes: ArrayLike<number>, readPart: (index: number, position: number, length: number) => Promise<Buffer>): ByteSource {
  // starts[i] is where part i begins in the whole.
  const starts = new Float64Array(sizes.length);
  let total = 0;
  for (let index = 0; index < sizes.length; index++) {
    starts[index] = total;
    total += sizes[index]!;
  }
  const partAt = (position: number): number => {
    let low = 0;
    let high = starts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (starts[middle]! <= position) low = middle;
      else high = middle - 1;
    }
    return low;
  };
  return {
    size: total,
    async read(position, length) {
      const wanted = clampLength(total, position, length);
      if (wanted === 0) return Buffer.alloc(0);
      const pieces: Buffer[] = [];
      let done = 0;
      for (let index = partAt(position); done < wanted && index < starts.length; index++) {
        const inner = position + done - starts[index]!;
        const asked = Math.min(wanted - done, sizes[index]! - inner);
        const piece = await readPart(index, inner, asked);
        pieces.push(piece);
        done += piece.length;
        if (piece.length < asked) break; // a part shorter than it claimed: the whole is short from here
      }
      return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, done);
    },
  };
}

/**
 * The bytes of `source` in order, `piece` bytes at a time (a Member's `stream()`). Checks `signal`
 * between pieces; a source that returns fewer bytes than it claims ends with FormatError('truncated').
 */
export async function* sourceChunks(source: ByteSource, signal?: AbortSignal, piece = READ_PIECE): AsyncGenerator<Buffer> {
  for (let position = 0; position < source.size; ) {
    signal?.throwIfAborted();
    const chunk = await source.read(position, Math.min(piece, source.size - position));
    if (chunk.length === 0) throw new FormatError('truncated', `source ends at ${position} of ${source.size} bytes`);
    position += chunk.length;
    yield chunk;
  }
}

/** Reads exactly `length` bytes at `position` or throws FormatError('truncated') naming `what`. */
export async function readExactly(source: ByteSource, position: number, length: number, what: string): Promise<Buffer> {
  const bytes = position + length <= source.size ? await source.read(position, length) : Buffer.alloc(0);
  if (bytes.length !== length) {
    throw new FormatError('truncated', `${what} (${length} bytes at offset ${position}) lies past the end of the ${source.size}-byte image`);
  }
  return bytes;
}
