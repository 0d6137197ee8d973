/**
 * zip (and zip64), read with yauzl from random access (its central directory is at the end). Deflated
 * and stored entries are read by yauzl; bzip2 (12), zstd (93) and xz (95) entries through the shared
 * decompressors. An encrypted entry, or one in another method, is reported unreadable and skipped.
 */
import { Readable } from 'node:stream';
import { createInflateRaw } from 'node:zlib';
import type yauzl from 'yauzl';
import { inflateRawWhole, ONE_CALL_INPUT, ONE_CALL_OUTPUT } from '../decompress/deflate.js';
import { decompressStream, type Compression } from '../decompress/index.js';
import { ByteReader } from '../decompress/input.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const METHODS: Record<number, Compression> = { 12: 'bzip2', 14: 'lzma', 93: 'zstd', 95: 'xz' };

/**
 * A zip LZMA entry (method 14: 7-Zip's `-mm=LZMA`, Windows' "compressed folders" never) as an
 * LZMA-alone stream: zip stores a 4-byte LZMA SDK version and properties size, then the 5 property
 * bytes, then the stream; the alone header wants the uncompressed size after the properties.
 */
async function* zipLzmaAsAlone(bytes: AsyncIterable<Buffer>, uncompressedSize: number): AsyncGenerator<Buffer> {
  const reader = new ByteReader(bytes);
  const head = await reader.read(9);
  if (head.length < 9) throw new FormatError('truncated', 'zip: an LZMA entry ends inside its properties');
  const propsSize = head.readUInt16LE(2);
  if (propsSize !== 5) throw new FormatError('corrupt', `zip: an LZMA entry with ${propsSize} property bytes`);
  const header = Buffer.alloc(13);
  head.copy(header, 0, 4, 9);
  header.writeBigUInt64LE(BigInt(uncompressedSize), 5);
  yield header;
  for (let piece = await reader.take(); piece; piece = await reader.take()) yield piece;
}

const PIECE = 1024 * 1024;

function formatError(error: unknown): unknown {
  if (error instanceof FormatError || (error as Error)?.name === 'AbortError') return error;
  const message = (error as Error)?.message ?? String(error);
  const reason = /end of central directory|unexpected EOF|truncated|premature|out of range|not enough/i.test(message) ? 'truncated' : 'corrupt';
  return new FormatError(reason, `zip: ${message}`);
}

async function openZip(source: ByteSource): Promise<yauzl.ZipFile> {
  const { default: yauzlModule } = await import('yauzl');
  class Reader extends yauzlModule.RandomAccessReader {
    override _readStreamForRange(start: number, end: number): Readable {
      return Readable.from(
        (async function* pieces() {
          for (let at = start; at < end; at += PIECE) {
            const bytes = await source.read(at, Math.min(PIECE, end - at));
            if (bytes.length === 0) throw new FormatError('truncated', `zip: data ends at ${at}, before ${end}`);
            yield bytes;
            if (bytes.length < Math.min(PIECE, end - at)) throw new FormatError('truncated', `zip: data ends at ${at + bytes.length}, before ${end}`);
          }
        })(),
        { objectMode: false },
      );
    }
  }
  return new Promise((resolve, reject) => {
    yauzlModule.fromRandomAccessReader(new Reader(), source.size, { lazyEntries: true, autoClose: false }, (error, zip) => (error || !zip ? reject(error ?? new Error('cannot open')) : resolve(zip)));
  });
}

function nextEntry(zip: yauzl.ZipFile): Promise<yauzl.Entry | undefined> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      zip.off('entry', onEntry);
      zip.off('end', onEnd);
      zip.off('error', onError);
    };
    const onEntry = (value: yauzl.Entry) => {
      cleanup();
      resolve(value);
    };
    const onEnd = () => {
      cleanup();
      resolve(undefined);
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    zip.on('entry', onEntry);
    zip.on('end', onEnd);
    zip.on('error', onError);
    zip.readEntry();
  });
}

function openStream(zip: yauzl.ZipFile, entry: yauzl.Entry, raw: boolean): Promise<Readable> {
  return new Promise((resolve, reject) =>
    zip.openReadStream(entry, raw ? { decodeFileData: false } as yauzl.ZipFileOptions : {}, (error, value) => (error || !value ? reject(error ?? new Error('no stream')) : resolve(value))),
  );
}

/** An entry's bytes; read errors (bad deflate data) become FormatErrors. */
async function* entryBytes(stream: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of stream) yield chunk;
  } catch (error) {
    throw formatError(error);
  }
}

/**
 * A small deflated entry in one synchronous call: a stream per entry costs thread-pool round trips
 * and a 1 MiB output buffer each, and the jars of an installer image hold tens of thousands of them.
 */
async function* inflatedSmall(raw: Readable, expected: number, name: string): AsyncGenerator<Buffer> {
  const parts: Buffer[] = [];
  try {
    for await (const chunk of raw) parts.push(chunk as Buffer);
  } catch (error) {
    throw formatError(error);
  } finally {
    raw.destroy();
  }
  // One byte more than the entry says, to tell "more than it says" from "as much".
  const out = inflateRawWhole(parts.length === 1 ? parts[0]! : Buffer.concat(parts), expected + 1, `zip: ${name}`)?.output;
  if (!out || out.length > expected) throw new FormatError('corrupt', `zip: ${name} inflates to more than the ${expected} bytes its entry says`);
  if (out.length !== expected) throw new FormatError('truncated', `zip: ${name} inflates to ${out.length} bytes, not the ${expected} its entry says`);
  if (out.length > 0) yield out;
}

/**
 * A deflated entry, inflated here rather than by yauzl: 1 MiB output chunks instead of zlib's 16 KiB
 * (each chunk is a thread-pool round trip, which a loaded machine makes slow), and the size the
 * central directory gives is checked.
 */
async function* inflated(raw: Readable, expected: number, name: string, compressed: number): AsyncGenerator<Buffer> {
  if (compressed <= ONE_CALL_INPUT && expected <= ONE_CALL_OUTPUT) {
    yield* inflatedSmall(raw, expected, name);
    return;
  }
  const inflater = createInflateRaw({ chunkSize: 1024 * 1024 });
  raw.on('error', (error) => inflater.destroy(error));
  raw.pipe(inflater);
  let total = 0;
  try {
    for await (const chunk of inflater) {
      total += (chunk as Buffer).length;
      if (total > expected) throw new FormatError('corrupt', `zip: ${name} inflates to more than the ${expected} bytes its entry says`);
      yield chunk as Buffer;
    }
  } catch (error) {
    if (error instanceof FormatError) throw error;
    throw new FormatError((error as NodeJS.ErrnoException).code === 'Z_BUF_ERROR' ? 'truncated' : 'corrupt', `zip: ${name}: ${(error as Error).message}`);
  } finally {
    raw.destroy();
    inflater.destroy();
  }
  if (total !== expected) throw new FormatError('truncated', `zip: ${name} inflates to ${total} bytes, not the ${expected} its entry says`);
}

export const zip: FormatHandler = {
  name: 'zip',
  access: 'random',
  detect(head) {
    return head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && (head[2] === 3 || head[2] === 5) && (head[3] === 4 || head[3] === 6);
  },
  async *members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
    let archive: yauzl.ZipFile;
    try {
      archive = await openZip(input as ByteSource);
    } catch (error) {
      throw formatError(error);
    }
    try {
      for (;;) {
        if (context.signal?.aborted) throw context.signal.reason;
        let entry: yauzl.Entry | undefined;
        try {
          entry = await nextEntry(archive);
        } catch (error) {
          throw formatError(error);
        }
        if (!entry) return;
        if (entry.fileName.endsWith('/')) continue;
        if (entry.isEncrypted()) {
          context.unreadable(entry.fileName, 'encrypted', 'encrypted zip entry: its content cannot be checked');
          continue;
        }
        const via = METHODS[entry.compressionMethod];
        if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8 && !via) {
          context.unreadable(entry.fileName, 'unsupported', `zip entry compressed with method ${entry.compressionMethod}, which the scanner cannot read`);
          continue;
        }
        let stream: Readable;
        try {
          stream = await openStream(archive, entry, via !== undefined || entry.compressionMethod === 8);
        } catch (error) {
          throw formatError(error);
        }
        let used = false;
        yield {
          name: entry.fileName,
          size: entry.uncompressedSize,
          stream: () => {
            used = true;
            if (entry!.compressionMethod === 8) return inflated(stream, entry!.uncompressedSize, entry!.fileName, entry!.compressedSize);
            let bytes: AsyncIterable<Buffer> = entryBytes(stream as AsyncIterable<Buffer>);
            if (entry!.compressionMethod === 14) bytes = zipLzmaAsAlone(bytes, entry!.uncompressedSize);
            return via ? decompressStream(via, bytes, context.signal ? { signal: context.signal } : {}) : bytes;
          },
        };
        if (!used) stream.destroy();
      }
    } finally {
      archive.close();
    }
  },
};
