/**
 * Streaming decompression behind one interface (see types.ts). Recognition is by magic bytes only.
 */
import { FormatError } from '../formats/types.js';
import type { Compression, DecompressOptions, DecompressStream } from './types.js';
import { ByteReader } from './input.js';
import { runConcatenated, type MemberCodec } from './driver.js';
import { inflateStream } from './deflate.js';
import { zstdCodec } from './zstd.js';
import { xzCodec } from './xz.js';
import { lz4Codec, Lz4LegacyStep } from './lz4.js';
import { bzip2Codec } from './bzip2.js';
import { LZOP_MAGIC, lzopCodec } from './lzo.js';
import { isLzipHead, looksLikeLzmaAlone, lzipCodec, lzmaCodec } from './lzma.js';

export type { Compression, DecompressOptions, DecompressStream } from './types.js';
export { decompressBlock, type BlockCompression } from './block.js';
export { createBlockPool, type BlockPool } from './pool.js';
export { looksLikeLzmaAlone } from './lzma.js';

/** Recognizes a compressed stream by its first bytes (never by name). */
export function detectCompression(head: Buffer): Compression | undefined {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return 'gzip';
  if (head.length >= 6 && head.toString('latin1', 0, 6) === '\xfd7zXZ\0') return 'xz';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head.length >= 4 && head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68 && head[3]! >= 0x31 && head[3]! <= 0x39) return 'bzip2';
  if (head.length >= 4 && head.readUInt32LE(0) === 0x184d2204) return 'lz4';
  if (head.length >= 4 && head.readUInt32LE(0) === 0x184c2102) return 'lz4-legacy';
  if (head.length >= 9 && head.subarray(0, 9).equals(LZOP_MAGIC)) return 'lzo';
  if (isLzipHead(head)) return 'lzip';
  if (head.length >= 2 && head[0] === 0x78 && ((head[0] << 8) | head[1]!) % 31 === 0) return 'zlib';
  if (looksLikeLzmaAlone(head)) return 'lzma';
  return undefined;
}

/**
 * The decompressed bytes of `input`, streamed in bounded chunks. Concatenated members (gzip members,
 * zstd frames, xz streams, bzip2 streams, lz4 frames, lzop streams, lzip members, LZMA-alone
 * streams) go on unless `single`; then the stream stops at
 * the end of the first and `consumed` says exactly how many input bytes it used. Throws FormatError:
 * 'truncated' when the input ends inside the data, 'corrupt' for damaged data or bytes after it that
 * are not more of it (zero padding excepted), 'unsupported' for a variant no decoder here reads; and
 * `signal.reason` when aborted (checked between chunks).
 */
export function decompressStream(kind: Compression, input: AsyncIterable<Buffer>, options: DecompressOptions = {}): DecompressStream {
  const reader = new ByteReader(input, options.signal);
  const single = options.single === true;
  async function* run(): AsyncGenerator<Buffer> {
    try {
      if (options.signal?.aborted) throw options.signal.reason;
      switch (kind) {
        case 'gzip':
        case 'zlib':
          yield* inflateStream(kind, reader, single, options.signal);
          break;
        case 'zstd':
          yield* runConcatenated(reader, zstdCodec, single);
          break;
        case 'xz':
          yield* runConcatenated(reader, xzCodec, single);
          break;
        case 'bzip2':
          yield* runConcatenated(reader, bzip2Codec, single);
          break;
        case 'lz4':
          yield* runConcatenated(reader, lz4Codec, single);
          break;
        case 'lz4-legacy':
          yield* runConcatenated(reader, legacyCodec(single), single);
          break;
        case 'lzo':
          yield* runConcatenated(reader, lzopCodec, single);
          break;
        case 'lzma':
          yield* runConcatenated(reader, lzmaCodec, single);
          break;
        case 'lzip':
          yield* runConcatenated(reader, lzipCodec, single);
          break;
        default:
          throw new FormatError('unsupported', `${kind} decompression is not supported yet`);
      }
    } finally {
      await reader.close();
    }
  }
  const iterable = run();
  return {
    [Symbol.asyncIterator]: () => iterable,
    get consumed() {
      return reader.consumed;
    },
  };
}

function legacyCodec(single: boolean): MemberCodec {
  return {
    label: 'lz4',
    open: () => new Lz4LegacyStep(single),
    another: async () => false,
  };
}
