/**
 * A Nix archive (`nix-store --dump`, `nix nar`; the `.nar.xz`/`.nar.zst` of a binary cache are
 * decompressed by the compressed handler first). Read once in order: every string is a u64 length,
 * its bytes and zero padding to 8; a node is `( type regular [executable ""] contents <bytes> )`,
 * `( type symlink target <path> )` or `( type directory entry ( name <n> node <node> ) ... )`.
 * Regular files are members named by their absolute path inside the archive (`/etc/ssh/...`), as a
 * filesystem's are; a NAR of a single file names it after the archive (`x.nar` → `x`).
 */
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const MAGIC = Buffer.from('0d00000000000000' + Buffer.from('nix-archive-1\0\0\0', 'latin1').toString('hex'), 'hex');
/** Names, tokens and symlink targets are short; a longer one is not a NAR. */
const MAX_STRING = 64 * 1024;
/** Directories nested deeper than this are not a store path's. */
const MAX_DEPTH = 256;
const PIECE = 1024 * 1024;

/** The archive's bytes, taken in exact amounts from the chunks as they come. */
class Reader {
  private chunk: Buffer = Buffer.alloc(0);
  private offset = 0;
  position = 0;
  private readonly iterator: AsyncIterator<Buffer>;

  constructor(input: AsyncIterable<Buffer>) {
    this.iterator = input[Symbol.asyncIterator]();
  }

  private async fill(): Promise<void> {
    while (this.offset >= this.chunk.length) {
      const next = await this.iterator.next();
      if (next.done) throw new FormatError('truncated', `nar: the archive ends at offset ${this.position}, inside a node`);
      this.chunk = next.value;
      this.offset = 0;
    }
  }

  async bytes(length: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let left = length; left > 0; ) {
      await this.fill();
      const take = Math.min(left, this.chunk.length - this.offset);
      parts.push(this.chunk.subarray(this.offset, this.offset + take));
      this.offset += take;
      this.position += take;
      left -= take;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, length);
  }

  async u64(): Promise<number> {
    const value = (await this.bytes(8)).readBigUInt64LE(0);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError('corrupt', `nar: length ${value} at offset ${this.position - 8} is too large`);
    return Number(value);
  }

  async padding(length: number): Promise<void> {
    const pad = (8 - (length % 8)) % 8;
    if (pad && !(await this.bytes(pad)).every((byte) => byte === 0)) throw new FormatError('corrupt', `nar: non-zero padding at offset ${this.position - pad}`);
  }

  async string(): Promise<string> {
    const length = await this.u64();
    if (length > MAX_STRING) throw new FormatError('corrupt', `nar: a ${length}-byte name or token at offset ${this.position - 8}`);
    const text = (await this.bytes(length)).toString('utf8');
    await this.padding(length);
    return text;
  }

  async expect(token: string): Promise<void> {
    const at = this.position;
    const found = await this.string();
    if (found !== token) throw new FormatError('corrupt', `nar: expected "${token}" at offset ${at}, found "${found.slice(0, 40)}"`);
  }

  /** `length` bytes in pieces, then the padding. */
  async *contents(length: number, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
    for (let left = length; left > 0; ) {
      signal?.throwIfAborted();
      await this.fill();
      const take = Math.min(left, this.chunk.length - this.offset, PIECE);
      const piece = this.chunk.subarray(this.offset, this.offset + take);
      this.offset += take;
      this.position += take;
      left -= take;
      yield piece;
    }
    await this.padding(length);
  }
}

function validName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}

export const nar: FormatHandler = {
  name: 'nar',
  access: 'stream',
  detect(head) {
    return head.length >= 24 && head[0] === 0x0d && head.compare(MAGIC, 0, 24, 0, 24) === 0;
  },
  async *members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
    const reader = new Reader(input as AsyncIterable<Buffer>);
    await reader.expect('nix-archive-1');
    const single = context.name?.replace(/\.nar$/i, '') || '(file)';

    // One generator per directory level, bounded by MAX_DEPTH.
    async function* node(path: string, depth: number): AsyncGenerator<Member> {
      if (depth > MAX_DEPTH) throw new FormatError('corrupt', `nar: directories nested deeper than ${MAX_DEPTH}`);
      context.signal?.throwIfAborted();
      await reader.expect('(');
      await reader.expect('type');
      const at = reader.position;
      const type = await reader.string();
      if (type === 'regular') {
        let tag = await reader.string();
        if (tag === 'executable') {
          await reader.expect('');
          tag = await reader.string();
        }
        if (tag !== 'contents') throw new FormatError('corrupt', `nar: expected "contents" in ${path || '/'}, found "${tag.slice(0, 40)}"`);
        const size = await reader.u64();
        const stream = reader.contents(size, context.signal);
        yield { name: path || single, size, stream: () => stream };
        // What the walker left unread (or stopped reading early) is read here: the next node follows it.
        for await (const _ of stream) void _;
      } else if (type === 'symlink') {
        await reader.expect('target');
        const target = await reader.string();
        if (target.startsWith('/') && !target.startsWith('/nix/store/')) context.problem(path || single, `symlink points outside the archive (${target}); not followed`);
      } else if (type === 'directory') {
        let previous = '';
        for (;;) {
          const tag = await reader.string();
          if (tag === ')') return;
          if (tag !== 'entry') throw new FormatError('corrupt', `nar: expected "entry" in ${path || '/'}, found "${tag.slice(0, 40)}"`);
          await reader.expect('(');
          await reader.expect('name');
          const name = await reader.string();
          if (!validName(name)) throw new FormatError('corrupt', `nar: bad entry name "${name.slice(0, 40)}" in ${path || '/'}`);
          // Nix writes entries sorted; a reader that accepts otherwise could be fed two files of one name.
          if (previous && name <= previous) throw new FormatError('corrupt', `nar: entries of ${path || '/'} are not sorted`);
          previous = name;
          await reader.expect('node');
          yield* node(`${path}/${name}`, depth + 1);
          await reader.expect(')');
        }
      } else {
        throw new FormatError('corrupt', `nar: unknown node type "${type.slice(0, 40)}" at offset ${at}`);
      }
      await reader.expect(')');
    }

    yield* node('', 0);
  },
};
