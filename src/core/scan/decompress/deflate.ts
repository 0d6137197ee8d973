/**
 * gzip and zlib through node:zlib (zlib's own inflate, run on the libuv thread pool). gzip members are
 * framed here (header, raw deflate, CRC-32 and length trailer) instead of by zlib's gunzip so that each
 * member's end, and so `consumed`, is exact: zlib reports how many input bytes the inflater used.
 */
import zlib from 'node:zlib';
import { FormatError } from '../formats/types.js';
import { ByteReader, PIECE } from './input.js';
import { rejectTrailing } from './driver.js';

/** Inflates one raw deflate (or zlib) stream from the reader, leaving the input after it unread. */
async function* inflatePart(reader: ByteReader, inflater: zlib.Inflate | zlib.InflateRaw, label: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
  // The last pieces written: the inflater's end lies in them, and what it did not use goes back.
  const recent: Buffer[] = [];
  let written = 0;
  let ended = false;
  let feedError: unknown;
  inflater.once('end', () => {
    ended = true;
  });
  const feeding = (async () => {
    try {
      while (!ended) {
        const piece = await reader.take(PIECE);
        if (ended) {
          if (piece) reader.unread(piece);
          return;
        }
        if (!piece) {
          inflater.end();
          return;
        }
        recent.push(piece);
        if (recent.length > 4) recent.shift();
        written += piece.length;
        if (!inflater.write(piece)) {
          await new Promise<void>((resolve) => {
            const done = (): void => {
              inflater.off('drain', done);
              inflater.off('end', done);
              inflater.off('close', done);
              resolve();
            };
            inflater.on('drain', done);
            inflater.on('end', done);
            inflater.on('close', done);
          });
        }
      }
    } catch (error) {
      feedError = error;
      inflater.destroy();
    }
  })();
  try {
    for await (const chunk of inflater) {
      if (signal?.aborted) throw signal.reason;
      yield chunk as Buffer;
    }
  } catch (error) {
    if (feedError) throw feedError;
    if (signal?.aborted) throw signal.reason;
    const code = (error as NodeJS.ErrnoException).code;
    throw new FormatError(code === 'Z_BUF_ERROR' ? 'truncated' : 'corrupt', `${label}: ${(error as Error).message}`);
  } finally {
    ended = true;
    inflater.destroy();
    await feeding;
  }
  if (feedError) throw feedError;
  // Give back what was written after the end of the deflate data.
  let extra = written - inflater.bytesWritten;
  for (let i = recent.length - 1; i >= 0 && extra > 0; i--) {
    const piece = recent[i]!;
    const back = Math.min(extra, piece.length);
    reader.unread(piece.subarray(piece.length - back));
    extra -= back;
  }
  if (extra > 0) throw new Error(`${label}: lost track of ${extra} input bytes after the stream`);
}

async function readExact(reader: ByteReader, n: number, what: string): Promise<Buffer> {
  const bytes = await reader.read(n);
  if (bytes.length < n) throw new FormatError('truncated', `gzip: data ends inside the ${what}`);
  return bytes;
}

/** Reads a gzip member header (RFC 1952), leaving the reader at the deflate data. */
async function gzipHeader(reader: ByteReader): Promise<void> {
  const head = await readExact(reader, 10, 'header');
  if (head[0] !== 0x1f || head[1] !== 0x8b) throw new FormatError('corrupt', 'gzip: not a gzip member');
  if (head[2] !== 8) throw new FormatError('unsupported', `gzip: compression method ${head[2]} is not deflate`);
  const flags = head[3]!;
  if (flags & 0xe0) throw new FormatError('corrupt', 'gzip: reserved header flags set');
  if (flags & 4) {
    const length = (await readExact(reader, 2, 'header')).readUInt16LE(0);
    await readExact(reader, length, 'header');
  }
  for (const flag of [8, 16]) {
    if (!(flags & flag)) continue;
    // A zero-terminated name or comment.
    for (;;) {
      const piece = await reader.take(PIECE);
      if (!piece) throw new FormatError('truncated', 'gzip: data ends inside the header');
      const zero = piece.indexOf(0);
      if (zero >= 0) {
        reader.unread(piece.subarray(zero + 1));
        break;
      }
    }
  }
  if (flags & 2) await readExact(reader, 2, 'header');
}

/** Deflate data of at most this many bytes is inflated in one call (man pages, changelogs, jar classes)... */
export const ONE_CALL_INPUT = 1024 * 1024;
/** ...as long as its output stays under this; a bigger one is streamed instead. */
export const ONE_CALL_OUTPUT = 8 * 1024 * 1024;

/**
 * Raw deflate data inflated in one synchronous call: the output and how many input bytes the
 * deflate stream used, or undefined when the output would pass `maxOutput`. Throws FormatError
 * ('truncated' for cut data, else 'corrupt'), its message led by `label`.
 */
export function inflateRawWhole(input: Buffer, maxOutput: number, label: string): { output: Buffer; used: number } | undefined {
  try {
    const result = zlib.inflateRawSync(input, { info: true, maxOutputLength: maxOutput }) as unknown as { buffer: Buffer; engine: zlib.InflateRaw };
    return { output: result.buffer, used: result.engine.bytesWritten };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') return undefined;
    throw new FormatError(code === 'Z_BUF_ERROR' ? 'truncated' : 'corrupt', `${label}: ${(error as Error).message}`);
  }
}
/** Output of the one-call path is handed on in pieces of this size, like the streamed path's. */
const OUT_PIECE = 256 * 1024;

/**
 * A small member's raw deflate data inflated in one synchronous call, its unused input given back to
 * the reader; undefined (and the reader untouched) when the input or its output is not small. An
 * installer image's store holds tens of thousands of `.gz` files of a few KB: a zlib stream per file
 * costs thread-pool round trips and a 256 KiB output buffer each, and those buffers' external memory
 * kept the garbage collector busy for a fifth of a scan.
 */
async function inflateSmall(reader: ByteReader): Promise<Buffer | undefined> {
  const rest = await reader.takeRest(ONE_CALL_INPUT);
  if (!rest) return undefined;
  const whole = inflateRawWhole(rest, ONE_CALL_OUTPUT, 'gzip');
  reader.unread(whole ? rest.subarray(whole.used) : rest);
  return whole?.output;
}

/** One gzip member: header, deflate data, and a trailer checked against the output. */
async function* gzipMember(reader: ByteReader, signal?: AbortSignal): AsyncGenerator<Buffer> {
  await gzipHeader(reader);
  let crc = 0;
  let length = 0;
  const small = await inflateSmall(reader);
  if (small) {
    crc = zlib.crc32(small);
    length = small.length;
    for (let at = 0; at < small.length; at += OUT_PIECE) {
      if (signal?.aborted) throw signal.reason;
      yield small.subarray(at, at + OUT_PIECE);
    }
  } else {
    for await (const chunk of inflatePart(reader, zlib.createInflateRaw({ chunkSize: 256 * 1024 }), 'gzip', signal)) {
      crc = zlib.crc32(chunk, crc);
      length += chunk.length;
      yield chunk;
    }
  }
  const trailer = await readExact(reader, 8, 'trailer');
  if (trailer.readUInt32LE(0) !== crc >>> 0) throw new FormatError('corrupt', 'gzip: CRC-32 mismatch');
  if (trailer.readUInt32LE(4) !== length % 0x100000000) throw new FormatError('corrupt', 'gzip: length mismatch');
}

/** gzip (members back to back) or zlib (one stream), from the reader. */
export async function* inflateStream(kind: 'gzip' | 'zlib', reader: ByteReader, single: boolean, signal?: AbortSignal): AsyncGenerator<Buffer> {
  if (kind === 'zlib') {
    yield* inflatePart(reader, zlib.createInflate({ chunkSize: 256 * 1024 }), 'zlib', signal);
    if (!single) await rejectTrailing(reader, 'zlib');
    return;
  }
  for (let first = true; ; first = false) {
    if (!first) {
      if (single) return;
      const head = await reader.peek(2);
      if (head.length < 2 || head[0] !== 0x1f || head[1] !== 0x8b) {
        await rejectTrailing(reader, 'gzip');
        return;
      }
    }
    yield* gzipMember(reader, signal);
  }
}
