/**
 * tar (ustar, GNU, pax), read once in order with tar-stream. Regular files are members; links that
 * leave the archive are reported as problems, never followed.
 */
import path from 'node:path';
import { Readable } from 'node:stream';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

/**
 * A tar header's checksum (octal, at bytes 148-155) is the sum of its 512 bytes with the checksum
 * field counted as spaces. Text that happens to hold `ustar` at byte 257 (a tar library's source,
 * say) fails it, and is scanned as the text it is. Looks at `bytes` from `start`.
 */
export function tarChecksumValid(bytes: Buffer, start = 0): boolean {
  const field = bytes.toString('latin1', start + 148, start + 156).replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]{1,7}$/.test(field)) return false;
  // Old writers summed the bytes as signed chars: tar readers accept either sum.
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let index = 0; index < 512; index++) {
    if (index >= 148 && index < 156) continue;
    const byte = bytes[start + index]!;
    unsigned += byte;
    signed += byte < 0x80 ? byte : byte - 0x100;
  }
  const expected = Number.parseInt(field, 8);
  return expected === unsigned || expected === signed;
}

function escapesRoot(linkName: string, memberName: string): boolean {
  if (path.posix.isAbsolute(linkName)) return true;
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(memberName), linkName));
  return resolved === '..' || resolved.startsWith('../');
}

function formatError(error: unknown): unknown {
  if (error instanceof FormatError || (error as Error)?.name === 'AbortError') return error;
  const message = (error as Error)?.message ?? String(error);
  return new FormatError(/unexpected end|premature|truncat/i.test(message) ? 'truncated' : 'corrupt', `tar: ${message}`);
}

/** A member's bytes; a tar cut short in it is `truncated`. */
async function* entryBytes(entry: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of entry) yield chunk;
  } catch (error) {
    throw formatError(error);
  }
}

export const tar: FormatHandler = {
  name: 'tar',
  access: 'stream',
  detect(head) {
    return head.length >= 512 && head.toString('latin1', 257, 262) === 'ustar' && tarChecksumValid(head);
  },
  async *members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
    // Loaded on first use: most scans (and every CLI start) never open a tar.
    const { default: tarStream } = await import('tar-stream');
    const extract = tarStream.extract();
    const source = Readable.from(input as AsyncIterable<Buffer>, { objectMode: false });
    source.on('error', (error) => extract.destroy(error));
    source.pipe(extract);
    try {
      for await (const entry of extract) {
        if (context.signal?.aborted) throw context.signal.reason;
        const name = entry.header.name.replace(/^\.\//, '');
        if (entry.header.type === 'file' || entry.header.type === 'contiguous-file') {
          let used = false;
          yield {
            name,
            size: entry.header.size ?? 0,
            stream: () => {
              used = true;
              return entryBytes(entry as unknown as AsyncIterable<Buffer>);
            },
          };
          // A member the walker did not read is skipped here, so the next header can be read.
          if (!used) entry.resume();
          continue;
        }
        if ((entry.header.type === 'symlink' || entry.header.type === 'link') && entry.header.linkname && escapesRoot(entry.header.linkname, name)) {
          context.problem(name, `symlink points outside the archive (${entry.header.linkname}); not followed`);
        }
        entry.resume();
      }
    } catch (error) {
      throw formatError(error);
    } finally {
      source.destroy();
      extract.destroy();
    }
  },
};
