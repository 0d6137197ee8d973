/**
 * zisofs: ISO 9660's transparent per-file compression (`mkisofs -z`, xorriso's `--zisofs` filter,
 * mkzftree), which the Linux kernel undoes on read. A file so compressed lies in the image as a
 * header, a table of block pointers and independently compressed blocks; Rock Ridge marks it with a
 * `ZF` (or `Z2`) entry. Read as it lies, a key in it is only zlib noise: iso9660.ts decodes such a
 * file through `zisofsChunks` and names it by its path, and this handler decodes a zisofs file found
 * anywhere else (a tree made by mkzftree, an ISO without Rock Ridge) by its magic.
 *
 * Version 1 (H. Peter Anvin): magic 37 E4 53 96 C9 DB D6 07, 4-byte size, zlib blocks of 32-128 KiB.
 * Version 2 (libisofs' zisofs2_format.txt): magic EF 22 55 A1 BC 1B 95 A0, 8-byte size and
 * pointers, blocks of 32 KiB-1 MiB compressed with zlib, xz, lz4, zstd or bzip2. In both, a block of
 * zero length stands for a block of zero bytes.
 */
import { decompressBlock, decompressStream, type BlockCompression, type Compression } from '../decompress/index.js';
import { readExactly } from './byte-source.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const MAGIC_V1 = Buffer.from([0x37, 0xe4, 0x53, 0x96, 0xc9, 0xdb, 0xd6, 0x07]);
const MAGIC_V2 = Buffer.from([0xef, 0x22, 0x55, 0xa1, 0xbc, 0x1b, 0x95, 0xa0]);
/** zisofs2's algorithms by id; version 1 is always zlib. */
const ALGORITHMS: Record<number, { name: string; block?: BlockCompression; stream?: Compression }> = {
  1: { name: 'zlib', block: 'zlib' },
  2: { name: 'xz', block: 'xz' },
  3: { name: 'lz4' },
  4: { name: 'zstd', block: 'zstd' },
  5: { name: 'bzip2', stream: 'bzip2' },
};
/** Compressed bytes read at once: several blocks per read. */
const READ_SPAN = 1 << 20;
/** Block pointers read at once. */
const POINTER_PIECE = 8192;

interface ZisofsHeader {
  version: 1 | 2;
  size: number;
  headerBytes: number;
  blockSize: number;
  pointerWidth: 4 | 8;
  algorithm: number;
}

/** The header of a zisofs file, or undefined when `head` starts no zisofs file. */
export function zisofsHeader(head: Buffer): ZisofsHeader | undefined {
  if (head.length >= 16 && head.subarray(0, 8).equals(MAGIC_V1)) {
    const log2 = head[13]!;
    if (head[12]! < 4 || log2 < 15 || log2 > 17) return undefined;
    return { version: 1, size: head.readUInt32LE(8), headerBytes: head[12]! * 4, blockSize: 2 ** log2, pointerWidth: 4, algorithm: 1 };
  }
  if (head.length >= 24 && head.subarray(0, 8).equals(MAGIC_V2)) {
    const log2 = head[11]!;
    if (head[8] !== 0 || head[9]! < 6 || log2 < 15 || log2 > 20 || head[10] === 0) return undefined;
    const size = Number(head.readBigUInt64LE(12));
    if (!Number.isSafeInteger(size)) return undefined;
    return { version: 2, size, headerBytes: head[9]! * 4, blockSize: 2 ** log2, pointerWidth: 8, algorithm: head[10]! };
  }
  return undefined;
}

/** The uncompressed bytes of a zisofs file, block by block. Throws FormatError for anything it cannot read whole. */
export async function* zisofsChunks(source: ByteSource, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const header = zisofsHeader(await readExactly(source, 0, Math.min(24, source.size), 'the zisofs header'));
  if (header === undefined) throw new FormatError('corrupt', 'zisofs: no valid zisofs header');
  const algorithm = ALGORITHMS[header.algorithm];
  if (algorithm === undefined) throw new FormatError('unknown-compression', `zisofs2: unknown compression algorithm ${header.algorithm}`);
  const { blockSize, pointerWidth, size } = header;
  const blocks = Math.ceil(size / blockSize);
  const tableEnd = header.headerBytes + (blocks + 1) * pointerWidth;
  if (tableEnd > source.size) throw new FormatError('truncated', `zisofs: the block pointer table ends past the file (${blocks} blocks)`);
  let pointers: number[] = [];
  let pointersFrom = 0;
  const pointer = async (index: number): Promise<number> => {
    if (index < pointersFrom || index >= pointersFrom + pointers.length) {
      pointersFrom = index;
      const count = Math.min(POINTER_PIECE, blocks + 1 - index);
      const bytes = await readExactly(source, header.headerBytes + index * pointerWidth, count * pointerWidth, 'the zisofs block pointers');
      pointers = [];
      for (let at = 0; at < bytes.length; at += pointerWidth) pointers.push(pointerWidth === 4 ? bytes.readUInt32LE(at) : Number(bytes.readBigUInt64LE(at)));
    }
    return pointers[index - pointersFrom]!;
  };
  let span: Buffer = Buffer.alloc(0);
  let spanStart = 0;
  for (let index = 0; index < blocks; index++) {
    signal?.throwIfAborted();
    const start = await pointer(index);
    const end = await pointer(index + 1);
    const expected = Math.min(blockSize, size - index * blockSize);
    if (start < tableEnd || end < start || !Number.isSafeInteger(end) || end > source.size) {
      throw new FormatError('corrupt', `zisofs: block ${index} points outside the file (${start}-${end} of ${source.size})`);
    }
    if (end === start) {
      yield Buffer.alloc(expected);
      continue;
    }
    if (start < spanStart || end > spanStart + span.length) {
      // Blocks follow one another: read the next megabyte of them at once.
      spanStart = start;
      span = await readExactly(source, start, Math.min(source.size - start, Math.max(end - start, READ_SPAN)), `zisofs block ${index}`);
    }
    const stored = span.subarray(start - spanStart, end - spanStart);
    const output = await decodeBlock(algorithm, stored, blockSize, index);
    if (output.length !== expected) {
      throw new FormatError('corrupt', `zisofs: block ${index} decodes to ${output.length} bytes, not ${expected}`);
    }
    yield output;
  }
}

async function decodeBlock(algorithm: { name: string; block?: BlockCompression; stream?: Compression }, stored: Buffer, blockSize: number, index: number): Promise<Buffer> {
  try {
    if (algorithm.block) return await decompressBlock(algorithm.block, stored, blockSize);
    // lz4 blocks are frames (zisofs2-tools) or raw blocks; bzip2 blocks are whole streams.
    const kind: BlockCompression | Compression = algorithm.stream ?? (stored.length >= 4 && stored.readUInt32LE(0) === 0x184d2204 ? 'lz4' : 'lz4-block');
    if (kind === 'lz4-block') return await decompressBlock('lz4-block', stored, blockSize);
    const parts: Buffer[] = [];
    let length = 0;
    for await (const part of decompressStream(kind as Compression, (async function* one() { yield stored; })())) {
      length += part.length;
      if (length > blockSize) throw new FormatError('corrupt', `${algorithm.name} block decodes to more than ${blockSize} bytes`);
      parts.push(part);
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, length);
  } catch (error) {
    if (error instanceof FormatError) throw new FormatError(error.reason, `zisofs block ${index}: ${error.message}`);
    throw error;
  }
}

/** A zisofs file found by its magic (not through a Rock Ridge `ZF` entry): one member, its uncompressed bytes. */
export const zisofs: FormatHandler = {
  name: 'zisofs',
  access: 'random',
  transparent: true,
  detect: (head) => zisofsHeader(head) !== undefined,
  async *members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
    const source = input as ByteSource;
    const header = zisofsHeader(await readExactly(source, 0, Math.min(24, source.size), 'the zisofs header'));
    yield { name: '(zisofs)', ...(header ? { size: header.size } : {}), stream: () => zisofsChunks(source, context.signal) };
  },
};
