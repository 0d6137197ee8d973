/**
 * A compressed stream (gzip, xz, zstd, bzip2, lz4, lzop, legacy lzma, lzip): one member, its
 * decompressed bytes, named after the outer file without its suffix (`keys.txt.xz` → `keys.txt`,
 * `nix.tar.zst` → `nix.tar`, `x.tgz` → `x.tar`) or `(xz)` when it has none. A `.tar.*` is then read as a tar by the walker. zlib streams
 * (weak magic) are git-object.ts's.
 */
import { decompressStream, detectCompression, type Compression } from '../decompress/index.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const SUFFIXES: [RegExp, string][] = [
  [/\.(?:tgz|taz)$/i, '.tar'],
  [/\.(?:txz|tlz)$/i, '.tar'],
  [/\.(?:tzst|tzs)$/i, '.tar'],
  [/\.(?:tbz2?|tb2|tbz)$/i, '.tar'],
  [/\.tlz4$/i, '.tar'],
  [/\.tzo$/i, '.tar'],
  [/\.(?:gz|gzip|z|xz|lzma|zst|zstd|bz2|bzip2|lz4|lzo|lz)$/i, ''],
];

/** The member name of a compressed file called `outer`. */
export function strippedName(outer: string | undefined, kind: Compression): string {
  if (outer) {
    for (const [pattern, replacement] of SUFFIXES) {
      if (pattern.test(outer)) {
        const name = outer.replace(pattern, replacement);
        if (name) return name;
      }
    }
  }
  return `(${kind})`;
}

/** Which compression `head` starts with; bzip2's short magic must be followed by a block or end-of-stream marker. */
export function compressionOf(head: Buffer): Compression | undefined {
  const kind = detectCompression(head);
  if (kind === 'zlib') return undefined;
  if (kind === 'bzip2' && head.length >= 10) {
    const marker = head.toString('hex', 4, 10);
    if (marker !== '314159265359' && marker !== '177245385090') return undefined;
  }
  return kind;
}

export const compressed: FormatHandler = {
  name: 'compressed',
  access: 'stream',
  transparent: true,
  detect(head) {
    return compressionOf(head) !== undefined;
  },
  async *members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
    const chunks = input as AsyncIterable<Buffer>;
    // The kind is read again from the first bytes: the handler sees only its input.
    const iterator = chunks[Symbol.asyncIterator]();
    const heads: Buffer[] = [];
    let length = 0;
    while (length < 16) {
      const next = await iterator.next();
      if (next.done) break;
      heads.push(next.value);
      length += next.value.length;
    }
    const head = heads.length === 1 ? heads[0]! : Buffer.concat(heads);
    if (head.length === 0) return;
    const kind = compressionOf(head);
    if (!kind) throw new FormatError('corrupt', 'not a compressed stream');
    const whole = (async function* rejoin() {
      yield head;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    })();
    const stream = decompressStream(kind, whole, context.signal ? { signal: context.signal } : {});
    yield { name: strippedName(context.name, kind), stream: () => stream };
  },
};
