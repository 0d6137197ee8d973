/**
 * A git packfile, read object by object in order (no .idx needed): each object's zlib stream is
 * inflated as it is read (objects of any size, never whole in memory) and is a member named
 * `(git blob @offset)`. Delta objects are scanned as they are: copy instructions are a few bytes,
 * inserted text comes through as it was written.
 */
import { createInflate } from 'node:zlib';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const PACK_TYPES = ['', 'commit', 'tree', 'blob', 'tag', '', 'ofs-delta', 'ref-delta'];
const PIECE = 1024 * 1024;

/**
 * The inflated bytes of the zlib stream at `start`; `done(consumed)` is told how many compressed
 * bytes it took once it ends. At most `bound` bytes are read.
 */
async function* inflateAt(source: ByteSource, start: number, bound: number, size: number, signal: AbortSignal | undefined, done: (consumed: number) => void): AsyncGenerator<Buffer> {
  const inflater = createInflate();
  let at = start;
  const end = Math.min(source.size, start + bound);
  let failed: Error | undefined;
  inflater.on('error', (error) => {
    failed = error;
  });
  // The compressed bytes go in piece by piece, as the inflated ones are taken: memory stays flat.
  const feed = async () => {
    try {
      while (at < end && !inflater.writableEnded && !inflater.destroyed) {
        const piece = await source.read(at, Math.min(PIECE, end - at));
        if (piece.length === 0) break;
        at += piece.length;
        if (!inflater.write(piece)) await new Promise<void>((resolve) => {
          const resume = () => {
            inflater.off('drain', resume);
            inflater.off('close', resume);
            inflater.off('end', resume);
            resolve();
          };
          inflater.on('drain', resume);
          inflater.on('close', resume);
          inflater.on('end', resume);
        });
      }
      if (!inflater.writableEnded && !inflater.destroyed) inflater.end();
    } catch (error) {
      inflater.destroy(error as Error);
    }
  };
  void feed();
  let total = 0;
  try {
    for await (const chunk of inflater) {
      if (signal?.aborted) throw signal.reason;
      total += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    if (error instanceof FormatError) throw error;
    throw new FormatError((error as NodeJS.ErrnoException).code === 'Z_BUF_ERROR' ? 'truncated' : 'corrupt', `git pack object at ${start}: ${(error as Error).message}`);
  } finally {
    inflater.destroy();
  }
  if (failed) throw new FormatError('corrupt', `git pack object at ${start}: ${failed.message}`);
  if (total !== size) throw new FormatError(total < size ? 'truncated' : 'corrupt', `git pack object at ${start} inflates to ${total} bytes, not ${size}`);
  done(inflater.bytesWritten);
}

export const gitPack: FormatHandler = {
  name: 'git-pack',
  access: 'random',
  detect(head) {
    // "PACK", version 2 or 3, object count.
    return head.length >= 12 && head.toString('latin1', 0, 4) === 'PACK' && head.readUInt32BE(4) >= 2 && head.readUInt32BE(4) <= 3;
  },
  async *members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
    const source = input as ByteSource;
    const top = await source.read(0, 12);
    if (top.length < 12) throw new FormatError('truncated', 'git pack: header cut short');
    const count = top.readUInt32BE(8);
    let offset = 12;
    for (let index = 0; index < count; index++) {
      if (context.signal?.aborted) throw context.signal.reason;
      const header = await source.read(offset, 64);
      if (header.length === 0) throw new FormatError('truncated', `git pack: ends after ${index} of ${count} objects`);
      let at = 0;
      let byte = header[at++]!;
      const type = (byte >> 4) & 7;
      let size = byte & 15;
      for (let shift = 4; byte & 0x80; shift += 7) {
        if (at >= header.length) throw new FormatError('truncated', `git pack: object header at ${offset} cut short`);
        byte = header[at++]!;
        size += (byte & 0x7f) * 2 ** shift;
      }
      if (type === 6) {
        do byte = header[at++]!;
        while (byte & 0x80 && at < header.length);
      } else if (type === 7) {
        at += 20;
      }
      if (!PACK_TYPES[type]) throw new FormatError('corrupt', `git pack: unknown object type ${type} at offset ${offset}`);
      let consumed: number | undefined;
      const start = offset + at;
      // The compressed stream is at most a little larger than its content (stored blocks).
      const bound = size + Math.ceil(size / 16000) * 5 + 64;
      const stream = inflateAt(source, start, bound, size, context.signal, (value) => {
        consumed = value;
      });
      yield { name: `(git ${PACK_TYPES[type]} @${offset})`, size, stream: () => stream };
      // A member the walker did not read is inflated here all the same: the next object starts after it.
      if (consumed === undefined) for await (const _ of stream) void _;
      if (consumed === undefined) throw new FormatError('corrupt', `git pack: object at ${offset} was not read to its end`);
      offset = start + consumed;
    }
  },
};
