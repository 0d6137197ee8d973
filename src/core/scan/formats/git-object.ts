/**
 * A zlib stream: a git loose object (`blob 123\0...`, named `(git blob 123)`) or other zlib data
 * (`(zlib)`). zlib's two-byte magic is weak, so detection inflates the first KiB and takes the file
 * for a zlib stream only when that decodes (text that starts `x^` stays text).
 */
import { createRequire } from 'node:module';
import { decompressStream } from '../decompress/index.js';
import type { ByteSource, FormatContext, FormatHandler, Member } from './types.js';

type Zlib = typeof import('node:zlib');
let zlib: Zlib | undefined;
const require = createRequire(import.meta.url);

const GIT_HEADER = /^(blob|tree|commit|tag) (\d+)\0/;

/** The start of the inflated stream, or undefined when the first bytes are not valid zlib data. */
function inflateHead(head: Buffer, size: number | undefined): Buffer | undefined {
  zlib ??= require('node:zlib') as Zlib;
  const whole = size !== undefined && size <= head.length;
  const input = head.subarray(0, whole ? head.length : 1024);
  try {
    // A sync flush takes what the bytes so far decode to, without asking for the end of the stream.
    return zlib.inflateSync(input, whole ? {} : { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  } catch {
    return undefined;
  }
}

export const gitObject: FormatHandler = {
  name: 'zlib',
  access: 'stream',
  detect(head, size) {
    if (head.length < 2 || head[0] !== 0x78 || ((head[0] << 8) | head[1]!) % 31 !== 0) return false;
    const inflated = inflateHead(head, size);
    return inflated !== undefined && inflated.length > 0;
  },
  async *members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
    const inflated = decompressStream('zlib', input as AsyncIterable<Buffer>, context.signal ? { signal: context.signal } : {});
    const iterator = inflated[Symbol.asyncIterator]();
    // The git header is in the first bytes: read until it is seen whole (or cannot be one).
    const parts: Buffer[] = [];
    let length = 0;
    let done = false;
    while (length < 64) {
      const next = await iterator.next();
      if (next.done) {
        done = true;
        break;
      }
      parts.push(next.value);
      length += next.value.length;
    }
    const first = Buffer.concat(parts);
    const header = GIT_HEADER.exec(first.toString('latin1', 0, 64));
    const body = header ? first.subarray(header[0].length) : first;
    yield {
      name: header ? `(git ${header[1]})` : '(zlib)',
      ...(header ? { size: Number(header[2]) } : {}),
      stream: async function* rest() {
        if (body.length > 0) yield body;
        if (done) return;
        for (;;) {
          const next = await iterator.next();
          if (next.done) return;
          yield next.value;
        }
      },
    };
  },
};
