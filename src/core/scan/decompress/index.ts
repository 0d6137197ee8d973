/**
 * Streaming decompression behind one interface (see types.ts). Recognition is by magic bytes only.
 */
import { FormatError } from '../formats/types.js';
import type { Compression, DecompressOptions, DecompressStream } from './types.js';

export type { Compression, DecompressOptions, DecompressStream } from './types.js';

/** Recognizes a compressed stream by its first bytes (never by name). */
export function detectCompression(head: Buffer): Compression | undefined {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return 'gzip';
  if (head.length >= 6 && head.toString('latin1', 0, 6) === '\xfd7zXZ\0') return 'xz';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head.length >= 4 && head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68 && head[3]! >= 0x31 && head[3]! <= 0x39) return 'bzip2';
  if (head.length >= 4 && head.readUInt32LE(0) === 0x184d2204) return 'lz4';
  if (head.length >= 4 && head.readUInt32LE(0) === 0x184c2102) return 'lz4-legacy';
  if (head.length >= 2 && head[0] === 0x78 && ((head[0] << 8) | head[1]!) % 31 === 0) return 'zlib';
  return undefined;
}

/** The decompressed bytes of `input`, streamed. */
export function decompressStream(kind: Compression, input: AsyncIterable<Buffer>, options: DecompressOptions = {}): DecompressStream {
  if (kind === 'gzip' || kind === 'zlib') return zlibStream(kind, input, options);
  throw new FormatError('unknown-compression', `${kind} is not supported yet`);
}

function zlibStream(kind: 'gzip' | 'zlib', input: AsyncIterable<Buffer>, options: DecompressOptions): DecompressStream {
  let consumed = 0;
  async function* run(): AsyncGenerator<Buffer> {
    const { createGunzip, createInflate } = await import('node:zlib');
    const { Readable } = await import('node:stream');
    const counted = (async function* count() {
      for await (const chunk of input) {
        consumed += chunk.length;
        yield chunk;
      }
    })();
    const source = Readable.from(counted);
    const inflater = kind === 'gzip' ? createGunzip() : createInflate();
    source.on('error', (error) => inflater.destroy(error));
    source.pipe(inflater);
    try {
      for await (const chunk of inflater) {
        if (options.signal?.aborted) throw options.signal.reason;
        yield chunk as Buffer;
      }
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      const code = (error as NodeJS.ErrnoException).code;
      throw new FormatError(code === 'Z_BUF_ERROR' ? 'truncated' : 'corrupt', `${kind} stream: ${(error as Error).message}`);
    } finally {
      source.destroy();
      inflater.destroy();
    }
  }
  const iterable = run();
  return {
    [Symbol.asyncIterator]: () => iterable,
    get consumed() {
      return consumed;
    },
  };
}
