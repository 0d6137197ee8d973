/**
 * The copy's I/O at the speed of the device: reads and writes that bypass the page cache
 * (O_DIRECT) where the filesystems allow it, into a fixed set of page-aligned blocks.
 *
 * Measured on a 2-core machine (1 GiB, cold cache): buffered reads of a model shard cost 0.6-2.7 s
 * of kernel time copying page-cache pages into our buffers, O_DIRECT reads 0.1 s; buffered writes
 * to an ext4 stick cost another copy plus the writeback, O_DIRECT writes neither. Without the
 * page cache in between, the stick is written while the copy runs (no multi-GiB backlog of dirty
 * pages for a final flush to wait on) and the copy's memory is the blocks, whatever the file size.
 *
 * Every direct path falls back to ordinary I/O where the kernel or filesystem refuses it.
 */
import { constants } from 'node:fs';
import { open, statfs, type FileHandle } from 'node:fs/promises';
import { readFully } from '../util/read-fully.js';

// Node's types leave out the WebAssembly global; only Memory is needed here.
declare const WebAssembly: { Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => { buffer: ArrayBufferLike } };

/** O_DIRECT offsets and lengths are multiples of this (the largest logical block size in use). */
export const DIRECT_ALIGN = 4096;

const WASM_PAGE = 65536;

/**
 * A fixed set of equal, page-aligned blocks, reused chunk after chunk. Fresh 4 MiB buffers per
 * chunk cost a page fault per 4 KiB and, worse, live outside the V8 heap until a garbage collection
 * notices them (a 4 GiB copy held 200 MB of dead chunks at its peak). The blocks live in one
 * WebAssembly memory (page-aligned, so O_DIRECT can read and write them), made on first use; pages
 * never touched cost nothing. The memory is shared (a SharedArrayBuffer) where the platform allows,
 * so a worker thread can hash a chunk where it lies, without a copy.
 */
export class BlockPool {
  private arena: ArrayBufferLike | undefined;
  private readonly free: number[] = [];
  private readonly waiting: ((block: Buffer) => void)[] = [];

  constructor(
    readonly blockSize: number,
    readonly blocks: number,
  ) {
    if (blockSize % WASM_PAGE !== 0) throw new Error(`BlockPool: block size ${blockSize} is not a multiple of ${WASM_PAGE}`);
  }

  private block(index: number): Buffer {
    this.arena ??= makeArena((this.blockSize / WASM_PAGE) * this.blocks);
    return Buffer.from(this.arena, index * this.blockSize, this.blockSize);
  }

  /** A whole free block; when all are out, the next one given back. */
  take(): Promise<Buffer> {
    if (!this.arena) for (let index = this.blocks - 1; index >= 0; index -= 1) this.free.push(index);
    const index = this.free.pop();
    if (index !== undefined) return Promise.resolve(this.block(index));
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Whether `chunk` lies in one of this pool's blocks (so it is page-aligned where it starts). */
  owns(chunk: Buffer): boolean {
    return this.arena !== undefined && chunk.buffer === this.arena && chunk.byteOffset % this.blockSize === 0;
  }

  /** Gives a block back: any view of it starting at its start (a chunk is a block cut to the bytes read). */
  give(chunk: Buffer): void {
    if (!this.owns(chunk)) return;
    const index = chunk.byteOffset / this.blockSize;
    const next = this.waiting.shift();
    if (next) next(this.block(index));
    else this.free.push(index);
  }
}

function makeArena(pages: number): ArrayBufferLike {
  try {
    return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer;
  } catch {
    return new WebAssembly.Memory({ initial: pages }).buffer;
  }
}

/** Whether `chunk` lies in memory another thread can read where it is (a pool block's). */
export function isShared(chunk: Buffer): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && chunk.buffer instanceof SharedArrayBuffer;
}

/** Size and number of a thread's shared I/O blocks (see ioBlocks). */
export const IO_BLOCK = 4 * 1024 * 1024;
export const IO_BLOCKS = 6;

let threadBlocks: BlockPool | undefined;

/**
 * This thread's I/O blocks (6 x 4 MiB, page-aligned, pages touched only when used), shared by the
 * copy and by reads of the media: a build's read-back verify reuses the memory its copy used.
 * Every user takes blocks and gives them back as it goes, and never waits for another user to
 * give one back while holding blocks another user waits for.
 */
export function ioBlocks(): BlockPool {
  return (threadBlocks ??= new BlockPool(IO_BLOCK, IO_BLOCKS));
}

const refusesDirect = (error: unknown) => {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EINVAL' || code === 'EOPNOTSUPP';
};

/** A file opened for reading, with O_DIRECT when `direct` and the filesystem takes it. */
export interface SourceFile {
  handle: FileHandle;
  direct: boolean;
}

/**
 * Opens `file` for reading. With `direct`, O_DIRECT is tried first; a filesystem that refuses it at
 * open or at the first read (FUSE, some network filesystems) gets an ordinary open instead.
 */
export async function openSource(file: string, direct: boolean, probe: Buffer | undefined): Promise<SourceFile> {
  if (direct && process.platform === 'linux' && constants.O_DIRECT && probe) {
    let handle: FileHandle | undefined;
    try {
      handle = await open(file, constants.O_RDONLY | constants.O_DIRECT);
      await handle.read(probe, 0, DIRECT_ALIGN, 0);
      return { handle, direct: true };
    } catch (error) {
      await handle?.close().catch(() => undefined);
      if (!refusesDirect(error)) throw error;
    }
  }
  return { handle: await open(file, 'r'), direct: false };
}

/** `readFully` of a source file: direct reads stop at a short read off the block grid (its end). */
export function readFullyAt(source: SourceFile, buffer: Buffer, position: number): Promise<number> {
  return readFully(source.handle, buffer, position, source.direct ? DIRECT_ALIGN : undefined);
}

/** statfs magic numbers of filesystems whose O_DIRECT writes are plain and fast (ext2/3/4, XFS, Btrfs, F2FS). */
const DIRECT_WRITE_FILESYSTEMS = new Set([0xef53, 0x58465342, 0x9123683e, 0xf2f52010]);

/**
 * Whether files in `dir` are written with O_DIRECT. Only on filesystems known to do it well: FAT
 * and exFAT turn an extending direct write into a buffered write plus a flush (slower than either),
 * FUSE and tmpfs refuse or ignore it.
 */
export async function directWritesIn(dir: string): Promise<boolean> {
  if (process.platform !== 'linux' || !constants.O_DIRECT || process.env.DUBNIUM_NO_DIRECT_IO) return false;
  try {
    return DIRECT_WRITE_FILESYSTEMS.has((await statfs(dir)).type);
  } catch {
    return false;
  }
}

/** Opens a second handle on a file already created, for O_DIRECT writes; undefined where refused. */
export async function openDirectWriter(file: string): Promise<FileHandle | undefined> {
  try {
    return await open(file, constants.O_WRONLY | constants.O_DIRECT);
  } catch (error) {
    if (refusesDirect(error)) return undefined;
    throw error;
  }
}

export { refusesDirect };
